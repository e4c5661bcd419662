package catalog_test

// Privileged tests of the catalog on the real kernel, in the VM tier. The
// crash test runs a child process (this test binary, re-executed) doing a
// random workload of catalog operations and writes, SIGKILLs it at random
// instants, reopens the catalog and checks it against the pool. Run it
// alone with
//
//	go run ./internal/vm/cmd/vmrun test -run TestIntegrationCrash ./thin/catalog

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/internal/crashtest"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/thin"
	"github.com/thinp/thinp/thin/catalog"
	"github.com/thinp/thinp/thin/thintest"
)

func TestMain(m *testing.M) {
	crashtest.Child(crashChild)
	os.Exit(m.Run())
}

// crashChild is the workload the crash test kills: random catalog
// operations, each logged as "begin" before and "end" after, some of them
// at once from several goroutines, and writes to active volumes between
// them. It runs until killed.
func crashChild(e *crashtest.ChildEnv) int {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(e.Seed, 7))
	ctl, err := dm.Open()
	if err != nil {
		e.Say("fatal %v", err)
		return 2
	}
	pool, err := thin.OpenPool(ctx, ctl, e.Pool)
	if err != nil {
		e.Say("fatal %v", err)
		return 2
	}
	cat, err := catalog.Open(ctx, pool, e.Dir, catalog.WithMinFreeSpace(0))
	if err != nil {
		e.Say("fatal %v", err)
		return 2
	}
	e.Say("ready")
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
		key := fmt.Sprintf("k%d-%d", e.Seed, seq)
		r := rng.IntN(100)
		switch {
		case len(vols) < 3 || r < 20 && len(vols) < 24:
			e.Op(seq, "create", key, "", func() error { _, err := cat.Create(ctx, key, thin.Size(8*thin.MiB)); return err })
		case r < 40:
			parent := pick(vols)
			e.Op(seq, "snapshot", key, parent, func() error { _, err := cat.Snapshot(ctx, key, parent); return err })
		case r < 50 && len(inactive) > 0:
			k := pick(inactive)
			e.Op(seq, "activate", k, "", func() error { _, err := cat.Activate(ctx, k); return err })
		case r < 57 && len(vols) >= 2:
			// Activations and deactivations of several volumes at once,
			// beside a create and two snapshots: they overlap in the
			// kernel.
			var wg sync.WaitGroup
			n := 0
			op := func(typ, k string, fn func() error) {
				wg.Add(1)
				go func(seq int) { defer wg.Done(); e.Op(seq, typ, k, "", fn) }(seq + n)
				n++
			}
			rng.Shuffle(len(vols), func(i, j int) { vols[i], vols[j] = vols[j], vols[i] })
			for _, v := range vols[:min(len(vols), 4)] {
				k := v.Key
				if v.State == catalog.Active {
					op("deactivate", k, func() error { return cat.Deactivate(ctx, k) })
				} else {
					op("activate", k, func() error { _, err := cat.Activate(ctx, k); return err })
				}
			}
			if len(vols) < 24 {
				op("create", key, func() error { _, err := cat.Create(ctx, key, thin.Size(8*thin.MiB)); return err })
				// Snapshots that queue up behind it go into one
				// transaction together (a group).
				for _, sfx := range []string{"a", "b"} {
					k, parent := key+sfx, pick(vols)
					wg.Add(1)
					go func(seq int) {
						defer wg.Done()
						e.Op(seq, "snapshot", k, parent, func() error { _, err := cat.Snapshot(ctx, k, parent); return err })
					}(seq + n)
					n++
				}
			}
			wg.Wait()
			seq += n - 1
		case r < 65 && len(active) > 0:
			k := pick(active)
			e.Op(seq, "deactivate", k, "", func() error { return cat.Deactivate(ctx, k) })
		case r < 85:
			k := pick(vols)
			e.Op(seq, "delete", k, "", func() error { return cat.Delete(ctx, k) })
		case r < 90:
			k := pick(vols)
			e.Op(seq, "rename", k, key, func() error { return cat.Rename(ctx, k, key) })
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

// applyOp is the model (key to "active" or "inactive") after a logged
// operation that took effect.
func applyOp(m crashtest.Model, typ, a, b string) crashtest.Model {
	n := m.Clone()
	switch typ {
	case "create", "snapshot", "deactivate":
		n[a] = "inactive"
	case "activate":
		n[a] = "active"
	case "delete":
		delete(n, a)
	case "rename":
		n[b] = n[a]
		delete(n, a)
	}
	return n
}

func catalogModel(c *catalog.Catalog) crashtest.Model {
	m := crashtest.Model{}
	for _, v := range c.List() {
		m[v.Key] = "inactive"
		if v.State == catalog.Active {
			m[v.Key] = "active"
		}
	}
	return m
}

// The crash test: at least 200 SIGKILLs of a child working on the
// catalog; after each, Open settles each interrupted operation to the state
// before or after it, and catalog, metadata reader, thin_ls and the
// kernel's devices agree.
func TestIntegrationCrash(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	ctl := thintest.Control(t)
	tp := thintest.NewPool(t, ctl, &thintest.Options{Name: prefix + "pool", DataSize: 512 << 20, MetaSize: 16 << 20})
	r := crashtest.NewRig(t, ctl, tp)
	m := crashtest.Model{}
	tally := map[string]int{}
	n := crashtest.Kills(200)
	for i := 0; i < n; i++ {
		lines := r.RunChild(i, 300*time.Millisecond, nil)
		before, open := r.Interrupted(m, lines, applyOp)
		c, err := catalog.Open(r.Ctx, tp.Pool, r.Dir)
		if err != nil {
			t.Fatalf("open after kill %d: %+v", i+1, err)
		}
		got := catalogModel(c)
		tally["interrupted "+r.Settled(got, before, open, applyOp)]++
		r.Verify(c)
		m = got
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	r.Log(tally)
	c, err := catalog.Open(r.Ctx, tp.Pool, r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	r.Cleanup(c)
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
	r := crashtest.NewRig(t, ctl, tp)
	cuts := 20
	if n := crashtest.Kills(200); n < 200 {
		cuts = max(2, n/10)
	}
	repaired := 0
	for i := 0; i < cuts; i++ {
		r.RunChild(1000+i, 400*time.Millisecond, func() {
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
		c, err := catalog.Open(ctx, p, r.Dir)
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
		r.Verify(c)
		if _, err := c.Create(ctx, fmt.Sprint("after-cut-", i), thin.Size(8*thin.MiB)); err != nil {
			t.Fatalf("create after repair: %+v", err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("power cut: %d cuts, %d needed repair, 0 drift after repair", cuts, repaired)
	c, err := catalog.Open(ctx, tp.Pool, r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	r.Cleanup(c)
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
