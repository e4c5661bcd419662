package catalog_test

// Privileged tests of the catalog on the real kernel, in the VM tier. The
// crash test runs a child process (this test binary, re-executed) doing a
// random workload of catalog operations and writes, SIGKILLs it at random
// instants, reopens the catalog and checks it against the pool. Run it
// alone with
//
//	go run ./internal/vm/cmd/vmrun test -run TestIntegrationCrash ./thin/catalog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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

func TestMain(m *testing.M) {
	if dir := os.Getenv("THINP_CATALOG_CHILD"); dir != "" {
		os.Exit(crashChild(dir))
	}
	os.Exit(m.Run())
}

// crashChild is the workload the crash test kills: random catalog
// operations, each logged as "begin" before and "end" after, and writes
// to active volumes between them. It runs until killed.
func crashChild(dir string) int {
	ctx := context.Background()
	seed, _ := strconv.ParseUint(os.Getenv("THINP_CATALOG_SEED"), 10, 64)
	rng := rand.New(rand.NewPCG(seed, 7))
	logf, err := os.OpenFile(os.Getenv("THINP_CATALOG_LOG"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	say := func(format string, args ...any) { fmt.Fprintf(logf, format+"\n", args...) }
	ctl, err := dm.Open()
	if err != nil {
		say("fatal %v", err)
		return 2
	}
	pool, err := thin.OpenPool(ctx, ctl, os.Getenv("THINP_CATALOG_POOL"))
	if err != nil {
		say("fatal %v", err)
		return 2
	}
	cat, err := catalog.Open(ctx, pool, dir, catalog.WithMinFreeSpace(0))
	if err != nil {
		say("fatal %v", err)
		return 2
	}
	say("ready")
	buf := make([]byte, 64<<10)
	for seq := 0; ; seq++ {
		vols := cat.List()
		var active, inactive []catalog.Volume
		for _, v := range vols {
			if v.State == catalog.Active {
				active = append(active, v)
			} else {
				inactive = append(inactive, v)
			}
		}
		pick := func(vs []catalog.Volume) string { return vs[rng.IntN(len(vs))].Key }
		key := fmt.Sprintf("k%d-%d", seed, seq)
		var typ, a, b string
		r := rng.IntN(100)
		switch {
		case len(vols) < 3 || r < 20 && len(vols) < 24:
			typ, a = "create", key
		case r < 40:
			typ, a, b = "snapshot", key, pick(vols)
		case r < 55 && len(inactive) > 0:
			typ, a = "activate", pick(inactive)
		case r < 65 && len(active) > 0:
			typ, a = "deactivate", pick(active)
		case r < 85:
			typ, a = "delete", pick(vols)
		case r < 90:
			typ, a, b = "rename", pick(vols), key
		default:
			if len(active) == 0 {
				continue
			}
			// Writes, not an operation: provision blocks.
			v, _ := cat.Get(pick(active))
			f, err := os.OpenFile(filepath.Join(ctl.DevDir(), "dm-"+strconv.Itoa(int(mustMinor(ctx, ctl, v.Device)))), os.O_WRONLY, 0)
			if err == nil {
				for i := 0; i < 4; i++ {
					buf[0] = byte(seq)
					f.WriteAt(buf, int64(rng.IntN(int(uint64(v.Size)*512/uint64(len(buf))))*len(buf)))
				}
				f.Close()
			}
			continue
		}
		say("begin %d %s %s %s", seq, typ, a, b)
		switch typ {
		case "create":
			_, err = cat.Create(ctx, a, thin.Size(8*thin.MiB))
		case "snapshot":
			_, err = cat.Snapshot(ctx, a, b)
		case "activate":
			_, err = cat.Activate(ctx, a)
		case "deactivate":
			err = cat.Deactivate(ctx, a)
		case "delete":
			err = cat.Delete(ctx, a)
		case "rename":
			err = cat.Rename(ctx, a, b)
		}
		if err != nil {
			say("end %d err %s", seq, strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			say("end %d ok", seq)
		}
	}
}

func mustMinor(ctx context.Context, ctl *dm.Control, name string) uint32 {
	info, err := ctl.Info(ctx, dm.Name(name))
	if err != nil {
		return 1 << 20
	}
	return info.Dev.Minor
}

// model is what the catalog should hold: key to active.
type model map[string]bool

func (m model) clone() model {
	c := model{}
	for k, v := range m {
		c[k] = v
	}
	return c
}

// apply is the model after a logged operation that took effect.
func (m model) apply(typ, a, b string) model {
	n := m.clone()
	switch typ {
	case "create", "snapshot":
		n[a] = false
	case "activate":
		n[a] = true
	case "deactivate":
		n[a] = false
	case "delete":
		delete(n, a)
	case "rename":
		n[b] = n[a]
		delete(n, a)
	}
	return n
}

func catalogModel(c *catalog.Catalog) model {
	m := model{}
	for _, v := range c.List() {
		m[v.Key] = v.State == catalog.Active
	}
	return m
}

func (m model) String() string {
	var ks []string
	for k, v := range m {
		ks = append(ks, fmt.Sprintf("%s:%v", k, v))
	}
	sort.Strings(ks)
	return strings.Join(ks, " ")
}

func (m model) equal(o model) bool {
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

// crashRig is a pool, a catalog directory and the child's log.
type crashRig struct {
	t       *testing.T
	ctx     context.Context
	ctl     *dm.Control
	tp      *thintest.Pool
	dir     string
	logPth  string
	cookies map[uint32]bool
	stats   map[string]int
	kills   int
}

func newCrashRig(t *testing.T, ctl *dm.Control, tp *thintest.Pool) *crashRig {
	r := &crashRig{t: t, ctx: context.Background(), ctl: ctl, tp: tp, dir: t.TempDir(), stats: map[string]int{}, cookies: map[uint32]bool{}}
	r.logPth = filepath.Join(t.TempDir(), "child.log")
	if cs, err := udev.ListCookies(); err == nil {
		for _, c := range cs {
			r.cookies[c.Cookie] = true
		}
	}
	return r
}

// runChild starts the child, lets it work for up to maxRun after it is
// ready, and kills it; it returns the child's log lines of this run.
func (r *crashRig) runChild(seed int, maxRun time.Duration, atKill func()) []string {
	t := r.t
	os.Remove(r.logPth)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "THINP_CATALOG_CHILD="+r.dir, "THINP_CATALOG_POOL="+r.tp.Name(),
		"THINP_CATALOG_SEED="+strconv.Itoa(seed), "THINP_CATALOG_LOG="+r.logPth)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		b, _ := os.ReadFile(r.logPth)
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
	r.kills++
	// A child killed while waiting for udev leaves its cookie behind:
	// remove it, as `dmsetup udevcomplete_all` would. Nothing else here
	// waits on a cookie now.
	if testenv.UdevRunning() {
		udev.Settle(r.ctx)
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
				r.stats["stale udev cookies removed"] += n
			}
		}
	}
	f, err := os.Open(r.logPth)
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

// replay applies the child's completed operations to m and returns m and
// the operation left without an end (or ended in error), if any.
func replay(t *testing.T, m model, lines []string) (model, []string) {
	var open []string
	for _, l := range lines {
		f := strings.Fields(l)
		switch f[0] {
		case "begin":
			open = append(f[2:], "", "")[:3]
		case "end":
			if f[2] == "ok" {
				m = m.apply(open[0], open[1], open[2])
				open = nil
			} else {
				// A failed operation must leave things as before; it is
				// checked as an interrupted one.
				t.Logf("child: %s (%v)", l, open)
			}
		}
	}
	return m, open
}

// verify checks the reopened catalog against the pool's metadata (through
// the catalog's Check and through thin_ls) and the kernel's devices.
func (r *crashRig) verify(c *catalog.Catalog) {
	t := r.t
	t.Helper()
	rep, err := c.Check(r.ctx)
	if err != nil {
		t.Fatalf("check: %+v", err)
	}
	if !rep.Clean() {
		t.Fatalf("after kill %d: catalog and pool disagree: %+v", r.kills, rep)
	}
	ids := map[thin.DeviceID]bool{}
	for _, v := range c.List() {
		ids[v.ID] = true
	}
	for _, d := range c.Deferred() {
		ids[d.ID] = true
	}
	ls := r.thinLs()
	if len(ls) != len(ids) {
		t.Fatalf("after kill %d: thin_ls lists %d devices, the catalog %d", r.kills, len(ls), len(ids))
	}
	for id := range ls {
		if !ids[id] {
			t.Fatalf("after kill %d: thin_ls lists id %d, the catalog does not", r.kills, id)
		}
	}
	devs, err := r.ctl.List(r.ctx, dm.WithNamePrefix(r.tp.Name()))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		info, err := r.ctl.Info(r.ctx, dm.Name(d.Name))
		if err == nil && info.Suspended {
			t.Fatalf("after kill %d: %s is suspended", r.kills, d.Name)
		}
	}
}

// thinLs lists the live pool's thin ids with thin_ls on a metadata
// snapshot.
func (r *crashRig) thinLs() map[thin.DeviceID]bool {
	t := r.t
	if err := r.tp.ReserveMetadataSnap(r.ctx); err != nil {
		t.Fatalf("reserve_metadata_snap: %+v", err)
	}
	out, err := exec.Command(testenv.Tool(t, "thin_ls"), "-m", "--no-headers", "-o", "DEV", r.tp.Meta.Path()).CombinedOutput()
	if rerr := r.tp.ReleaseMetadataSnap(r.ctx); rerr != nil {
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

// cleanup deletes every volume through the catalog.
func (r *crashRig) cleanup(c *catalog.Catalog) {
	for _, v := range c.List() {
		if err := c.Delete(r.ctx, v.Key); err != nil {
			r.t.Errorf("delete %s: %+v", v.Key, err)
		}
	}
	if n, err := c.RetryDeferred(r.ctx); err != nil || n != 0 {
		r.t.Errorf("deferred deletions left: %d, %v", n, err)
	}
	r.verify(c)
	if err := c.Close(); err != nil {
		r.t.Error(err)
	}
}

func crashKills() int {
	if n, err := strconv.Atoi(os.Getenv("THINP_CATALOG_KILLS")); err == nil && n > 0 {
		return n
	}
	return 200
}

// The crash test: at least 200 SIGKILLs of a child working on the
// catalog; after each, Open settles the interrupted operation to the state
// before or after it, and catalog, metadata reader, thin_ls and the
// kernel's devices agree.
func TestIntegrationCrash(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	ctl := thintest.Control(t)
	tp := thintest.NewPool(t, ctl, &thintest.Options{Name: prefix + "pool", DataSize: 512 << 20, MetaSize: 16 << 20})
	r := newCrashRig(t, ctl, tp)
	m := model{}
	interrupted := map[string]int{}
	n := crashKills()
	for i := 0; i < n; i++ {
		lines := r.runChild(i, 300*time.Millisecond, nil)
		before, open := replay(t, m, lines)
		c, err := catalog.Open(r.ctx, tp.Pool, r.dir)
		if err != nil {
			t.Fatalf("open after kill %d: %+v", i+1, err)
		}
		got := catalogModel(c)
		switch {
		case open == nil:
			if !got.equal(before) {
				t.Fatalf("kill %d, between operations: catalog %v, want %v", i+1, got, before)
			}
			interrupted["between operations"]++
		default:
			after := before.apply(open[0], open[1], open[2])
			switch {
			case got.equal(after):
				interrupted[open[0]+": after"]++
			case got.equal(before):
				interrupted[open[0]+": before"]++
			default:
				t.Fatalf("kill %d during %v: catalog %v is neither before (%v) nor after (%v)", i+1, open, got, before, after)
			}
		}
		r.verify(c)
		m = got
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	for k := range interrupted {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("crash: interrupted %s: %d", k, interrupted[k])
	}
	for k, v := range r.stats {
		t.Logf("crash: %s: %d", k, v)
	}
	t.Logf("crash: %d kills, 0 drift", r.kills)
	c, err := catalog.Open(r.ctx, tp.Pool, r.dir)
	if err != nil {
		t.Fatal(err)
	}
	r.cleanup(c)
}

// The pool loses power: its metadata device (behind dm-flakey) starts
// dropping every write at a random instant while the child works, then the
// child is killed and the pool taken down and brought back on what reached
// the disk. The catalog sees drift, Repair makes it agree with the pool,
// and thin_check passes.
func TestIntegrationCrashPowerCut(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	ctl := thintest.Control(t)
	ctx := context.Background()
	var flakey string
	var metaLen dm.Sectors
	var metaDev dm.Dev
	tp := thintest.NewPool(t, ctl, &thintest.Options{Name: prefix + "pool", DataSize: 512 << 20, MetaSize: 16 << 20,
		Edit: func(s *thin.PoolSpec) {
			metaDev = s.Metadata
			metaLen = 16 << 20 / 512
			flakey = prefix + "meta"
			info, err := ctl.Create(ctx, flakey, flakeyTable(metaDev, metaLen, false))
			if err != nil {
				t.Fatalf("flakey: %+v", err)
			}
			t.Cleanup(func() { // after a failure; the test removes it itself
				if err := ctl.Remove(ctx, dm.Name(flakey)); err != nil && !errors.Is(err, dm.ErrNotFound) {
					t.Errorf("remove flakey: %+v", err)
				}
			})
			s.Metadata = info.Dev
		}})
	r := newCrashRig(t, ctl, tp)
	cuts := 20
	if n := crashKills(); n < 200 {
		cuts = max(2, n/10)
	}
	repaired := 0
	for i := 0; i < cuts; i++ {
		r.runChild(1000+i, 400*time.Millisecond, func() {
			if err := ctl.Reload(ctx, dm.Name(flakey), flakeyTable(metaDev, metaLen, true), dm.NoFlush); err != nil {
				t.Fatalf("cut power: %+v", err)
			}
		})
		// Take the pool down on the dead disk, bring the disk back, and
		// the pool up on what the disk kept.
		spec, err := tp.Pool.Spec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Every device on the pool, also one the child created and was
		// killed before it resumed (an inactive table holds the pool too).
		devs, err := ctl.List(ctx, dm.WithNamePrefix(tp.Name()+"-"))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range devs {
			if info, err := ctl.Info(ctx, dm.Name(d.Name)); err == nil && info.Suspended {
				ctl.Resume(ctx, dm.Name(d.Name))
			}
			if err := ctl.Remove(ctx, dm.Name(d.Name)); err != nil {
				t.Fatalf("deactivate %s: %+v", d.Name, err)
			}
		}
		if err := tp.Remove(ctx); err != nil {
			t.Fatalf("remove pool: %+v", err)
		}
		if err := ctl.Reload(ctx, dm.Name(flakey), flakeyTable(metaDev, metaLen, false)); err != nil {
			t.Fatalf("restore power: %+v", err)
		}
		p, err := thin.CreatePool(ctx, ctl, tp.Name(), spec)
		if err != nil {
			t.Fatalf("pool back up: %+v", err)
		}
		tp.Pool = p
		c, err := catalog.Open(ctx, p, r.dir)
		if err != nil {
			t.Fatalf("open after power cut %d: %+v", i+1, err)
		}
		rep, err := c.Repair(ctx, catalog.RepairOptions{})
		if err != nil {
			t.Fatalf("repair after power cut %d: %+v", i+1, err)
		}
		if len(rep.Actions) > 0 {
			repaired++
			t.Logf("power cut %d: repair: %s", i+1, strings.Join(rep.Actions, "; "))
		}
		r.verify(c)
		if _, err := c.Create(ctx, fmt.Sprint("after-cut-", i), thin.Size(8*thin.MiB)); err != nil {
			t.Fatalf("create after repair: %+v", err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("power cut: %d cuts, %d needed repair, 0 drift after repair", cuts, repaired)
	c, err := catalog.Open(ctx, tp.Pool, r.dir)
	if err != nil {
		t.Fatal(err)
	}
	r.cleanup(c)
	// thin_check needs the metadata device free: take the pool down, then
	// dm-flakey (thintest's own teardown then finds nothing to remove).
	if err := tp.Teardown(ctx); err != nil {
		t.Fatalf("tear down pool: %+v", err)
	}
	if err := ctl.Remove(ctx, dm.Name(flakey)); err != nil {
		t.Fatalf("remove flakey: %+v", err)
	}
	testenv.ThinCheck(t, tp.Meta.Path())
}

// flakeyTable is dm-flakey over dev passing everything through, or, cut,
// dropping every write (reads still work).
func flakeyTable(dev dm.Dev, length dm.Sectors, cut bool) dm.Table {
	params := dev.String() + " 0 3600 0"
	if cut {
		params = dev.String() + " 0 0 3600 1 drop_writes"
	}
	return dm.Table{{Start: 0, Length: length, Type: "flakey", Params: params}}
}
