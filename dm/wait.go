package dm

import (
	"context"
	"time"

	"github.com/thinp/thinp/ioctl"
)

// Event is what Wait returns: the device after its event counter moved,
// and the status of its live table (or inactive table, with Inactive).
type Event struct {
	Info   Info
	Status []TargetStatus
}

// fallbackPollInterval is how often Wait checks the event counter on a
// transport that cannot poll (a fake kernel in tests).
const fallbackPollInterval = 10 * time.Millisecond

// Wait waits until the device's event counter differs from last, then
// returns the device's info and target status, as DM_DEV_WAIT does. Pass the
// EventNr of an earlier Info, List entry or Event. It returns at once if
// the counter has already moved.
//
// Thin pools raise an event when free data space falls below the low water
// mark, when their mode changes and at every resume; a watcher must re-read
// the status after each one.
//
// Unlike a bare DM_DEV_WAIT, which blocks in the kernel until a signal,
// Wait honours ctx: it sleeps in poll(2) on its own control file descriptor,
// re-armed with DM_DEV_ARM_POLL, and only issues DM_DEV_WAIT once the
// counter has moved, when it returns at once. Flags: NoFlush, Inactive.
func (c *Control) Wait(ctx context.Context, ref Ref, last uint32, flags ...Flag) (Event, error) {
	f, err := collect("wait", NoFlush|Inactive, flags)
	if err == nil {
		err = ref.validate()
	}
	if err != nil {
		return Event{}, newError("wait", ref, err)
	}
	var p *pollFile
	if c.path != "" {
		if !c.version.Has(ioctl.FeatureArmPoll) {
			return Event{}, newError("wait", ref, &NotSupportedError{What: "DM_DEV_ARM_POLL", Need: ioctl.FeatureArmPoll.MinVersion(), Kernel: c.version})
		}
		p, err = openPoll(c.path)
		if err != nil {
			return Event{}, newError("wait", ref, err)
		}
		defer p.close()
	}
	for {
		if p != nil {
			if err := p.arm(); err != nil {
				return Event{}, newError("wait", ref, err)
			}
		}
		info, err := c.Info(ctx, ref)
		if err != nil {
			return Event{}, err
		}
		if info.EventNr != last {
			break
		}
		if p != nil {
			err = p.wait(ctx)
		} else {
			err = sleepCtx(ctx, fallbackPollInterval)
		}
		if err != nil {
			return Event{}, newError("wait", ref, err)
		}
	}
	r := &ioctl.Request{Cmd: ioctl.CmdDevWait}
	r.Header.EventNr = last
	r.Header.Flags = f.wire()
	var ev Event
	err = c.do(ctx, "wait", ref, r, func(h *ioctl.Header, b []byte) error {
		ev.Info = infoFromHeader(h)
		var tr ioctl.TargetReader
		tr.Reset(h, b)
		for tr.Next() {
			s := tr.Spec()
			ev.Status = append(ev.Status, targetStatus(s))
		}
		return tr.Err()
	})
	return ev, err
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
