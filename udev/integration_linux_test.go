//go:build linux

package udev

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The TestIntegration tests need root, device-mapper and dmsetup: the VM
// tier (go run ./internal/vm/cmd/vmrun test ./udev) has them, in a boot with
// systemd-udevd and lvm2's rules and in one without. They drive device-mapper
// through the dmsetup program, so that this package's tests stay below
// package dm.

var devSeq atomic.Int32

// requireDM skips t (fails it under THINP_REQUIRE_PRIVILEGED=1) unless it
// runs as root with device-mapper and dmsetup, and returns dmsetup's path.
func requireDM(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	requireSysV(t)
	if _, err := os.Stat("/sys/class/misc/device-mapper"); err != nil {
		unavailable(t, "the kernel has no device-mapper")
	}
	f, err := os.OpenFile("/dev/mapper/control", os.O_RDWR, 0)
	if err != nil {
		unavailable(t, fmt.Sprintf("no usable /dev/mapper/control: %v", err))
	}
	f.Close()
	p, err := exec.LookPath("dmsetup")
	if err != nil {
		unavailable(t, "dmsetup not installed")
	}
	return p
}

// udevBoot reports whether udevd runs: the VM's /init says so in
// THINP_VM_UDEV; elsewhere the control socket decides.
func udevBoot() bool {
	if v := os.Getenv("THINP_VM_UDEV"); v != "" {
		return v == "1"
	}
	_, err := os.Stat("/run/udev/control")
	return err == nil
}

// requireUdevSync skips t in a boot without udevd; with udevd, Detect must
// report that sync works (else t fails under THINP_REQUIRE_PRIVILEGED=1).
func requireUdevSync(t *testing.T) Support {
	t.Helper()
	if !udevBoot() {
		t.Skip("udevd is not running in this boot")
	}
	s := Detect()
	if !s.Sync {
		unavailable(t, "udev sync not possible: "+s.Reason)
	}
	return s
}

// dmName returns a device name unique to this test and process, and removes
// the device when t ends if it still exists.
func dmName(t *testing.T, dmsetup string) string {
	t.Helper()
	name := fmt.Sprintf("thinp-udevtest-%d-%d", os.Getpid(), devSeq.Add(1))
	t.Cleanup(func() {
		if _, err := os.Stat("/sys/block"); err != nil {
			return
		}
		if exec.Command(dmsetup, "info", name).Run() == nil {
			out, err := exec.Command(dmsetup, "remove", "--noudevsync", "--retry", name).CombinedOutput()
			if err != nil {
				t.Errorf("cleanup: dmsetup remove %s: %v: %s", name, err, out)
			}
		}
	})
	return name
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestIntegrationDetect: in the VM's udev boot every check passes; without
// udevd, Detect says so.
func TestIntegrationDetect(t *testing.T) {
	requireDM(t)
	s := Detect()
	t.Logf("Detect() = %+v", s)
	if !udevBoot() {
		if s.Sync || s.UdevRunning || !strings.Contains(s.Reason, "udevd is not running") {
			t.Fatalf("without udevd: %+v", s)
		}
		return
	}
	if !s.Sync || s.UdevdPID <= 0 || !s.SameIPCNamespace || s.RulesFile == "" || !s.ProgramPresent {
		t.Fatalf("with udevd and lvm2's rules: %+v", s)
	}
}

// TestIntegrationCookieCreateRemove: dmsetup creates and removes a device
// with our cookie (DM_UDEV_COOKIE), so that the only wait is ours: after
// Wait, udev has made /dev/mapper/<name> and its /dev/disk link, and after
// the remove's Wait they are gone.
func TestIntegrationCookieCreateRemove(t *testing.T) {
	dmsetup := requireDM(t)
	requireUdevSync(t)
	checkCookieLeaks(t)
	name := dmName(t, dmsetup)
	mapper := "/dev/mapper/" + name
	byID := "/dev/disk/by-id/dm-name-" + name

	for _, step := range []struct {
		args    []string
		present bool
	}{
		{[]string{"create", name, "--table", "0 8 zero"}, true},
		{[]string{"remove", name}, false},
	} {
		c := newTestCookie(t)
		start := time.Now()
		run(t, []string{fmt.Sprintf("DM_UDEV_COOKIE=%#x", c.Value())}, dmsetup, step.args...)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := c.Wait(ctx)
		cancel()
		if err != nil {
			t.Fatalf("dmsetup %s: Wait: %v", step.args[0], err)
		}
		t.Logf("dmsetup %s + Wait: %v", step.args[0], time.Since(start))
		for _, p := range []string{mapper, byID} {
			_, err := os.Lstat(p)
			if step.present && err != nil {
				t.Errorf("after %s and Wait: %v", step.args[0], err)
			}
			if !step.present && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("after %s and Wait: %s still exists (%v)", step.args[0], p, err)
			}
		}
		if semExists(t, c.SemID()) {
			t.Errorf("cookie %#08x left after Wait", c.Value())
		}
	}
}

// TestIntegrationDmsetupInterop: udev's side of the protocol, `dmsetup
// udevcomplete`, completes our cookies; cookies dmsetup makes are listed.
func TestIntegrationDmsetupInterop(t *testing.T) {
	dmsetup := requireDM(t)
	requireUdevSync(t)
	checkCookieLeaks(t)

	c := newTestCookie(t)
	for range 2 {
		if err := c.Add(); err != nil {
			t.Fatal(err)
		}
	}
	// As 95-dm-notify.rules runs it: the DM_COOKIE value, flags included.
	ev := strconv.FormatUint(uint64(c.EventNr(DisableLibraryFallback)), 10)
	out := run(t, nil, dmsetup, "udevcomplete", ev)
	if !strings.Contains(out, "DM_COOKIE_COMPLETED") {
		t.Errorf("dmsetup udevcomplete printed %q", out)
	}
	run(t, nil, dmsetup, "udevcomplete", ev)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("Wait after two dmsetup udevcomplete: %v", err)
	}

	out = strings.TrimSpace(run(t, nil, dmsetup, "udevcreatecookie"))
	v, err := strconv.ParseUint(out, 0, 32)
	if err != nil || uint32(v)>>16 != CookieMagic {
		t.Fatalf("dmsetup udevcreatecookie printed %q", out)
	}
	list, err := ListCookies()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ci := range list {
		if ci.Cookie == uint32(v) {
			found = ci.Value == 1
		}
	}
	if !found {
		t.Errorf("dmsetup's cookie %#x with value 1 not in %v", v, list)
	}
	run(t, nil, dmsetup, "udevreleasecookie", out)
}

// rawUevents reads raw datagrams from both uevent groups, for the log.
func rawUevents(t *testing.T) (int, func() [][]byte) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 3}); err != nil {
		t.Fatal(err)
	}
	return fd, func() [][]byte {
		var out [][]byte
		buf := make([]byte, 64<<10)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return out
			}
			out = append(out, append([]byte(nil), buf[:n]...))
		}
	}
}

// dmSysName returns the dm-N name of the device-mapper device name.
func dmSysName(t *testing.T, name string) string {
	t.Helper()
	ms, _ := filepath.Glob("/sys/block/dm-*/dm/name")
	for _, m := range ms {
		if b, err := os.ReadFile(m); err == nil && strings.TrimSpace(string(b)) == name {
			return filepath.Base(filepath.Dir(filepath.Dir(m)))
		}
	}
	t.Fatalf("no /sys/block/dm-*/dm/name is %q", name)
	return ""
}

// TestIntegrationMonitorDM watches a device-mapper device come and go: the
// kernel's add and change (with DM_NAME and DM_COOKIE), and, with udevd,
// udevd's processed events, after which /dev/mapper/<name> exists.
func TestIntegrationMonitorDM(t *testing.T) {
	dmsetup := requireDM(t)
	checkCookieLeaks(t)
	udev := udevBoot()
	src := SourceKernel
	if udev {
		src |= SourceUdev
	}
	m := newMonitor(t, &MonitorConfig{Sources: src, Subsystems: []string{"block"}})
	_, drain := rawUevents(t)
	name := dmName(t, dmsetup)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run(t, nil, dmsetup, "create", name, "--table", "0 8 zero")
	// The kernel's events name the device dm-N; only udev's rules add
	// DM_NAME. The events wait in the socket meanwhile.
	sysname := dmSysName(t, name)
	k, err := m.WaitFor(ctx, func(e *Event) bool {
		return e.Source == SourceKernel && e.Action == ActionChange && e.SysName() == sysname
	})
	if err != nil {
		t.Fatalf("kernel change event for %s (%s): %v", name, sysname, err)
	}
	if k.Major == 0 || !k.HasDevNum || k.DevNode() != "/dev/"+sysname {
		t.Errorf("kernel event %+v", k)
	}
	if c, ok := k.Cookie(); !ok || Flags(c>>16)&PrimarySource == 0 {
		t.Errorf("DM_COOKIE %q lacks PRIMARY_SOURCE", k.Get("DM_COOKIE"))
	}
	if udev {
		u, err := m.WaitFor(ctx, func(e *Event) bool {
			return e.Source == SourceUdev && e.Action == ActionChange && e.IsDevice("/dev/mapper/"+name)
		})
		if err != nil {
			t.Fatalf("udev change event for %s: %v", name, err)
		}
		if u.SysName() != sysname || u.Get("DM_NAME") != name {
			t.Errorf("udev event for %s: %s DM_NAME %q", name, u.SysName(), u.Get("DM_NAME"))
		}
		if err := WaitNode(ctx, "/dev/mapper/"+name, true); err != nil {
			t.Error(err)
		}
	}
	run(t, nil, dmsetup, "remove", "--retry", name)
	if _, err := m.WaitDevice(ctx, sysname, ActionRemove); err != nil {
		t.Fatalf("remove event: %v", err)
	}
	for _, b := range drain() {
		if strings.Contains(string(b), "/"+sysname+"\x00") {
			t.Logf("raw uevent: %q", b)
		}
	}
}
