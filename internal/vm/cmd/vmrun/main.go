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
// failed. check says what was found (kernel, QEMU, tools, accelerator);
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
	"syscall"

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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var code int
	switch os.Args[1] {
	case "test":
		code = cmdTest(ctx, os.Args[2:])
	case "run":
		code = cmdRun(ctx, os.Args[2:])
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
	r, cleanup, err := setup(*quiet)
	if err != nil {
		return fail(err)
	}
	defer cleanup()
	pkgs, err := r.Builder.ListPackages(ctx, pkgArgs[0])
	if err != nil {
		return fail(err)
	}
	if len(pkgs) != 1 || pkgs[0].Name != "main" {
		return fail(fmt.Errorf("%s is not one main package", pkgArgs[0]))
	}
	img, err := r.ProgramImage(ctx, pkgs[0], extra)
	if err != nil {
		return fail(err)
	}
	o, err := r.Boot(ctx, img, bs[0])
	if err != nil {
		return fail(err)
	}
	if !*quiet {
		report(o)
	} else {
		for _, e := range o.Errors {
			fmt.Fprintf(os.Stderr, "vmrun: %s\n", e)
		}
	}
	if !o.Done || len(o.Jobs) != 1 {
		return exitVM
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
