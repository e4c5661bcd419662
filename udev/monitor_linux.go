//go:build linux

package udev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Monitor receives uevents from a NETLINK_KOBJECT_UEVENT socket. The socket
// is non-blocking and served by Go's runtime poller, so Close and context
// cancellation interrupt a blocked Receive at once. Receive may be called
// from one goroutine at a time; Close from any.
type Monitor struct {
	cfg MonitorConfig
	f   *os.File
	rc  syscall.RawConn

	mu  sync.Mutex // serialises Receive; guards buf and oob
	buf []byte
	oob []byte

	dlMu sync.Mutex // guards gen: a stale cancellation must not touch a later Receive
	gen  uint64

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool // set before the file is closed
}

// receiveBuffer is larger than any uevent: the kernel's are at most a few
// KiB, udevd's a few KiB more with the properties its rules add.
const receiveBuffer = 128 << 10

// NewMonitor opens a uevent monitor. It needs no privileges for kernel
// events; udevd's events (SourceUdev) are only accepted from a sender with
// uid 0, as libudev does. Events that happen before NewMonitor returns are
// not seen.
func NewMonitor(cfg *MonitorConfig) (*Monitor, error) {
	var c MonitorConfig
	if cfg != nil {
		c = *cfg
		c.Subsystems = append([]string(nil), cfg.Subsystems...)
		c.Devices = append([]string(nil), cfg.Devices...)
	}
	if c.Sources == 0 {
		c.Sources = SourceKernel
	}
	if c.Sources&^(SourceKernel|SourceUdev) != 0 {
		return nil, &Error{Op: "monitor", Err: fmt.Errorf("%w: unknown sources %v", unix.EINVAL, c.Sources)}
	}
	if c.ReceiveBuffer <= 0 {
		c.ReceiveBuffer = defaultReceiveBuffer
	}

	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, &Error{Op: "socket", Err: err}
	}
	fail := func(op string, err error) (*Monitor, error) {
		unix.Close(fd)
		return nil, &Error{Op: op, Err: err}
	}
	// The forced size ignores net.core.rmem_max but needs CAP_NET_ADMIN.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, c.ReceiveBuffer) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, c.ReceiveBuffer)
	}
	// Credentials tell udevd's events (uid 0) from anyone else's.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		return fail("setsockopt SO_PASSCRED", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: uint32(c.Sources)}); err != nil {
		return fail("bind", err)
	}
	f := os.NewFile(uintptr(fd), "uevent-monitor")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, &Error{Op: "monitor", Err: err}
	}
	return &Monitor{
		cfg: c,
		f:   f,
		rc:  rc,
		buf: make([]byte, receiveBuffer),
		oob: make([]byte, unix.CmsgSpace(unix.SizeofUcred)),
	}, nil
}

// Close closes the socket and interrupts a blocked Receive, which then
// returns ErrClosed. It is idempotent.
func (m *Monitor) Close() error {
	m.closeOnce.Do(func() {
		m.closed.Store(true)
		if err := m.f.Close(); err != nil {
			m.closeErr = &Error{Op: "close", Err: err}
		}
	})
	return m.closeErr
}

// Receive returns the next event that passes the monitor's filters. It
// returns ctx's error when ctx ends, ErrClosed after Close, and
// ErrEventsLost when the kernel dropped events because the socket's receive
// buffer was full (Receive can be called again). Datagrams that are not
// valid uevents, kernel-format messages not sent by the kernel, and udev
// messages not sent by root are skipped.
func (m *Monitor) Receive(ctx context.Context) (*Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	m.dlMu.Lock()
	m.gen++
	gen := m.gen
	m.dlMu.Unlock()
	dl, _ := ctx.Deadline() // zero: no deadline
	if err := m.f.SetReadDeadline(dl); err != nil {
		return nil, m.pollErr(ctx, err)
	}
	stop := context.AfterFunc(ctx, func() {
		m.dlMu.Lock()
		defer m.dlMu.Unlock()
		if m.gen == gen {
			_ = m.f.SetReadDeadline(time.Unix(1, 0))
		}
	})
	defer func() {
		stop()
		m.dlMu.Lock()
		m.gen++
		m.dlMu.Unlock()
	}()

	for {
		var (
			n, oobn, flags int
			from           unix.Sockaddr
			rerr           error
		)
		err := m.rc.Read(func(fd uintptr) bool {
			n, oobn, flags, from, rerr = unix.Recvmsg(int(fd), m.buf, m.oob, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err != nil {
			return nil, m.pollErr(ctx, err)
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, unix.EINTR):
			continue
		case errors.Is(rerr, unix.ENOBUFS):
			return nil, &Error{Op: "receive", Err: fmt.Errorf("%w (%w)", ErrEventsLost, rerr)}
		default:
			return nil, &Error{Op: "receive", Err: rerr}
		}
		if flags&unix.MSG_TRUNC != 0 {
			continue
		}
		sa, ok := from.(*unix.SockaddrNetlink)
		if !ok {
			continue
		}
		e := m.decode(m.buf[:n], m.oob[:oobn], sa)
		if e != nil && m.cfg.match(e) {
			return e, nil
		}
	}
}

// decode checks a datagram's sender and parses it; nil means skip it.
func (m *Monitor) decode(b, oob []byte, sa *unix.SockaddrNetlink) *Event {
	if bytes.HasPrefix(b, []byte(udevPrefix)) {
		// udevd multicasts to group 2 as root, as libudev checks.
		if m.cfg.Sources&SourceUdev == 0 || sa.Groups&uint32(SourceUdev) == 0 || !fromRoot(oob) {
			return nil
		}
	} else if m.cfg.Sources&SourceKernel == 0 || sa.Groups&uint32(SourceKernel) == 0 || sa.Pid != 0 {
		// Kernel uevents come from port id 0; anything else is a
		// userspace process pretending.
		return nil
	}
	e, err := ParseEvent(b)
	if err != nil {
		return nil
	}
	return e
}

// fromRoot reports whether the SCM_CREDENTIALS in oob name uid 0.
func fromRoot(oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_CREDENTIALS {
			continue
		}
		cred, err := unix.ParseUnixCredentials(&msgs[i])
		if err == nil && cred.Uid == 0 {
			return true
		}
	}
	return false
}

// pollErr maps the poller's errors: a deadline is ctx's, a closed file is
// ErrClosed (the poller's own "use of closed file" error is not exported).
func (m *Monitor) pollErr(ctx context.Context, err error) error {
	switch {
	case m.closed.Load(), errors.Is(err, os.ErrClosed):
		return &Error{Op: "receive", Err: ErrClosed}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ctxErr(ctx)
	default:
		return &Error{Op: "receive", Err: err}
	}
}
