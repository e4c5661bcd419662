//go:build linux

package udev

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

// nodeOf returns the device number and permission bits of the block
// device at p (following links), failing if p is not one.
func nodeOf(t *testing.T, p string) (uint32, uint32, os.FileMode) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatalf("stat %s: %v", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		t.Fatalf("%s is not a block device (mode %o)", p, st.Mode)
	}
	return unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)), os.FileMode(st.Mode & 0o777)
}

// noTempFiles checks that MakeNode left no temporary names behind.
func noTempFiles(t *testing.T, dir string) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, ".*.tmp"))
	if len(m) > 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

func TestMakeNode(t *testing.T) {
	requireRoot(t)
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	dir := filepath.Join(t.TempDir(), "dev", "mapper") // created by MakeNode
	p := filepath.Join(dir, "vol")

	if err := MakeNode(dir, "vol", ioctl.Dev{Major: 253, Minor: 3}, 0o640); err != nil {
		t.Fatal(err)
	}
	if ma, mi, perm := nodeOf(t, p); ma != 253 || mi != 3 || perm != 0o640 {
		t.Fatalf("node %d:%d %o, want 253:3 640 despite umask 077", ma, mi, perm)
	}
	fi1, _ := os.Stat(p)

	// Idempotent: the same node stays (same inode).
	if err := MakeNode(dir, "vol", ioctl.Dev{Major: 253, Minor: 3}, 0o640); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(p); !os.SameFile(fi1, fi2) {
		t.Error("an identical node was replaced")
	}
	// Wrong permissions are corrected in place.
	if err := os.Chmod(p, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := MakeNode(dir, "vol", ioctl.Dev{Major: 253, Minor: 3}, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, perm := nodeOf(t, p); perm != 0o640 {
		t.Errorf("permissions %o not corrected", perm)
	}
	// A stale node with another number is replaced.
	if err := MakeNode(dir, "vol", ioctl.Dev{Major: 253, Minor: 7}, 0); err != nil {
		t.Fatal(err)
	}
	if ma, mi, perm := nodeOf(t, p); ma != 253 || mi != 7 || perm != 0o600 {
		t.Errorf("stale node: now %d:%d %o, want 253:7 600 (default mode)", ma, mi, perm)
	}
	// Large minor numbers survive the dev_t encoding. (Below 1<<19: at
	// 1<<19 the 32-bit dev_t is negative as an int, which qemu-arm
	// sign-extends into an invalid host dev_t; real kernels are fine.)
	if err := MakeNode(dir, "big", ioctl.Dev{Major: 259, Minor: 1<<18 + 5}, 0o600); err != nil {
		t.Fatal(err)
	}
	if ma, mi, _ := nodeOf(t, filepath.Join(dir, "big")); ma != 259 || mi != 1<<18+5 {
		t.Errorf("big minor: %d:%d", ma, mi)
	}
	noTempFiles(t, dir)
}

func TestMakeNodeReplaces(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	if err := MakeNode(dir, "dm-0", ioctl.Dev{Major: 253, Minor: 0}, 0o600); err != nil {
		t.Fatal(err)
	}

	// udev's kind: a symlink to the right node is kept as it is.
	if err := os.Symlink("dm-0", filepath.Join(dir, "vol")); err != nil {
		t.Fatal(err)
	}
	if err := MakeNode(dir, "vol", ioctl.Dev{Major: 253, Minor: 0}, 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "vol")); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("a correct symlink was replaced: %v %v", fi, err)
	}

	// A dangling link, a link to the wrong device and a file are replaced.
	for name, make := range map[string]func(p string) error{
		"dangling": func(p string) error { return os.Symlink("nowhere", p) },
		"wrong":    func(p string) error { return os.Symlink("dm-0", p) },
		"file":     func(p string) error { return os.WriteFile(p, nil, 0o600) },
	} {
		if err := make(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		if err := MakeNode(dir, name, ioctl.Dev{Major: 253, Minor: 9}, 0o600); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if ma, mi, _ := nodeOf(t, filepath.Join(dir, name)); ma != 253 || mi != 9 {
			t.Errorf("%s: %d:%d", name, ma, mi)
		}
	}

	// A directory is never replaced.
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := MakeNode(dir, "d", ioctl.Dev{Major: 253, Minor: 1}, 0o600); !errors.Is(err, fs.ErrExist) {
		t.Errorf("MakeNode over a directory = %v, want ErrExist", err)
	}
	noTempFiles(t, dir)
}

func TestNodeNamesRejected(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"", ".", "..", "a/b", "/abs", "nul\x00"} {
		if err := MakeNode(dir, name, ioctl.Dev{Major: 1, Minor: 1}, 0o600); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("MakeNode(%q) = %v, want ErrInvalid", name, err)
		}
		if err := RemoveNode(dir, name); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("RemoveNode(%q) = %v, want ErrInvalid", name, err)
		}
		if err := RenameNode(dir, "x", name); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("RenameNode(x, %q) = %v, want ErrInvalid", name, err)
		}
		if err := RenameNode(dir, name, "x"); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("RenameNode(%q, x) = %v, want ErrInvalid", name, err)
		}
	}
}

func TestRemoveNode(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	if err := MakeNode(dir, "vol", ioctl.Dev{Major: 253, Minor: 0}, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("vol", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"vol", "vol", "link", "missing"} {
		if err := RemoveNode(dir, n); err != nil {
			t.Errorf("RemoveNode(%s): %v", n, err)
		}
		if _, err := os.Lstat(filepath.Join(dir, n)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there", n)
		}
	}
	// Things that are not block nodes are left alone.
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(dir, "null"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"file", "null", "dir"} {
		if err := RemoveNode(dir, n); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("RemoveNode(%s) = %v, want ErrInvalid", n, err)
		}
		if _, err := os.Lstat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s was removed", n)
		}
	}
}

func TestRenameNode(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	if err := MakeNode(dir, "old", ioctl.Dev{Major: 253, Minor: 4}, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := MakeNode(dir, "new", ioctl.Dev{Major: 253, Minor: 99}, 0o600); err != nil { // stale
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if err := RenameNode(dir, "old", "new"); err != nil {
			t.Fatal(err)
		}
	}
	if _, mi, _ := nodeOf(t, filepath.Join(dir, "new")); mi != 4 {
		t.Errorf("new is %d, want the renamed node 4", mi)
	}
	if _, err := os.Lstat(filepath.Join(dir, "old")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("old still exists")
	}
	if err := RenameNode(dir, "new", "new"); err != nil {
		t.Errorf("rename to itself: %v", err)
	}
	if err := RenameNode(dir, "neither", "nor"); err != nil {
		t.Errorf("rename of a missing node: %v", err)
	}
}

func TestWaitNode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "n")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	time.AfterFunc(50*time.Millisecond, func() { os.WriteFile(p, nil, 0o600) })
	if err := WaitNode(ctx, p, true); err != nil {
		t.Fatalf("waiting for appearance: %v", err)
	}
	time.AfterFunc(50*time.Millisecond, func() { os.Remove(p) })
	if err := WaitNode(ctx, p, false); err != nil {
		t.Fatalf("waiting for removal: %v", err)
	}

	// A dangling link is not present, but not gone either.
	if err := os.Symlink("target", p); err != nil {
		t.Fatal(err)
	}
	for _, present := range []bool{true, false} {
		short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		start := time.Now()
		err := WaitNode(short, p, present)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitNode(dangling, %v) = %v, want DeadlineExceeded", present, err)
		}
		if d := time.Since(start); d > slack(100*time.Millisecond) {
			t.Errorf("100ms deadline noticed after %v", d)
		}
	}
	if err := Settle(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Settle: %v", err)
	}
}
