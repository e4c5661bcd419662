package udev

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"syscall"
	"time"
)

const (
	// DefaultWaitLimit bounds Cookie.Wait when its context has no deadline.
	// systemd-udevd kills a worker whose event runs longer than its event
	// timeout (180 s by default), after which no rule will ever complete the
	// cookie, so waiting longer only hides the problem.
	DefaultWaitLimit = 3 * time.Minute

	// waitSlice bounds each semtimedop in Wait, so that the loop looks at
	// the context at least this often even if the cancellation wake-up
	// (removing the semaphore) were lost.
	waitSlice = 500 * time.Millisecond

	// createAttempts bounds the search for an unused cookie key. Each of the
	// 65535 keys is drawn at random; running out means the system is full
	// of leaked cookies (see CompleteAll).
	createAttempts = 4096
)

// Cookie is one libdevmapper-compatible udev cookie: a SysV semaphore set of
// one semaphore whose key is 0x0D4D<<16 | r, r random and nonzero. The
// semaphore counts outstanding uevents plus one for the waiter:
//
//   - NewCookie sets it to 1;
//   - Add raises it before each resume, remove or rename ioctl that carries
//     the cookie in event_nr (see EventNr);
//   - udev's 95-dm-notify.rules runs `dmsetup udevcomplete $env{DM_COOKIE}`
//     for each such uevent, which lowers it;
//   - Done lowers it when the ioctl failed or its reply lacks
//     DM_UEVENT_GENERATED_FLAG, because then no uevent will come;
//   - Wait drops the initial 1, waits for zero, and removes the semaphore.
//
// A Cookie owns its semaphore: Close removes it, and is safe to defer right
// after NewCookie, so that the semaphore goes away on every path, including
// errors and panics. Add, Done and Close are safe for concurrent use; call
// Wait once.
type Cookie struct {
	key   uint32 // 0x0D4Dxxxx, the SysV key and the value dmsetup prints
	semid int

	mu      sync.Mutex
	removed bool            // IPC_RMID done (or attempted): never touch semid again
	cleanup runtime.Cleanup // removes the semaphore if the Cookie is lost

	slice time.Duration // semtimedop slice in Wait; 0 means waitSlice (tests change it)
}

// NewCookie creates a cookie the way libdevmapper's dm_udev_create_cookie
// does: semget with a random key, IPC_CREAT|IPC_EXCL and mode 0600, retrying
// on EEXIST, then SETVAL 1, checked with GETVAL. Create the cookie before
// suspending anything: if this fails, nothing has been changed yet.
func NewCookie() (*Cookie, error) {
	for range createAttempts {
		base := uint32(rand.N(0xffff)) + 1 // 1..0xffff
		key := CookieMagic<<flagsShift | base
		semid, err := semget(int32(key), 1, 0o600|ipcCreat|ipcExcl)
		if errors.Is(err, syscall.EEXIST) {
			continue
		}
		if err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				err = fmt.Errorf("%w (the SysV semaphore limits in /proc/sys/kernel/sem are exhausted; "+
					"leaked cookies can be listed with ListCookies and released with CompleteAll)", err)
			}
			return nil, &Error{Op: "semget", Cookie: key, Err: err}
		}
		if err := semSetval(semid, 1); err != nil {
			_ = semRemove(semid)
			return nil, &Error{Op: "semctl SETVAL", Cookie: key, Err: err}
		}
		v, err := semGetval(semid)
		if err == nil && v != 1 {
			err = fmt.Errorf("semaphore value is %d after SETVAL 1", v)
		}
		if err != nil {
			_ = semRemove(semid)
			return nil, &Error{Op: "semctl GETVAL", Cookie: key, Err: err}
		}
		c := &Cookie{key: key, semid: semid}
		c.cleanup = runtime.AddCleanup(c, func(id int) { _ = semRemove(id) }, semid)
		return c, nil
	}
	return nil, &Error{Op: "semget", Err: fmt.Errorf("%w: no free cookie key after %d attempts; "+
		"release stale cookies with CompleteAll", syscall.EEXIST, createAttempts)}
}

// Value returns the cookie as dmsetup udevcookies prints it and as
// dm_udev_create_cookie returns it: the semaphore key, 0x0D4Dxxxx.
func (c *Cookie) Value() uint32 { return c.key }

// SemID returns the SysV semaphore set identifier (for diagnostics).
func (c *Cookie) SemID() int { return c.semid }

// EventNr returns the dm_ioctl event_nr for a resume, remove or rename that
// carries this cookie: the flags, plus PrimarySource as libdevmapper always
// adds it, in the high 16 bits and the cookie's base in the low 16 bits.
// Call Add before the ioctl.
func (c *Cookie) EventNr(f Flags) uint32 {
	return uint32(f|PrimarySource)<<flagsShift | c.key&0xffff
}

// owns reports whether c came from NewCookie: a zero Cookie must never
// operate on semaphore set 0, which belongs to someone else.
func (c *Cookie) owns() bool { return c != nil && c.key>>flagsShift == CookieMagic }

// op runs one semaphore operation unless the semaphore was removed.
func (c *Cookie) op(name string, delta int16, flags int16) error {
	if !c.owns() {
		return &Error{Op: name, Err: ErrNotCookie}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return &Error{Op: name, Cookie: c.key, Err: ErrClosed}
	}
	if err := semop(c.semid, delta, flags, -1); err != nil {
		return &Error{Op: name, Cookie: c.key, Err: err}
	}
	return nil
}

// Add counts one more expected uevent (semop +1). Call it right before each
// ioctl whose event_nr carries the cookie.
func (c *Cookie) Add() error { return c.op("add", 1, 0) }

// Done takes back one Add (semop -1 with IPC_NOWAIT) for an ioctl that will
// produce no uevent: it failed, or its reply lacks DM_UEVENT_GENERATED_FLAG
// (for example a resume of a device that was not suspended, or a deferred
// remove of a busy device). An EAGAIN error means the count was already
// zero: more Done than Add.
func (c *Cookie) Done() error { return c.op("done", -1, ipcNowait) }

// Pending returns the semaphore's value: the outstanding uevents, plus one
// until Wait starts.
func (c *Cookie) Pending() (int, error) {
	if !c.owns() {
		return 0, &Error{Op: "pending", Err: ErrNotCookie}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return 0, &Error{Op: "pending", Cookie: c.key, Err: ErrClosed}
	}
	v, err := semGetval(c.semid)
	if err != nil {
		return 0, &Error{Op: "semctl GETVAL", Cookie: c.key, Err: err}
	}
	return v, nil
}

// Wait waits until udev has processed every uevent counted by Add, then
// removes the semaphore. It drops the cookie's initial 1 (semop -1,
// IPC_NOWAIT) and waits for zero with semtimedop in slices of at most half a
// second, retrying EINTR. If someone removes the semaphore meanwhile (EIDRM,
// as `dmsetup udevcomplete_all` does), the wait counts as done, as in
// libdevmapper.
//
// Unlike libdevmapper, Wait never hangs: it returns ctx.Err() (wrapped in an
// *Error) as soon as ctx is cancelled or its deadline passes, and waits at
// most DefaultWaitLimit when ctx has no deadline. Cancellation removes the
// semaphore at once, which wakes the blocked semtimedop. A late `dmsetup
// udevcomplete` for a removed cookie only logs an error in udev.
//
// The semaphore is removed on every path; Close afterwards is a no-op.
func (c *Cookie) Wait(ctx context.Context) error {
	if !c.owns() {
		return &Error{Op: "wait", Err: ErrNotCookie}
	}
	defer c.Close()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultWaitLimit)
		defer cancel()
	}
	if err := c.op("wait", -1, ipcNowait); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	for {
		if err := ctx.Err(); err != nil {
			return &Error{Op: "wait", Cookie: c.key, Err: err}
		}
		slice := waitSlice
		if c.slice > 0 {
			slice = c.slice
		}
		if dl, ok := ctx.Deadline(); ok {
			if left := time.Until(dl); left < slice {
				slice = max(left, time.Millisecond)
			}
		}
		// semid is only read here, and the goroutine that removes it does
		// so under mu: at worst the kernel answers EIDRM or EINVAL.
		err := semop(c.semid, 0, 0, slice)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR), errors.Is(err, syscall.EAGAIN):
			continue
		case errors.Is(err, syscall.EIDRM), errors.Is(err, syscall.EINVAL):
			// Removed: by someone else (done, as libdevmapper treats
			// it), or by us because ctx ended or Close was called.
			if err := ctx.Err(); err != nil {
				return &Error{Op: "wait", Cookie: c.key, Err: err}
			}
			if c.closedByUs() {
				return &Error{Op: "wait", Cookie: c.key, Err: ErrClosed}
			}
			return nil
		default:
			return &Error{Op: "wait", Cookie: c.key, Err: err}
		}
	}
}

// closedByUs reports whether Close ran (outside of Wait's own cleanup).
func (c *Cookie) closedByUs() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.removed
}

// Close removes the semaphore (IPC_RMID), which wakes a blocked Wait. It is
// idempotent and safe to defer right after NewCookie, also when Wait already
// ran; a semaphore that someone else removed first counts as removed. A nil
// Cookie has nothing to close.
func (c *Cookie) Close() error {
	if !c.owns() {
		return nil // a nil or zero Cookie owns nothing
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return nil
	}
	c.removed = true
	c.cleanup.Stop()
	err := semRemove(c.semid)
	if err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.EIDRM) {
		return &Error{Op: "semctl IPC_RMID", Cookie: c.key, Err: err}
	}
	return nil
}
