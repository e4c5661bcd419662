package ioctl

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestOpenMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no-such-control")
	f, err := Open(path)
	if err == nil {
		f.Close()
		t.Fatal("Open of a missing node succeeded")
	}
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Op != "open" || pe.Path != path {
		t.Errorf("err %#v, want *os.PathError for %s", err, path)
	}
	if !errors.Is(err, unix.ENOENT) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err %v: want ENOENT / os.ErrNotExist", err)
	}
}

func TestOpenDefaultPath(t *testing.T) {
	f, err := Open("")
	if err != nil {
		if !strings.Contains(err.Error(), ControlPath) {
			t.Errorf("err %q does not name %s", err, ControlPath)
		}
		return
	}
	// This host has device-mapper; the node opened is the control node.
	if err := f.Close(); err != nil {
		t.Error(err)
	}
}

// TestFileNotDM issues a real dm ioctl on /dev/null: the kernel answers
// ENOTTY, and everything around the syscall behaves.
func TestFileNotDM(t *testing.T) {
	f, err := Open("/dev/null")
	if err != nil {
		t.Skip(err)
	}
	buf := make([]byte, SizeofHeader)
	r := Request{Cmd: CmdVersion}
	if _, err := r.MarshalTo(buf); err != nil {
		t.Fatal(err)
	}
	if err := f.Ioctl(CmdVersion.Request(), buf); !errors.Is(err, unix.ENOTTY) {
		t.Errorf("DM_VERSION on /dev/null: %v, want ENOTTY", err)
	}
	if err := f.Ioctl(CmdVersion.Request(), buf[:SizeofHeader-1]); err != ErrShortBuffer {
		t.Errorf("short buffer: %v", err)
	}
	// Through a Conn: the errno comes back wrapped.
	c := &Conn{T: f}
	err = c.Do(&Request{Cmd: CmdListDevices}, func(*Header, []byte) error { return nil })
	var e *Error
	if !errors.As(err, &e) || e.Cmd != CmdListDevices || !errors.Is(err, unix.ENOTTY) {
		t.Errorf("Conn.Do: %v", err)
	}

	// Concurrent ioctls and a Close: no race, and once closed every ioctl
	// says so.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, SizeofHeader)
			for j := 0; j < 100; j++ {
				err := f.Ioctl(CmdDevStatus.Request(), b)
				if !errors.Is(err, unix.ENOTTY) && !errors.Is(err, os.ErrClosed) {
					t.Errorf("ioctl: %v", err)
					return
				}
			}
		}()
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
	if err := f.Ioctl(CmdVersion.Request(), buf); err != os.ErrClosed {
		t.Errorf("ioctl after Close: %v, want os.ErrClosed", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestFileNoLeak(t *testing.T) {
	count := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip(err)
		}
		return len(ents)
	}
	before := count()
	for i := 0; i < 50; i++ {
		f, err := Open("/dev/null")
		if err != nil {
			t.Skip(err)
		}
		f.Close()
		f.Close()
	}
	if after := count(); after != before {
		t.Errorf("%d fds open before, %d after", before, after)
	}
}

// TestMarshalTooLarge maps (but never touches) a buffer over 4 GiB: data_size
// cannot describe it.
func TestMarshalTooLarge(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) < 8 {
		t.Skip("needs a 64-bit address space")
	}
	size := uint64(1) << 32 // a variable: the constant does not fit a 32-bit int
	b, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Skip(err)
	}
	defer unix.Munmap(b)
	r := Request{Cmd: CmdListDevices}
	if _, err := r.MarshalTo(b); err != ErrTooLarge {
		t.Errorf("4 GiB buffer: %v, want ErrTooLarge", err)
	}
}

// TestDoUnixErrno: the errno the real File returns is a unix.Errno, and a
// *Error matches it with errors.Is.
func TestDoUnixErrno(t *testing.T) {
	c := &Conn{T: &fakeKernel{fn: func(uint, []byte) error { return unix.EBUSY }}}
	err := c.Do(&Request{Cmd: CmdDevRemove, Header: Header{Name: "pool"}}, nil)
	var e *Error
	if !errors.Is(err, unix.EBUSY) || !errors.As(err, &e) || e.Err != unix.EBUSY {
		t.Errorf("err %v, want *Error wrapping unix.EBUSY", err)
	}
}
