package dm_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/udev"
)

// udevSetup is setup for tests that need udevd (the VM's udev boot).
func udevSetup(t *testing.T, opts ...dm.Option) (*dm.Control, string) {
	t.Helper()
	testenv.Privileged(t)
	if !testenv.UdevRunning() {
		t.Skip("needs udevd (runs in the VM's udev boot)")
	}
	return setupWith(t, opts...)
}

// setupWith is setup with options for Open.
func setupWith(t *testing.T, opts ...dm.Option) (*dm.Control, string) {
	t.Helper()
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	ctl, err := dm.Open(opts...)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	t.Cleanup(func() {
		devs, _ := ctl.List(context.Background(), dm.WithNamePrefix(prefix))
		for _, d := range devs {
			ctl.Remove(context.Background(), dm.Name(d.Name))
		}
		ctl.Close()
	})
	return ctl, prefix
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// With udevd and lvm2's rules, the /dev/mapper node and the by-id link
// exist when Create returns and are gone when Remove returns, and no
// cookie is left.
func TestIntegrationUdevNodesSynchronous(t *testing.T) {
	ctl, prefix := udevSetup(t)
	if sync, reason := ctl.UdevStatus(); !sync {
		t.Fatalf("udevd runs but the Control does not sync: %s", reason)
	}
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("%ssync%d", prefix, i)
		info, err := ctl.Create(ctx, name, dm.Table{{Length: 2048, Type: "zero"}}, dm.WithUUID(prefix+fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		node := "/dev/mapper/" + name
		byID := "/dev/disk/by-id/dm-name-" + name
		if !exists(node) || !exists(byID) {
			t.Fatalf("after Create: %s exists %v, %s exists %v", node, exists(node), byID, exists(byID))
		}
		var st unix.Stat_t
		if err := unix.Stat(node, &st); err != nil || st.Rdev != unix.Mkdev(info.Dev.Major, info.Dev.Minor) {
			t.Fatalf("%s points at %v, want %v (%v)", node, st.Rdev, info.Dev, err)
		}
		if err := ctl.Rename(ctx, dm.Name(name), name+"r"); err != nil {
			t.Fatal(err)
		}
		if exists(node) || !exists(node+"r") {
			t.Fatalf("after Rename: old %v new %v", exists(node), exists(node+"r"))
		}
		if err := ctl.Remove(ctx, dm.Name(name+"r")); err != nil {
			t.Fatal(err)
		}
		if exists(node+"r") || exists(byID+"r") {
			t.Fatalf("after Remove: node %v by-id %v", exists(node+"r"), exists(byID+"r"))
		}
	}
	out, err := exec.Command(testenv.Tool(t, "dmsetup"), "udevcookies").CombinedOutput()
	if err != nil {
		t.Fatalf("dmsetup udevcookies: %v %s", err, out)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) > 1 {
		t.Errorf("cookies left:\n%s", out)
	}
}

// Write, close, remove 1,000 times with udev sync: no remove may fail. The
// cookie wait covers the events the ioctls raise, but closing a device
// written to makes udevd's inotify watch synthesise a change event and
// re-scan it (blkid), which can still hold it open for a moment: a remove
// that meets that is retried within the Control's budget. The test tries
// each remove once without retry first and logs how often that happened.
func TestIntegrationUdevNoBusyAfterClose(t *testing.T) {
	ctl, prefix := udevSetup(t)
	ctx := context.Background()
	cycles := 1000
	if s := os.Getenv("THINP_UDEV_CYCLES"); s != "" {
		fmt.Sscan(s, &cycles)
	}
	busy := 0
	start := time.Now()
	name := prefix + "cycle"
	for i := 0; i < cycles; i++ {
		info, err := ctl.Create(ctx, name, dm.Table{{Length: 2048, Type: "zero"}})
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		f, err := os.OpenFile(fmt.Sprintf("/dev/dm-%d", info.Dev.Minor), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			t.Fatal(err)
		}
		f.Close()
		err = ctl.Remove(ctx, dm.Name(name), dm.NoRetry)
		if errors.Is(err, dm.ErrBusy) {
			busy++
			err = ctl.Remove(ctx, dm.Name(name))
		}
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	t.Logf("%d write/close/remove cycles with udev sync in %v, %d EBUSY", cycles, time.Since(start), busy)
	if busy > cycles/100 {
		t.Errorf("%d of %d first removes met EBUSY: udev sync is not working", busy, cycles)
	}
}

// Without udev sync (UdevOff, or no udevd at all), the library makes and
// removes the /dev/mapper nodes itself and never waits.
func TestIntegrationNodesWithoutUdev(t *testing.T) {
	ctl, prefix := setupWith(t, dm.WithUdev(dm.UdevOff))
	if sync, _ := ctl.UdevStatus(); sync {
		t.Fatal("UdevOff Control syncs")
	}
	ctx := context.Background()
	name := prefix + "nodes"
	info, err := ctl.Create(ctx, name, dm.Table{{Length: 64, Type: "zero"}})
	if err != nil {
		t.Fatal(err)
	}
	checkNode(t, ctl, name, info.Dev, true)
	if err := ctl.Rename(ctx, dm.Name(name), name+"2"); err != nil {
		t.Fatal(err)
	}
	checkNode(t, ctl, name, info.Dev, false)
	checkNode(t, ctl, name+"2", info.Dev, true)
	if err := ctl.Remove(ctx, dm.Name(name+"2")); err != nil {
		t.Fatal(err)
	}
	checkNode(t, ctl, name+"2", info.Dev, false)
	// MakeNodes repairs a stale node.
	stale := filepath.Join("/dev/mapper", prefix+"stale")
	if err := unix.Mknod(stale, unix.S_IFBLK|0o600, int(unix.Mkdev(7, 99))); err != nil {
		t.Fatal(err)
	}
	if err := ctl.MakeNodes(ctx); err != nil {
		t.Fatal(err)
	}
	if exists(stale) {
		t.Error("MakeNodes left a node for a device that does not exist")
	}
}

// rulesFile finds lvm2's notify rule in the guest.
func rulesFile(t *testing.T) string {
	for _, dir := range udev.RulesDirs() {
		p := filepath.Join(dir, udev.NotifyRulesName)
		if exists(p) {
			return p
		}
	}
	t.Skip("95-dm-notify.rules not installed")
	return ""
}

func udevReload(t *testing.T) { t.Helper(); udevadm(t, "control", "--reload") }

// udevadm runs udevadm with args and fails the test if it fails.
func udevadm(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(testenv.Tool(t, "udevadm"), args...).CombinedOutput(); err != nil {
		t.Fatalf("udevadm %s: %v %s", strings.Join(args, " "), err, out)
	}
}

// With udevd running but the notify rule gone, nobody completes cookies:
// detection falls back to no sync, UdevRequired refuses to open, and a
// Control that was syncing when the rule vanished returns within its udev
// deadline with ErrTimeout instead of hanging, leaving no semaphore.
func TestIntegrationUdevWithoutNotifyRule(t *testing.T) {
	synced, prefix := udevSetup(t, dm.WithUdevTimeout(2*time.Second))
	rules := rulesFile(t)
	hidden := rules + ".hidden"
	if err := os.Rename(rules, hidden); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Rename(hidden, rules)
		udevReload(t)
	})
	udevReload(t)

	auto, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer auto.Close()
	if sync, reason := auto.UdevStatus(); sync || !strings.Contains(reason, "95-dm-notify") {
		t.Errorf("auto policy without the notify rule: sync %v, reason %q", sync, reason)
	}
	if _, err := dm.Open(dm.WithUdev(dm.UdevRequired)); !errors.Is(err, dm.ErrNotSupported) {
		t.Errorf("UdevRequired without the notify rule: %v", err)
	}
	// The fallback Control works and makes nodes itself.
	ctx := context.Background()
	name := prefix + "fallback"
	start := time.Now()
	info, err := auto.Create(ctx, name, dm.Table{{Length: 64, Type: "zero"}})
	if err != nil {
		t.Fatal(err)
	}
	checkNode(t, auto, name, info.Dev, true)
	if err := auto.Remove(ctx, dm.Name(name)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("fallback create+remove took %v", d)
	}
	// The Control that decided to sync before the rule vanished times out.
	// A reload does not say when udevd's workers stop running the old
	// rules (one run showed a cookie completed right after the reload), so
	// hold udevd's queue too: then nobody completes this cookie for sure.
	udevadm(t, "control", "--stop-exec-queue")
	t.Cleanup(func() { udevadm(t, "control", "--start-exec-queue") })
	start = time.Now()
	_, err = synced.Create(ctx, prefix+"stuck", dm.Table{{Length: 64, Type: "zero"}})
	if !errors.Is(err, dm.ErrTimeout) {
		t.Errorf("create with a stuck cookie: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stuck create returned after %v, deadline was 2s per wait", d)
	}
	cookies, err := udev.ListCookies()
	if err != nil {
		t.Fatal(err)
	}
	if len(cookies) != 0 {
		t.Errorf("cookies left: %v", cookies)
	}
}
