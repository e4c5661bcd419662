// Command vmrun runs one package's tests, or one program, inside the VM
// test tier's QEMU guest: a Debian kernel with device-mapper, thin
// provisioning, loop devices and (optionally) systemd-udevd, for machines
// whose own kernel has none of it.
//
// Usage:
//
//	go run ./internal/vm/cmd/vmrun test [flags] ./thin [./dm ...] [-- test binary args]
//	go run ./internal/vm/cmd/vmrun run [flags] ./examples/thinpool [-- program args]
//	go run ./internal/vm/cmd/vmrun check
//	go run ./internal/vm/cmd/vmrun setup
//
// test runs every test of the packages (not only TestIntegration ones)
// unless -run says otherwise, in the udev boot, the boot without udev, or
// both (-udev=both, the default). run builds the main package statically
// and runs it as the guest's workload (-udev=true by default). Both stream
// the guest's console to stdout and exit with the guest's status: the
// program's exit code for run, 0 or 1 for test; 125 when the VM itself
// failed.
//
// Ctrl-C (SIGINT, or SIGTERM) during run reaches the program in the guest:
// /init delivers it to the program's process group, as a terminal would,
// and vmrun waits for the program to finish and exits with its status
// (130 for a program that exits as interrupted), saying so, and naming
// any dm or loop device the program left behind. A second one kills the
// VM (exit status 130). During test, and before the guest runs, Ctrl-C
// kills the VM. check says what was found (kernel, QEMU, tools, accelerator);
// setup runs .ci/vm-setup, which installs it all with apt.
//
// The THINP_VM_* environment variables of package internal/vm apply
// (THINP_VM_KERNELS, THINP_VM_KERNEL, THINP_VM_MODULES, THINP_VM_CACHE,
// THINP_VM_TIMEOUT, THINP_VM_ACCEL, ...). vmrun boots one kernel: the
// first THINP_VM_KERNELS names (THINP_VM_KERNELS=bullseye), else the
// default one of .ci/kernels.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/internal/vm"
	"github.com/thinp/thinp/internal/vm/proto"
)

// exitVM is the status when the VM could not run or did not finish.
const exitVM = 125

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  vmrun test [-udev=both|true|false] [-run regexp] [-bench regexp] [-v] [-q] packages... [-- test args]
  vmrun run [-udev=true|false] [-q] package [-- program args]
  vmrun check
  vmrun setup
`)
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	if os.Args[1] == "run" {
		// run forwards signals to the guest's program itself.
		os.Exit(cmdRun(context.Background(), os.Args[2:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var code int
	switch os.Args[1] {
	case "test":
		code = cmdTest(ctx, os.Args[2:])
	case "check":
		code = cmdCheck(ctx)
	case "setup":
		code = cmdSetup(ctx)
	case "-h", "-help", "--help", "help":
		usage(os.Stdout)
	default:
		usage(os.Stderr)
		code = 2
	}
	os.Exit(code)
}

// splitArgs splits at the first "--".
func splitArgs(args []string) (before, after []string) {
	for i, a := range args {
		if a == "--" {
			return args[:i], args[i+1:]
		}
	}
	return args, nil
}

// boots turns the -udev flag into the boots to run.
func boots(flagValue string) ([]bool, error) {
	switch flagValue {
	case "both":
		return []bool{true, false}, nil
	case "true", "1", "yes":
		return []bool{true}, nil
	case "false", "0", "no":
		return []bool{false}, nil
	}
	return nil, fmt.Errorf("-udev=%s: want both, true or false", flagValue)
}

// setup finds everything and returns a Runner with a fresh work directory.
func setup(quiet bool) (*vm.Runner, func(), error) {
	settings, err := vm.SettingsFromEnv(os.Getenv)
	if err != nil {
		return nil, nil, err
	}
	host, err := vm.FindHost(os.Getenv)
	if err != nil {
		return nil, nil, err
	}
	b, err := vm.NewBuilder(".")
	if err != nil {
		return nil, nil, err
	}
	work, err := os.MkdirTemp("", "vmrun-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		if settings.Keep {
			fmt.Fprintf(os.Stderr, "vmrun: kept %s\n", work)
			return
		}
		os.RemoveAll(work)
	}
	r := &vm.Runner{Host: host, Builder: b, Settings: settings, WorkDir: work, Console: os.Stdout, Env: vm.GuestEnv(os.Environ())}
	if !quiet {
		r.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	return r, cleanup, nil
}

func fail(err error) int {
	fmt.Fprintf(os.Stderr, "vmrun: %v\n", err)
	return exitVM
}

func cmdTest(ctx context.Context, argv []string) int {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	udev := fs.String("udev", "both", "boot with udevd: both, true or false")
	run := fs.String("run", "", "run only tests matching `regexp` (-test.run)")
	bench := fs.String("bench", "", "run benchmarks matching `regexp` (-test.bench)")
	verbose := fs.Bool("v", false, "print each verdict as it arrives, on stderr")
	quiet := fs.Bool("q", false, "print no progress notes")
	flags, extra := splitArgs(argv)
	pkgArgs, err := parseInterspersed(fs, flags)
	if err != nil {
		return 2
	}
	if len(pkgArgs) == 0 {
		fmt.Fprintln(os.Stderr, "vmrun test: name at least one package")
		return 2
	}
	bs, err := boots(*udev)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmrun:", err)
		return 2
	}
	r, cleanup, err := setup(*quiet)
	if err != nil {
		return fail(err)
	}
	defer cleanup()
	if *verbose {
		r.OnEvent = func(boot string, e proto.Event) {
			if s := vm.FormatEvent(boot, e); s != "" && e.E == proto.EvTest {
				fmt.Fprintln(os.Stderr, s)
			}
		}
	}
	pkgs, err := r.Builder.ListPackages(ctx, pkgArgs...)
	if err != nil {
		return fail(err)
	}
	var args []string
	if *run != "" {
		args = append(args, "-test.run="+*run)
	}
	if *bench != "" {
		args = append(args, "-test.bench="+*bench)
	}
	args = append(args, extra...)
	img, err := r.TestImage(ctx, pkgs, args)
	if err != nil {
		return fail(err)
	}
	if img.Jobs == 0 {
		fmt.Fprintln(os.Stderr, "vmrun: the packages have no test files")
		return 1
	}
	accel, why := r.Accel(ctx)
	if !*quiet {
		fmt.Fprintf(os.Stderr, "vm: accelerator %s (%s)\n", accel, why)
	}
	var outcomes []*vm.Outcome
	code := 0
	for _, udev := range bs {
		o, err := r.Boot(ctx, img, udev)
		if err != nil {
			return fail(err)
		}
		outcomes = append(outcomes, o)
		report(o)
		if !o.OK() {
			code = 1
			if !o.Done || len(o.Errors) > 0 {
				code = exitVM
			}
		}
	}
	fmt.Println(vm.Summary(outcomes))
	return code
}

// report prints a boot's errors and timing on stderr.
func report(o *vm.Outcome) {
	for _, e := range o.Errors {
		fmt.Fprintf(os.Stderr, "vmrun: [%s] %s\n", o.Name(), e)
	}
	fmt.Fprintf(os.Stderr, "vmrun: [%s] %s, boot %.1fs, total %.1fs\n", o.Name(), o.Accel, o.Boot.Seconds(), o.Total.Seconds())
}

// forwarder turns the signals vmrun gets during run into signals for the
// guest's program: the first SIGINT or SIGTERM once the VM is booting is
// passed on; one before that, or a second one, cancels the run.
type forwarder struct {
	sigs   chan os.Signal
	fwd    chan unix.Signal
	cancel context.CancelFunc
	what   string // the program, for messages
	log    io.Writer

	mu        sync.Mutex
	booting   bool
	forwarded bool
	cancelled bool
}

func newForwarder(ctx context.Context, what string, log io.Writer) (*forwarder, context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	f := &forwarder{sigs: make(chan os.Signal, 4), fwd: make(chan unix.Signal, 4), cancel: cancel, what: what, log: log}
	signal.Notify(f.sigs, os.Interrupt, syscall.SIGTERM)
	go f.loop()
	return f, ctx
}

func (f *forwarder) loop() {
	for s := range f.sigs {
		sig, _ := s.(syscall.Signal)
		f.mu.Lock()
		switch {
		case f.booting && !f.forwarded:
			f.forwarded = true
			fmt.Fprintf(f.log, "vmrun: %s: passing it to %s in the guest (once more to kill the VM)\n", unix.SignalName(sig), f.what)
			f.fwd <- sig
		default:
			f.cancelled = true
			fmt.Fprintf(f.log, "vmrun: %s: stopping the VM\n", unix.SignalName(sig))
			f.cancel()
		}
		f.mu.Unlock()
	}
}

// boot marks the VM as booting: signals go to the guest from now on.
func (f *forwarder) boot() {
	f.mu.Lock()
	f.booting = true
	f.mu.Unlock()
}

// stop stops catching signals.
func (f *forwarder) stop() (forwarded, cancelled bool) {
	signal.Stop(f.sigs)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancel()
	return f.forwarded, f.cancelled
}

func cmdRun(ctx context.Context, argv []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	udev := fs.String("udev", "true", "boot with udevd: true or false")
	quiet := fs.Bool("q", false, "print no progress notes")
	flags, extra := splitArgs(argv)
	pkgArgs, err := parseInterspersed(fs, flags)
	if err != nil {
		return 2
	}
	if len(pkgArgs) != 1 {
		fmt.Fprintln(os.Stderr, "vmrun run: name exactly one main package")
		return 2
	}
	bs, err := boots(*udev)
	if err != nil || len(bs) != 1 {
		fmt.Fprintln(os.Stderr, "vmrun run: -udev must be true or false")
		return 2
	}
	fw, ctx := newForwarder(ctx, pkgArgs[0], os.Stderr)
	code := runProgram(ctx, fw, pkgArgs[0], extra, bs[0], *quiet)
	forwarded, cancelled := fw.stop()
	switch {
	case cancelled:
		return exitInterrupted
	case forwarded && code >= 0:
		fmt.Fprintf(os.Stderr, "vmrun: %s was interrupted and exited with status %d\n", pkgArgs[0], code)
	}
	if code < 0 {
		return exitVM
	}
	return code
}

// exitInterrupted is run's status when Ctrl-C stopped the VM itself.
const exitInterrupted = 130

// runProgram builds and boots the program, and returns its exit status,
// or -1 when the VM failed (after saying why).
func runProgram(ctx context.Context, fw *forwarder, pkgArg string, args []string, udev, quiet bool) int {
	r, cleanup, err := setup(quiet)
	if err != nil {
		fail(err)
		return -1
	}
	defer cleanup()
	r.Signals = fw.fwd
	pkgs, err := r.Builder.ListPackages(ctx, pkgArg)
	if err != nil {
		fail(err)
		return -1
	}
	if len(pkgs) != 1 || pkgs[0].Name != "main" {
		fail(fmt.Errorf("%s is not one main package", pkgArg))
		return -1
	}
	img, err := r.ProgramImage(ctx, pkgs[0], args)
	if err != nil {
		fail(err)
		return -1
	}
	fw.boot()
	o, err := r.Boot(ctx, img, udev)
	if err != nil {
		fail(err)
		return -1
	}
	if !quiet {
		report(o)
	} else {
		for _, e := range o.Errors {
			fmt.Fprintf(os.Stderr, "vmrun: %s\n", e)
		}
	}
	for _, s := range o.Signaled {
		fmt.Fprintf(os.Stderr, "vmrun: the guest delivered %s\n", s)
	}
	for _, l := range o.Left {
		fmt.Fprintf(os.Stderr, "vmrun: left behind in the guest: %s\n", l)
	}
	if o.LeakChecks > 0 && len(o.Left) == 0 {
		fmt.Fprintf(os.Stderr, "vmrun: %s left no dm or loop device behind\n", pkgArg)
	}
	if !o.Done || len(o.Jobs) != 1 {
		return -1
	}
	return o.Jobs[0].Code
}

func cmdCheck(ctx context.Context) int {
	host, err := vm.FindHost(os.Getenv)
	if err != nil {
		return fail(err)
	}
	fmt.Printf("qemu:    %s\nkernel:  %s\nmodules: %s\n", host.QEMU, host.Kernel.Image, host.Kernel.Modules)
	mods, err := vm.ResolveModules(host.Kernel.Modules)
	if err != nil {
		return fail(err)
	}
	var names []string
	for _, m := range mods {
		names = append(names, m.Name)
	}
	fmt.Printf("load:    %s\ntools:   %s\nrules:   %s\n", strings.Join(names, " "),
		strings.Join(host.Tools, " "), strings.Join(host.Rules, " "))
	if ks, err := vm.FindKernels(os.Getenv); err == nil {
		for _, k := range ks {
			var boots []string
			for _, b := range k.Boots {
				boots = append(boots, vm.BootName(b))
			}
			fmt.Printf("matrix:  %-9s %s (%s)\n", k.Name, k.Kernel.Release, strings.Join(boots, ", "))
		}
	} else {
		fmt.Printf("matrix:  %v\n", err)
	}
	ok, why := vm.KVMUsable(ctx, nil)
	accel := vm.AccelTCG
	if ok {
		accel = vm.AccelKVM + " (if a test boot succeeds)"
	}
	fmt.Printf("accel:   %s: %s\n", accel, why)
	return 0
}

func cmdSetup(ctx context.Context) int {
	root, err := vm.FindModuleRoot(".")
	if err != nil {
		return fail(err)
	}
	script := filepath.Join(root, ".ci", "vm-setup")
	if _, err := os.Stat(script); err != nil {
		fmt.Fprintf(os.Stderr, "vmrun: %s is missing; %s\n", script, vm.SetupHint)
		return 1
	}
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "vmrun: %s: %v\nto install by hand: apt-get install %s; then unpack linux-image-amd64's dependency with apt-get download and dpkg -x into %s/<package>\n",
			script, err, strings.Join(vm.APTPackages(), " "), vm.DefaultCache)
		return 1
	}
	return 0
}

// parseInterspersed parses flags anywhere among the package arguments, as
// go test accepts them ("vmrun test ./thin -run X"), and returns the
// package arguments in order.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
