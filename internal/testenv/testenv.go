// Package testenv holds the helpers every privileged test of the module
// uses, in the VM test tier (internal/vm) or as root on a machine with
// device-mapper.
//
// # Conventions
//
// A privileged test is named TestIntegration... and starts with
// Privileged(t) (or Root(t) / Loop(t) for tests that need only root or
// loop devices), which skips the test when the machine cannot run it, or
// fails it when THINP_REQUIRE_PRIVILEGED=1 (the VM's /init sets that, so
// nothing skips silently there). It then takes a unique device name prefix
// from Prefix, registers CheckLeaks with it, and names every dm device it
// makes with that prefix, so that it removes only what it made:
//
//	func TestIntegrationCreate(t *testing.T) {
//		testenv.Privileged(t)
//		prefix := testenv.Prefix(t)
//		testenv.CheckLeaks(t, prefix)
//		img := testenv.SparseFile(t, 64<<20)
//		...
//	}
//
// # Environment
//
//	THINP_REQUIRE_PRIVILEGED=1  fail instead of skip when root, device-mapper,
//	                            loop devices or a tool are missing
//	THINP_VM=1                  set by the VM's /init: InVM reports true
//	THINP_VM_UDEV=0|1           set by the VM's /init: whether udevd runs
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// unavailable skips t, or fails it under THINP_REQUIRE_PRIVILEGED=1.
func unavailable(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("THINP_REQUIRE_PRIVILEGED") == "1" {
		t.Fatalf("%s (THINP_REQUIRE_PRIVILEGED=1 forbids skipping)", reason)
		return
	}
	if InVM() {
		t.Skip(reason)
		return
	}
	t.Skipf("%s; run it in the VM: go run ./internal/vm/cmd/vmrun test <package>", reason)
}

// Privileged skips t unless it runs as root with a usable
// /dev/mapper/control (a kernel with device-mapper), creating the control
// node from /sys/class/misc/device-mapper/dev when the kernel has
// device-mapper but /dev lacks the node. Under THINP_REQUIRE_PRIVILEGED=1
// it fails t instead. It changes nothing before those checks pass.
func Privileged(t testing.TB) {
	t.Helper()
	if reason := checkPrivileged(); reason != "" {
		unavailable(t, reason)
	}
}

// Root skips t unless it runs as root; under THINP_REQUIRE_PRIVILEGED=1 it
// fails t instead.
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "needs root")
	}
}

// Loop skips t unless it runs as root with /dev/loop-control (loop devices
// can be allocated); under THINP_REQUIRE_PRIVILEGED=1 it fails t instead.
func Loop(t testing.TB) {
	t.Helper()
	if reason := checkLoop(); reason != "" {
		unavailable(t, reason)
	}
}

func checkLoop() string {
	if os.Geteuid() != 0 {
		return "needs root"
	}
	if fi, err := os.Stat("/dev/loop-control"); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return "needs /dev/loop-control (the loop driver)"
	}
	return ""
}

// InVM reports whether the test runs in the VM test tier's guest
// (THINP_VM=1, set by its /init).
func InVM() bool { return os.Getenv("THINP_VM") == "1" }

// UdevRunning reports whether udevd runs: THINP_VM_UDEV says so when set
// (the VM's /init sets it in both boots); otherwise udevd's control socket
// /run/udev/control exists.
func UdevRunning() bool {
	if v := os.Getenv("THINP_VM_UDEV"); v != "" {
		return v == "1"
	}
	_, err := os.Stat("/run/udev/control")
	return err == nil
}

// SparseFile creates a sparse file of size bytes in t.TempDir() (tmpfs in
// the VM) and returns its path. It is removed with the directory.
func SparseFile(t testing.TB, size int64) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "sparse-*.img")
	if err != nil {
		t.Fatalf("SparseFile: %v", err)
		return ""
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatalf("SparseFile: %v", err)
	}
	return f.Name()
}

// Tool returns the path of the program name, looked up in PATH and then in
// the sbin and bin directories. It skips t when the program is missing, or
// fails t under THINP_REQUIRE_PRIVILEGED=1. Running cross-checking tools
// (dmsetup, thin_check...) is for tests only: the library never runs them.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := lookTool(name)
	if err != nil {
		unavailable(t, fmt.Sprintf("needs %s: %v", name, err))
		return ""
	}
	return p
}

func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or the sbin/bin directories", name)
}

// ThinCheck runs thin_check on a thin-pool metadata device (or file) and
// fails t with its output unless it exits 0. The pool must not be active.
func ThinCheck(t testing.TB, metadataDev string) {
	t.Helper()
	tool := Tool(t, "thin_check")
	if tool == "" {
		return
	}
	out, err := exec.Command(tool, metadataDev).CombinedOutput()
	if err != nil {
		t.Errorf("thin_check %s: %v\n%s", metadataDev, err, strings.TrimSpace(string(out)))
	}
}
