package vm_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thinp/thinp/internal/vm"
	"github.com/thinp/thinp/internal/vm/proto"
)

// TestVM is the host side of the VM test tier: it builds the test binaries
// of every package with a TestIntegration test, boots them in QEMU on each
// kernel FindKernels returns (the matrix of .ci/kernels; THINP_VM_KERNELS
// picks some), with and/or without udevd as listed, reports each guest
// verdict, prints after each boot a line "vm <release> udev|no-udev: N
// passed, N failed, N skipped", and at the end one line "vm: N passed, N
// failed, N skipped" counting the verdicts of guest tests and subtests over
// all boots.
//
// It skips when QEMU or a kernel is missing (naming what to install),
// unless THINP_REQUIRE_VM=1, and always under THINP_VM=0 or -short.
// THINP_VM_PKGS (package patterns, space separated; default ./...),
// THINP_VM_RUN (-test.run of the guest binaries; default ^TestIntegration)
// and THINP_VM_ARGS (more guest test flags, space separated) narrow a run;
// THINP_VM_CONSOLE=1 streams the guests' consoles to stdout.
func TestVM(t *testing.T) {
	host := vmHost(t)
	settings, err := vm.SettingsFromEnv(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	noCache(t)
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-30*time.Second))
		defer cancel()
	}
	b, err := vm.NewBuilder(".")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	if settings.Keep {
		if work, err = os.MkdirTemp("", "thinp-vm-"); err != nil {
			t.Fatal(err)
		}
		t.Logf("THINP_VM_KEEP=1: work directory %s", work)
	}
	r := &vm.Runner{Host: host, Builder: b, Settings: settings, WorkDir: work, Logf: t.Logf, Env: vm.GuestEnv(os.Environ())}
	if os.Getenv("THINP_VM_CONSOLE") == "1" {
		r.Console = os.Stdout
	}
	r.OnEvent = func(boot string, e proto.Event) {
		boot = r.Host.Kernel.Release + " " + boot
		switch e.E {
		case proto.EvOutput:
			t.Logf("[%s] output of %s %s:\n%s", boot, e.Job, e.Name, e.Text)
		case proto.EvHeartbeat, proto.EvStart:
		default:
			if s := vm.FormatEvent(boot, e); s != "" {
				t.Log(s)
			}
		}
	}

	patterns := strings.Fields(os.Getenv("THINP_VM_PKGS"))
	if len(patterns) == 0 {
		patterns = []string{"./..."}
	}
	all, err := b.ListPackages(ctx, patterns...)
	if err != nil {
		t.Fatal(err)
	}
	var pkgs []vm.Package
	for _, p := range all {
		if p.Integration {
			pkgs = append(pkgs, p)
		}
	}
	if len(pkgs) == 0 {
		t.Fatalf("no package under %s has a TestIntegration test", strings.Join(patterns, " "))
	}
	run := os.Getenv("THINP_VM_RUN")
	if run == "" {
		run = "^TestIntegration"
	}
	args := append([]string{"-test.run=" + run}, strings.Fields(os.Getenv("THINP_VM_ARGS"))...)
	kernels, err := vm.FindKernels(os.Getenv)
	if err != nil {
		var m *vm.MissingError
		if errors.As(err, &m) && os.Getenv("THINP_REQUIRE_VM") != "1" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	var outcomes []*vm.Outcome
	for _, k := range kernels {
		h := *host
		h.Kernel = k.Kernel
		r.Host = &h
		img, err := r.TestImage(ctx, pkgs, args)
		if err != nil {
			t.Fatal(err)
		}
		accel, why := r.Accel(ctx)
		t.Logf("kernel %s (%s): built %d test binaries in %.1fs; accelerator %s (%s)",
			k.Name, k.Kernel.Release, img.Jobs, img.Build.Seconds(), accel, why)
		for _, udev := range k.Boots {
			o, err := r.Boot(ctx, img, udev)
			if err != nil {
				t.Fatal(err)
			}
			outcomes = append(outcomes, o)
			_, fail, _ := o.Counts()
			boot := k.Kernel.Release + " " + o.Name()
			t.Logf("[%s] %s boot %.1fs, total %.1fs, %d tests, %d failed", boot, o.Accel,
				o.Boot.Seconds(), o.Total.Seconds(), len(o.Tests), fail)
			for _, e := range o.Errors {
				t.Errorf("[%s] %s", boot, e)
			}
			for _, j := range o.Jobs {
				if j.Code != 0 {
					t.Errorf("[%s] %s exited with status %d", boot, j.Name, j.Code)
				}
			}
			if fail > 0 {
				t.Errorf("[%s] %d guest tests failed", boot, fail)
			}
			if len(o.Errors) > 0 {
				t.Logf("[%s] end of the console:\n%s", boot, o.ConsoleTail)
			}
			printSummary(t, vm.KernelSummary(k.Kernel.Release, o))
		}
	}
	printSummary(t, vm.Summary(outcomes))
}

// noCache keeps go test from replaying a passing TestVM from its cache:
// the guests ran code of other packages, which the cache does not track.
// The cache records the files a test opened and reuses a result only while
// they are unchanged; this one is gone by the next run.
func noCache(t *testing.T) {
	p := filepath.Join(t.TempDir(), "not-cacheable")
	if err := os.WriteFile(p, []byte(time.Now().String()), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// printSummary prints the summary line where people see it. go test shows
// a passing package's output only with -v, so without -v the line goes
// straight to the go command's own standard output (the test binary's
// parent), when that is a terminal, a pipe or a file opened for appending;
// a failing test's output is shown anyway. (Opened again through /proc, a
// file the go command writes at its own offset, as after "> log", would
// have the go command's next lines overwrite the summary: .ci/run pipes the
// output for that reason.)
func printSummary(t *testing.T, line string) {
	t.Log(line) // what -v and a failure show
	if testing.Verbose() || t.Failed() {
		return
	}
	if f := parentStdout(); f != nil {
		defer f.Close()
		if _, err := fmt.Fprintln(f, line); err == nil {
			return
		}
	}
	fmt.Println(line)
}

// parentStdout opens the standard output of the go command that runs this
// test binary, or returns nil when the parent is not go or writing there
// could overwrite its output.
func parentStdout() *os.File {
	ppid := os.Getppid()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", ppid))
	if err != nil || filepath.Base(exe) != "go" {
		return nil
	}
	path := fmt.Sprintf("/proc/%d/fd/1", ppid)
	if fi, err := os.Stat(path); err != nil || fi.Mode().IsRegular() && !appending(ppid, 1) {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil
	}
	return f
}

// appending reports whether process pid has fd open with O_APPEND, from the
// octal "flags:" line of /proc/pid/fdinfo/fd.
func appending(pid, fd int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "flags:"); ok {
			flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
			return err == nil && flags&syscall.O_APPEND != 0
		}
	}
	return false
}

// vmHost returns what a test that boots a VM needs, or skips it: under
// THINP_VM=0, inside the VM, with -short, and when QEMU or a kernel is
// missing, unless THINP_REQUIRE_VM=1 (then a missing piece fails it).
func vmHost(t *testing.T) *vm.Host {
	switch {
	case os.Getenv("THINP_VM") == "0":
		t.Skip("THINP_VM=0: VM tier disabled")
	case os.Getenv("THINP_VM") == "1":
		t.Skip("already inside the VM")
	case testing.Short() && os.Getenv("THINP_REQUIRE_VM") != "1":
		t.Skip("-short: VM tier skipped")
	}
	host, err := vm.FindHost(os.Getenv)
	if err != nil {
		var m *vm.MissingError
		if errors.As(err, &m) && os.Getenv("THINP_REQUIRE_VM") != "1" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	return host
}
