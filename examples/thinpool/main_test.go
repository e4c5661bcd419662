package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/loop"
)

// TestMain runs the program itself when asked to, so that a test can run
// it as a separate process and send it signals.
func TestMain(m *testing.M) {
	if os.Getenv("THINPOOL_RUN_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

func TestUsage(t *testing.T) {
	for _, tt := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"-h"}, exitOK, "Usage: thinpool", ""},
		{[]string{"-help"}, exitOK, "-volume-size", ""},
		{[]string{"-bogus"}, exitUsage, "", "flag provided but not defined: -bogus"},
		{[]string{"extra"}, exitUsage, "", `unexpected argument "extra"`},
		{[]string{"-block-size", "96KiB"}, exitUsage, "", "-block-size: 96KiB is not a multiple of 64KiB"},
		{[]string{"-block-size", "2GiB"}, exitUsage, "", "-block-size"},
		{[]string{"-meta-size", "1MiB"}, exitUsage, "", "less than the 2MiB minimum"},
		{[]string{"-data-size", "128KiB"}, exitUsage, "", "-data-size: 128KiB is less than 4 pool blocks"},
		{[]string{"-data-size", "16MiB"}, exitUsage, "", "cannot hold the demo's writes"},
		{[]string{"-volume-size", "1000"}, exitUsage, "", "-volume-size: 1000B is less than 1MiB"},
		{[]string{"-data-size", "lots"}, exitUsage, "", `invalid value "lots" for flag -data-size`},
		{[]string{"-name", ""}, exitUsage, "", "-name: empty"},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), tt.args, &out, &errb)
		if code != tt.code || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errb.String(), tt.stderr) {
			t.Errorf("thinpool %q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				tt.args, code, out.String(), errb.String(), tt.code, tt.stdout, tt.stderr)
		}
	}
}

func TestFill(t *testing.T) {
	a := make([]byte, 4096)
	fill(a, 'A', 8192)
	if !bytes.HasPrefix(a, []byte("thinp demo: write A, sector 16\n")) || !bytes.HasPrefix(a[512:], []byte("thinp demo: write A, sector 17\n")) {
		t.Errorf("fill: %q...", a[:64])
	}
	// A buffer that starts mid-sector matches the same bytes of the
	// aligned one.
	b := make([]byte, 1000)
	fill(b, 'A', 8192+100)
	if !bytes.Equal(b, a[100:1100]) {
		t.Errorf("fill at an unaligned offset differs")
	}
}

// parseReport reads the report's " Key: value" lines and its volume lines.
func parseReport(t *testing.T, out string) (fields map[string]string, volumes map[string]string) {
	t.Helper()
	fields, volumes = map[string]string{}, map[string]string{}
	in := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "Storage Driver: devicemapper (thinp)":
			in = true
		case !in:
		case line == "":
			in = false
		case strings.HasPrefix(line, "  "):
			k, v, _ := strings.Cut(strings.TrimSpace(line), ": ")
			volumes[k] = v
		case strings.HasPrefix(line, " "):
			k, v, _ := strings.Cut(strings.TrimSpace(line), ": ")
			fields[k] = v
		}
	}
	if len(fields) == 0 {
		t.Fatalf("no report in the output:\n%s", out)
	}
	return fields, volumes
}

// parseHuman reads humanSize's format back, to within its 4 digits.
func parseHuman(t *testing.T, s string) float64 {
	t.Helper()
	num, unit, ok := strings.Cut(s, " ")
	mult := map[string]float64{"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]
	v, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || mult == 0 {
		t.Fatalf("%q is not a size as humanSize prints it", s)
	}
	return v * mult
}

// checkNothingLeft checks, beyond CheckLeaks (which runs at cleanup), that
// no dm device and no loop device of the run remain right after it.
func checkNothingLeft(t *testing.T, prefix string) {
	t.Helper()
	ctl, err := dm.Open()
	if err != nil {
		t.Fatalf("%+v", err)
	}
	defer ctl.Close()
	devs, err := ctl.List(context.Background(), dm.WithNamePrefix(prefix))
	if err != nil {
		t.Fatalf("%+v", err)
	}
	for _, d := range devs {
		t.Errorf("left behind: dm device %s", d.Name)
	}
	sts, err := loop.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sts {
		if strings.Contains(s.BackingFile, prefix) {
			t.Errorf("left behind: %s over %s", s.Path, s.BackingFile)
		}
	}
}

// emptyDir fails t unless dir exists and is empty.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left behind: %s/%s", dir, e.Name())
	}
}

// TestIntegrationDemo runs the demo as a user would, with the default
// temporary directory, and checks its report and that nothing is left.
func TestIntegrationDemo(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // the demo's directory goes here

	var out, errb testenv.Buffer
	code := run(context.Background(), []string{"-name", prefix, "-v"}, &out, &errb)
	t.Logf("stdout:\n%s", out.String())
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	if errb.String() != "" {
		t.Errorf("stderr not empty:\n%s", errb.String())
	}
	f, vols := parseReport(t, out.String())
	want := map[string]string{
		"Pool Name":                     prefix + "pool",
		"Pool Blocksize":                "65.54 kB",
		"Pool Mode":                     "rw",
		"Transaction Id":                "2",
		"No Space Policy":               "error_if_no_space",
		"Data Space Total":              "1.074 GB",
		"Metadata Space Total":          "33.55 MB",
		"Deferred Removal Enabled":      "false (supported by the kernel: true)",
		"Thin Pool Target Version":      thinPoolVersion(t),
		"Base Device Size":              "268.4 MB",
		"Thin Pool Minimum Free Space":  "107.4 MB (10%)",
		"Deferred Deletion Enabled":     "false",
		"Deferred Deleted Device Count": "0",
	}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("%s: %q, want %q", k, f[k], v)
		}
	}
	udev := strings.HasPrefix(f["Udev Sync Supported"], "true")
	if udev != testenv.UdevRunning() || (!udev && !strings.HasPrefix(f["Udev Sync Supported"], "false (")) {
		t.Errorf("Udev Sync Supported: %q, but udevd running: %t", f["Udev Sync Supported"], testenv.UdevRunning())
	}
	for _, k := range []string{"Data", "Metadata"} {
		used, total, avail := parseHuman(t, f[k+" Space Used"]), parseHuman(t, f[k+" Space Total"]), parseHuman(t, f[k+" Space Available"])
		if used <= 0 || used > total || avail > total-used*0.999 {
			t.Errorf("%s space: used %g, total %g, available %g", k, used, total, avail)
		}
	}
	// The writes: 16 MiB, then 16 MiB at 8 MiB, half of it over the first.
	if used := parseHuman(t, f["Data Space Used"]); used < 0.999*(32<<20) || used > 33<<20 {
		t.Errorf("Data Space Used: %s, want 32 MiB", f["Data Space Used"])
	}
	for _, k := range []string{"Data loop file", "Metadata loop file"} {
		if !strings.HasPrefix(f[k], tmp+"/"+prefix) {
			t.Errorf("%s: %q, want a file in %s/%s*", k, f[k], tmp, prefix)
		}
	}
	for _, k := range []string{"Data file", "Metadata file"} {
		if !strings.HasPrefix(f[k], "/dev/loop") {
			t.Errorf("%s: %q, want /dev/loopN", k, f[k])
		}
	}
	if !strings.HasPrefix(f["Driver Version"], "4.") {
		t.Errorf("Driver Version: %q", f["Driver Version"])
	}
	wantVols := map[string]string{
		prefix + "vol":  "thin id 1, thin volume, size 268.4 MB, mapped 25.17 MB (catalog key vol)",
		prefix + "snap": "thin id 2, snapshot of thin id 1, size 268.4 MB, mapped 16.78 MB (catalog key snap)",
	}
	for k, v := range wantVols {
		if vols[k] != v {
			t.Errorf("volume %s: %q, want %q", k, vols[k], v)
		}
	}
	for _, s := range []string{"checked: where the writes overlap", "teardown: delete volume snap (thin id 2)", "teardown: delete volume vol (thin id 1)",
		"teardown: remove catalog " + tmp + "/", "teardown: remove device " + prefix + "pool", "teardown: remove directory " + tmp} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("stdout lacks %q", s)
		}
	}
	checkNothingLeft(t, prefix)
	emptyDir(t, tmp)
}

// TestIntegrationDemoCancel cancels the demo at several points, as Ctrl-C
// does, and checks that it tears down what it made and exits 130.
func TestIntegrationDemoCancel(t *testing.T) {
	testenv.Privileged(t)
	for _, tt := range []struct {
		name, after string // cancel once stdout has this
		made        string // a teardown line expected
	}{
		{"after files", "created sparse file", "teardown: remove file"},
		{"after loops", "attached /dev/loop", "teardown: detach /dev/loop"},
		{"after pool", "created thin pool", "teardown: remove device %spool"},
		{"after catalog", "opened the volume catalog", "teardown: remove catalog"},
		{"after volume", "activated thin id 1", "teardown: delete volume vol (thin id 1)"},
		{"after snapshot", "activated thin id 2", "teardown: delete volume snap (thin id 2)"},
		{"after create_snap", "create_snap 2 1", "teardown: delete volume snap (thin id 2)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prefix := testenv.Prefix(t)
			testenv.CheckLeaks(t, prefix)
			dir := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var errb testenv.Buffer
			out := &testenv.Buffer{OnWrite: func(all string) {
				if strings.Contains(all, tt.after) {
					cancel()
				}
			}}
			code := run(ctx, []string{"-name", prefix, "-dir", dir}, out, &errb)
			t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
			if code != exitInterrupted {
				t.Errorf("exit %d, want %d", code, exitInterrupted)
			}
			if !strings.Contains(errb.String(), "interrupted; tearing down") {
				t.Errorf("stderr lacks the interruption")
			}
			made := tt.made
			if strings.Contains(made, "%s") {
				made = strings.ReplaceAll(made, "%s", prefix)
			}
			if !strings.Contains(out.String(), made) {
				t.Errorf("stdout lacks %q", made)
			}
			if strings.Contains(out.String(), "FAILED") {
				t.Errorf("a teardown step failed")
			}
			checkNothingLeft(t, prefix)
			emptyDir(t, dir)
		})
	}
}

// TestIntegrationDemoKeep runs the demo with -keep, checks that the
// devices stay and the printed commands name them, then removes them as
// the user would, and checks that autoclear detaches the loop devices.
func TestIntegrationDemoKeep(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	dir := t.TempDir()
	var out, errb testenv.Buffer
	code := run(context.Background(), []string{"-name", prefix, "-dir", dir, "-keep", "-data-size", "64MiB", "-volume-size", "8MiB"}, &out, &errb)
	t.Logf("stdout:\n%s", out.String())
	ctl, err := dm.Open()
	if err != nil {
		t.Fatalf("%+v", err)
	}
	defer ctl.Close()
	names := []string{prefix + "snap", prefix + "vol", prefix + "pool"}
	t.Cleanup(func() { // in any case
		for _, n := range names {
			ctl.Remove(context.Background(), dm.Name(n))
		}
	})
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	for _, n := range names {
		if _, err := ctl.Info(context.Background(), dm.Name(n)); err != nil {
			t.Errorf("-keep: %s: %v", n, err)
		}
		if !strings.Contains(out.String(), "dmsetup remove "+n+"\n") {
			t.Errorf("stdout does not say how to remove %s", n)
		}
	}
	if strings.Contains(out.String(), "teardown:") {
		t.Errorf("-keep tore down")
	}
	if !strings.Contains(out.String(), "rm "+dir+"/"+prefix+"data.img "+dir+"/"+prefix+"metadata.img") ||
		!strings.Contains(out.String(), "rm -r "+dir+"/"+prefix+"catalog") {
		t.Errorf("stdout does not say how to remove the files")
	}
	for _, n := range names {
		if err := ctl.Remove(context.Background(), dm.Name(n)); err != nil {
			t.Errorf("%+v", err)
		}
	}
	// Autoclear: with the pool gone, the loop devices detach themselves
	// (CheckLeaks waits a few seconds for them).
}

// TestIntegrationDemoNameTaken checks that the demo stops, removes what it
// made and leaves alone a device that has one of its names.
func TestIntegrationDemoNameTaken(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	ctl, err := dm.Open()
	if err != nil {
		t.Fatalf("%+v", err)
	}
	defer ctl.Close()
	ctx := context.Background()
	if _, err := ctl.Create(ctx, prefix+"vol", dm.Table{{Start: 0, Length: 8, Type: "zero"}}); err != nil {
		t.Fatalf("%+v", err)
	}
	defer ctl.Remove(ctx, dm.Name(prefix+"vol"))
	var out, errb testenv.Buffer
	code := run(ctx, []string{"-name", prefix, "-dir", t.TempDir()}, &out, &errb)
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	if code != exitFail {
		t.Errorf("exit %d, want %d", code, exitFail)
	}
	if !strings.Contains(errb.String(), "a device named "+prefix+"vol exists already") {
		t.Errorf("stderr does not say why")
	}
	if _, err := ctl.Info(ctx, dm.Name(prefix+"vol")); err != nil {
		t.Errorf("the demo removed a device it did not make: %v", err)
	}
	if !strings.Contains(out.String(), "teardown: remove device "+prefix+"pool") {
		t.Errorf("the pool was not torn down")
	}
	if err := ctl.Remove(ctx, dm.Name(prefix+"vol")); err != nil && !errors.Is(err, dm.ErrNotFound) {
		t.Errorf("%+v", err)
	}
	checkNothingLeft(t, prefix)
}

// TestIntegrationDemoSIGINT runs the demo as a process and interrupts it
// with SIGINT, as Ctrl-C does: it tears down and exits 130.
func TestIntegrationDemoSIGINT(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-name", prefix, "-dir", dir)
	cmd.Env = append(os.Environ(), "THINPOOL_RUN_MAIN=1")
	var errb testenv.Buffer
	cmd.Stderr = &errb
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "activated thin id 1") {
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Error(err)
			}
		}
	}
	err = cmd.Wait()
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
		t.Errorf("exit: %v, want status %d", err, exitInterrupted)
	}
	for _, s := range []string{"teardown: delete volume vol (thin id 1)", "teardown: remove device " + prefix + "pool", "teardown: detach /dev/loop"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("stdout lacks %q", s)
		}
	}
	checkNothingLeft(t, prefix)
	emptyDir(t, dir)
}

// TestIntegrationDemoDeferred runs the demo with -deferred-remove: the
// report says so, and the volumes' deferred removals complete.
func TestIntegrationDemoDeferred(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	dir := t.TempDir()
	var out, errb testenv.Buffer
	code := run(context.Background(), []string{"-name", prefix, "-dir", dir, "-deferred-remove", "-data-size", "64MiB", "-volume-size", "8MiB", "-block-size", "128KiB"}, &out, &errb)
	t.Logf("stdout:\n%s", out.String())
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	f, vols := parseReport(t, out.String())
	if f["Deferred Removal Enabled"] != "true (supported by the kernel: true)" || f["Pool Blocksize"] != "131.1 kB" {
		t.Errorf("Deferred Removal Enabled: %q, Pool Blocksize: %q", f["Deferred Removal Enabled"], f["Pool Blocksize"])
	}
	if f["Deferred Deletion Enabled"] != "true" || f["Deferred Deleted Device Count"] != "0" {
		t.Errorf("Deferred Deletion Enabled: %q, Deferred Deleted Device Count: %q", f["Deferred Deletion Enabled"], f["Deferred Deleted Device Count"])
	}
	if vols[prefix+"vol"] != "thin id 1, thin volume, size 8.389 MB, mapped 6.291 MB (catalog key vol)" {
		t.Errorf("volume: %q", vols[prefix+"vol"])
	}
	checkNothingLeft(t, prefix)
	emptyDir(t, dir)
}

// thinPoolVersion is the running kernel's thin-pool target version, which
// the report must show (1.22.0 on 5.10 and 6.1, 1.23.0 on 6.12, ...), read
// from DM_LIST_VERSIONS while the demo asks DM_GET_TARGET_VERSION.
func thinPoolVersion(t *testing.T) string {
	t.Helper()
	ctl, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	ts, err := ctl.Targets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range ts {
		if tt.Name == "thin-pool" {
			return tt.Version.String()
		}
	}
	t.Fatalf("no thin-pool target loaded: %v", ts)
	return ""
}

// TestNameChecked: a -name that cannot prefix a device-mapper name is a
// usage error, before anything is made.
func TestNameChecked(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"-name", "a/b"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "-name") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

// TestModuleVersion: the report's library version is what the build
// information says, not a fixed "(devel)".
func TestModuleVersion(t *testing.T) {
	rev := []debug.BuildSetting{{Key: "vcs.revision", Value: "458e942abcdef0123456789"}, {Key: "vcs.time", Value: "2026-12-05T16:00:00Z"}, {Key: "vcs.modified", Value: "true"}}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"go install @tag", &debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "v1.2.0"}}, "v1.2.0"},
		{"checkout between tags", &debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "v1.2.1-0.20261205160000-458e942abcde+dirty"}, Settings: rev},
			"v1.2.1-0.20261205160000-458e942abcde+dirty"},
		{"no version, a commit", &debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "(devel)"}, Settings: rev},
			"(devel) commit 458e942abcde of 2026-12-05T16:00:00Z, modified"},
		{"no version, no commit", &debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "(devel)"}}, "(devel)"},
		{"a dependency", &debug.BuildInfo{Main: debug.Module{Path: "example.com/app", Version: "(devel)"}, Settings: rev,
			Deps: []*debug.Module{{Path: "golang.org/x/sys", Version: "v0.30.0"}, {Path: modulePath, Version: "v1.3.0"}}}, "v1.3.0"},
		{"a replaced dependency", &debug.BuildInfo{Main: debug.Module{Path: "example.com/app"},
			Deps: []*debug.Module{{Path: modulePath, Version: "v1.3.0", Replace: &debug.Module{Path: "../thinp"}}}}, "v1.3.0 => ../thinp"},
		{"not in the build", &debug.BuildInfo{Main: debug.Module{Path: "example.com/app"}}, "(unknown: github.com/thinp/thinp is not in the build information)"},
		{"no build info", nil, "(unknown: the binary has no build information)"},
	} {
		if got := moduleVersion(tc.bi); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if v := libraryVersion(); !strings.HasPrefix(v, modulePath+" ") || strings.Contains(v, "unknown") {
		t.Errorf("this test binary's library version: %q", v)
	}
}

// TestOpenAdvice: without root the demo says plainly that it needs root;
// as root, that the kernel lacks device-mapper.
func TestOpenAdvice(t *testing.T) {
	if a := openAdvice(1000); !strings.HasPrefix(a, "thinpool: this demo needs root") || !strings.Contains(a, "sudo") {
		t.Errorf("not root: %q", a)
	}
	if a := openAdvice(0); strings.Contains(a, "root") || !strings.Contains(a, "no usable device-mapper") {
		t.Errorf("root: %q", a)
	}
}
