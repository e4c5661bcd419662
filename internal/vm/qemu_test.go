package vm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/internal/vm/proto"
)

// fakeQEMU writes a shell script standing in for QEMU: it ignores its
// arguments, prints console to stdout and events to fd 3, like the real
// guest does through its two serial ports.
func fakeQEMU(t *testing.T, script string) string {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	p := filepath.Join(t.TempDir(), "qemu")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// ev renders an event line for a shell script (single-quoted).
func ev(e proto.Event) string {
	return "printf '%s\\n' '" + strings.TrimSuffix(e.Line(), "\n") + "' >&3\n"
}

func TestBootCollectsEvents(t *testing.T) {
	script := "echo 'SeaBIOS noise'\n" +
		ev(proto.Event{E: proto.EvHello, Text: "6.1.0-test", Udev: true}) +
		"printf 'garbage without newline' >&3\n" + // a cut line is ignored...
		"printf '\\n' >&3\n" +
		ev(proto.Event{E: proto.EvStart, Job: "pkg"}) +
		"echo '--- PASS: TestIntegrationX (0.01s)'\n" +
		ev(proto.Event{E: proto.EvTest, Job: "pkg", Verdict: proto.Pass, Name: "TestIntegrationX", Sec: 0.01}) +
		ev(proto.Event{E: proto.EvTest, Job: "pkg", Verdict: proto.Skip, Name: "TestIntegrationY"}) +
		ev(proto.Event{E: proto.EvTest, Job: "pkg", Verdict: proto.Fail, Name: "TestIntegrationZ/sub"}) +
		ev(proto.Event{E: proto.EvEnd, Job: "pkg", Code: 1}) +
		ev(proto.Event{E: proto.EvDone, Code: 1})
	var seen []string
	o, err := Boot(context.Background(), BootConfig{
		QEMU: fakeQEMU(t, script), Udev: true, Accel: AccelTCG, Timeout: 10 * time.Second,
		OnEvent: func(e proto.Event) { seen = append(seen, e.E) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !o.Done || o.Code != 1 || o.Release != "6.1.0-test" || len(o.Errors) != 0 {
		t.Errorf("outcome %+v", o)
	}
	if p, f, s := o.Counts(); p != 1 || f != 1 || s != 1 {
		t.Errorf("counts %d/%d/%d, want 1/1/1", p, f, s)
	}
	if o.OK() {
		t.Error("OK with a failed test")
	}
	if len(o.Jobs) != 1 || o.Jobs[0].Code != 1 {
		t.Errorf("jobs %+v", o.Jobs)
	}
	if !strings.Contains(o.ConsoleTail, "SeaBIOS noise") {
		t.Errorf("console tail %q", o.ConsoleTail)
	}
	if strings.Join(seen, " ") != "hello start test test test end done" {
		t.Errorf("events seen: %v", seen)
	}
	if got := Summary([]*Outcome{o, o}); got != "vm: 2 passed, 2 failed, 2 skipped" {
		t.Errorf("Summary = %q", got)
	}
}

func TestBootKillsSilentGuest(t *testing.T) {
	script := ev(proto.Event{E: proto.EvHello}) + "exec sleep 60\n"
	t0 := time.Now()
	o, err := Boot(context.Background(), BootConfig{
		QEMU: fakeQEMU(t, script), Accel: AccelTCG, Timeout: time.Minute, Silence: 1500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 20*time.Second {
		t.Errorf("took %v to kill a silent guest", d)
	}
	if o.Done || o.OK() || len(o.Errors) == 0 || !strings.Contains(o.Errors[0], "stopped answering") {
		t.Errorf("outcome %+v", o)
	}
}

// TestBootKillsStuckJob: /init keeps beating but says the job has shown
// no progress for ever longer; the host kills the guest once that passes
// the silence limit, well before the overall timeout, and says why.
func TestBootKillsStuckJob(t *testing.T) {
	script := ev(proto.Event{E: proto.EvHello}) +
		ev(proto.Event{E: proto.EvStart, Job: "pkg"}) +
		ev(proto.Event{E: proto.EvRun, Job: "pkg", Name: "TestStuck"}) +
		"i=0; while :; do printf '" + proto.Marker + `{"e":"hb","idle":%d}\n' $i >&3; i=$((i+1)); sleep 0.2; done` + "\n"
	var beats int
	o, err := Boot(context.Background(), BootConfig{
		QEMU: fakeQEMU(t, script), Accel: AccelTCG, Timeout: 10 * time.Minute, Silence: time.Second,
		OnEvent: func(e proto.Event) {
			if e.E == proto.EvHeartbeat {
				beats++
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.stopped != "silence" || len(o.Errors) != 1 ||
		!strings.Contains(o.Errors[0], "pkg made no progress (no output, no CPU time)") {
		t.Errorf("stopped %q, errors %q", o.stopped, o.Errors)
	}
	if beats < 2 {
		t.Errorf("%d heartbeats: the guest was not beating when it was killed", beats)
	}
	if o.job != 0 || o.test != "TestStuck" {
		t.Errorf("job %d test %q: the host lost track of what hung", o.job, o.test)
	}
}

// TestBootQuietJobLives: a job that shows progress on every heartbeat
// (idle 0) outlives the silence limit; only the timeout ends it.
func TestBootQuietJobLives(t *testing.T) {
	script := ev(proto.Event{E: proto.EvStart, Job: "pkg"}) +
		"while :; do " + strings.TrimSuffix(ev(proto.Event{E: proto.EvHeartbeat}), "\n") + "; sleep 0.2; done\n"
	o, err := Boot(context.Background(), BootConfig{
		QEMU: fakeQEMU(t, script), Accel: AccelTCG, Timeout: 3 * time.Second, Silence: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.stopped != "timeout" || len(o.Errors) != 1 || !strings.Contains(o.Errors[0], "timeout") {
		t.Errorf("stopped %q, errors %q", o.stopped, o.Errors)
	}
}

// TestBootForwardsSignals: a signal on BootConfig.Signals reaches the
// guest on the control port (file descriptor 4 of QEMU) as a control
// line; the fake guest answers as /init does.
func TestBootForwardsSignals(t *testing.T) {
	script := ev(proto.Event{E: proto.EvHello}) +
		ev(proto.Event{E: proto.EvStart, Job: "prog"}) +
		`while read -r line <&4; do
  case "$line" in
  *'"e":"signal"'*'"code":2'*)
` + ev(proto.Event{E: proto.EvSignaled, Job: "prog", Code: 2, Text: "SIGINT"}) +
		ev(proto.Event{E: proto.EvLeft, Job: "prog", Text: "dm device x (dm-0)\nloop device /dev/loop0 over /tmp/f"}) +
		ev(proto.Event{E: proto.EvLeft, Job: "prog"}) +
		ev(proto.Event{E: proto.EvEnd, Job: "prog", Code: 130}) +
		ev(proto.Event{E: proto.EvDone, Code: 130}) + `    exit 0;;
  *) echo "unexpected control line: $line";;
  esac
done
`
	sigs := make(chan unix.Signal, 1)
	o, err := Boot(context.Background(), BootConfig{
		QEMU: fakeQEMU(t, script), Accel: AccelTCG, Timeout: time.Minute, Signals: sigs,
		OnEvent: func(e proto.Event) {
			if e.E == proto.EvStart {
				sigs <- unix.SIGINT
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !o.Done || len(o.Errors) != 0 || len(o.Jobs) != 1 || o.Jobs[0].Code != 130 {
		t.Errorf("outcome %+v", o)
	}
	if strings.Join(o.Signaled, "|") != "SIGINT to prog" {
		t.Errorf("Signaled %q", o.Signaled)
	}
	if want := "prog: dm device x (dm-0)|prog: loop device /dev/loop0 over /tmp/f"; strings.Join(o.Left, "|") != want || o.LeakChecks != 2 {
		t.Errorf("Left %q after %d checks, want %q after 2", o.Left, o.LeakChecks, want)
	}
	if strings.Contains(o.ConsoleTail, "unexpected") {
		t.Errorf("console: %s", o.ConsoleTail)
	}
}

func TestBootTimeout(t *testing.T) {
	// Heartbeats keep it from counting as silent; the timeout still ends it.
	script := "while :; do " + strings.TrimSuffix(ev(proto.Event{E: proto.EvHeartbeat}), "\n") + "; sleep 0.2; done\n"
	o, err := Boot(context.Background(), BootConfig{
		QEMU: fakeQEMU(t, script), Accel: AccelTCG, Timeout: 2 * time.Second, Silence: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Errors) != 1 || !strings.Contains(o.Errors[0], "timeout") {
		t.Errorf("errors %q", o.Errors)
	}
}

func TestBootCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	o, err := Boot(ctx, BootConfig{QEMU: fakeQEMU(t, "exec sleep 60\n"), Accel: AccelTCG, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Errors) != 1 || !strings.Contains(o.Errors[0], "cancelled") {
		t.Errorf("errors %q", o.Errors)
	}
}

func TestBootGuestDiesEarly(t *testing.T) {
	script := ev(proto.Event{E: proto.EvHello}) +
		"echo '[   29.817078] kernel BUG at mm/slub.c:419!'\n" +
		"echo 'a test printing BUG: something'\n" +
		"echo '[   30.1] Kernel panic - not syncing: Fatal exception'\n"
	o, err := Boot(context.Background(), BootConfig{QEMU: fakeQEMU(t, script), Accel: AccelTCG, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"guest kernel: [   29.817078] kernel BUG at mm/slub.c:419!",
		"guest kernel: [   30.1] Kernel panic - not syncing: Fatal exception",
	}
	if strings.Join(o.Errors, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(o.Errors, "\n"), strings.Join(want, "\n"))
	}

	o, err = Boot(context.Background(), BootConfig{QEMU: fakeQEMU(t, "exit 0\n"), Accel: AccelTCG, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Errors) != 1 || !strings.Contains(o.Errors[0], "before /init reported done") {
		t.Errorf("errors %q", o.Errors)
	}
	o, err = Boot(context.Background(), BootConfig{QEMU: fakeQEMU(t, "echo bad option >&2; exit 1\n"), Accel: AccelTCG, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Errors) != 1 || !strings.Contains(o.Errors[0], "bad option") {
		t.Errorf("errors %q", o.Errors)
	}
	if _, err := Boot(context.Background(), BootConfig{QEMU: "/nonexistent/qemu"}); err == nil {
		t.Error("missing QEMU: no error")
	}
}

func TestQEMUArgs(t *testing.T) {
	args := strings.Join(qemuArgs(BootConfig{Kernel: "K", Initrd: "I", Accel: AccelKVM, Udev: true}), " ")
	for _, want := range []string{
		"-machine q35", "-accel kvm", "-cpu max", "-smp 2", "-m 2048", "-no-reboot",
		"-serial stdio -serial file:/dev/fd/3", "-chardev pipe,id=ctl,path=/dev/fd/4 -serial chardev:ctl", "-kernel K", "-initrd I",
		"console=ttyS0", "panic=-1", "rdinit=/init", "thinp.udev=1",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu args %q lack %q", args, want)
		}
	}
	if args := strings.Join(qemuArgs(BootConfig{Accel: AccelTCG, CPUs: 1, MemoryMiB: 512}), " "); !strings.Contains(args, "thinp.udev=0") ||
		!strings.Contains(args, "-smp 1 -m 512") {
		t.Errorf("qemu args %q", args)
	}
}

func TestCPUHasVirt(t *testing.T) {
	if cpuHasVirt("processor\t: 0\nflags\t\t: fpu vme sse4_2 hypervisor\n") {
		t.Error("no vmx/svm: true")
	}
	if !cpuHasVirt("flags\t\t: fpu vmx sse4_2\n") || !cpuHasVirt("flags : svm\n") {
		t.Error("vmx/svm: false")
	}
	if cpuHasVirt("vmx flags\t: ept vpid\n") { // "vmx flags" line is not "flags"
		t.Error("vmx flags line taken for flags")
	}
}

func TestSettingsFromEnv(t *testing.T) {
	env := map[string]string{"THINP_VM_TIMEOUT": "5m", "THINP_VM_ACCEL": "tcg", "THINP_VM_CPUS": "1"}
	s, err := SettingsFromEnv(func(k string) string { return env[k] })
	if err != nil || s.Timeout != 5*time.Minute || s.Accel != AccelTCG || s.CPUs != 1 || s.MemoryMiB != 2048 {
		t.Errorf("SettingsFromEnv = %+v, %v", s, err)
	}
	for k, v := range map[string]string{"THINP_VM_TIMEOUT": "soon", "THINP_VM_ACCEL": "hvf", "THINP_VM_MEMORY": "-1", "THINP_VM_SILENCE": "0s"} {
		if _, err := SettingsFromEnv(func(key string) string {
			if key == k {
				return v
			}
			return ""
		}); err == nil {
			t.Errorf("%s=%s: no error", k, v)
		}
	}
}

// TestRunnerBootsAgainAfterCrash: a guest that dies in job 0 is booted
// again from job 1, and the test that was running counts as failed.
func TestRunnerBootsAgainAfterCrash(t *testing.T) {
	script := `case "$*" in
*thinp.from=1*)
` + ev(proto.Event{E: proto.EvHello}) +
		ev(proto.Event{E: proto.EvStart, Job: "b", Index: 1}) +
		ev(proto.Event{E: proto.EvRun, Job: "b", Name: "TestB"}) +
		ev(proto.Event{E: proto.EvTest, Job: "b", Verdict: proto.Pass, Name: "TestB"}) +
		ev(proto.Event{E: proto.EvEnd, Job: "b"}) +
		ev(proto.Event{E: proto.EvDone}) + `;;
*)
` + ev(proto.Event{E: proto.EvHello}) +
		ev(proto.Event{E: proto.EvStart, Job: "a", Index: 0}) +
		ev(proto.Event{E: proto.EvRun, Job: "a", Name: "TestA"}) +
		"echo '[    1.0] Kernel panic - not syncing: Fatal exception'\n" + `;;
esac
`
	var boots int
	r := &Runner{
		Host:     &Host{QEMU: fakeQEMU(t, script), Kernel: &Kernel{Image: "K"}},
		Settings: Settings{Accel: AccelTCG, Timeout: 10 * time.Second, Silence: 5 * time.Second},
		OnEvent: func(boot string, e proto.Event) {
			if e.E == proto.EvHello {
				boots++
			}
		},
	}
	o, err := r.Boot(context.Background(), &Image{Path: "I", Jobs: 2}, false)
	if err != nil {
		t.Fatal(err)
	}
	if boots != 2 || o.Reboots != 1 || !o.Done || o.OK() {
		t.Errorf("boots %d, outcome %+v", boots, o)
	}
	if p, f, _ := o.Counts(); p != 1 || f != 1 {
		t.Errorf("counts %d passed %d failed, want 1 and 1", p, f)
	}
	if len(o.Tests) != 2 || o.Tests[0].Name != "TestA" || o.Tests[0].Verdict != proto.Fail {
		t.Errorf("tests %+v", o.Tests)
	}
	errs := strings.Join(o.Errors, "\n")
	if !strings.Contains(errs, "Kernel panic") || !strings.Contains(errs, "the guest ended while a ran TestA") {
		t.Errorf("errors:\n%s", errs)
	}
}

func TestCRLFWriter(t *testing.T) {
	var b strings.Builder
	w := &crlfWriter{w: &b}
	for _, chunk := range []string{"a\r\nb\r", "\nc\rd\r", "\r\n", "e\r"} {
		if n, err := w.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", chunk, n, err)
		}
	}
	if got, want := b.String(), "a\nb\nc\rd\r\ne"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestGuestEnv(t *testing.T) {
	in := []string{
		"PATH=/usr/bin", "HOME=/root", "GOGC=off", "GODEBUG=gctrace=1", "GOFLAGS=-mod=mod",
		"THINP_SCENARIO_SCALE=full", "THINP_UDEV_CYCLES=10", "THINP_VM=1", "THINP_VM_TIMEOUT=5m",
		"THINP_REQUIRE_VM=1", "THINP_REQUIRE_PRIVILEGED=1", "THINP_VMX=kept", "malformed",
	}
	want := []string{"GOGC=off", "GODEBUG=gctrace=1", "THINP_SCENARIO_SCALE=full", "THINP_UDEV_CYCLES=10", "THINP_VMX=kept"}
	if got := GuestEnv(in); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("GuestEnv = %q, want %q", got, want)
	}
}
