package thinsnap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// baseMountPrefix starts the name of the temporary directory the base's
// file system is mounted on while its root is readied.
const baseMountPrefix = "thinsnap-base-"

// readyRoot mounts the new file system dev on a temporary directory,
// removes its lost+found, sets its root's mode to 0755 and unmounts it.
// A crash between mount and unmount leaves the mount behind: the
// snapshotter then finds the base unformatted and removes such a mount
// first (unmountStale). (A private mount namespace would not do in a
// threaded process: it copies every mount the process sees at that
// instant, holding other snapshots' devices open while it lives.)
func readyRoot(dev, fs string) error {
	dir, err := os.MkdirTemp("", baseMountPrefix)
	if err != nil {
		return &FSError{Op: "mount", Device: dev, Err: err}
	}
	defer os.Remove(dir)
	if err := unix.Mount(dev, dir, fs, 0, ""); err != nil {
		return &FSError{Op: "mount", Device: dev, Err: err}
	}
	err = os.Remove(filepath.Join(dir, "lost+found"))
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if uerr := unix.Unmount(dir, 0); uerr != nil {
		return &FSError{Op: "unmount", Device: dev, Err: errors.Join(err, uerr)}
	}
	if err != nil {
		return &FSError{Op: "ready root of", Device: dev, Err: err}
	}
	return nil
}

// UnmountStale unmounts what readyRoot left mounted of the device
// major:minor when a crash stopped it, and removes the directories: the
// mounts of that device on a directory named baseMountPrefix*, read
// from /proc/self/mountinfo.
func (systemFS) UnmountStale(major, minor uint32) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return &FSError{Op: "read mounts for", Device: fmt.Sprintf("%d:%d", major, minor), Err: err}
	}
	want := fmt.Sprintf("%d:%d", major, minor)
	var errs []error
	for _, line := range strings.Split(string(b), "\n") {
		// mount ID, parent ID, major:minor, root, mount point, ...
		f := strings.Fields(line)
		if len(f) < 5 || f[2] != want || !strings.HasPrefix(filepath.Base(f[4]), baseMountPrefix) {
			continue
		}
		if err := unix.Unmount(f[4], 0); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, &FSError{Op: "unmount stale " + f[4] + " of", Device: want, Err: err})
			continue
		}
		os.Remove(f[4])
	}
	return errors.Join(errs...)
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
