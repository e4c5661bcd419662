//go:build linux

package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/internal/vm/proto"
)

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "4242 (a) b (c)) S 1 4240 4240 0 -1 4194560 100 0 0 0 7 5 3 1 20 0 1 0 100 1000 10\n"
	pg, ticks, ok := parseStat(line)
	if !ok || pg != 4240 || ticks != 16 {
		t.Errorf("parseStat = %d, %d, %v; want 4240, 16, true", pg, ticks, ok)
	}
	for _, bad := range []string{"", "1 (x) S 1", "1 (x) S 1 notanumber 0 0 0 0 0 0 0 0 1 2 3 4", "no paren"} {
		if _, _, ok := parseStat(bad); ok {
			t.Errorf("parseStat(%q) ok", bad)
		}
	}
}

func TestProgressObserve(t *testing.T) {
	var p progress
	t0 := time.Unix(1000, 0)
	s := cpuSample{procs: 1, ticks: 10}
	steps := []struct {
		at   time.Duration
		pgid int
		cpu  cpuSample
		out  uint64
		want time.Duration
	}{
		{0, 0, cpuSample{}, 0, 0},                                   // between jobs
		{5 * time.Second, 7, s, 0, 0},                               // a job's first sample
		{10 * time.Second, 7, s, 0, 5 * time.Second},                // nothing changed
		{15 * time.Second, 7, s, 0, 10 * time.Second},               //
		{20 * time.Second, 7, s, 3, 0},                              // output
		{25 * time.Second, 7, s, 3, 5 * time.Second},                //
		{30 * time.Second, 7, cpuSample{procs: 1, ticks: 11}, 3, 0}, // CPU time
		{35 * time.Second, 7, cpuSample{procs: 2, ticks: 11}, 3, 0}, // a child started
		{40 * time.Second, 8, cpuSample{procs: 2, ticks: 11}, 3, 0}, // another job
		{45 * time.Second, 8, cpuSample{procs: 2, ticks: 11}, 3, 5 * time.Second},
		{50 * time.Second, 0, cpuSample{}, 0, 0}, // no job
	}
	for i, st := range steps {
		if got := p.observe(t0.Add(st.at), st.pgid, st.cpu, st.out); got != st.want {
			t.Errorf("step %d: idle %v, want %v", i, got, st.want)
		}
	}
}

// startGroup starts a shell command as the leader of its own process
// group and kills the group at the end of the test.
func startGroup(t *testing.T, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() {
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd
}

func TestGroupCPU(t *testing.T) {
	if groupCPU("/proc", 0) != (cpuSample{}) {
		t.Error("no group: a sample")
	}
	busy := startGroup(t, "while :; do :; done")
	first := groupCPU("/proc", busy.Process.Pid)
	if first.procs != 1 {
		t.Fatalf("busy group: %+v, want 1 process", first)
	}
	// A busy loop uses CPU time: the sample changes sooner or later.
	deadline := time.Now().Add(30 * time.Second)
	for groupCPU("/proc", busy.Process.Pid) == first {
		if time.Now().After(deadline) {
			t.Fatalf("a busy loop's ticks did not move from %+v in 30s", first)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A group of two sleeping processes counts both.
	idle := startGroup(t, "sleep 60 & sleep 60; wait")
	deadline = time.Now().Add(30 * time.Second)
	for groupCPU("/proc", idle.Process.Pid).procs != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("idle group: %+v, want 3 processes", groupCPU("/proc", idle.Process.Pid))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// newTestGuest returns a guest whose events go to a pipe, and a function
// that reads the next event.
func newTestGuest(t *testing.T) (*guest, func() proto.Event) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { devnull.Close() })
	g := &guest{port: w, console: devnull, start: time.Now()}
	br := bufio.NewReader(r)
	next := func() proto.Event {
		t.Helper()
		r.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("no event: %v", err)
		}
		e, ok := proto.ParseEvent(line)
		if !ok {
			t.Fatalf("not an event: %q", line)
		}
		return e
	}
	return g, next
}

// TestServeControl: a forwarded SIGINT reaches every process of the
// running job's group and is reported; other signals are refused; one that
// comes before a job is kept for the next.
func TestServeControl(t *testing.T) {
	g, next := newTestGuest(t)
	// A pipeline, not "sleep 60 &": a non-interactive shell starts its
	// background commands with SIGINT ignored.
	job := startGroup(t, "sleep 60 | sleep 60")
	g.jobPgid, g.jobName = job.Process.Pid, "prog"
	// The signal must find the children there, or the test proves nothing.
	for deadline := time.Now().Add(30 * time.Second); groupCPU("/proc", job.Process.Pid).procs < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the job's shell did not start its two children")
		}
	}
	ctl := proto.Event{E: proto.CtlSignal, Code: int(unix.SIGKILL)}.Line() +
		"noise\n" +
		proto.Event{E: proto.CtlSignal, Code: int(unix.SIGINT)}.Line()
	g.serveControl(strings.NewReader(ctl))
	if e := next(); e.E != proto.EvLog || !strings.Contains(e.Text, "refused") {
		t.Errorf("SIGKILL: %+v, want a refusal", e)
	}
	if e := next(); e.E != proto.EvSignaled || e.Job != "prog" || e.Text != "SIGINT" || e.Code != int(unix.SIGINT) {
		t.Errorf("SIGINT: %+v", e)
	}
	err := job.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || exitCode(err) != 130 {
		t.Errorf("job: %v (status %d), want killed by SIGINT (130)", err, exitCode(err))
	}
	// Its child got it too: nothing of the group is left.
	deadline := time.Now().Add(30 * time.Second)
	for groupCPU("/proc", job.Process.Pid).procs != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the job's child outlived the SIGINT to its group")
		}
		time.Sleep(10 * time.Millisecond)
	}

	g.jobPgid, g.jobName = 0, ""
	g.serveControl(strings.NewReader(proto.Event{E: proto.CtlSignal, Code: int(unix.SIGTERM)}.Line()))
	if e := next(); e.E != proto.EvLog || !strings.Contains(e.Text, "no job running") {
		t.Errorf("SIGTERM between jobs: %+v", e)
	}
	if g.pending != unix.SIGTERM {
		t.Errorf("pending %v, want SIGTERM", g.pending)
	}
	code := g.execJob(proto.Job{Name: "next", Kind: proto.KindTest, Path: "/bin/sh", Args: []string{"-c", "sleep 60"}}, nil)
	if e := next(); e.E != proto.EvSignaled || e.Job != "next" || e.Text != "SIGTERM" {
		t.Errorf("pending signal: %+v", e)
	}
	if code != 128+int(unix.SIGTERM) {
		t.Errorf("next job exited %d, want %d", code, 128+int(unix.SIGTERM))
	}
	if g.pending != 0 || g.jobPgid != 0 {
		t.Errorf("after the job: pending %v, pgid %d", g.pending, g.jobPgid)
	}
}

func TestLeftovers(t *testing.T) {
	sys := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		p = filepath.Join(sys, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := leftovers(sys); len(got) != 0 {
		t.Errorf("empty: %q", got)
	}
	write("loop0/size", "0\n")           // not attached
	write("sda/size", "100\n")           // not ours to judge
	write("dm-3/dm/name", "demo-pool\n") //
	write("loop7/loop/backing_file", "/tmp/x/data\n")
	want := []string{"dm device demo-pool (dm-3)", "loop device /dev/loop7 over /tmp/x/data"}
	if got := leftovers(sys); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("leftovers = %q, want %q", got, want)
	}
	if got := leftovers(filepath.Join(sys, "missing")); len(got) != 1 || !strings.Contains(got[0], "cannot tell") {
		t.Errorf("missing sysfs: %q", got)
	}
}
