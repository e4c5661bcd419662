//go:build linux

package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestIntegrationVMSmoke checks that the machine (normally the VM guest)
// has what the privileged tests of the module rely on: a device-mapper
// control node that answers DM_VERSION, the thin-pool and loop modules,
// working dmsetup and thin-provisioning-tools, udevd answering in the udev
// boot, and /dev/mapper nodes appearing in both boots.
func TestIntegrationVMSmoke(t *testing.T) {
	Privileged(t)
	prefix := Prefix(t)
	CheckLeaks(t, prefix)

	major, minor, patch, err := dmVersion()
	if err != nil {
		t.Fatalf("DM_VERSION: %v", err)
	}
	if major != 4 {
		t.Fatalf("device-mapper interface %d.%d.%d, want 4.x", major, minor, patch)
	}
	t.Logf("device-mapper interface %d.%d.%d, in VM: %v, udev: %v", major, minor, patch, InVM(), UdevRunning())

	misc, err := os.ReadFile("/proc/misc")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(misc), "device-mapper") {
		t.Errorf("/proc/misc has no device-mapper:\n%s", misc)
	}
	for _, m := range []string{"dm_thin_pool", "dm_mod", "loop"} {
		if _, err := os.Stat(filepath.Join("/sys/module", m)); err != nil {
			t.Errorf("module %s not loaded: %v", m, err)
		}
	}
	Loop(t)

	dmsetup := Tool(t, "dmsetup")
	out := run(t, dmsetup, "targets")
	for _, target := range []string{"thin-pool", "thin", "zero", "linear", "error"} {
		if !strings.Contains(out, target+" ") && !strings.Contains(out, target+"\t") {
			t.Errorf("dmsetup targets lacks %s:\n%s", target, out)
		}
	}
	run(t, Tool(t, "thin_check"), "-V")

	if UdevRunning() {
		if _, err := os.Stat("/run/udev/control"); err != nil {
			t.Errorf("udev boot without udevd's control socket: %v", err)
		}
		run(t, Tool(t, "udevadm"), "control", "--ping")
	}

	// With udev, dmsetup waits (through a cookie) for lvm2's rules to make
	// the /dev/mapper node. Without udev it still leaves the node to udev
	// (and none appears) unless DM_DISABLE_UDEV=1 makes libdevmapper manage
	// nodes itself.
	var env []string
	if !UdevRunning() {
		env = []string{"DM_DISABLE_UDEV=1"}
	}
	dm := func(args ...string) string {
		t.Helper()
		return runEnv(t, env, dmsetup, args...)
	}
	zero := prefix + "zero"
	dm("create", zero, "--table", "0 2048 zero")
	if _, err := os.Stat("/dev/mapper/" + zero); err != nil {
		t.Errorf("after dmsetup create: %v", err)
	}
	dm("remove", zero)

	// A thin pool on two loop devices; thin_check passes on its metadata
	// once the pool is gone.
	meta := attachLoop(t, SparseFile(t, 8<<20))
	data := attachLoop(t, SparseFile(t, 64<<20))
	pool := prefix + "pool"
	table := fmt.Sprintf("0 %d thin-pool %s %s 128 0", (64<<20)/512, meta, data)
	dm("create", pool, "--table", table)
	dm("message", pool, "0", "create_thin 7")
	dm("message", pool, "0", "set_transaction_id 0 1")
	if status := dm("status", pool); !strings.Contains(status, "thin-pool 1 ") {
		t.Errorf("pool status: %q, want transaction id 1", status)
	}
	dm("remove", pool)
	ThinCheck(t, meta)
	if dump := run(t, Tool(t, "thin_dump"), meta); !strings.Contains(dump, `dev_id="7"`) {
		t.Errorf("thin_dump shows no thin device 7:\n%s", dump)
	}
}

// run runs a program and fails t with its output when it fails.
func run(t *testing.T, prog string, args ...string) string {
	t.Helper()
	return runEnv(t, nil, prog, args...)
}

// runEnv is run with variables added to the environment.
func runEnv(t *testing.T, env []string, prog string, args ...string) string {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(prog), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// attachLoop attaches file to a free loop device with autoclear, returning
// the device's path; the device goes away when the test ends.
func attachLoop(t *testing.T, file string) string {
	t.Helper()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	backing, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer backing.Close()
	for attempt := 0; ; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			t.Fatalf("LOOP_CTL_GET_FREE: %v", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		f, err := openWhenPresent(dev)
		if err != nil {
			t.Fatal(err)
		}
		cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		err = unix.IoctlLoopConfigure(int(f.Fd()), &cfg)
		if err == unix.EBUSY && attempt < 10 {
			f.Close() // another process took it first
			continue
		}
		if err != nil {
			f.Close()
			t.Fatalf("LOOP_CONFIGURE %s: %v", dev, err)
		}
		// Autoclear detaches the device when the last opener closes it.
		t.Cleanup(func() { f.Close() })
		return dev
	}
}

// openWhenPresent opens a device node devtmpfs may still be creating.
func openWhenPresent(dev string) (*os.File, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err == nil || !os.IsNotExist(err) || time.Now().After(deadline) {
			return f, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
