package dm

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

// pollFile is a control node opened non-blocking and registered with Go's
// runtime poller, so that waiting for a dm event can be cancelled. The
// armed event counter is per open file, so every waiter has its own.
type pollFile struct {
	f  *os.File
	rc syscall.RawConn
}

func openPoll(path string) (*pollFile, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &pollFile{f: f, rc: rc}, nil
}

// arm issues DM_DEV_ARM_POLL on this file: poll reports readable once the
// global event counter moves past its current value.
func (p *pollFile) arm() error {
	var buf [ioctl.SizeofHeader]byte
	r := ioctl.Request{Cmd: ioctl.CmdDevArmPoll}
	if _, err := r.MarshalTo(buf[:]); err != nil {
		return err
	}
	var errno syscall.Errno
	err := p.rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(ioctl.CmdDevArmPoll.Request()), uintptr(unsafe.Pointer(&buf[0])))
	})
	if err != nil {
		return err
	}
	if errno != 0 {
		return &ioctl.Error{Cmd: ioctl.CmdDevArmPoll, Err: errno}
	}
	return nil
}

// wait sleeps until the file polls readable or ctx ends.
func (p *pollFile) wait(ctx context.Context) error {
	if d, ok := ctx.Deadline(); ok {
		p.f.SetReadDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { p.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	err := p.rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return err == nil && n > 0 && fds[0].Revents&unix.POLLIN != 0
	})
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return context.DeadlineExceeded
		}
		return err
	}
	return nil
}

func (p *pollFile) close() { p.f.Close() }
