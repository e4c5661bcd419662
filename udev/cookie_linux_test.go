//go:build linux

package udev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// newTestCookie creates a cookie and makes sure it is gone when t ends.
func newTestCookie(t *testing.T) *Cookie {
	t.Helper()
	c, err := NewCookie()
	if err != nil {
		t.Fatalf("NewCookie: %v", err)
	}
	t.Cleanup(func() {
		c.Close()
		if semExists(t, c.SemID()) {
			t.Errorf("cookie %#08x (semid %d) still exists", c.Value(), c.SemID())
		}
	})
	return c
}

func pending(t *testing.T, c *Cookie) int {
	t.Helper()
	v, err := c.Pending()
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	return v
}

func TestCookieLifecycle(t *testing.T) {
	requireSysV(t)
	checkCookieLeaks(t)
	c := newTestCookie(t)

	if c.Value()>>16 != CookieMagic || c.Value()&0xffff == 0 {
		t.Fatalf("Value() = %#08x, want 0x0D4D prefix and a nonzero base", c.Value())
	}
	found := false
	for _, s := range readProcSem(t) {
		if s.semid == c.SemID() {
			found = s.key == c.Value()
		}
	}
	if !found {
		t.Fatalf("semid %d with key %#08x not in /proc/sysvipc/sem", c.SemID(), c.Value())
	}
	if v := pending(t, c); v != 1 {
		t.Fatalf("new cookie value = %d, want 1", v)
	}
	for range 3 {
		if err := c.Add(); err != nil {
			t.Fatal(err)
		}
	}
	if v := pending(t, c); v != 4 {
		t.Fatalf("after 3 Add: %d, want 4", v)
	}
	for range 3 {
		if err := c.Done(); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("Wait with nothing pending: %v", err)
	}
	if d := time.Since(start); d > slack(100*time.Millisecond) {
		t.Errorf("Wait with nothing pending took %v", d)
	}
	if semExists(t, c.SemID()) {
		t.Fatal("semaphore still exists after Wait")
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close after Wait: %v", err)
	}
	if err := c.Add(); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Wait: %v, want ErrClosed", err)
	}
	if _, err := c.Pending(); !errors.Is(err, ErrClosed) {
		t.Errorf("Pending after Wait: %v, want ErrClosed", err)
	}
}

func TestZeroCookie(t *testing.T) {
	for _, c := range []*Cookie{nil, {}} {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := c.Add(); !errors.Is(err, ErrNotCookie) {
			t.Errorf("Add: %v", err)
		}
		if err := c.Done(); !errors.Is(err, ErrNotCookie) {
			t.Errorf("Done: %v", err)
		}
		if _, err := c.Pending(); !errors.Is(err, ErrNotCookie) {
			t.Errorf("Pending: %v", err)
		}
		if err := c.Wait(context.Background()); !errors.Is(err, ErrNotCookie) {
			t.Errorf("Wait: %v", err)
		}
	}
}

func TestCookieDoneTooOften(t *testing.T) {
	requireSysV(t)
	checkCookieLeaks(t)
	c := newTestCookie(t)
	if err := c.Done(); err != nil { // takes the waiter's own 1
		t.Fatal(err)
	}
	if err := c.Done(); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("Done at zero: %v, want EAGAIN", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Wait(ctx); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("Wait on a zero semaphore: %v, want EAGAIN", err)
	}
	if semExists(t, c.SemID()) {
		t.Fatal("semaphore still exists after a failed Wait")
	}
}

// TestCookieWaitDeadline: nobody completes; Wait must return the deadline's
// error on time and remove the semaphore.
func TestCookieWaitDeadline(t *testing.T) {
	requireSysV(t)
	checkCookieLeaks(t)
	for _, d := range []time.Duration{0, 50 * time.Millisecond, 300 * time.Millisecond, 1200 * time.Millisecond} {
		t.Run(d.String(), func(t *testing.T) {
			c := newTestCookie(t)
			if d < time.Second {
				c.slice = time.Hour // only the deadline itself can end the wait
			} // else the default half-second slices time out (EAGAIN) first
			if err := c.Add(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			start := time.Now()
			err := c.Wait(ctx)
			elapsed := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Wait = %v, want DeadlineExceeded", err)
			}
			var ue *Error
			if !errors.As(err, &ue) || ue.Cookie != c.Value() {
				t.Errorf("error %v does not name the cookie", err)
			}
			if elapsed > slack(d) {
				t.Errorf("Wait with a %v deadline returned after %v", d, elapsed)
			}
			if semExists(t, c.SemID()) {
				t.Fatal("semaphore still exists after the deadline")
			}
		})
	}
}

// TestCookieWaitCancel: cancellation without a deadline must wake the wait
// at once (it removes the semaphore), not at the end of a semtimedop slice:
// the slice is an hour here.
func TestCookieWaitCancel(t *testing.T) {
	requireSysV(t)
	checkCookieLeaks(t)
	c := newTestCookie(t)
	c.slice = time.Hour
	if err := c.Add(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	err := c.Wait(ctx)
	elapsed := time.Since(start)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want Canceled", err)
	}
	if elapsed > slack(100*time.Millisecond) {
		t.Errorf("cancel after 100ms: Wait returned after %v", elapsed)
	}
	if semExists(t, c.SemID()) {
		t.Fatal("semaphore still exists after cancel")
	}
}

func TestCookieWaitAlreadyCancelled(t *testing.T) {
	requireSysV(t)
	checkCookieLeaks(t)
	c := newTestCookie(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want Canceled", err)
	}
	if semExists(t, c.SemID()) {
		t.Fatal("semaphore still exists")
	}
}

// TestCookieCompleteGoroutine: another party completes each Add with the
// DM_COOKIE value a uevent would carry; the waiter wakes.
func TestCookieCompleteGoroutine(t *testing.T) {
	requireSysV(t)
	checkCookieLeaks(t)
	c := newTestCookie(t)
	for range 2 {
		if err := c.Add(); err != nil {
			t.Fatal(err)
		}
	}
	dmCookie := c.EventNr(DisableLibraryFallback | SubsystemFlag0)
	errc := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		err := Complete(dmCookie)
		if err == nil {
			time.Sleep(50 * time.Millisecond)
			err = Complete(dmCookie)
		}
		errc <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Complete: %v", err)
	}
}

// TestCookieCompleteOtherProcess: a separate process (this test binary in
// helper mode) does what `dmsetup udevcomplete $env{DM_COOKIE}` does.
func TestCookieCompleteOtherProcess(t *testing.T) {
	requireSysV(t)
	checkCookieLeaks(t)
	c := newTestCookie(t)
	if err := c.Add(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	// DM_COOKIE is printed in decimal by the kernel.
	cmd.Env = append(os.Environ(), helperEnv+"="+strconv.FormatUint(uint64(c.EventNr(0)), 10))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.ENOEXEC) {
			// A foreign-architecture test binary run by qemu-user
			// without binfmt_misc cannot re-execute itself.
			t.Skipf("cannot re-execute the test binary: %v", err)
		}
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		if err != nil {
			cancel() // the helper failed: do not wait for it
		}
		done <- err
	}()
	werr := c.Wait(ctx)
	if err := <-done; err != nil {
		t.Fatalf("helper: %v: %s", err, stderr.String())
	}
	if werr != nil {
		t.Fatalf("Wait: %v", werr)
	}
}

// TestCookieRemovedByOthers: removal by someone else (udevcomplete_all)
// shows up as EIDRM in the wait, which counts as done.
func TestCookieRemovedByOthers(t *testing.T) {
	requireSysV(t)
	checkCookieLeaks(t)
	c := newTestCookie(t)
	if err := c.Add(); err != nil {
		t.Fatal(err)
	}
	c.slice = time.Hour // the kernel's EIDRM must wake the wait
	time.AfterFunc(50*time.Millisecond, func() { _ = semRemove(c.SemID()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("Wait after external IPC_RMID: %v, want nil", err)
	}
	if d := time.Since(start); d > slack(50*time.Millisecond) {
		t.Errorf("EIDRM noticed after %v", d)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestCookieCloseDuringWait(t *testing.T) {
	requireSysV(t)
	checkCookieLeaks(t)
	c := newTestCookie(t)
	if err := c.Add(); err != nil {
		t.Fatal(err)
	}
	c.slice = time.Hour
	time.AfterFunc(50*time.Millisecond, func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := c.Wait(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait = %v, want ErrClosed", err)
	}
	if d := time.Since(start); d > slack(50*time.Millisecond) {
		t.Errorf("Close noticed after %v", d)
	}
}

// TestCookiePanicRemoves shows the pattern: defer Close right after
// NewCookie, and a panic between begin and end still removes the semaphore.
func TestCookiePanicRemoves(t *testing.T) {
	requireSysV(t)
	checkCookieLeaks(t)
	var semid int
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Fatal("no panic")
			}
		}()
		c, err := NewCookie()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		semid = c.SemID()
		if err := c.Add(); err != nil {
			t.Fatal(err)
		}
		panic("caller's code fails between the ioctl and Wait")
	}()
	if semExists(t, semid) {
		t.Fatal("semaphore survived the panic")
	}
}

// TestCookieLostIsRemoved: a Cookie dropped without Close is removed when
// the garbage collector finds it.
func TestCookieLostIsRemoved(t *testing.T) {
	requireSysV(t)
	checkCookieLeaks(t)
	semid := func() int {
		c, err := NewCookie()
		if err != nil {
			t.Fatal(err)
		}
		return c.SemID()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for semExists(t, semid) {
		if time.Now().After(deadline) {
			t.Fatal("lost cookie's semaphore not removed")
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCookieConcurrentAddDone(t *testing.T) {
	requireSysV(t)
	checkCookieLeaks(t)
	c := newTestCookie(t)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 20 {
				if err := c.Add(); err != nil {
					t.Error(err)
					return
				}
				if err := c.Done(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if v := pending(t, c); v != 1 {
		t.Fatalf("value after balanced Add/Done = %d, want 1", v)
	}
}

// TestCookiesAreDistinct creates many cookies at once: keys are unique and
// all go away.
func TestCookiesAreDistinct(t *testing.T) {
	requireSysV(t)
	checkCookieLeaks(t)
	seen := map[uint32]bool{}
	for range 64 {
		c := newTestCookie(t)
		if seen[c.Value()] {
			t.Fatalf("duplicate cookie %#08x", c.Value())
		}
		seen[c.Value()] = true
	}
}

func TestComplete(t *testing.T) {
	requireSysV(t)
	checkCookieLeaks(t)
	if err := Complete(EventNrWithoutCookie(FallbackFlags)); err != nil {
		t.Errorf("Complete of a flags-only value: %v, want nil", err)
	}
	c := newTestCookie(t)
	missing := c.Value() ^ 0x8000 // another base, almost surely unused
	if err := Complete(missing); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("Complete(%#08x) = %v, want ENOENT", missing, err)
	}
	if err := Complete(c.Value()); err != nil { // takes the waiter's 1
		t.Fatal(err)
	}
	if err := Complete(c.Value()); !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("Complete at zero: %v, want EAGAIN", err)
	}
}

func TestListCookies(t *testing.T) {
	requireSysV(t)
	checkCookieLeaks(t)
	before := time.Now().Add(-time.Second)
	a, b := newTestCookie(t), newTestCookie(t)
	for range 2 {
		if err := b.Add(); err != nil {
			t.Fatal(err)
		}
	}
	list, err := ListCookies()
	if err != nil {
		t.Fatal(err)
	}
	proc := map[int]procSem{}
	for _, s := range readProcSem(t) {
		proc[s.semid] = s
	}
	got := map[uint32]CookieInfo{}
	for _, ci := range list {
		got[ci.Cookie] = ci
		// Every entry agrees with /proc/sysvipc/sem, to the second.
		ps, ok := proc[ci.SemID]
		if !ok || ps.key != ci.Cookie || ps.otime != unixSec(ci.LastOp) || ps.ctime != unixSec(ci.LastChange) {
			t.Errorf("ListCookies entry %+v disagrees with /proc/sysvipc/sem %+v", ci, ps)
		}
	}
	for _, tc := range []struct {
		c      *Cookie
		value  int
		semop  bool
		parity string
	}{{a, 1, false, "a"}, {b, 3, true, "b"}} {
		ci, ok := got[tc.c.Value()]
		if !ok {
			t.Fatalf("cookie %s %#08x not listed", tc.parity, tc.c.Value())
		}
		if ci.SemID != tc.c.SemID() || ci.Value != tc.value || ci.LastPID != os.Getpid() {
			t.Errorf("cookie %s: %+v, want semid %d value %d", tc.parity, ci, tc.c.SemID(), tc.value)
		}
		if ci.LastChange.Before(before) || ci.LastChange.After(time.Now()) {
			t.Errorf("cookie %s: LastChange %v", tc.parity, ci.LastChange)
		}
		if tc.semop == ci.LastOp.IsZero() {
			t.Errorf("cookie %s: LastOp %v (semop done: %v)", tc.parity, ci.LastOp, tc.semop)
		}
		if want := fmt.Sprintf("%#08x semid %d value %d", tc.c.Value(), tc.c.SemID(), tc.value); ci.String() != want {
			t.Errorf("String() = %q, want %q", ci.String(), want)
		}
		if age := ci.Age(time.Now()); age < 0 || age > 5*time.Second {
			t.Errorf("cookie %s: age %v", tc.parity, age)
		}
	}
}

func unixSec(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// TestListCookiesMatchesDmsetup compares with `dmsetup udevcookies`, which
// works without device-mapper or udev.
func TestListCookiesMatchesDmsetup(t *testing.T) {
	requireSysV(t)
	dmsetup, err := exec.LookPath("dmsetup")
	if err != nil {
		t.Skip("dmsetup not installed")
	}
	checkCookieLeaks(t)
	c := newTestCookie(t)
	if err := c.Add(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(dmsetup, "udevcookies").CombinedOutput()
	if err != nil {
		t.Skipf("dmsetup udevcookies: %v: %s", err, out)
	}
	// Cookie       Semid      Value      Last semop time           Last change time
	// 0xd4d1234    32768      2          Mon Jan  1 00:00:00 2024  ...
	found := false
	for _, line := range strings.Split(string(out), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		key, err1 := strconv.ParseUint(f[0], 0, 32)
		semid, err2 := strconv.Atoi(f[1])
		val, err3 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("unexpected dmsetup line %q", line)
		}
		if uint32(key) == c.Value() {
			found = true
			if semid != c.SemID() || val != 2 {
				t.Errorf("dmsetup shows semid %d value %d, want %d and 2", semid, val, c.SemID())
			}
		}
	}
	if !found {
		t.Errorf("dmsetup udevcookies does not list %#08x:\n%s", c.Value(), out)
	}
}

func TestCompleteAllAges(t *testing.T) {
	requireSysV(t)
	checkCookieLeaks(t)
	a, b := newTestCookie(t), newTestCookie(t)
	if err := b.Add(); err != nil { // b has a last semop time too
		t.Fatal(err)
	}
	ours := func(ci CookieInfo) bool { return ci.SemID == a.SemID() || ci.SemID == b.SemID() }
	now := time.Now()

	// Fresh cookies are younger than a minute: nothing to remove.
	if n, err := completeAll(time.Minute, now, ours); err != nil || n != 0 {
		t.Fatalf("completeAll(1m, now) = %d, %v; want 0", n, err)
	}
	// An hour later, they are 1h idle: not older than 2h, but than 30m.
	if n, err := completeAll(2*time.Hour, now.Add(time.Hour), ours); err != nil || n != 0 {
		t.Fatalf("completeAll(2h, now+1h) = %d, %v; want 0", n, err)
	}
	if !semExists(t, a.SemID()) || !semExists(t, b.SemID()) {
		t.Fatal("a young cookie was removed")
	}
	// A waiter on b sees the removal as completion.
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- b.Wait(ctx)
	}()
	time.Sleep(50 * time.Millisecond)
	if n, err := completeAll(30*time.Minute, now.Add(time.Hour), ours); err != nil || n != 2 {
		t.Fatalf("completeAll(30m, now+1h) = %d, %v; want 2", n, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Wait on a reaped cookie: %v, want nil", err)
	}
	if semExists(t, a.SemID()) || semExists(t, b.SemID()) {
		t.Fatal("reaped cookies still exist")
	}
}

// inNewIPCNamespace runs this test binary again, in a new (empty) IPC
// namespace, in the helper mode privateIPCEnv=scenario (see main_test.go),
// and returns its error. Doing this in a child keeps this process's threads
// in one namespace: unsharing a locked thread could hit the main thread, whose
// namespace /proc/self/ns/ipc shows.
func inNewIPCNamespace(t *testing.T, scenario string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), privateIPCEnv+"="+scenario)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWIPC}
	out, err := cmd.CombinedOutput()
	switch {
	case errors.Is(err, syscall.ENOEXEC):
		t.Skipf("cannot re-execute the test binary: %v", err)
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EINVAL):
		unavailable(t, fmt.Sprintf("no new IPC namespace: %v", err))
	case err != nil:
		return fmt.Errorf("%v: %s", err, out)
	case !strings.Contains(string(out), "scenario passed: "+scenario):
		return fmt.Errorf("the helper did not run the scenario: %s", out)
	}
	return nil
}

// TestNewCookieNoSpace: with SEMMNI 0 (in a namespace of its own), semget
// fails with ENOSPC and the error points at /proc/sys/kernel/sem.
func TestNewCookieNoSpace(t *testing.T) {
	requireRoot(t)
	requireSysV(t)
	if err := inNewIPCNamespace(t, "nospace"); err != nil {
		t.Fatal(err)
	}
}

// TestCookieOtherIPCNamespace shows the deadlock Detect guards against: a
// cookie made in one IPC namespace is invisible from another, so a udevd
// there could never complete it.
func TestCookieOtherIPCNamespace(t *testing.T) {
	requireRoot(t)
	requireSysV(t)
	checkCookieLeaks(t)
	c := newTestCookie(t)
	if err := inNewIPCNamespace(t, fmt.Sprintf("foreign:%d", c.Value())); err != nil {
		t.Fatal(err)
	}
	if v := pending(t, c); v != 1 {
		t.Fatalf("value %d after a foreign Complete, want 1", v)
	}
}

// TestCompleteAllPrivateNamespace runs the exported CompleteAll where it
// cannot touch anyone else's cookies: in an IPC namespace of its own.
func TestCompleteAllPrivateNamespace(t *testing.T) {
	requireRoot(t)
	requireSysV(t)
	if err := inNewIPCNamespace(t, "completeall"); err != nil {
		t.Fatal(err)
	}
}
