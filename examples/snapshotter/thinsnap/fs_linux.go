package thinsnap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FSError is a failure to make or ready a file system, or to discard a
// device's blocks: which step, on which device, and why (with mkfs's
// output).
type FSError struct {
	Op     string // "mkfs.ext4", "mount", "discard", ...
	Device string
	Output string // what the program printed, if one ran
	Err    error
}

func (e *FSError) Error() string {
	s := fmt.Sprintf("thinsnap: %s %s: %v", e.Op, e.Device, e.Err)
	if e.Output != "" {
		s += ": " + strings.TrimSpace(e.Output)
	}
	return s
}

// Unwrap returns the cause.
func (e *FSError) Unwrap() error { return e.Err }

// systemFS formats with the system's mkfs and readies the root with a
// temporary mount of its own.
type systemFS struct{}

// Format runs mkfs.ext4 -E options dev (mkfs.xfs options... dev), then
// readies its root (readyRoot), so that a snapshot of it is an empty
// directory.
func (systemFS) Format(ctx context.Context, dev, fs, options string) error {
	var cmd *exec.Cmd
	switch fs {
	case FSExt4:
		args := []string{"-q"}
		if options != "" {
			args = append(args, "-E", options)
		}
		cmd = exec.CommandContext(ctx, "mkfs.ext4", append(args, dev)...)
	case FSXFS:
		cmd = exec.CommandContext(ctx, "mkfs.xfs", append(append([]string{"-q"}, strings.Fields(options)...), dev)...)
	default:
		return &FSError{Op: "mkfs", Device: dev, Err: fmt.Errorf("file system %q: %w", fs, ErrInvalidConfig)}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return &FSError{Op: filepath.Base(cmd.Path), Device: dev, Output: out.String(), Err: err}
	}
	return readyRoot(dev, fs)
}

// readyRoot mounts the new file system dev, removes its lost+found and
// sets its root's mode to 0755. The mount is made in a mount namespace of
// its own, on an OS thread that ends with it: no other process sees it,
// and a crash at any instant (the snapshotter killed between mount and
// unmount) leaves no mount holding the base volume's device open, since
// the namespace dies with the thread. It is mounted over the temporary
// directory, hidden from that namespace alone, so nothing is made on the
// host's file systems either.
func readyRoot(dev, fs string) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the runtime ends a thread whose goroutine exits
		// locked, and the namespace with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			errc <- &FSError{Op: "unshare mount namespace for", Device: dev, Err: err}
			return
		}
		// Mounts made here must not propagate back to the host's.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			errc <- &FSError{Op: "make mounts private for", Device: dev, Err: err}
			return
		}
		dir := os.TempDir()
		if err := unix.Mount(dev, dir, fs, 0, ""); err != nil {
			errc <- &FSError{Op: "mount", Device: dev, Err: err}
			return
		}
		err := os.Remove(filepath.Join(dir, "lost+found"))
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		// Unmounted now, not at the thread's end, so that the device is
		// closed when Format returns.
		if uerr := unix.Unmount(dir, 0); uerr != nil {
			errc <- &FSError{Op: "unmount", Device: dev, Err: errors.Join(err, uerr)}
			return
		}
		if err != nil {
			err = &FSError{Op: "ready root of", Device: dev, Err: err}
		}
		errc <- err
	}()
	return <-errc
}

// Discard discards every block of dev (BLKDISCARD over its whole size).
func (systemFS) Discard(ctx context.Context, dev string) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return &FSError{Op: "discard", Device: dev, Err: err}
	}
	defer f.Close()
	var size uint64
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); e != 0 {
		return &FSError{Op: "discard", Device: dev, Err: fmt.Errorf("BLKGETSIZE64: %w", e)}
	}
	// BLKDISCARD takes uint64 range[2]: start and length in bytes.
	r := [2]uint64{0, size}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKDISCARD, uintptr(unsafe.Pointer(&r))); e != 0 {
		return &FSError{Op: "discard", Device: dev, Err: fmt.Errorf("BLKDISCARD: %w", e)}
	}
	return nil
}
