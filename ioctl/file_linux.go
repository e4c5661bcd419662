package ioctl

import (
	"os"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ControlPath is where the device-mapper control node lives.
const ControlPath = "/dev/mapper/control"

// File is the real Transport: an open device-mapper control node. Ioctls may
// run concurrently; Close waits for those in flight and is idempotent.
type File struct {
	mu     sync.RWMutex
	fd     int
	closed bool
}

// Open opens the control node at path (ControlPath if empty), read-write and
// close-on-exec.
func Open(path string) (*File, error) {
	if path == "" {
		path = ControlPath
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &File{fd: fd}, nil
}

// Ioctl issues request req on b. It implements Transport.
func (f *File) Ioctl(req uint, b []byte) error {
	if len(b) < SizeofHeader {
		return ErrShortBuffer
	}
	f.mu.RLock()
	if f.closed {
		f.mu.RUnlock()
		return os.ErrClosed
	}
	r1, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(f.fd), uintptr(req), uintptr(unsafe.Pointer(&b[0])))
	f.mu.RUnlock()
	runtime.KeepAlive(b)
	if errno != 0 {
		return errno
	}
	if r1 != 0 {
		return ErrNoReply
	}
	return nil
}

// Close closes the control node. It is safe to call more than once.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	return unix.Close(f.fd)
}
