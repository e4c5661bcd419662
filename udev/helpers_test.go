package udev

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The helpers here keep the package's tests self-contained: they need no
// test harness beyond the standard library.

// requireRoot skips t unless it runs as root, or fails it when
// THINP_REQUIRE_PRIVILEGED=1 (the VM tier sets it, so nothing skips there).
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "needs root")
	}
}

// requireSysV skips t unless this build and kernel have SysV semaphores.
func requireSysV(t testing.TB) {
	t.Helper()
	if !sysvSupported {
		unavailable(t, "no SysV semaphore support on "+runtime.GOOS+"/"+runtime.GOARCH)
	}
	if _, err := semInfoMax(); err != nil {
		unavailable(t, fmt.Sprintf("SysV semaphores unavailable: %v", err))
	}
}

// slack widens a timing bound for loaded machines: shared CI hosts, and the
// VM tier, whose emulated CPUs (TCG) stall for hundreds of milliseconds at
// times. Tests that must tell a prompt wake-up from a polling slice make the
// slice an hour instead of relying on tight bounds.
func slack(d time.Duration) time.Duration {
	if os.Getenv("THINP_VM") == "1" {
		return d + 3*time.Second
	}
	return d + time.Second
}

func unavailable(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("THINP_REQUIRE_PRIVILEGED") == "1" {
		t.Fatalf("%s (THINP_REQUIRE_PRIVILEGED=1 forbids skipping)", reason)
	}
	t.Skip(reason)
}

// procSem is one line of /proc/sysvipc/sem.
type procSem struct {
	key          uint32
	semid        int
	otime, ctime int64
}

// readProcSem parses /proc/sysvipc/sem:
//
//	key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime
//	223150609 32768   600          1     0     0     0     0          0 1700000000
func readProcSem(t testing.TB) []procSem {
	t.Helper()
	f, err := os.Open("/proc/sysvipc/sem")
	if err != nil {
		t.Fatalf("reading /proc/sysvipc/sem: %v", err)
	}
	defer f.Close()
	var out []procSem
	sc := bufio.NewScanner(f)
	for first := true; sc.Scan(); first = false {
		if first {
			continue
		}
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 {
			t.Fatalf("/proc/sysvipc/sem: short line %q", sc.Text())
		}
		key, err1 := strconv.ParseInt(fs[0], 10, 64)
		semid, err2 := strconv.Atoi(fs[1])
		otime, err3 := strconv.ParseInt(fs[8], 10, 64)
		ctime, err4 := strconv.ParseInt(fs[9], 10, 64)
		for _, err := range []error{err1, err2, err3, err4} {
			if err != nil {
				t.Fatalf("/proc/sysvipc/sem: %q: %v", sc.Text(), err)
			}
		}
		out = append(out, procSem{key: uint32(int32(key)), semid: semid, otime: otime, ctime: ctime})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// cookieSems returns the semids of the 0x0D4D semaphores in the system.
func cookieSems(t testing.TB) map[int]uint32 {
	t.Helper()
	m := map[int]uint32{}
	for _, s := range readProcSem(t) {
		if s.key>>16 == CookieMagic {
			m[s.semid] = s.key
		}
	}
	return m
}

// semExists reports whether semid is still in /proc/sysvipc/sem.
func semExists(t testing.TB, semid int) bool {
	t.Helper()
	for _, s := range readProcSem(t) {
		if s.semid == semid {
			return true
		}
	}
	return false
}

// checkCookieLeaks fails t, at its end, if a 0x0D4D semaphore that appeared
// during t is still there, and removes it so that one failure does not leak
// into the system. Only this process's semaphores count (the last semop or
// SETVAL was ours): other test binaries may run at the same time.
func checkCookieLeaks(t *testing.T) {
	t.Helper()
	before := cookieSems(t)
	t.Cleanup(func() {
		for semid, key := range cookieSems(t) {
			if _, ok := before[semid]; ok {
				continue
			}
			if pid, err := semGetpid(semid); err == nil && pid != os.Getpid() {
				continue // another process's cookie
			}
			t.Errorf("leaked cookie semaphore: key %#08x semid %d", key, semid)
			_ = semRemove(semid)
		}
	})
}
