package vm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/internal/vm/proto"
)

// Accelerators QEMU can use.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// BootConfig describes one boot.
type BootConfig struct {
	// QEMU is qemu-system-x86_64.
	QEMU string
	// Kernel and Initrd are the files QEMU loads.
	Kernel, Initrd string
	// Udev asks /init to start systemd-udevd.
	Udev bool
	// From makes /init skip the plan's first From jobs.
	From int
	// Accel is AccelKVM or AccelTCG.
	Accel string
	// MemoryMiB and CPUs size the machine (defaults 2048 and 2).
	MemoryMiB, CPUs int
	// CPUModel is QEMU's -cpu (default "max").
	CPUModel string
	// Append is added to the kernel command line.
	Append string
	// Timeout bounds the whole boot; the VM is killed when it runs out.
	Timeout time.Duration
	// Silence is how long the guest may go without a sign of progress
	// before it counts as hung and is killed. Zero means 90 s. A sign is
	// any event but a heartbeat, or a heartbeat saying that the running
	// job wrote output or used CPU time since the last one (its Idle
	// field): /init's heartbeats prove only that /init is alive, and a
	// job stuck on a lock or a lost wake-up, with /init still beating, is
	// as hung as a guest that sends nothing at all.
	Silence time.Duration
	// Signals, when set, are forwarded to the guest's running job: each
	// one received is sent on the control port, and /init delivers it to
	// the job's process group (the first serial port's Ctrl-C never
	// reaches it: the console is a pipe).
	Signals <-chan unix.Signal
	// Console receives the guest's console: kernel messages and the jobs'
	// output. Nil discards it.
	Console io.Writer
	// OnEvent, when set, sees each event as it arrives.
	OnEvent func(proto.Event)
}

// TestResult is one test or subtest verdict from the guest.
type TestResult struct {
	// Job is the package, Name the test's full name, Verdict PASS, FAIL or
	// SKIP.
	Job, Name, Verdict string
	// Sec is how long the test took.
	Sec float64
}

// JobResult is one job's exit status.
type JobResult struct {
	// Name is the job's name; Code its exit status (-1: the guest died
	// while it ran); Sec how long it ran.
	Name string
	Code int
	Sec  float64
}

// Outcome is what one boot brought back.
type Outcome struct {
	// Udev reports the udev boot; Accel the accelerator; Release the
	// guest kernel's release.
	Udev    bool
	Accel   string
	Release string
	// Tests are the verdicts, in the order they came.
	Tests []TestResult
	// Jobs are the exit statuses, in the order they came.
	Jobs []JobResult
	// Done reports that /init got through its plan and said so.
	Done bool
	// Code is the status /init reported: 0 when every job exited 0.
	Code int
	// Errors are what went wrong outside the tests: /init errors, a
	// timeout, a hung guest, QEMU failing.
	Errors []string
	// Boot is the time from starting QEMU to /init's hello; Total the
	// time until QEMU exited.
	Boot, Total time.Duration
	// ConsoleTail is the end of the console, for failure reports.
	ConsoleTail string
	// Reboots counts the extra boots Runner.Boot needed because the guest
	// died in a job.
	Reboots int

	// Signaled lists the signals /init delivered to a job on the host's
	// behalf ("SIGINT to github.com/thinp/thinp/examples/thinpool").
	Signaled []string
	// Left lists what run jobs left behind, as /init found it after each
	// one exited: dm devices and loop devices, one a line. LeakChecks
	// counts the checks /init made (one per run job that exited).
	Left       []string
	LeakChecks int

	job     int    // index of the job running, -1 between jobs
	jobName string // its name
	test    string // top-level test running in it
	stopped string // why the host stopped the guest: "timeout", "cancel", "silence"
}

// Counts returns the number of passed, failed and skipped tests.
func (o *Outcome) Counts() (pass, fail, skip int) {
	for _, t := range o.Tests {
		switch t.Verdict {
		case proto.Pass:
			pass++
		case proto.Fail:
			fail++
		case proto.Skip:
			skip++
		}
	}
	return pass, fail, skip
}

// OK reports whether the boot completed and everything in it passed.
func (o *Outcome) OK() bool {
	_, fail, _ := o.Counts()
	return o.Done && o.Code == 0 && len(o.Errors) == 0 && fail == 0
}

// Name is "udev" or "no-udev".
func (o *Outcome) Name() string { return BootName(o.Udev) }

// BootName names the boot with or without udevd.
func BootName(udev bool) string {
	if udev {
		return "udev"
	}
	return "no-udev"
}

// qemuArgs is QEMU's command line for cfg. The console is the first serial
// port on stdout; the result port is the second serial port, written to
// file descriptor 3, a pipe to the host; the control port is the third,
// read from file descriptor 4, a pipe from the host (QEMU's pipe backend
// opens the path read-write when path.in and path.out do not exist).
func qemuArgs(cfg BootConfig) []string {
	mem, cpus := cfg.MemoryMiB, cfg.CPUs
	if mem == 0 {
		mem = 2048
	}
	if cpus == 0 {
		cpus = 2
	}
	model := cfg.CPUModel
	if model == "" {
		model = "max"
	}
	udev := "0"
	if cfg.Udev {
		udev = "1"
	}
	// oops=panic, hung_task_panic and softlockup_panic turn a kernel that
	// broke (often with a dm lock held, so that every later test would hang)
	// into a panic, which panic=-1 and -no-reboot turn into QEMU exiting.
	appendLine := "console=ttyS0 quiet panic=-1 oops=panic hung_task_panic=1 softlockup_panic=1 rdinit=/init " +
		proto.UdevParam + "=" + udev
	if cfg.From > 0 {
		appendLine += " " + proto.FromParam + "=" + strconv.Itoa(cfg.From)
	}
	if cfg.Append != "" {
		appendLine += " " + cfg.Append
	}
	return []string{
		"-machine", "q35", "-accel", cfg.Accel, "-cpu", model,
		"-smp", strconv.Itoa(cpus), "-m", strconv.Itoa(mem),
		"-nodefaults", "-nographic", "-no-reboot",
		// SeaBIOS would print its banner and terminal escapes on the console.
		"-fw_cfg", "name=etc/sercon-port,string=0",
		"-serial", "stdio", "-serial", "file:/dev/fd/3",
		"-chardev", "pipe,id=ctl,path=/dev/fd/4", "-serial", "chardev:ctl",
		"-kernel", cfg.Kernel, "-initrd", cfg.Initrd,
		"-append", appendLine,
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// crlfWriter writes what it is given with every "\r\n" turned into "\n".
type crlfWriter struct {
	w  io.Writer
	cr bool // the last write ended in '\r'
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	out := make([]byte, 0, len(p)+1)
	for _, b := range p {
		if c.cr && b != '\n' {
			out = append(out, '\r')
		}
		c.cr = b == '\r'
		if !c.cr {
			out = append(out, b)
		}
	}
	if _, err := c.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// troubleScanner watches the console for the kernel reporting that it
// broke, and keeps the first such lines.
type troubleScanner struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
}

// kernelTrouble reports whether a console line is a kernel message (it
// starts with printk's "[  12.345678]" time stamp, so that test output
// cannot pass for one) saying the kernel broke.
func kernelTrouble(line string) bool {
	rest, ok := strings.CutPrefix(line, "[")
	if !ok {
		return false
	}
	stamp, _, ok := strings.Cut(rest, "]")
	if _, err := strconv.ParseFloat(strings.TrimSpace(stamp), 64); !ok || err != nil {
		return false
	}
	for _, m := range []string{
		"Kernel panic", "kernel BUG at", "BUG: ", "Oops: ", "general protection fault",
		"INFO: task ", "watchdog: BUG: soft lockup", "invalid opcode: ",
	} {
		if strings.Contains(line, m) {
			return true
		}
	}
	return false
}

func (s *troubleScanner) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(s.partial[:i]))
		s.partial = s.partial[i+1:]
		if len(s.lines) < 5 && kernelTrouble(line) {
			s.lines = append(s.lines, line)
		}
	}
	if len(s.partial) > 4096 { // no newline in sight: not a kernel line
		s.partial = s.partial[:0]
	}
	return len(p), nil
}

// found returns the trouble lines as errors.
func (s *troubleScanner) found() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.lines))
	for i, l := range s.lines {
		out[i] = "guest kernel: " + l
	}
	return out
}

// Boot runs QEMU once and collects what the guest reports. It returns an
// error only when QEMU cannot be started; everything that goes wrong after
// that is in the Outcome's Errors. It never waits longer than the timeout
// (or ctx) allows, and kills a guest that falls silent.
func Boot(ctx context.Context, cfg BootConfig) (*Outcome, error) {
	o := &Outcome{Udev: cfg.Udev, Accel: cfg.Accel, job: -1}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Minute
	}
	silence := cfg.Silence
	if silence <= 0 {
		silence = 90 * time.Second
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	cr, cw, err := os.Pipe()
	if err != nil {
		pw.Close()
		return nil, err
	}
	defer cw.Close()
	tail := &tailBuffer{max: 16 << 10}
	trouble := &troubleScanner{}
	var console io.Writer = io.MultiWriter(tail, trouble)
	if cfg.Console != nil {
		console = io.MultiWriter(tail, trouble, cfg.Console)
	}
	// The guest's tty turns "\n" into "\r\n"; undo that.
	console = &crlfWriter{w: console}
	var stderr bytes.Buffer
	cmd := exec.Command(cfg.QEMU, qemuArgs(cfg)...)
	cmd.Stdout = console
	cmd.Stderr = &stderr
	cmd.ExtraFiles = []*os.File{pw, cr}
	// QEMU in its own process group: a kill reaches nothing else.
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		pw.Close()
		cr.Close()
		return nil, fmt.Errorf("start %s: %w", cfg.QEMU, err)
	}
	pw.Close()
	cr.Close()

	var mu sync.Mutex
	// progress is when the guest last showed progress, lastEvent when it
	// last sent anything (heartbeats included): both equal for a guest
	// that stopped, apart for one whose job is stuck.
	progress, lastEvent := time.Now(), time.Now()
	events := make(chan struct{})
	go func() {
		defer close(events)
		br := bufio.NewReader(pr)
		for {
			line, err := br.ReadString('\n')
			if e, ok := proto.ParseEvent(line); ok {
				mu.Lock()
				now := time.Now()
				lastEvent = now
				if e.E != proto.EvHeartbeat {
					progress = now
				} else if p := now.Add(-time.Duration(e.Idle * float64(time.Second))); p.After(progress) {
					progress = p
				}
				o.apply(e, start)
				mu.Unlock()
				if cfg.OnEvent != nil {
					cfg.OnEvent(e)
				}
			}
			if err != nil {
				return
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.NewTimer(cfg.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	done := ctx.Done()
	signals := cfg.Signals
	killed := false
	kill := func(kind, why string) {
		mu.Lock()
		o.Errors = append(o.Errors, why)
		o.stopped = kind
		mu.Unlock()
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		// Report once; from now on only QEMU's exit matters.
		killed, done = true, nil
		deadline.Stop()
	}
	var werr error
loop:
	for {
		select {
		case werr = <-exited:
			break loop
		case <-done:
			kill("cancel", fmt.Sprintf("cancelled after %v: %v", time.Since(start).Round(time.Second), ctx.Err()))
		case <-deadline.C:
			kill("timeout", fmt.Sprintf("timeout: the guest ran longer than %v and was killed", cfg.Timeout))
		case sig, ok := <-signals:
			if !ok {
				signals = nil
				continue
			}
			// The pipe has room for thousands of these; a guest that
			// reads none of them is no reason to block.
			_ = cw.SetWriteDeadline(time.Now().Add(time.Second))
			line := proto.Event{E: proto.CtlSignal, Code: int(sig)}.Line()
			if _, err := io.WriteString(cw, line); err != nil {
				mu.Lock()
				o.Errors = append(o.Errors, fmt.Sprintf("forwarding %v to the guest: %v", sig, err))
				mu.Unlock()
			}
		case <-tick.C:
			mu.Lock()
			quiet, stuck, job := time.Since(lastEvent), time.Since(progress), o.jobName
			mu.Unlock()
			switch {
			case killed || stuck <= silence:
			case quiet > silence:
				kill("silence", fmt.Sprintf("the guest stopped answering (no event for %v) and was killed", quiet.Round(time.Second)))
			default:
				if job == "" {
					job = "the guest's job"
				}
				kill("silence", fmt.Sprintf("%s made no progress (no output, no CPU time) for %v while /init kept beating; the guest was killed", job, stuck.Round(time.Second)))
			}
		}
	}
	// QEMU is gone, so the pipe's writer is closed: the reader ends.
	select {
	case <-events:
	case <-time.After(5 * time.Second):
	}
	mu.Lock()
	defer mu.Unlock()
	o.Total = time.Since(start)
	o.ConsoleTail = tail.String()
	o.Errors = append(o.Errors, trouble.found()...)
	if werr != nil && len(o.Errors) == 0 {
		o.Errors = append(o.Errors, fmt.Sprintf("qemu: %v: %s", werr, strings.TrimSpace(stderr.String())))
	}
	if !o.Done && len(o.Errors) == 0 {
		o.Errors = append(o.Errors, "the guest ended before /init reported done (kernel panic or /init crash; see the console)")
	}
	return o, nil
}

// apply records one event in the outcome.
func (o *Outcome) apply(e proto.Event, start time.Time) {
	switch e.E {
	case proto.EvHello:
		o.Boot = time.Since(start)
		o.Release = e.Text
		if e.Udev != o.Udev {
			o.Errors = append(o.Errors, fmt.Sprintf("guest says udev=%v, host asked for udev=%v", e.Udev, o.Udev))
		}
	case proto.EvError:
		msg := "guest: " + e.Text
		if e.Job != "" {
			msg = "guest: " + e.Job + ": " + e.Text
		}
		o.Errors = append(o.Errors, msg)
	case proto.EvStart:
		o.job, o.jobName, o.test = e.Index, e.Job, ""
	case proto.EvRun:
		o.test = e.Name
	case proto.EvTest:
		o.Tests = append(o.Tests, TestResult{Job: e.Job, Name: e.Name, Verdict: e.Verdict, Sec: e.Sec})
	case proto.EvEnd:
		o.Jobs = append(o.Jobs, JobResult{Name: e.Job, Code: e.Code, Sec: e.Sec})
		o.job, o.jobName, o.test = -1, "", ""
	case proto.EvDone:
		o.Done = true
		o.Code = e.Code
	case proto.EvSignaled:
		o.Signaled = append(o.Signaled, e.Text+" to "+e.Job)
	case proto.EvLeft:
		o.LeakChecks++
		for _, l := range strings.Split(strings.TrimSpace(e.Text), "\n") {
			if l != "" {
				o.Left = append(o.Left, e.Job+": "+l)
			}
		}
	}
}

// KVMUsable reports whether KVM can run this guest, and why not. Having
// /dev/kvm is not enough: on a host without hardware virtualisation
// exposed (no vmx or svm CPU flag) /dev/kvm may open and create VMs whose
// kernels then never boot. So it checks the flag, then, when a probe is
// given, boots a minimal guest with KVM and waits for it to power off.
func KVMUsable(ctx context.Context, probe func(ctx context.Context) error) (bool, string) {
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Sprintf("/dev/kvm: %v", err)
	}
	unix.Close(fd)
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false, fmt.Sprintf("/proc/cpuinfo: %v", err)
	}
	if !cpuHasVirt(string(cpuinfo)) {
		return false, "/dev/kvm exists but the CPU shows no vmx or svm flag, so KVM guests do not run"
	}
	if probe == nil {
		return true, "/dev/kvm opens and the CPU has vmx/svm"
	}
	if err := probe(ctx); err != nil {
		return false, fmt.Sprintf("a KVM test boot failed: %v", err)
	}
	return true, "a KVM test boot succeeded"
}

// cpuHasVirt reports whether /proc/cpuinfo's flags include vmx or svm.
func cpuHasVirt(cpuinfo string) bool {
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, f := range strings.Fields(v) {
			if f == "vmx" || f == "svm" {
				return true
			}
		}
	}
	return false
}
