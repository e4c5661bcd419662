//go:build linux

package udev

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

// MakeNode makes dir/name a block device node for dev with the
// permission bits of mode (0600 if mode has none), creating dir (0755) if
// needed. It is idempotent: a node or a symbolic link (udev's kind) that
// already leads to the right device is kept, with its permissions corrected
// if it is a node; anything else of that name except a directory (a stale
// node with another device number, a dangling link, a file) is replaced
// atomically, so the path never goes missing. The node is made under a
// temporary name and renamed into place, with the exact mode regardless of
// the umask.
func MakeNode(dir, name string, dev ioctl.Dev, mode os.FileMode) error {
	if err := checkNodeName(name); err != nil {
		return &Error{Op: "mknod", Path: filepath.Join(dir, name), Err: err}
	}
	perm := mode.Perm()
	if perm == 0 {
		perm = 0o600
	}
	p := filepath.Join(dir, name)
	fail := func(err error) error { return &Error{Op: "mknod", Path: p, Err: err} }
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	if err := dev.Valid(); err != nil {
		return &Error{Op: "mknod", Path: filepath.Join(dir, name), Err: err}
	}
	want := dev.Encode()

	var st unix.Stat_t
	if err := unix.Stat(p, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK && uint64(st.Rdev) == want {
		var lst unix.Stat_t
		if err := unix.Lstat(p, &lst); err == nil && lst.Mode&unix.S_IFMT == unix.S_IFBLK && os.FileMode(lst.Mode&0o777) != perm {
			if err := os.Chmod(p, perm); err != nil {
				return fail(err)
			}
		}
		return nil
	}
	if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
		return fail(fmt.Errorf("%w: is a directory", fs.ErrExist))
	}

	tmp := filepath.Join(dir, fmt.Sprintf(".%s.%08x.tmp", name, rand.Uint32()))
	if err := unix.Mknod(tmp, unix.S_IFBLK|uint32(perm), int(want)); err != nil {
		return fail(err)
	}
	if err := os.Chmod(tmp, perm); err != nil {
		os.Remove(tmp)
		return fail(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fail(err)
	}
	return nil
}

// RemoveNode removes dir/name if it is a block device node or a symbolic
// link; a missing one is not an error. Anything else is left alone and
// reported.
func RemoveNode(dir, name string) error {
	p := filepath.Join(dir, name)
	if err := checkNodeName(name); err != nil {
		return &Error{Op: "remove node", Path: p, Err: err}
	}
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return &Error{Op: "remove node", Path: p, Err: err}
	}
	if fi.Mode()&fs.ModeSymlink == 0 && (fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0) {
		return &Error{Op: "remove node", Path: p, Err: fmt.Errorf("%w: not a block device node (%v), left alone", fs.ErrInvalid, fi.Mode().Type())}
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &Error{Op: "remove node", Path: p, Err: err}
	}
	return nil
}

// RenameNode renames dir/oldName to dir/newName, replacing a stale
// newName. It is idempotent: when oldName is gone there is nothing to do.
func RenameNode(dir, oldName, newName string) error {
	op, np := filepath.Join(dir, oldName), filepath.Join(dir, newName)
	for _, n := range []string{oldName, newName} {
		if err := checkNodeName(n); err != nil {
			return &Error{Op: "rename node", Path: filepath.Join(dir, n), Err: err}
		}
	}
	if oldName == newName {
		return nil
	}
	if err := os.Rename(op, np); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &Error{Op: "rename node", Path: op, Err: err}
	}
	return nil
}
