//go:build linux

// Command guestinit is /init in the VM test tier's initramfs: a static
// program the kernel starts as PID 1. It mounts the pseudo file systems,
// loads the device-mapper and loop modules, starts systemd-udevd when the
// kernel command line says thinp.udev=1, runs the jobs of
// /thinp/plan.json one after another with their output on the console,
// reports every test verdict and each job's exit status on the result port
// (/dev/ttyS1), and powers the machine off.
//
// It refuses to run as anything but PID 1: it mounts over /dev and powers
// off the machine.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/internal/vm/proto"
)

// moduleInitCompressedFile is MODULE_INIT_COMPRESSED_FILE from
// <uapi/linux/module.h>: the kernel decompresses the module itself.
const moduleInitCompressedFile = 4

// guest is the running /init.
type guest struct {
	mu      sync.Mutex
	port    *os.File // result port; nil when it could not be opened
	console *os.File
	udev    bool
	from    int // first job to run
	start   time.Time

	// The running job, for heartbeats and forwarded signals: its process
	// group (0 between jobs), name, and how many bytes it has written.
	jobPgid int
	jobName string
	jobOut  uint64
	pending unix.Signal // forwarded before a job ran: delivered when one starts
}

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "guestinit: not PID 1; this program is the VM's /init and powers the machine off")
		os.Exit(2)
	}
	g := &guest{console: os.Stdout, start: time.Now()}
	code := 1
	defer func() {
		if r := recover(); r != nil {
			g.emit(proto.Event{E: proto.EvError, Text: fmt.Sprintf("init panic: %v", r)})
			code = 3
		}
		g.emit(proto.Event{E: proto.EvDone, Code: code, Sec: time.Since(g.start).Seconds()})
		g.poweroff()
	}()
	code = g.run()
}

// run does everything and returns the exit status to report.
func (g *guest) run() int {
	if err := g.mountAll(); err != nil {
		fmt.Fprintf(g.console, "guestinit: %v\n", err)
		g.emit(proto.Event{E: proto.EvError, Text: err.Error()})
		return 3
	}
	g.openPort()
	cmdline, _ := os.ReadFile("/proc/cmdline")
	g.udev = hasParam(string(cmdline), proto.UdevParam+"=1")
	g.from = intParam(string(cmdline), proto.FromParam)
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	g.emit(proto.Event{E: proto.EvHello, Text: unix.ByteSliceToString(uts.Release[:]), Udev: g.udev})

	plan, err := readPlan()
	if err != nil {
		g.emit(proto.Event{E: proto.EvError, Text: err.Error()})
		return 3
	}
	if plan.Heartbeat > 0 {
		go g.heartbeat(time.Duration(plan.Heartbeat) * time.Second)
	}
	go g.control()
	if err := g.loadModules(plan.Modules); err != nil {
		g.emit(proto.Event{E: proto.EvError, Text: err.Error()})
		return 3
	}
	// A plan without modules (the KVM probe) needs no device-mapper; one
	// with them, or a kernel with device-mapper built in, gets the control
	// node.
	if _, err := os.Stat("/sys/class/misc/device-mapper"); err == nil || len(plan.Modules) > 0 {
		if err := ensureControl(); err != nil {
			g.emit(proto.Event{E: proto.EvError, Text: err.Error()})
			return 3
		}
	}
	env := g.environ(plan)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	if g.udev {
		if err := g.startUdev(plan, env); err != nil {
			g.emit(proto.Event{E: proto.EvError, Text: err.Error()})
			return 3
		}
	}
	code := 0
	for i, job := range plan.Jobs {
		if i < g.from {
			continue // ran in an earlier boot, which died in job g.from-1
		}
		if c := g.runJob(i, job, env); c != 0 && code == 0 {
			code = c
		}
	}
	unix.Sync()
	return code
}

// mountAll mounts what a Linux userland expects.
func (g *guest) mountAll() error {
	mounts := []struct {
		src, dst, fstype, data string
		perm                   os.FileMode
		optional               bool
	}{
		{"proc", "/proc", "proc", "", 0o555, false},
		{"sysfs", "/sys", "sysfs", "", 0o555, false},
		{"devtmpfs", "/dev", "devtmpfs", "mode=0755", 0o755, false},
		{"tmpfs", "/dev/shm", "tmpfs", "mode=1777", 0o1777, true},
		{"devpts", "/dev/pts", "devpts", "mode=0620,ptmxmode=0666", 0o755, true},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777", 0o1777, false},
		{"tmpfs", "/run", "tmpfs", "mode=0755", 0o755, false},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.dst, m.perm); err != nil && !m.optional {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, unix.MS_NOSUID, m.data); err != nil && !m.optional {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dst, err)
		}
	}
	// The console the kernel opened for us lives in the initramfs's /dev,
	// now hidden; it keeps working, but reopen it from devtmpfs for good
	// measure.
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
		g.console = f
	}
	return nil
}

// openPort opens the result port in raw mode, so that "\n" stays "\n".
func (g *guest) openPort() {
	f, err := openRaw(proto.ResultPort)
	if err != nil {
		fmt.Fprintf(g.console, "guestinit: result port: %v (events go to the console)\n", err)
		return
	}
	g.mu.Lock()
	g.port = f
	g.mu.Unlock()
}

// openRaw opens a serial port in raw mode: no echo (the control port's
// host end would read an echo back as input), no line editing, no signals
// from control characters.
func openRaw(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	if t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8 | unix.CLOCAL
		t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
		_ = unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
	}
	return f, nil
}

// control reads the host's control lines from the control port and acts on
// them: a forwarded signal goes to the running job's process group, as a
// terminal's Ctrl-C goes to its foreground process group.
func (g *guest) control() {
	f, err := openRaw(proto.ControlPort)
	if err != nil {
		g.emit(proto.Event{E: proto.EvLog, Text: fmt.Sprintf("control port: %v (signals from the host are not forwarded)", err)})
		return
	}
	defer f.Close()
	g.serveControl(f)
}

// serveControl acts on each control line read from r until it ends.
func (g *guest) serveControl(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if e, ok := proto.ParseEvent(line); ok && e.E == proto.CtlSignal {
			g.forward(unix.Signal(e.Code))
		}
		if err != nil {
			return
		}
	}
}

// forward delivers sig to the running job's process group and says so.
func (g *guest) forward(sig unix.Signal) {
	switch sig {
	case unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT:
	default:
		g.emit(proto.Event{E: proto.EvLog, Text: fmt.Sprintf("control: signal %d refused (only INT, TERM, HUP and QUIT are forwarded)", int(sig))})
		return
	}
	g.mu.Lock()
	pgid, job := g.jobPgid, g.jobName
	if pgid <= 0 {
		g.pending = sig
	}
	g.mu.Unlock()
	if pgid <= 0 {
		g.emit(proto.Event{E: proto.EvLog, Text: fmt.Sprintf("control: %s with no job running: for the next job", unix.SignalName(sig))})
		return
	}
	g.deliver(pgid, job, sig)
}

// deliver sends sig to the process group pgid of job and reports it.
func (g *guest) deliver(pgid int, job string, sig unix.Signal) {
	if err := unix.Kill(-pgid, sig); err != nil {
		g.emit(proto.Event{E: proto.EvLog, Text: fmt.Sprintf("control: %s to %s: %v", unix.SignalName(sig), job, err)})
		return
	}
	g.emit(proto.Event{E: proto.EvSignaled, Job: job, Code: int(sig), Text: unix.SignalName(sig)})
}

// emit writes an event to the result port (or the console, without one).
// Errors and notes also go to the console for people reading it.
func (g *guest) emit(e proto.Event) {
	line := e.Line()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.port != nil {
		_, _ = io.WriteString(g.port, line)
	} else {
		_, _ = io.WriteString(g.console, line)
	}
	switch e.E {
	case proto.EvError:
		fmt.Fprintf(g.console, "guestinit: error: %s\n", e.Text)
	}
}

// heartbeat sends a heartbeat every interval, saying how long the running
// job has shown no progress: no output and no CPU time used by any process
// of its group (its children's included, once they have been reaped).
func (g *guest) heartbeat(every time.Duration) {
	var p progress
	for now := range time.Tick(every) {
		g.mu.Lock()
		pgid, out := g.jobPgid, g.jobOut
		g.mu.Unlock()
		idle := p.observe(now, pgid, groupCPU("/proc", pgid), out)
		g.emit(proto.Event{E: proto.EvHeartbeat, Sec: time.Since(g.start).Seconds(), Idle: idle.Seconds()})
	}
}

// progress follows one job's signs of life from one heartbeat to the next.
type progress struct {
	pgid  int
	cpu   cpuSample
	out   uint64
	since time.Time // the last change seen
}

// observe records a sample taken at now and returns how long the job has
// gone without a change: 0 between jobs and at a new job's first sample.
func (p *progress) observe(now time.Time, pgid int, cpu cpuSample, out uint64) time.Duration {
	if pgid <= 0 {
		*p = progress{}
		return 0
	}
	if pgid != p.pgid || cpu != p.cpu || out != p.out {
		*p = progress{pgid: pgid, cpu: cpu, out: out, since: now}
		return 0
	}
	return now.Sub(p.since)
}

// cpuSample is what /proc says of a process group: its processes, and the
// clock ticks they and their reaped children used.
type cpuSample struct {
	procs int
	ticks uint64
}

// groupCPU reads proc (/proc) for the processes of group pgid.
func groupCPU(proc string, pgid int) cpuSample {
	var s cpuSample
	if pgid <= 0 {
		return s
	}
	ents, err := os.ReadDir(proc)
	if err != nil {
		return s
	}
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(proc + "/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		if pg, ticks, ok := parseStat(string(b)); ok && pg == pgid {
			s.procs++
			s.ticks += ticks
		}
	}
	return s
}

// parseStat returns the process group and the utime+stime+cutime+cstime
// of a /proc/PID/stat line. The command name, in parentheses, may hold
// spaces and parentheses: the fields start after the last ')'.
func parseStat(line string) (pgrp int, ticks uint64, ok bool) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state): pgrp is field 5, utime..cstime 14..17.
	if len(f) < 15 {
		return 0, 0, false
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, false
	}
	for _, v := range f[11:15] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		ticks += n
	}
	return pgrp, ticks, true
}

func readPlan() (*proto.Plan, error) {
	b, err := os.ReadFile(proto.PlanPath)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	var p proto.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	return &p, nil
}

// loadModules loads each module with finit_module(2). A module that is
// already there (EEXIST) is fine; an optional one may fail.
func (g *guest) loadModules(mods []proto.Module) error {
	t0 := time.Now()
	var loaded []string
	for _, m := range mods {
		err := finitModule(m)
		switch {
		case err == nil || errors.Is(err, unix.EEXIST):
			loaded = append(loaded, m.Name)
		case m.Optional:
			g.emit(proto.Event{E: proto.EvLog, Text: fmt.Sprintf("optional module %s not loaded: %v", m.Name, err)})
		default:
			if errors.Is(err, unix.ENOEXEC) && m.Compressed {
				err = fmt.Errorf("%w (the kernel cannot decompress modules: CONFIG_MODULE_DECOMPRESS is off)", err)
			}
			return fmt.Errorf("load module %s (%s): %w", m.Name, m.Path, err)
		}
	}
	g.emit(proto.Event{E: proto.EvLog, Text: fmt.Sprintf("loaded %d modules in %.2fs: %s",
		len(loaded), time.Since(t0).Seconds(), strings.Join(loaded, " "))})
	return nil
}

func finitModule(m proto.Module) error {
	fd, err := unix.Open(m.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	flags := 0
	if m.Compressed {
		flags |= moduleInitCompressedFile
	}
	return unix.FinitModule(fd, "", flags)
}

// ensureControl creates /dev/mapper/control from sysfs when devtmpfs did not.
func ensureControl() error {
	const node = "/dev/mapper/control"
	if _, err := os.Stat(node); err == nil {
		return nil
	}
	b, err := os.ReadFile("/sys/class/misc/device-mapper/dev")
	if err != nil {
		return fmt.Errorf("device-mapper not registered: %w", err)
	}
	maj, min, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("device-mapper dev %q: malformed", b)
	}
	if err := os.MkdirAll("/dev/mapper", 0o755); err != nil {
		return err
	}
	return unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(uint32(ma), uint32(mi))))
}

// environ is the environment of udevd and of every job.
func (g *guest) environ(plan *proto.Plan) []string {
	udev := "0"
	if g.udev {
		udev = "1"
	}
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"TMPDIR=/tmp",
		"THINP_VM=1",
		"THINP_REQUIRE_PRIVILEGED=1",
		"THINP_VM_UDEV=" + udev,
	}
	return append(env, plan.Env...)
}

// startUdev starts systemd-udevd as a daemon, waits for its control socket,
// and replays the add events of block devices that appeared before it.
func (g *guest) startUdev(plan *proto.Plan, env []string) error {
	if plan.Udevd == "" || plan.Udevadm == "" {
		return fmt.Errorf("udev boot requested but the image has no systemd-udevd/udevadm")
	}
	t0 := time.Now()
	cmd := exec.Command(plan.Udevd, "--daemon")
	cmd.Env = env
	// Its banner is noise; its troubles go to the kernel log, and a udevd
	// that does not come up shows as a missing control socket below.
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("systemd-udevd --daemon: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat("/run/udev/control"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("systemd-udevd: /run/udev/control did not appear within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, args := range [][]string{
		{"trigger", "--action=add", "--subsystem-match=block"},
		{"settle", "--timeout=60"},
	} {
		cmd := exec.Command(plan.Udevadm, args...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = g.console, g.console
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("udevadm %s: %w", strings.Join(args, " "), err)
		}
	}
	g.emit(proto.Event{E: proto.EvLog, Text: fmt.Sprintf("systemd-udevd running (%.2fs)", time.Since(t0).Seconds())})
	return nil
}

// runJob runs one job with its output on the console, reporting verdicts of
// test jobs as it goes, and returns its exit status.
func (g *guest) runJob(index int, job proto.Job, env []string) int {
	t0 := time.Now()
	g.emit(proto.Event{E: proto.EvStart, Job: job.Name, Index: index})
	code := g.execJob(job, env)
	g.emit(proto.Event{E: proto.EvEnd, Job: job.Name, Code: code, Sec: time.Since(t0).Seconds()})
	return code
}

func (g *guest) execJob(job proto.Job, env []string) int {
	r, w, err := os.Pipe()
	if err != nil {
		g.emit(proto.Event{E: proto.EvError, Job: job.Name, Text: err.Error()})
		return 125
	}
	cmd := exec.Command(job.Path, job.Args...)
	cmd.Dir = job.Dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = w, w
	// Its own process group, so that what it leaves behind can be killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		r.Close()
		g.emit(proto.Event{E: proto.EvError, Job: job.Name, Text: err.Error()})
		return 127
	}
	w.Close()
	g.mu.Lock()
	g.jobPgid, g.jobName, g.jobOut = cmd.Process.Pid, job.Name, 0
	pending := g.pending
	g.pending = 0
	g.mu.Unlock()
	if pending != 0 {
		g.deliver(cmd.Process.Pid, job.Name, pending)
	}
	var tracker *proto.Tracker
	if job.Kind == proto.KindTest {
		tracker = proto.NewTracker(job.Name)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		br := bufio.NewReaderSize(r, 64*1024)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				g.mu.Lock()
				_, _ = io.WriteString(g.console, proto.StripFrames(line))
				g.jobOut += uint64(len(line))
				g.mu.Unlock()
				if tracker != nil {
					for _, e := range tracker.Line(line) {
						g.emit(e)
					}
				}
			}
			if err != nil {
				return
			}
		}
	}()
	err = cmd.Wait()
	// Children the job left behind keep the pipe open: kill its group.
	_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
	<-done
	r.Close()
	g.mu.Lock()
	g.jobPgid, g.jobName = 0, ""
	g.mu.Unlock()
	if job.Kind == proto.KindRun {
		// Test jobs check for leaks themselves; a program is checked here.
		left := leftovers("/sys/block")
		g.emit(proto.Event{E: proto.EvLeft, Job: job.Name, Text: strings.Join(left, "\n")})
	}
	code := exitCode(err)
	if code == 126 {
		g.emit(proto.Event{E: proto.EvError, Job: job.Name, Text: err.Error()})
	}
	if tracker != nil {
		for _, e := range tracker.End(code) {
			g.emit(e)
		}
	}
	return code
}

// leftovers lists the dm devices and the attached loop devices under sys
// (/sys/block), one a line: what a program left behind once it exited.
func leftovers(sys string) []string {
	ents, err := os.ReadDir(sys)
	if err != nil {
		return []string{fmt.Sprintf("cannot tell: %v", err)}
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		switch {
		case strings.HasPrefix(n, "dm-"):
			name, _ := os.ReadFile(sys + "/" + n + "/dm/name")
			out = append(out, fmt.Sprintf("dm device %s (%s)", strings.TrimSpace(string(name)), n))
		case strings.HasPrefix(n, "loop"):
			backing, err := os.ReadFile(sys + "/" + n + "/loop/backing_file")
			if err != nil {
				continue // not attached
			}
			out = append(out, fmt.Sprintf("loop device /dev/%s over %s", n, strings.TrimSpace(string(backing))))
		}
	}
	return out
}

// exitCode turns cmd.Wait's error into a shell-style status.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 126
}

// poweroff flushes the ports and turns the machine off.
func (g *guest) poweroff() {
	g.mu.Lock()
	for _, f := range []*os.File{g.port, g.console} {
		if f != nil {
			_ = unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1) // tcdrain
		}
	}
	g.mu.Unlock()
	unix.Sync()
	// Keep "reboot: Power down" off the console: the jobs' output ends it.
	_ = os.WriteFile("/proc/sys/kernel/printk", []byte("0"), 0)
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// Still here: the kernel panics when PID 1 exits, and panic=-1 with
	// QEMU's -no-reboot ends the VM.
	os.Exit(1)
}

// intParam returns the value of the kernel command line parameter
// key=N, or 0.
func intParam(cmdline, key string) int {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return n
			}
		}
	}
	return 0
}

// hasParam reports whether the kernel command line holds the word p.
func hasParam(cmdline, p string) bool {
	for _, f := range strings.Fields(cmdline) {
		if f == p {
			return true
		}
	}
	return false
}
