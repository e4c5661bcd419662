//go:build !linux

package udev

import "context"

// Monitor receives uevents; on this platform there are none, and NewMonitor
// returns ErrNotSupported.
type Monitor struct {
	cfg MonitorConfig
}

// NewMonitor returns ErrNotSupported: uevents exist only on Linux.
func NewMonitor(cfg *MonitorConfig) (*Monitor, error) {
	return nil, &Error{Op: "monitor", Err: ErrNotSupported}
}

// Close does nothing.
func (m *Monitor) Close() error { return nil }

// Receive returns ErrNotSupported.
func (m *Monitor) Receive(ctx context.Context) (*Event, error) {
	return nil, &Error{Op: "receive", Err: ErrNotSupported}
}
