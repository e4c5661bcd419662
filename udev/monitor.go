package udev

import (
	"context"
	"slices"
)

// MonitorConfig selects the uevents a Monitor returns. A nil *MonitorConfig
// means kernel events for every device.
type MonitorConfig struct {
	// Sources are the netlink groups to join: SourceKernel, SourceUdev or
	// both. Zero means SourceKernel, which works without udevd. udevd's
	// events need the same network namespace as udevd.
	Sources Source
	// Subsystems keeps only events whose SUBSYSTEM is one of these; empty
	// keeps every subsystem.
	Subsystems []string
	// Devices keeps only events about one of these devices, each a node
	// path, DEVNAME, DEVPATH or sysfs name (see Event.IsDevice); empty
	// keeps every device.
	Devices []string
	// ReceiveBuffer is the socket receive buffer in bytes; zero means
	// 4 MiB. Root can exceed net.core.rmem_max (SO_RCVBUFFORCE). A buffer
	// that overflows loses events (ErrEventsLost).
	ReceiveBuffer int
}

// defaultReceiveBuffer holds a burst of a few thousand events.
const defaultReceiveBuffer = 4 << 20

// match reports whether e passes the filters.
func (c *MonitorConfig) match(e *Event) bool {
	if len(c.Subsystems) > 0 && !slices.Contains(c.Subsystems, e.Subsystem) {
		return false
	}
	if len(c.Devices) > 0 && !slices.ContainsFunc(c.Devices, e.IsDevice) {
		return false
	}
	return true
}

// WaitDevice receives events until one about dev (see Event.IsDevice) with
// one of the actions arrives (any action if none is given), and returns it.
// Open the Monitor before the operation that causes the event, or the event
// may come before the monitor exists. A lost-events error (ErrEventsLost) is
// returned, not skipped: the awaited event may have been among them, so check
// the device's state again before waiting more.
func (m *Monitor) WaitDevice(ctx context.Context, dev string, actions ...Action) (*Event, error) {
	return m.WaitFor(ctx, func(e *Event) bool {
		return e.IsDevice(dev) && (len(actions) == 0 || slices.Contains(actions, e.Action))
	})
}

// WaitFor receives events until match returns true for one, and returns it.
// It returns the first error of Receive, including ErrEventsLost.
func (m *Monitor) WaitFor(ctx context.Context, match func(*Event) bool) (*Event, error) {
	for {
		e, err := m.Receive(ctx)
		if err != nil {
			return nil, err
		}
		if match(e) {
			return e, nil
		}
	}
}

// ctxErr maps a deadline or cancellation seen by the poller to ctx's error.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return context.DeadlineExceeded
}
