package udev

import (
	"errors"
	"fmt"
	"syscall"
)

var (
	// ErrNotSupported means the operation cannot work on this platform: not
	// Linux, an architecture without SysV semaphore support in this package,
	// or a kernel without the syscall (ENOSYS). errors.Is reports it for
	// every *Error that wraps ENOSYS.
	ErrNotSupported = errors.New("udev: not supported on this platform")

	// ErrClosed is returned by operations on a Cookie whose semaphore was
	// removed by Close, or on a closed Monitor.
	ErrClosed = errors.New("udev: closed")

	// ErrNotCookie means a value is not a device-mapper udev cookie.
	ErrNotCookie = errors.New("udev: not a device-mapper udev cookie")

	// ErrEventsLost means the kernel dropped uevents because the monitor's
	// receive buffer overflowed (ENOBUFS). The monitor stays usable, but a
	// waiter must re-check the state it was waiting for.
	ErrEventsLost = errors.New("udev: uevents lost, receive buffer overrun")
)

// Error is the error type of this package: the operation, the cookie it
// concerned (zero if none) and the underlying error, usually a syscall.Errno.
// errors.Is matches the errno, the package's sentinels, and context errors.
type Error struct {
	Op     string // "semget", "semop", "wait", "receive", ...
	Cookie uint32 // cookie value (0x0D4Dxxxx), or 0
	Path   string // file or socket involved, if any
	Err    error
}

// Error formats the operation, the cookie, the path and the cause.
func (e *Error) Error() string {
	s := "udev: " + e.Op
	if e.Cookie != 0 {
		s += fmt.Sprintf(" cookie %#08x", e.Cookie)
	}
	if e.Path != "" {
		s += " " + e.Path
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is reports ErrNotSupported for a wrapped ENOSYS.
func (e *Error) Is(target error) bool {
	return target == ErrNotSupported && errors.Is(e.Err, syscall.ENOSYS)
}
