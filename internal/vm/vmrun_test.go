package vm_test

import (
	"bufio"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/internal/vm"
)

// TestVMRunInterrupt is Ctrl-C during `bash .ci/demo` where the demo runs
// in the VM: vmrun runs examples/thinpool in a guest and gets SIGINT once
// the demo has activated its volume. The SIGINT must reach the demo in the
// guest, which tears down and exits 130; vmrun must exit 130, say so, and
// report that the guest was left with no dm and no loop device.
//
// It boots a VM, after TestVM in this package so that the two never boot
// at once: it skips where TestVM skips (THINP_VM=0, -short, no QEMU
// or kernel unless THINP_REQUIRE_VM=1, inside the VM).
func TestVMRunInterrupt(t *testing.T) {
	vmHost(t)
	root, err := vm.FindModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	goTool, err := vm.FindGo()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "vmrun")
	build := exec.Command(goTool, "build", "-o", bin, "./internal/vm/cmd/vmrun")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "run", "-udev=false", "./examples/thinpool", "--", "-name", "vmrun-int-")
	cmd.Dir = root
	var stderr testenv.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(15*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	var out strings.Builder
	sent := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if !sent && strings.HasPrefix(sc.Text(), "activated thin id 1") {
			sent = true
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Error(err)
			}
		}
	}
	err = cmd.Wait()
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), stderr.String())
	if !sent {
		t.Fatal("the demo never said it activated its volume")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Errorf("vmrun: %v, want exit status 130", err)
	}
	for _, s := range []string{"thinpool: interrupted; tearing down", "teardown: delete volume vol (thin id 1)",
		"teardown: remove device vmrun-int-pool", "teardown: detach /dev/loop"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("the guest's console lacks %q", s)
		}
	}
	for _, s := range []string{"vmrun: SIGINT: passing it to ./examples/thinpool in the guest",
		"vmrun: the guest delivered SIGINT to github.com/thinp/thinp/examples/thinpool",
		"vmrun: ./examples/thinpool was interrupted and exited with status 130",
		"vmrun: ./examples/thinpool left no dm or loop device behind"} {
		if !strings.Contains(stderr.String(), s) {
			t.Errorf("vmrun's stderr lacks %q", s)
		}
	}
	if strings.Contains(stderr.String(), "left behind in the guest") {
		t.Error("the demo left devices behind in the guest")
	}
}
