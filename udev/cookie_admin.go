package udev

import (
	"errors"
	"fmt"
	"syscall"
	"time"
)

// CookieInfo describes one device-mapper udev cookie in the system, as
// `dmsetup udevcookies` lists it.
type CookieInfo struct {
	Cookie     uint32    // semaphore key, 0x0D4Dxxxx
	SemID      int       // SysV semaphore set identifier
	Value      int       // outstanding uevents (+1 while nobody waits); -1 if unreadable
	LastPID    int       // process of the last semop or SETVAL (the creator, or udev's dmsetup); 0 if unknown
	LastOp     time.Time // last semop (sem_otime); zero if there was none
	LastChange time.Time // creation or last SETVAL (sem_ctime)
}

// Age returns how long the cookie has been idle at now: the time since its
// last semop or change, whichever is later. `dmsetup udevcomplete_all <age>`
// releases cookies whose Age is at least age.
func (ci CookieInfo) Age(now time.Time) time.Duration {
	last := ci.LastChange
	if ci.LastOp.After(last) {
		last = ci.LastOp
	}
	return now.Sub(last)
}

// String summarises the cookie as "0x0d4dxxxx semid N value N".
func (ci CookieInfo) String() string {
	return fmt.Sprintf("%#08x semid %d value %d", ci.Cookie, ci.SemID, ci.Value)
}

func unixTime(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0)
}

// ListCookies lists the device-mapper udev cookies in the caller's IPC
// namespace, like `dmsetup udevcookies`: it walks the kernel's semaphore
// array with SEM_INFO and SEM_STAT and keeps the sets whose key has the
// 0x0D4D prefix. Sets the caller may not read are skipped.
func ListCookies() ([]CookieInfo, error) {
	maxIdx, err := semInfoMax()
	if err != nil {
		return nil, &Error{Op: "semctl SEM_INFO", Err: err}
	}
	var out []CookieInfo
	for idx := 0; idx <= maxIdx; idx++ {
		semid, ds, err := semStatIndex(idx)
		if err != nil {
			// EINVAL: unused slot; EACCES: not ours to read.
			continue
		}
		key := uint32(ds.key)
		if key>>flagsShift != CookieMagic {
			continue
		}
		ci := CookieInfo{
			Cookie:     key,
			SemID:      semid,
			Value:      -1,
			LastOp:     unixTime(ds.otime),
			LastChange: unixTime(ds.ctime),
		}
		if v, err := semGetval(semid); err == nil {
			ci.Value = v
		}
		if p, err := semGetpid(semid); err == nil {
			ci.LastPID = p
		}
		out = append(out, ci)
	}
	return out, nil
}

// Complete does what `dmsetup udevcomplete <cookie>` does for udev: it
// lowers the cookie's semaphore by one (IPC_NOWAIT), which wakes the waiter
// when it reaches zero. cookie may be the DM_COOKIE value of a uevent (flags
// in the high 16 bits) or a Cookie's Value: the high 16 bits are replaced by
// 0x0D4D either way. A value whose low 16 bits are zero carries flags only
// and is not a notification; Complete returns nil for it. A cookie that does
// not exist is an error that matches ENOENT.
func Complete(cookie uint32) error {
	key, ok := cookieKey(cookie)
	if !ok {
		return nil
	}
	semid, err := semget(int32(key), 1, 0)
	if err != nil {
		return &Error{Op: "complete", Cookie: key, Err: err}
	}
	if err := semop(semid, -1, ipcNowait, -1); err != nil {
		if errors.Is(err, syscall.EAGAIN) {
			err = fmt.Errorf("%w (semaphore already zero: completed more often than counted)", err)
		}
		return &Error{Op: "complete", Cookie: key, Err: err}
	}
	return nil
}

// CompleteAll removes every device-mapper udev cookie that has been idle
// for at least olderThan (see CookieInfo.Age), like `dmsetup
// udevcomplete_all <minutes>`, and returns how many it removed. Removing a
// cookie wakes its waiter, which then counts the wait as done. With
// olderThan 0 it removes all of them, including cookies that live processes
// are waiting on: use it only to release stale cookies.
func CompleteAll(olderThan time.Duration) (int, error) {
	return completeAll(olderThan, time.Now(), nil)
}

// completeAll is CompleteAll at a given time, limited to the cookies keep
// accepts (all if nil): tests must not remove other processes' cookies.
func completeAll(olderThan time.Duration, now time.Time, keep func(CookieInfo) bool) (int, error) {
	cookies, err := ListCookies()
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, ci := range cookies {
		if ci.Age(now) < olderThan || (keep != nil && !keep(ci)) {
			continue
		}
		err := semRemove(ci.SemID)
		switch {
		case err == nil:
			n++
		case errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.EIDRM):
			// Gone meanwhile.
		default:
			errs = append(errs, &Error{Op: "semctl IPC_RMID", Cookie: ci.Cookie, Err: err})
		}
	}
	return n, errors.Join(errs...)
}
