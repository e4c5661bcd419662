package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// recorder is a testing.TB that records skips, failures and cleanups
// instead of acting on them, so the helpers' decisions can be checked.
// Unlike a real T, its Skip and Fatal return.
type recorder struct {
	testing.TB
	name     string
	skipped  []string
	fatals   []string
	errors   []string
	cleanups []func()
}

func (r *recorder) Helper()                      {}
func (r *recorder) Name() string                 { return r.name }
func (r *recorder) Skipf(f string, a ...any)     { r.skipped = append(r.skipped, fmt.Sprintf(f, a...)) }
func (r *recorder) Skip(a ...any)                { r.skipped = append(r.skipped, fmt.Sprint(a...)) }
func (r *recorder) Fatalf(f string, a ...any)    { r.fatals = append(r.fatals, fmt.Sprintf(f, a...)) }
func (r *recorder) Fatal(a ...any)               { r.fatals = append(r.fatals, fmt.Sprint(a...)) }
func (r *recorder) Errorf(f string, a ...any)    { r.errors = append(r.errors, fmt.Sprintf(f, a...)) }
func (r *recorder) Cleanup(f func())             { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Logf(format string, a ...any) {}
func (r *recorder) runCleanups() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
}

func TestUnavailableSkipsOrFails(t *testing.T) {
	t.Setenv("THINP_REQUIRE_PRIVILEGED", "")
	r := &recorder{TB: t}
	unavailable(r, "needs a thing")
	if len(r.skipped) != 1 || len(r.fatals) != 0 || !strings.Contains(r.skipped[0], "needs a thing") {
		t.Errorf("without THINP_REQUIRE_PRIVILEGED: skipped %q, fatals %q", r.skipped, r.fatals)
	}
	t.Setenv("THINP_REQUIRE_PRIVILEGED", "1")
	r = &recorder{TB: t}
	unavailable(r, "needs a thing")
	if len(r.fatals) != 1 || len(r.skipped) != 0 || !strings.Contains(r.fatals[0], "THINP_REQUIRE_PRIVILEGED=1") {
		t.Errorf("with THINP_REQUIRE_PRIVILEGED=1: skipped %q, fatals %q", r.skipped, r.fatals)
	}
}

// TestPrivilegedOnThisMachine checks Privileged's verdict against what the
// machine has: on the host (no device-mapper) it skips, naming why.
func TestPrivilegedOnThisMachine(t *testing.T) {
	t.Setenv("THINP_REQUIRE_PRIVILEGED", "")
	r := &recorder{TB: t}
	Privileged(r)
	_, dmErr := os.Stat("/sys/class/misc/device-mapper")
	switch {
	case os.Geteuid() != 0:
		if len(r.skipped) != 1 || !strings.Contains(r.skipped[0], "root") {
			t.Errorf("not root: skipped %q", r.skipped)
		}
	case dmErr != nil:
		if len(r.skipped) != 1 || !strings.Contains(r.skipped[0], "device-mapper") {
			t.Errorf("no device-mapper: skipped %q", r.skipped)
		}
	default:
		if len(r.skipped)+len(r.fatals) != 0 {
			t.Errorf("root with device-mapper: skipped %q, fatals %q", r.skipped, r.fatals)
		}
	}
}

func TestInVMAndUdevRunning(t *testing.T) {
	t.Setenv("THINP_VM", "1")
	if !InVM() {
		t.Error("THINP_VM=1: InVM false")
	}
	t.Setenv("THINP_VM", "")
	if InVM() {
		t.Error("THINP_VM unset: InVM true")
	}
	t.Setenv("THINP_VM_UDEV", "1")
	if !UdevRunning() {
		t.Error("THINP_VM_UDEV=1: UdevRunning false")
	}
	t.Setenv("THINP_VM_UDEV", "0")
	if UdevRunning() {
		t.Error("THINP_VM_UDEV=0: UdevRunning true")
	}
	t.Setenv("THINP_VM_UDEV", "")
	_, err := os.Stat("/run/udev/control")
	if UdevRunning() != (err == nil) {
		t.Errorf("THINP_VM_UDEV unset: UdevRunning %v, /run/udev/control: %v", UdevRunning(), err)
	}
}

func TestPrefix(t *testing.T) {
	re := regexp.MustCompile(`^thinp-test-[0-9a-f]{14}-$`)
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		p := Prefix(t)
		if !re.MatchString(p) {
			t.Fatalf("Prefix = %q", p)
		}
		if seen[p] {
			t.Fatalf("Prefix repeated %q", p)
		}
		seen[p] = true
	}
}

func TestSparseFile(t *testing.T) {
	p := SparseFile(t, 1<<30)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 1<<30 {
		t.Errorf("size %d", fi.Size())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Blocks*512 > 1<<20 {
		t.Errorf("not sparse: %d blocks allocated", st.Blocks)
	}
	if !strings.HasPrefix(p, filepath.Join(tempRoot(), tempDirPattern(t.Name()))) {
		t.Errorf("%s is not under the test's temp dir pattern %s", p, tempDirPattern(t.Name()))
	}
}

func TestTempDirPattern(t *testing.T) {
	t.Run("sub/with*odd?chars and spaces", func(t *testing.T) {
		dir := t.TempDir()
		want := filepath.Join(tempRoot(), tempDirPattern(t.Name()))
		if !strings.HasPrefix(dir, want) {
			t.Errorf("TempDir %s does not start with %s", dir, want)
		}
	})
	long := strings.Repeat("é", 40) // 80 bytes: cut inside a rune
	if got := tempDirPattern(long); len(got) > 64 || strings.ContainsRune(got, '\uFFFD') {
		t.Errorf("tempDirPattern(long) = %q", got)
	}
}

func TestParseCookieSems(t *testing.T) {
	const sem = `       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime
 223156841          0   600          1     0     0     0     0          0 1700000000
 223156842          7   600          1     0     0     0     0          0 1700000000
        42          3   600          1     0     0     0     0          0 1700000000
  -1234567          4   600          1     0     0     0     0          0 1700000000
`
	// 223156841 = 0x0D4D1A69, 223156842 = 0x0D4D1A6A.
	got := parseCookieSems(strings.NewReader(sem))
	want := map[string]bool{"0x0d4d1a69/0": true, "0x0d4d1a6a/7": true}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k := range want {
		if !got[k] {
			t.Errorf("missing %s in %v", k, got)
		}
	}
}

func TestCheckLeaksFindsFDs(t *testing.T) {
	r := &recorder{TB: t, name: t.Name()}
	checkLeaks(r, "thinp-test-unit-", 0)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	r.runCleanups()
	if len(r.errors) != 1 || !strings.Contains(r.errors[0], "file descriptor") || !strings.Contains(r.errors[0], os.DevNull) {
		t.Errorf("leaked fd: errors %q", r.errors)
	}
	f.Close()

	r = &recorder{TB: t, name: t.Name()}
	checkLeaks(r, "thinp-test-unit-", 0)
	g, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	r.runCleanups()
	if len(r.errors) != 0 {
		t.Errorf("closed fd: errors %q", r.errors)
	}

	r = &recorder{TB: t, name: t.Name()}
	checkLeaks(r, "", 0)
	if len(r.fatals) != 1 {
		t.Errorf("empty prefix: fatals %q", r.fatals)
	}
}

func TestToolLookup(t *testing.T) {
	t.Setenv("THINP_REQUIRE_PRIVILEGED", "")
	dir := t.TempDir()
	fake := filepath.Join(dir, "thinp-fake-tool")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	if p := Tool(t, "thinp-fake-tool"); p != fake {
		t.Errorf("Tool(thinp-fake-tool) = %q, want %q", p, fake)
	}
	r := &recorder{TB: t}
	if p := Tool(r, "no-such-tool-thinp"); p != "" || len(r.skipped) != 1 {
		t.Errorf("missing tool: %q, skipped %q", p, r.skipped)
	}
}
