package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/loop"
	"github.com/thinp/thinp/thin"
)

// TestMain runs the program itself when asked to, so that a test can run
// it as a separate process and send it signals.
func TestMain(m *testing.M) {
	if os.Getenv("AUTOEXTEND_RUN_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

func TestThreshold(t *testing.T) {
	const bs = 64 << 10
	for _, tt := range []struct {
		in    string
		total uint64
		want  uint64
		err   bool
	}{
		{"20%", 1000, 200, false},
		{"25%", 10, 3, false}, // rounded up
		{"0%", 1000, 0, false},
		{"100%", 0, 0, true},
		{"1024", 5000, 1024, false},
		{"1024 blocks", 5000, 1024, false},
		{"64MiB", 5000, 1024, false},
		{"100k", 5000, 2, false},
		{"x", 0, 0, true},
		{"5furlongs", 0, 0, true},
	} {
		var th threshold
		err := th.Set(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("threshold %q: error %v, want error %t", tt.in, err, tt.err)
			continue
		}
		if err == nil && th.inBlocks(tt.total, bs) != tt.want {
			t.Errorf("threshold %q of %d blocks = %d, want %d", tt.in, tt.total, th.inBlocks(tt.total, bs), tt.want)
		}
	}
}

func TestUsage(t *testing.T) {
	for _, tt := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"-h"}, exitOK, "Usage: autoextend -pool NAME -data-file PATH", ""},
		{nil, exitUsage, "", "-pool is required"},
		{[]string{"-pool", "p"}, exitUsage, "", "-data-file is required"},
		{[]string{"-pool", "p", "-data-file", "f", "-step", "0"}, exitUsage, "", "-step: must be more than zero"},
		{[]string{"-pool", "p", "-data-file", "f", "-max", "0"}, exitUsage, "", "-max: must be more than zero"},
		{[]string{"-pool", "p", "-data-file", "f", "-threshold", "150%"}, exitUsage, "", "a percentage below 100"},
		{[]string{"-pool", "p", "-data-file", "f", "-retry", "0s"}, exitUsage, "", "-retry"},
		{[]string{"-pool", "p", "-data-file", "f", "extra"}, exitUsage, "", `unexpected argument "extra"`},
		{[]string{"-bogus"}, exitUsage, "", "flag provided but not defined: -bogus"},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), tt.args, &out, &errb)
		if code != tt.code || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errb.String(), tt.stderr) {
			t.Errorf("autoextend %q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				tt.args, code, out.String(), errb.String(), tt.code, tt.stdout, tt.stderr)
		}
	}
}

// env is a pool on two loop devices over sparse files, with a thin volume.
type env struct {
	ctl      *dm.Control
	pool     *thin.Pool
	vol      *thin.Volume
	dataFile string
}

// newEnv makes a pool of dataSize bytes in 64 KiB blocks with the given
// low water mark, queueing writes when full, and a 256 MiB thin volume;
// all removed at cleanup.
func newEnv(t *testing.T, prefix string, dataSize int64, lwm thin.DataBlocks) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	e := &env{dataFile: filepath.Join(dir, prefix+"data.img")}
	metaFile := filepath.Join(dir, prefix+"metadata.img")
	var devs []*loop.Device
	for _, f := range []struct {
		path string
		size int64
	}{{e.dataFile, dataSize}, {metaFile, 4 << 20}} {
		if err := loop.CreateSparseFile(f.path, f.size); err != nil {
			t.Fatal(err)
		}
		d, err := loop.Attach(ctx, f.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			d.Detach(context.Background())
			d.Close()
		})
		devs = append(devs, d)
	}
	ctl, err := dm.Open()
	if err != nil {
		t.Fatalf("%+v", err)
	}
	t.Cleanup(func() { ctl.Close() })
	e.ctl = ctl
	dev := func(d *loop.Device) dm.Dev { return d.Dev() }
	spec := thin.PoolSpec{Metadata: dev(devs[1]), Data: dev(devs[0]), BlockSize: 128, LowWaterMark: lwm}
	e.pool, err = thin.CreatePool(ctx, ctl, prefix+"pool", spec, thin.FormatMetadata(), thin.WithMetadataPath(devs[1].Path()))
	if err != nil {
		t.Fatalf("%+v", err)
	}
	t.Cleanup(func() {
		if err := e.pool.Teardown(context.Background()); err != nil && !errors.Is(err, dm.ErrNotFound) {
			t.Errorf("teardown: %+v", err)
		}
		testenv.ThinCheck(t, devs[1].Path())
	})
	if err := e.pool.CreateThin(ctx, 1); err != nil {
		t.Fatalf("%+v", err)
	}
	if e.vol, err = e.pool.Activate(ctx, prefix+"vol", 1, thin.Size(256<<20)); err != nil {
		t.Fatalf("%+v", err)
	}
	return e
}

// daemonRun is autoextend running in a goroutine.
type daemonRun struct {
	t        *testing.T
	log      *testenv.Buffer
	cancel   context.CancelFunc
	done     chan int
	code     int
	finished bool
}

// wait waits up to d for the daemon to exit by itself.
func (r *daemonRun) wait(d time.Duration) (code int, exited bool) {
	if r.finished {
		return r.code, true
	}
	select {
	case r.code = <-r.done:
		r.finished = true
		return r.code, true
	case <-time.After(d):
		return 0, false
	}
}

// stop cancels the daemon, as SIGTERM does, and returns its exit status.
func (r *daemonRun) stop() int {
	r.cancel()
	code, ok := r.wait(30 * time.Second)
	if !ok {
		r.t.Fatalf("autoextend did not stop within 30s of its cancellation; log:\n%s", r.log.String())
	}
	return code
}

// startDaemon runs autoextend with args in a goroutine, waits until it
// watches the pool, and stops it at cleanup.
func startDaemon(t *testing.T, log *testenv.Buffer, args ...string) *daemonRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &daemonRun{t: t, log: log, cancel: cancel, done: make(chan int, 1)}
	go func() { r.done <- run(ctx, args, log, log) }()
	t.Cleanup(func() { r.stop() })
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), "watching pool") {
		if code, exited := r.wait(20 * time.Millisecond); exited {
			t.Fatalf("autoextend exited %d before watching; log:\n%s", code, log.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("autoextend did not start watching within 30s; log:\n%s", log.String())
		}
	}
	return r
}

// pattern is what writeVolume writes in each MiB: a 32-byte line naming
// it, repeated.
func pattern(i int) []byte {
	line := fmt.Sprintf("autoextend test, MiB %10d\n", i)
	if len(line) != 32 {
		panic("pattern line is not 32 bytes")
	}
	return bytes.Repeat([]byte(line), (1<<20)/32)
}

// writeVolume writes n MiB to the volume with O_SYNC, so that each write
// reaches the pool before the next, and fails t on any error.
func writeVolume(t *testing.T, v *thin.Volume, fromMiB, n int) {
	t.Helper()
	f, err := os.OpenFile(v.DevPath(), os.O_RDWR|os.O_SYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t0 := time.Now()
	var slowest time.Duration
	for i := fromMiB; i < fromMiB+n; i++ {
		t1 := time.Now()
		if _, err := f.WriteAt(pattern(i), int64(i)<<20); err != nil {
			t.Fatalf("write of MiB %d failed after %s: %v", i, time.Since(t0), err)
		}
		slowest = max(slowest, time.Since(t1))
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d MiB in %.2fs, slowest MiB %.2fs", n, time.Since(t0).Seconds(), slowest.Seconds())
}

// checkVolume reads back what writeVolume wrote.
func checkVolume(t *testing.T, v *thin.Volume, n int) {
	t.Helper()
	f, err := os.Open(v.DevPath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := 0; i < n; i++ {
		if _, err := f.ReadAt(buf, int64(i)<<20); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, pattern(i)) {
			t.Fatalf("MiB %d does not hold what was written", i)
		}
	}
}

// TestIntegrationAutoextend: a 16 MiB pool with a low water mark of 4 MiB
// that queues writes when full, autoextend growing it by 16 MiB, and a
// writer writing 48 MiB: every write succeeds, and the pool ends rw and
// large enough, with one log line per extension.
func TestIntegrationAutoextend(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	const initial = 16 << 20
	e := newEnv(t, prefix, initial, 64)
	var log testenv.Buffer
	d := startDaemon(t, &log, "-pool", e.pool.Name(), "-data-file", e.dataFile, "-step", "16MiB", "-max", "256MiB", "-v")

	writeVolume(t, e.vol, 0, 48)

	// The last writes may have crossed the low water mark again: the
	// daemon's promise is that it soon has free space above the mark.
	ctx := context.Background()
	var st thin.PoolStatus
	var spec thin.PoolSpec
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var err error
		if st, err = e.pool.Status(ctx, thin.CommitMetadata()); err != nil {
			t.Fatalf("%+v", err)
		}
		if spec, err = e.pool.Spec(ctx); err != nil {
			t.Fatalf("%+v", err)
		}
		if st.FreeData() > spec.LowWaterMark || time.Now().After(deadline) {
			break
		}
	}
	if code := d.stop(); code != exitOK {
		t.Errorf("autoextend exited %d, want 0", code)
	}
	out := log.String()
	t.Logf("autoextend log:\n%s", out)
	t.Logf("pool status: %s, length %d sectors", st, spec.Length)

	if st.Mode != thin.ModeReadWrite {
		t.Errorf("pool mode %s, want rw", st.Mode)
	}
	total := uint64(st.TotalData) * 64 << 10
	if total < 48<<20+64*64<<10 || total <= initial {
		t.Errorf("pool data %d MiB, want more than 48 MiB plus the low water mark", total>>20)
	}
	if st.FreeData() <= spec.LowWaterMark {
		t.Errorf("pool left with %d free blocks, at or below its low water mark %d", st.FreeData(), spec.LowWaterMark)
	}
	if fi, err := os.Stat(e.dataFile); err != nil || uint64(fi.Size()) != total {
		t.Errorf("data file: %v, %v; want %d bytes", fi.Size(), err, total)
	}
	n := strings.Count(out, "extended pool "+e.pool.Name()+" data from ")
	if n < 2 || uint64(n) != (total-initial)/(16<<20) {
		t.Errorf("%d extensions logged, for %d MiB of growth in steps of 16 MiB", n, (total-initial)>>20)
	}
	if !strings.Contains(out, "extended pool "+e.pool.Name()+" data from 16MiB to 32MiB (+16MiB, 256 -> 512 blocks)") {
		t.Errorf("the log lacks the first extension's line")
	}
	if !strings.Contains(out, "stopping") {
		t.Errorf("the log does not say it stopped")
	}
	if strings.Contains(out, "error:") {
		t.Errorf("the log has errors")
	}
	checkVolume(t, e.vol, 48)
}

// TestIntegrationAutoextendThresholdMax: -threshold sets the pool's low
// water mark (and scales it with the pool), and -max stops the growth.
func TestIntegrationAutoextendThresholdMax(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	e := newEnv(t, prefix, 16<<20, 0)
	var log testenv.Buffer
	d := startDaemon(t, &log, "-pool", e.pool.Name(), "-data-file", e.dataFile, "-step", "8MiB", "-max", "24MiB", "-threshold", "50%")
	ctx := context.Background()
	spec, err := e.pool.Spec(ctx)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if spec.LowWaterMark != 128 {
		t.Errorf("low water mark %d, want 128 blocks (50%% of 256)", spec.LowWaterMark)
	}

	// 10 MiB: 96 blocks free of 256, below 128: one step to 24 MiB, the
	// maximum, with the mark at 192 of 384.
	writeVolume(t, e.vol, 0, 10)
	waitLog(t, &log, "extended pool "+e.pool.Name()+" data from 16MiB to 24MiB")
	// 4 MiB more: 160 free of 384, below 192, but at -max.
	writeVolume(t, e.vol, 10, 4)
	waitLog(t, &log, "is at -max 24MiB")
	if spec, err = e.pool.Spec(ctx); err != nil {
		t.Fatalf("%+v", err)
	}
	if spec.Length != thin.Size(24<<20) || spec.LowWaterMark != 192 {
		t.Errorf("pool length %d sectors, low water mark %d; want %d and 192", spec.Length, spec.LowWaterMark, thin.Size(24<<20))
	}
	if code := d.stop(); code != exitOK {
		t.Errorf("autoextend exited %d, want 0", code)
	}
	out := log.String()
	t.Logf("autoextend log:\n%s", out)
	if n := strings.Count(out, "extended pool"); n != 1 {
		t.Errorf("%d extensions, want 1", n)
	}
	if !strings.Contains(out, "set pool "+e.pool.Name()+"'s low water mark to 128 blocks (was 0)") {
		t.Errorf("the log does not say the low water mark was set")
	}
	checkVolume(t, e.vol, 14)
}

// waitLog waits up to 30 s for s in the log.
func waitLog(t *testing.T, log *testenv.Buffer, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the log lacks %q after 30s:\n%s", s, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIntegrationAutoextendErrors: a missing pool, and a data file that
// does not back the pool, are refused with exit status 1 and a reason.
func TestIntegrationAutoextendErrors(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	e := newEnv(t, prefix, 16<<20, 0)
	other := filepath.Join(t.TempDir(), prefix+"other.img")
	if err := loop.CreateSparseFile(other, 1<<20); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"-pool", prefix + "nosuch", "-data-file", e.dataFile}, "device not found"},
		{[]string{"-pool", e.vol.Name(), "-data-file", e.dataFile}, "not a thin-pool"},
		{[]string{"-pool", e.pool.Name(), "-data-file", other}, "no loop device is backed by " + other},
		{[]string{"-pool", e.pool.Name(), "-data-file", other + ".missing"}, "-data-file: stat " + other + ".missing: no such file"},
		{[]string{"-pool", e.pool.Name(), "-data-file", e.dataFile, "-threshold", "256"}, "not less than the pool's 256"},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), tt.args, &out, &errb)
		if code != exitFail || !strings.Contains(errb.String(), tt.stderr) {
			t.Errorf("autoextend %q: exit %d, stderr %q; want exit 1 and %q", tt.args, code, errb.String(), tt.stderr)
		}
	}

	// A pool that disappears while watched ends the daemon with status 1.
	var log testenv.Buffer
	d := startDaemon(t, &log, "-pool", e.pool.Name(), "-data-file", e.dataFile)
	if err := e.pool.Teardown(context.Background()); err != nil {
		t.Fatalf("%+v", err)
	}
	code, exited := d.wait(30 * time.Second)
	if !exited || code != exitFail || !strings.Contains(log.String(), "error: watching pool "+e.pool.Name()) {
		t.Errorf("with the pool removed: exited %t, status %d, log:\n%s\nwant exit 1 and the watch's error", exited, code, log.String())
	}
}

// TestIntegrationAutoextendSignals runs the daemon as a process and stops
// it with SIGTERM, then SIGINT: it exits 0 each time, saying so.
func TestIntegrationAutoextendSignals(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	e := newEnv(t, prefix, 16<<20, 64)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(os.Args[0], "-pool", e.pool.Name(), "-data-file", e.dataFile)
		cmd.Env = append(os.Environ(), "AUTOEXTEND_RUN_MAIN=1")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
		var out strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "watching pool") {
				if err := cmd.Process.Signal(sig); err != nil {
					t.Error(err)
				}
			}
		}
		err = cmd.Wait()
		timer.Stop()
		t.Logf("%v: log:\n%s", sig, out.String())
		if err != nil {
			t.Errorf("%v: exit: %v, want status 0", sig, err)
		}
		if !strings.Contains(out.String(), "stopping") {
			t.Errorf("%v: the log does not say it stopped", sig)
		}
	}
}

// runDemoTest runs autoextend -demo with args and a -name of prefix, and
// returns its exit status, stdout and log. cancelAt, when not empty,
// cancels it (as Ctrl-C does) once stdout has a line starting with it.
func runDemoTest(t *testing.T, prefix, cancelAt string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, logb testenv.Buffer
	if cancelAt != "" {
		out.OnWrite = func(all string) {
			if strings.Contains(all, "\n"+cancelAt) {
				cancel()
			}
		}
	}
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"-demo", "-name", prefix}, args...), &out, &logb) }()
	var code int
	select {
	case code = <-done:
	case <-time.After(5 * time.Minute):
		t.Fatalf("-demo did not end in 5 minutes; stdout:\n%s\nlog:\n%s", out.String(), logb.String())
	}
	t.Logf("exit %d; stdout:\n%s\nlog:\n%s", code, out.String(), logb.String())
	return code, out.String(), logb.String()
}

// checkDemoGone checks that the demo said it removed all it made, and
// that its directory is gone (CheckLeaks looks for devices at cleanup).
func checkDemoGone(t *testing.T, prefix, out string) {
	t.Helper()
	for _, s := range []string{"teardown: remove pool " + prefix + "pool and its volume", "teardown: detach /dev/loop",
		"teardown: remove file ", "teardown: remove directory "} {
		if !strings.Contains(out, s) {
			t.Errorf("stdout lacks %q", s)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if dir, ok := strings.CutPrefix(l, "teardown: remove directory "); ok {
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s: %v, want it gone", dir, err)
			}
		}
	}
	if strings.Contains(out, "FAILED") {
		t.Error("a teardown step failed")
	}
}

// TestIntegrationAutoextendDemo: -demo with the default policy grows its
// 16MiB pool at its low water mark in steps of 16MiB while 40MiB are
// written, logs each growth, and removes everything.
func TestIntegrationAutoextendDemo(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	code, out, logs := runDemoTest(t, prefix, "")
	if code != exitOK {
		t.Errorf("exit %d, want 0", code)
	}
	for _, s := range []string{
		"extended pool " + prefix + "pool data from 16MiB to 32MiB",
		"extended pool " + prefix + "pool data from 32MiB to 48MiB",
	} {
		if !strings.Contains(logs, s) {
			t.Errorf("log lacks %q", s)
		}
	}
	if !strings.Contains(out, "wrote 40 MiB: pool data 40MiB of 48MiB used") ||
		!strings.Contains(out, "pool "+prefix+"pool grew 2 times, from 16MiB to 48MiB") {
		t.Errorf("stdout lacks the final usage and growth")
	}
	if strings.Contains(logs, "error:") {
		t.Error("the log has errors")
	}
	checkDemoGone(t, prefix, out)
}

// TestIntegrationAutoextendDemoDmeventd: -demo -policy dmeventd with room
// for 48MiB: it grows from 50% used, once per 5% step, and at -max warns
// at 80% used.
func TestIntegrationAutoextendDemoDmeventd(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	code, out, logs := runDemoTest(t, prefix, "", "-policy", "dmeventd", "-max", "48MiB", "-interval", "200ms")
	if code != exitOK {
		t.Errorf("exit %d, want 0", code)
	}
	for _, s := range []string{
		"policy dmeventd: grow from 50% used, again every 5% more, warn from 80%",
		"set pool " + prefix + "pool's low water mark to 128 blocks (was 64)",
		"extended pool " + prefix + "pool data from 16MiB to 32MiB",
		"extended pool " + prefix + "pool data from 32MiB to 48MiB",
		"is at -max 48MiB",
		"warning: pool " + prefix + "pool data is now 8",
		"restored pool " + prefix + "pool's low water mark to 64 blocks",
	} {
		if !strings.Contains(logs, s) {
			t.Errorf("log lacks %q", s)
		}
	}
	// Each growth happened at 50% used or more, none before.
	for _, l := range strings.Split(logs, "\n") {
		if _, rest, ok := strings.Cut(l, "blocks were free ("); ok {
			var pct float64
			if _, err := fmt.Sscanf(rest, "%f%% used", &pct); err != nil || pct < 50 {
				t.Errorf("growth at %v%% used (%v): %s", pct, err, l)
			}
		}
	}
	if strings.Contains(logs, "error:") {
		t.Error("the log has errors")
	}
	checkDemoGone(t, prefix, out)
}

// TestIntegrationAutoextendDemoInterrupt: Ctrl-C (a cancelled context, as
// main makes of SIGINT) in the middle of -demo's writes: it tears down and
// exits 130.
func TestIntegrationAutoextendDemoInterrupt(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	code, out, logs := runDemoTest(t, prefix, "wrote 8 MiB")
	if code != exitInterrupted {
		t.Errorf("exit %d, want %d", code, exitInterrupted)
	}
	if !strings.Contains(logs, "autoextend: interrupted; tearing down") {
		t.Error("the log does not say it was interrupted")
	}
	if strings.Contains(out, "wrote 40 MiB") {
		t.Error("the writes went on after the interrupt")
	}
	checkDemoGone(t, prefix, out)
}
