package udev

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as "another party": with
// UDEV_TEST_COMPLETE=<cookie> it does what `dmsetup udevcomplete <cookie>`
// does, in a process of its own, and exits.
const helperEnv = "UDEV_TEST_COMPLETE"

// privateIPCEnv names a scenario that the test binary runs in a new IPC
// namespace of its own (see inNewIPCNamespace), then exits.
const privateIPCEnv = "UDEV_TEST_PRIVATE_IPC"

func TestMain(m *testing.M) {
	if v := os.Getenv(helperEnv); v != "" {
		c, err := strconv.ParseUint(v, 0, 32)
		if err == nil {
			err = Complete(uint32(c))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if v := os.Getenv(privateIPCEnv); v != "" {
		if err := privateIPCScenario(v); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("scenario passed:", v)
		os.Exit(0)
	}
	before := procCookieSemids()
	code := m.Run()
	// No test may leave a 0x0D4D semaphore behind (each also checks its
	// own); this catches any that slipped through, whoever made it here.
	for semid := range procCookieSemids() {
		if pid, err := semGetpid(semid); err == nil && pid != os.Getpid() {
			continue // another process's cookie
		}
		if !before[semid] {
			fmt.Fprintf(os.Stderr, "FAIL: cookie semaphore semid %d leaked by the tests\n", semid)
			code = 1
		}
	}
	os.Exit(code)
}

// privateIPCScenario runs in a child that is alone in its IPC namespace.
func privateIPCScenario(v string) error {
	switch {
	case v == "nospace":
		// SEMMSL SEMMNS SEMOPM SEMMNI, for this namespace only.
		if err := os.WriteFile("/proc/sys/kernel/sem", []byte("250 32000 32 0"), 0); err != nil {
			return err
		}
		c, err := NewCookie()
		if err == nil {
			c.Close()
		}
		if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "/proc/sys/kernel/sem") {
			return fmt.Errorf("NewCookie with SEMMNI 0 = %v, want ENOSPC naming /proc/sys/kernel/sem", err)
		}
		return nil

	case strings.HasPrefix(v, "foreign:"):
		c, err := strconv.ParseUint(strings.TrimPrefix(v, "foreign:"), 10, 32)
		if err != nil {
			return err
		}
		if err := Complete(uint32(c)); !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("Complete from another IPC namespace = %v, want ENOENT", err)
		}
		return nil

	case v == "completeall":
		var cs []*Cookie
		defer func() {
			for _, c := range cs {
				c.Close()
			}
		}()
		for range 3 {
			c, err := NewCookie()
			if err != nil {
				return err
			}
			cs = append(cs, c)
		}
		if n, err := CompleteAll(time.Hour); n != 0 || err != nil {
			return fmt.Errorf("CompleteAll(1h) = %d, %v; want 0", n, err)
		}
		if list, err := ListCookies(); err != nil || len(list) != 3 {
			return fmt.Errorf("ListCookies = %v, %v; want 3", list, err)
		}
		if n, err := CompleteAll(0); n != 3 || err != nil {
			return fmt.Errorf("CompleteAll(0) = %d, %v; want 3", n, err)
		}
		if list, err := ListCookies(); err != nil || len(list) != 0 {
			return fmt.Errorf("after CompleteAll: %v, %v", list, err)
		}
		return nil
	}
	return fmt.Errorf("unknown scenario %q", v)
}

// procCookieSemids reads the 0x0D4D semaphores' ids from /proc/sysvipc/sem
// (none where it is missing).
func procCookieSemids() map[int]bool {
	b, err := os.ReadFile("/proc/sysvipc/sem")
	if err != nil {
		return nil
	}
	ids := map[int]bool{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		key, err1 := strconv.ParseInt(f[0], 10, 64)
		semid, err2 := strconv.Atoi(f[1])
		if err1 == nil && err2 == nil && uint32(key)>>16 == CookieMagic {
			ids[semid] = true
		}
	}
	return ids
}
