package loop

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requirePrivilegedEnv makes a missing privilege fatal instead of a skip;
// the VM harness sets it.
const requirePrivilegedEnv = "THINP_REQUIRE_PRIVILEGED"

// loopUnavailable says why privileged loop tests cannot run here, or "".
func loopUnavailable() string {
	if os.Geteuid() != 0 {
		return "not running as root"
	}
	fd, err := unix.Open(controlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Sprintf("cannot open %s: %v", controlPath, err)
	}
	unix.Close(fd)
	return ""
}

// privileged skips t unless it runs as root with loop devices (or fails it
// when THINP_REQUIRE_PRIVILEGED=1), and returns a fresh directory for the
// test's files, with symlinks resolved so that it compares equal to the
// kernel's idea of the backing files' paths. After the test, and after the
// test's own cleanups, it checks that no loop device is left attached to a
// file in that directory and that no file descriptor leaked.
func privileged(t *testing.T) string {
	t.Helper()
	if reason := loopUnavailable(); reason != "" {
		if os.Getenv(requirePrivilegedEnv) == "1" {
			t.Fatalf("%s=1 but loop devices are unusable: %s", requirePrivilegedEnv, reason)
		}
		t.Skipf("skipping privileged loop test: %s (needs root and /dev/loop-control; set %s=1 to fail instead)", reason, requirePrivilegedEnv)
	}
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	// Registered after TempDir's cleanup and before the test's own, so it
	// runs after the test cleaned up and before the directory goes.
	t.Cleanup(func() { checkLeaks(t, dir, before) })
	return dir
}

// checkLeaks fails t if a loop device is still attached to a file under dir
// (detaching it so later tests start clean) or if a descriptor opened
// during the test is still open.
func checkLeaks(t *testing.T, dir string, before map[int]string) {
	t.Helper()
	leaked := waitNoneUnder(dir, 3*time.Second)
	for _, l := range leaked {
		t.Errorf("leak: /dev/loop%d still attached to %s", l.n, l.file)
		forceDetach(l.n)
	}
	after := openFDs(t)
	for fd, target := range after {
		if old, ok := before[fd]; !ok || old != target {
			t.Errorf("leak: file descriptor %d -> %s", fd, target)
		}
	}
}

type attachment struct {
	n    int
	file string
}

// attachedUnder lists the loop devices whose backing file lies under dir,
// from sysfs alone, so that it opens nothing.
func attachedUnder(dir string) []attachment {
	ents, _ := os.ReadDir(sysBlock)
	var out []attachment
	for _, e := range ents {
		n, ok := parseLoopName(e.Name())
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(sysBlock, e.Name(), "loop", "backing_file"))
		if err != nil {
			continue
		}
		f := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), deletedSuffix)
		if f == dir || strings.HasPrefix(f, dir+"/") {
			out = append(out, attachment{n, f})
		}
	}
	return out
}

// waitNoneUnder waits up to d for no device to be attached under dir (the
// kernel may finish a detach asynchronously) and returns what is left.
func waitNoneUnder(dir string, d time.Duration) []attachment {
	deadline := time.Now().Add(d)
	for {
		l := attachedUnder(dir)
		if len(l) == 0 || time.Now().After(deadline) {
			return l
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertNoneUnder fails t if any loop device is attached to a file under
// dir right now (after at most a short wait for an asynchronous teardown).
func assertNoneUnder(t *testing.T, dir string) {
	t.Helper()
	if l := waitNoneUnder(dir, 2*time.Second); len(l) > 0 {
		t.Errorf("devices left attached: %v", l)
	}
}

// forceDetach detaches /dev/loopN with raw system calls, independently of
// the package under test.
func forceDetach(n int) {
	fd, err := unix.Open(devicePath(n), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	_ = unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
	unix.Close(fd)
}

// openFDs maps this process's open descriptors to what they point at.
func openFDs(t *testing.T) map[int]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("list descriptors: %v", err)
	}
	m := make(map[int]string, len(ents))
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the descriptor ReadDir itself used
		}
		m[fd] = target
	}
	return m
}

// sparseFile creates a sparse file of size bytes under dir.
func sparseFile(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := CreateSparseFile(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

// forEachMode runs fn once with a Control that uses LOOP_CONFIGURE (where
// the kernel has it) and once with one forced onto LOOP_SET_FD +
// LOOP_SET_STATUS64.
func forEachMode(t *testing.T, fn func(t *testing.T, c *Control, dir string)) {
	t.Helper()
	for _, legacy := range []bool{false, true} {
		name := "configure"
		if legacy {
			name = "legacy"
		}
		t.Run(name, func(t *testing.T) {
			dir := privileged(t)
			c := testControl(t, legacy)
			fn(t, c, dir)
		})
	}
}

// testControl opens a Control closed when the test ends.
func testControl(t *testing.T, legacy bool) *Control {
	t.Helper()
	c, err := OpenControl()
	if err != nil {
		t.Fatal(err)
	}
	c.forceLegacy = legacy
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// attach attaches path and registers a detach for the end of the test.
func attach(t *testing.T, c *Control, path string, o *Options) *Device {
	t.Helper()
	d, err := c.Attach(context.Background(), path, o)
	if err != nil {
		t.Fatalf("Attach(%s, %+v): %v", path, o, err)
	}
	t.Cleanup(func() {
		if err := d.Detach(context.Background()); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("cleanup: %v", err)
		}
	})
	return d
}

// isBound reports whether /dev/loopN has a backing file, from sysfs.
func isBound(n int) bool {
	_, err := os.Stat(filepath.Join(sysBlock, "loop"+strconv.Itoa(n), "loop"))
	return err == nil
}

// waitUnbound waits up to two seconds for /dev/loopN to be unbound.
func waitUnbound(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for isBound(n) {
		if time.Now().After(deadline) {
			t.Fatalf("/dev/loop%d still attached", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// blkSize returns BLKGETSIZE64 of the block device at path, through a
// descriptor of its own.
func blkSize(t *testing.T, path string) uint64 {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	sz, err := ioctlGetUint64(fd, unix.BLKGETSIZE64)
	if err != nil {
		t.Fatal(err)
	}
	return sz
}

func statFile(t *testing.T, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// numbers returns the device numbers of a list of statuses.
func numbers(sts []Status) []int {
	var ns []int
	for _, s := range sts {
		ns = append(ns, s.Number)
	}
	slices.Sort(ns)
	return ns
}
