// Package crashtest is the harness of the crash tests of thin/catalog and of
// what is built on it (examples/snapshotter): a child process (the test
// binary, re-executed) works on a catalog and logs each operation as
// "begin SEQ TYPE A B" before and "end SEQ ok" or "end SEQ err ..." after
// (from several goroutines at once, too); the test SIGKILLs it at a random
// instant, reopens the catalog, and checks that each interrupted operation
// left the state before or after it and
// that catalog, pool metadata (through catalog.Check and thin_ls) and the
// kernel's devices agree.
//
// A test binary that uses it calls Child from TestMain, which runs the
// child's workload when the binary was started as one.
package crashtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/thin"
	"github.com/thinp/thinp/thin/catalog"
	"github.com/thinp/thinp/thin/thintest"
	"github.com/thinp/thinp/udev"
)

// Environment of the child.
const (
	envDir  = "THINP_CRASH_DIR"
	envPool = "THINP_CRASH_POOL"
	envSeed = "THINP_CRASH_SEED"
	envLog  = "THINP_CRASH_LOG"
)

// ChildEnv is what a child is given: the catalog's directory, the pool's
// name, its seed, and its log, on which Ready and the operations are
// written.
type ChildEnv struct {
	Dir, Pool string
	Seed      uint64
	Log       io.Writer
}

// Say writes one line to the child's log, in one write: goroutines of
// the child may Say at once.
func (e *ChildEnv) Say(format string, args ...any) { fmt.Fprintf(e.Log, format+"\n", args...) }

// Op runs one operation between its begin and end lines.
func (e *ChildEnv) Op(seq int, typ, a, b string, fn func() error) {
	e.Say("begin %d %s %s %s", seq, typ, a, b)
	if err := fn(); err != nil {
		e.Say("end %d err %s", seq, strings.ReplaceAll(err.Error(), "\n", " "))
	} else {
		e.Say("end %d ok", seq)
	}
}

// Child runs work and exits if the process was started as a crash test's
// child; otherwise it returns. work says "ready" (Say("ready")) once it is
// set up, or "fatal ..." and returns when it cannot start; it then loops
// until killed.
func Child(work func(e *ChildEnv) int) {
	dir := os.Getenv(envDir)
	if dir == "" {
		return
	}
	seed, _ := strconv.ParseUint(os.Getenv(envSeed), 10, 64)
	logf, err := os.OpenFile(os.Getenv(envLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(work(&ChildEnv{Dir: dir, Pool: os.Getenv(envPool), Seed: seed, Log: logf}))
}

// Kills is how many times a crash test kills its child: THINP_CRASH_KILLS,
// or def.
func Kills(def int) int {
	if n, err := strconv.Atoi(os.Getenv("THINP_CRASH_KILLS")); err == nil && n > 0 {
		return n
	}
	return def
}

// Rig is a pool, a catalog directory and the child's log.
type Rig struct {
	T    *testing.T
	Ctx  context.Context
	Ctl  *dm.Control
	Pool *thintest.Pool
	// Dir is the catalog's directory.
	Dir string
	// Stats counts what the rig noticed, for the test's log.
	Stats map[string]int
	// Kills is how many children were killed so far.
	Kills int

	logPath string
	cookies map[uint32]bool
}

// NewRig returns a rig on the pool tp with a new catalog directory.
func NewRig(t *testing.T, ctl *dm.Control, tp *thintest.Pool) *Rig {
	r := &Rig{T: t, Ctx: context.Background(), Ctl: ctl, Pool: tp, Dir: t.TempDir(), Stats: map[string]int{}, cookies: map[uint32]bool{}}
	r.logPath = filepath.Join(t.TempDir(), "child.log")
	if cs, err := udev.ListCookies(); err == nil {
		for _, c := range cs {
			r.cookies[c.Cookie] = true
		}
	}
	return r
}

// RunChild starts the child, lets it work for a random time up to maxRun
// after it is ready, calls atKill (if not nil) and kills it; it returns the
// child's log lines of this run, after "ready".
func (r *Rig) RunChild(seed int, maxRun time.Duration, atKill func()) []string {
	t := r.T
	os.Remove(r.logPath)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envDir+"="+r.Dir, envPool+"="+r.Pool.Name(),
		envSeed+"="+strconv.Itoa(seed), envLog+"="+r.logPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		b, _ := os.ReadFile(r.logPath)
		if strings.HasPrefix(string(b), "ready\n") {
			break
		}
		if strings.HasPrefix(string(b), "fatal") || time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child did not start: %q", b)
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(time.Duration(rand.Int64N(int64(maxRun))))
	if atKill != nil {
		atKill()
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	r.Kills++
	// A child killed while waiting for udev leaves its cookie behind:
	// remove it, as `dmsetup udevcomplete_all` would. Nothing else here
	// waits on a cookie now.
	if testenv.UdevRunning() {
		udev.Settle(r.Ctx)
		if cs, err := udev.ListCookies(); err == nil {
			stale := 0
			for _, c := range cs {
				if !r.cookies[c.Cookie] {
					stale++
				}
			}
			if stale > 0 {
				n, err := udev.CompleteAll(0)
				if err != nil {
					t.Fatalf("remove stale cookies: %v", err)
				}
				r.Stats["stale udev cookies removed"] += n
			}
		}
	}
	f, err := os.Open(r.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines[1:]
}

// Model is what the catalog should hold: a state for each key.
type Model map[string]string

// Clone returns a copy of m.
func (m Model) Clone() Model {
	c := Model{}
	for k, v := range m {
		c[k] = v
	}
	return c
}

// String lists m sorted by key.
func (m Model) String() string {
	var ks []string
	for k, v := range m {
		ks = append(ks, k+":"+v)
	}
	sort.Strings(ks)
	return strings.Join(ks, " ")
}

// Equal tells whether m and o hold the same keys in the same states.
func (m Model) Equal(o Model) bool {
	if len(m) != len(o) {
		return false
	}
	for k, v := range m {
		if w, ok := o[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Apply returns the model after an operation (type, a, b) that took effect.
type Apply func(m Model, typ, a, b string) Model

// Interrupted replays the child's log lines on m and returns the model
// after its completed operations and the operations left open (each type,
// a, b, in the order they began): none when it was killed between
// operations, several when it ran some at once (from several goroutines,
// each its own SEQ). An operation that ended in an error stays open until
// the next operation begins: if the kill came first, the reopen may settle
// it either way, which the caller checks as for an interrupted one; once
// another operation has begun, it must have changed nothing (the model
// leaves it out).
func (r *Rig) Interrupted(m Model, lines []string, apply Apply) (Model, [][]string) {
	open := map[string][]string{}
	failed := map[string]bool{}
	var order []string
	for _, l := range lines {
		f := strings.Fields(l)
		switch f[0] {
		case "begin":
			for seq := range failed {
				delete(open, seq)
				delete(failed, seq)
			}
			open[f[1]] = append(f[2:], "", "")[:3]
			order = append(order, f[1])
		case "end":
			op := open[f[1]]
			if op == nil {
				r.T.Fatalf("child log: %q ends an operation that did not begin", l)
			}
			if f[2] == "ok" {
				m = apply(m, op[0], op[1], op[2])
				delete(open, f[1])
			} else {
				failed[f[1]] = true
				r.T.Logf("child: %s (%v)", l, op)
			}
		}
	}
	var ops [][]string
	for _, seq := range order {
		if op := open[seq]; op != nil {
			ops = append(ops, op)
			delete(open, seq)
		}
	}
	return m, ops
}

// Settled checks that got, the state after a reopen, is before with each
// open operation either applied or not, and returns which, as "TYPE:
// before" or "TYPE: after" ("between operations" when none was open, and
// "N at once: A after, B before" when several were), for the test's tally.
// Operations open at once commute (the child runs only such together), so
// they are applied in the order they began.
func (r *Rig) Settled(got, before Model, open [][]string, apply Apply) string {
	r.T.Helper()
	if len(open) == 0 {
		if !got.Equal(before) {
			r.T.Fatalf("kill %d, between operations: catalog %v, want %v", r.Kills, got, before)
		}
		return "between operations"
	}
	for set := 0; set < 1<<len(open); set++ {
		m := before.Clone()
		after := 0
		for i, op := range open {
			if set&(1<<i) != 0 {
				m = apply(m, op[0], op[1], op[2])
				after++
			}
		}
		if !got.Equal(m) {
			continue
		}
		if len(open) == 1 {
			return open[0][0] + map[bool]string{true: ": after", false: ": before"}[after == 1]
		}
		return fmt.Sprintf("%d at once: %d after, %d before", len(open), after, len(open)-after)
	}
	r.T.Fatalf("kill %d during %v: catalog %v is not before (%v) with each of them applied or not", r.Kills, open, got, before)
	return ""
}

// Log writes the tally and the rig's stats to the test's log, as
// "crash:" lines.
func (r *Rig) Log(tally map[string]int) {
	for _, m := range []map[string]int{tally, r.Stats} {
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			r.T.Logf("crash: %s: %d", k, m[k])
		}
	}
	r.T.Logf("crash: %d kills, 0 drift", r.Kills)
}

// Verify checks the reopened catalog against the pool's metadata (through
// the catalog's Check and through thin_ls) and the kernel's devices: no
// device of the pool is left suspended.
func (r *Rig) Verify(c *catalog.Catalog) {
	t := r.T
	t.Helper()
	rep, err := c.Check(r.Ctx)
	if err != nil {
		t.Fatalf("check: %+v", err)
	}
	if !rep.Clean() {
		t.Fatalf("after kill %d: catalog and pool disagree: %+v", r.Kills, rep)
	}
	ids := map[thin.DeviceID]bool{}
	for _, v := range c.List() {
		ids[v.ID] = true
	}
	for _, d := range c.Deferred() {
		ids[d.ID] = true
	}
	ls := r.ThinLs()
	if len(ls) != len(ids) {
		t.Fatalf("after kill %d: thin_ls lists %d devices, the catalog %d", r.Kills, len(ls), len(ids))
	}
	for id := range ls {
		if !ids[id] {
			t.Fatalf("after kill %d: thin_ls lists id %d, the catalog does not", r.Kills, id)
		}
	}
	devs, err := r.Ctl.List(r.Ctx, dm.WithNamePrefix(r.Pool.Name()))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		info, err := r.Ctl.Info(r.Ctx, dm.Name(d.Name))
		if err == nil && info.Suspended {
			t.Fatalf("after kill %d: %s is suspended", r.Kills, d.Name)
		}
	}
}

// ThinLs lists the live pool's thin ids with thin_ls on a metadata
// snapshot.
func (r *Rig) ThinLs() map[thin.DeviceID]bool {
	t := r.T
	if err := r.Pool.ReserveMetadataSnap(r.Ctx); err != nil {
		t.Fatalf("reserve_metadata_snap: %+v", err)
	}
	out, err := exec.Command(testenv.Tool(t, "thin_ls"), "-m", "--no-headers", "-o", "DEV", r.Pool.Meta.Path()).CombinedOutput()
	if rerr := r.Pool.ReleaseMetadataSnap(r.Ctx); rerr != nil {
		t.Fatalf("release_metadata_snap: %+v", rerr)
	}
	if err != nil {
		t.Fatalf("thin_ls: %v\n%s", err, out)
	}
	ids := map[thin.DeviceID]bool{}
	for _, f := range strings.Fields(string(out)) {
		id, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			t.Fatalf("thin_ls: %q", out)
		}
		ids[thin.DeviceID(id)] = true
	}
	return ids
}

// Cleanup deletes every volume through the catalog, checks that nothing
// is left and closes it.
func (r *Rig) Cleanup(c *catalog.Catalog) {
	for _, v := range c.List() {
		if err := c.Delete(r.Ctx, v.Key); err != nil {
			r.T.Errorf("delete %s: %+v", v.Key, err)
		}
	}
	if n, err := c.RetryDeferred(r.Ctx); err != nil || n != 0 {
		r.T.Errorf("deferred deletions left: %d, %v", n, err)
	}
	r.Verify(c)
	if len(c.List()) != 0 {
		r.T.Errorf("volumes left: %v", c.List())
	}
	if err := c.Close(); err != nil {
		r.T.Error(err)
	}
}
