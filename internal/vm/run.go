package vm

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/internal/vm/proto"
)

// Settings are the knobs of a VM run, usually read from the environment by
// SettingsFromEnv.
type Settings struct {
	// Timeout bounds each boot (THINP_VM_TIMEOUT, a Go duration; default
	// 30m: the boot with udevd runs every package's tests, about 16
	// minutes under TCG).
	Timeout time.Duration
	// Silence is how long a guest may send nothing before it is killed
	// (THINP_VM_SILENCE; default 90s).
	Silence time.Duration
	// Accel is "kvm", "tcg" or "" to probe (THINP_VM_ACCEL).
	Accel string
	// MemoryMiB and CPUs size the guest (THINP_VM_MEMORY, THINP_VM_CPUS;
	// defaults 2048 and 2).
	MemoryMiB, CPUs int
	// CPUModel is QEMU's -cpu (THINP_VM_CPU_MODEL; default max).
	CPUModel string
	// Append is added to the guest kernel's command line (THINP_VM_APPEND).
	Append string
	// Keep keeps the work directory with the initramfs and binaries
	// (THINP_VM_KEEP=1).
	Keep bool
}

// SettingsFromEnv reads Settings from the environment through getenv.
func SettingsFromEnv(getenv func(string) string) (Settings, error) {
	s := Settings{Timeout: 30 * time.Minute, Silence: 90 * time.Second, MemoryMiB: 2048, CPUs: 2}
	var err error
	dur := func(key string, d *time.Duration) {
		if v := getenv(key); v != "" && err == nil {
			if *d, err = time.ParseDuration(v); err == nil && *d <= 0 {
				err = fmt.Errorf("%s=%s: must be positive", key, v)
			} else if err != nil {
				err = fmt.Errorf("%s: %w", key, err)
			}
		}
	}
	num := func(key string, n *int) {
		if v := getenv(key); v != "" && err == nil {
			if *n, err = strconv.Atoi(v); err == nil && *n <= 0 {
				err = fmt.Errorf("%s=%s: must be positive", key, v)
			} else if err != nil {
				err = fmt.Errorf("%s: %w", key, err)
			}
		}
	}
	dur("THINP_VM_TIMEOUT", &s.Timeout)
	dur("THINP_VM_SILENCE", &s.Silence)
	num("THINP_VM_MEMORY", &s.MemoryMiB)
	num("THINP_VM_CPUS", &s.CPUs)
	switch a := getenv("THINP_VM_ACCEL"); a {
	case "", AccelKVM, AccelTCG:
		s.Accel = a
	default:
		if err == nil {
			err = fmt.Errorf("THINP_VM_ACCEL=%s: want kvm or tcg", a)
		}
	}
	s.Keep = getenv("THINP_VM_KEEP") == "1"
	s.CPUModel = getenv("THINP_VM_CPU_MODEL")
	s.Append = getenv("THINP_VM_APPEND")
	return s, err
}

// Runner builds guests and boots them.
type Runner struct {
	// Host is what FindHost found; Builder compiles for the guest;
	// Settings are the run's knobs.
	Host     *Host
	Builder  *Builder
	Settings Settings
	// WorkDir holds binaries and the initramfs.
	WorkDir string
	// Logf reports progress (nil: silent).
	Logf func(format string, args ...any)
	// Console receives the guests' consoles (nil: discarded).
	Console io.Writer
	// OnEvent sees each guest event as it arrives, with the boot's name.
	OnEvent func(boot string, e proto.Event)
	// Env is added to the environment of the guest's workloads, usually
	// GuestEnv(os.Environ()).
	Env []string
	// Signals are forwarded to the guest's running job (BootConfig.Signals).
	Signals <-chan unix.Signal

	accel string // chosen accelerator, once probed
	why   string
	init  string // built guestinit
	tests struct {
		key  string   // the packages' import paths
		bins []string // their test binaries
	}
}

// GuestEnv picks from environ (os.Environ's form) what the guest's tests
// and programs should see as well: the THINP_* variables that tune tests
// (THINP_SCENARIO_SCALE, THINP_UDEV_CYCLES, ...) and the Go runtime's
// GOGC, GODEBUG, GOMEMLIMIT, GOMAXPROCS and GOTRACEBACK. It leaves out what
// configures the harness on the host (THINP_VM, THINP_VM_*,
// THINP_REQUIRE_*), which the guest's /init sets for itself where it
// matters.
func GuestEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch {
		case k == "GOGC", k == "GODEBUG", k == "GOMEMLIMIT", k == "GOMAXPROCS", k == "GOTRACEBACK":
			// forwarded
		case !strings.HasPrefix(k, "THINP_"),
			k == "THINP_VM", strings.HasPrefix(k, "THINP_VM_"), strings.HasPrefix(k, "THINP_REQUIRE_"):
			continue
		}
		out = append(out, kv)
	}
	return out
}

func (r *Runner) logf(format string, args ...any) {
	if r.Logf != nil {
		r.Logf(format, args...)
	}
}

// Image is a built initramfs.
type Image struct {
	// Path is the initramfs file.
	Path string
	// Jobs is how many workloads it runs.
	Jobs int
	// Build is how long building and packing took.
	Build time.Duration
}

// buildInit compiles the guest's /init once.
func (r *Runner) buildInit(ctx context.Context) (string, error) {
	if r.init != "" {
		return r.init, nil
	}
	out := filepath.Join(r.WorkDir, "init")
	if err := r.Builder.BuildProgram(ctx, GuestInitPackage, out); err != nil {
		return "", err
	}
	r.init = out
	return out, nil
}

// TestImage builds an initramfs that runs the tests of pkgs with args
// (after -test.v=test2json and -test.timeout). Packages without test files
// are left out.
//
// The module's internal/testenv package, whose smoke test checks the guest
// itself, runs first; the others keep their order.
func (r *Runner) TestImage(ctx context.Context, pkgs []Package, args []string) (*Image, error) {
	t0 := time.Now()
	pkgs = append([]Package(nil), pkgs...)
	sort.SliceStable(pkgs, func(i, j int) bool {
		return strings.HasSuffix(pkgs[i].ImportPath, "/internal/testenv") && !strings.HasSuffix(pkgs[j].ImportPath, "/internal/testenv")
	})
	// The binaries do not depend on the kernel: a Runner whose Host
	// changes kernel between images builds them once.
	var key strings.Builder
	for _, p := range pkgs {
		key.WriteString(p.ImportPath + "\n")
	}
	bins := r.tests.bins
	if r.tests.key != key.String() || bins == nil {
		var err error
		bins, err = r.Builder.BuildTests(ctx, pkgs, filepath.Join(r.WorkDir, "tests"))
		if err != nil {
			return nil, err
		}
		r.tests.key, r.tests.bins = key.String(), bins
	}
	var ws []Workload
	for i, p := range pkgs {
		if bins[i] == "" {
			continue
		}
		a := append([]string{"-test.v=test2json", "-test.timeout=" + r.testTimeout().String()}, args...)
		ws = append(ws, Workload{Name: p.ImportPath, Kind: proto.KindTest, Binary: bins[i], Args: a,
			SrcDir: p.Dir, RelDir: p.RelDir})
	}
	img, err := r.image(ctx, ws, "tests.initrd")
	if err != nil {
		return nil, err
	}
	img.Build = time.Since(t0)
	return img, nil
}

// ProgramImage builds an initramfs that runs the main package pkg with
// args.
func (r *Runner) ProgramImage(ctx context.Context, pkg Package, args []string) (*Image, error) {
	t0 := time.Now()
	bin := filepath.Join(r.WorkDir, "prog", pkg.Name)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return nil, err
	}
	if err := r.Builder.BuildPackage(ctx, pkg, bin); err != nil {
		return nil, err
	}
	ws := []Workload{{Name: pkg.ImportPath, Kind: proto.KindRun, Binary: bin, Args: args,
		SrcDir: pkg.Dir, RelDir: pkg.RelDir}}
	img, err := r.image(ctx, ws, "prog.initrd")
	if err != nil {
		return nil, err
	}
	img.Build = time.Since(t0)
	return img, nil
}

func (r *Runner) testTimeout() time.Duration {
	t := r.Settings.Timeout - time.Minute
	if t < time.Minute {
		t = time.Minute
	}
	return t
}

func (r *Runner) image(ctx context.Context, ws []Workload, name string) (*Image, error) {
	init, err := r.buildInit(ctx)
	if err != nil {
		return nil, err
	}
	mods, err := ResolveModules(r.Host.Kernel.Modules)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(r.WorkDir, name)
	spec := ImageSpec{Init: init, Host: r.Host, Modules: mods, Workloads: ws, Env: r.Env, Heartbeat: 5, Gzip: true}
	if err := BuildImage(spec, out); err != nil {
		return nil, err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return nil, err
	}
	r.logf("vm: initramfs %s: %d jobs, %.1f MiB", out, len(ws), float64(fi.Size())/(1<<20))
	return &Image{Path: out, Jobs: len(ws)}, nil
}

// Accel returns the accelerator to use and why: THINP_VM_ACCEL when set,
// else KVM when a KVM test boot succeeds, else TCG. The answer is kept for
// the Runner's later boots.
func (r *Runner) Accel(ctx context.Context) (string, string) {
	if r.accel != "" {
		return r.accel, r.why
	}
	if r.Settings.Accel != "" {
		r.accel, r.why = r.Settings.Accel, "THINP_VM_ACCEL="+r.Settings.Accel
		return r.accel, r.why
	}
	ok, why := KVMUsable(ctx, r.probeKVM)
	r.accel, r.why = AccelTCG, why
	if ok {
		r.accel = AccelKVM
	}
	return r.accel, r.why
}

// probeKVM boots a guest that only says hello and powers off, under KVM,
// and fails unless it does so within 20 seconds.
func (r *Runner) probeKVM(ctx context.Context) error {
	init, err := r.buildInit(ctx)
	if err != nil {
		return err
	}
	initrd := filepath.Join(r.WorkDir, "probe.initrd")
	if err := BuildImage(ImageSpec{Init: init, Minimal: true, Heartbeat: 1, Gzip: true}, initrd); err != nil {
		return err
	}
	o, err := Boot(ctx, BootConfig{QEMU: r.Host.QEMU, Kernel: r.Host.Kernel.Image, Initrd: initrd,
		Accel: AccelKVM, MemoryMiB: 256, CPUs: 1, Timeout: 20 * time.Second, Silence: 10 * time.Second})
	if err != nil {
		return err
	}
	if !o.OK() {
		return fmt.Errorf("%s", strings.Join(o.Errors, "; "))
	}
	return nil
}

// Boot boots img with or without udevd. When the guest dies in a job (a
// kernel oops or panic, or it stops answering), the test that was running
// counts as failed and Boot boots again from the next job, so that one
// crashing package does not hide the results of the others; the Outcome
// then covers all boots. A timeout or cancellation ends it for good.
func (r *Runner) Boot(ctx context.Context, img *Image, udev bool) (*Outcome, error) {
	accel, _ := r.Accel(ctx)
	name := BootName(udev)
	cfg := BootConfig{
		QEMU: r.Host.QEMU, Kernel: r.Host.Kernel.Image, Initrd: img.Path, Udev: udev,
		Accel: accel, MemoryMiB: r.Settings.MemoryMiB, CPUs: r.Settings.CPUs, CPUModel: r.Settings.CPUModel, Append: r.Settings.Append,
		Timeout: r.Settings.Timeout, Silence: r.Settings.Silence, Console: r.Console, Signals: r.Signals,
	}
	if r.OnEvent != nil {
		cfg.OnEvent = func(e proto.Event) { r.OnEvent(name, e) }
	}
	var total *Outcome
	var tails []string
	for {
		o, err := Boot(ctx, cfg)
		if err != nil {
			return nil, err
		}
		if !o.OK() {
			tails = append(tails, o.ConsoleTail)
		}
		if total == nil {
			total = o
		} else {
			total.Tests = append(total.Tests, o.Tests...)
			total.Jobs = append(total.Jobs, o.Jobs...)
			total.Errors = append(total.Errors, o.Errors...)
			total.Signaled = append(total.Signaled, o.Signaled...)
			total.Left = append(total.Left, o.Left...)
			total.LeakChecks += o.LeakChecks
			total.Total += o.Total
			total.Done, total.Code, total.ConsoleTail = o.Done, o.Code, o.ConsoleTail
		}
		if o.Done || o.job < 0 {
			break
		}
		// The guest ended in the middle of a job: the test that was
		// running fails.
		test := o.test
		if test == "" {
			test = "[no test running]"
		}
		total.Tests = append(total.Tests, TestResult{Job: o.jobName, Name: test, Verdict: proto.Fail})
		total.Jobs = append(total.Jobs, JobResult{Name: o.jobName, Code: -1})
		if cfg.OnEvent != nil {
			cfg.OnEvent(proto.Event{E: proto.EvTest, Job: o.jobName, Verdict: proto.Fail, Name: test})
		}
		msg := fmt.Sprintf("the guest ended while %s ran %s", o.jobName, test)
		restart := o.stopped != "timeout" && o.stopped != "cancel" && o.job+1 < img.Jobs
		if restart {
			msg += "; booting again to run the packages after it"
		}
		total.Errors = append(total.Errors, msg)
		r.logf("vm: [%s] %s", name, msg)
		if !restart {
			break
		}
		cfg.From = o.job + 1
		total.Reboots++
	}
	if len(tails) > 0 {
		total.ConsoleTail = strings.Join(tails, "\n[...next boot...]\n")
	}
	return total, nil
}

// Summary is the one line the host prints for a run: counts of guest test
// and subtest verdicts over all boots.
func Summary(outcomes []*Outcome) string {
	var pass, fail, skip int
	for _, o := range outcomes {
		p, f, s := o.Counts()
		pass, fail, skip = pass+p, fail+f, skip+s
	}
	return fmt.Sprintf("vm: %d passed, %d failed, %d skipped", pass, fail, skip)
}

// FormatEvent renders an event for people, or "" for events not worth a
// line (heartbeats).
func FormatEvent(boot string, e proto.Event) string {
	switch e.E {
	case proto.EvHello:
		return fmt.Sprintf("[%s] guest up: kernel %s", boot, e.Text)
	case proto.EvLog:
		return fmt.Sprintf("[%s] init: %s", boot, e.Text)
	case proto.EvError:
		return fmt.Sprintf("[%s] ERROR %s %s", boot, e.Job, e.Text)
	case proto.EvStart:
		return fmt.Sprintf("[%s] run %s", boot, e.Job)
	case proto.EvTest:
		return fmt.Sprintf("[%s] %s %s %s (%.2fs)", boot, e.Verdict, e.Job, e.Name, e.Sec)
	case proto.EvEnd:
		return fmt.Sprintf("[%s] exit %d %s (%.1fs)", boot, e.Code, e.Job, e.Sec)
	case proto.EvDone:
		return fmt.Sprintf("[%s] done, status %d (%.1fs in the guest)", boot, e.Code, e.Sec)
	case proto.EvSignaled:
		return fmt.Sprintf("[%s] %s delivered to %s", boot, e.Text, e.Job)
	case proto.EvLeft:
		if e.Text == "" {
			return fmt.Sprintf("[%s] %s left no dm or loop device behind", boot, e.Job)
		}
		return fmt.Sprintf("[%s] %s left behind:\n%s", boot, e.Job, strings.TrimRight(e.Text, "\n"))
	}
	return ""
}
