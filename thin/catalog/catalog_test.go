package catalog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/dm/dmtest"
	"github.com/thinp/thinp/ioctl"
	"github.com/thinp/thinp/thin"
	"github.com/thinp/thinp/thin/catalog"
)

var (
	metaDev = dm.Dev{Major: 7, Minor: 0}
	dataDev = dm.Dev{Major: 7, Minor: 1}
)

// world is a fake kernel with a pool on it and a catalog directory.
type world struct {
	t    testing.TB
	ctx  context.Context
	k    *dmtest.Kernel
	ctl  *dm.Control
	pool *thin.Pool
	dir  string
	opts []catalog.Option
}

var epoch = time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)

func newWorld(t testing.TB, opts ...catalog.Option) *world {
	t.Helper()
	ctx := context.Background()
	k := dmtest.New()
	k.AddBlockDevice(metaDev, 131072) // 64 MiB
	k.AddBlockDevice(dataDev, 2097152)
	ctl, err := dmtest.NewControl(k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	pool, err := thin.CreatePool(ctx, ctl, "pool", thin.PoolSpec{Metadata: metaDev, Data: dataDev, BlockSize: 128, Length: 2097152})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, ctx: ctx, k: k, ctl: ctl, pool: pool, dir: t.TempDir()}
	w.opts = append([]catalog.Option{
		catalog.SetMetadataOption(w.poolIDs),
		catalog.WithClock(func() time.Time { return epoch }),
	}, opts...)
	return w
}

// poolIDs reads the pool's thin ids from the fake kernel's metadata.
func (w *world) poolIDs(context.Context) ([]thin.ThinUsage, error) {
	pi, ok := w.k.Pool("pool")
	if !ok {
		return nil, errors.New("no pool")
	}
	var us []thin.ThinUsage
	for _, th := range pi.Thins {
		us = append(us, thin.ThinUsage{ThinDetails: thin.ThinDetails{ID: thin.DeviceID(th.ID), Mapped: thin.DataBlocks(th.MappedBlocks)}})
	}
	return us, nil
}

func (w *world) open() *catalog.Catalog {
	w.t.Helper()
	c, err := catalog.Open(w.ctx, w.pool, w.dir, w.opts...)
	if err != nil {
		w.t.Fatalf("open: %+v", err)
	}
	return c
}

// check asserts the catalog, the pool and the kernel agree: nothing
// pending, no difference, no device suspended, every device the catalog's.
func (w *world) check(c *catalog.Catalog) {
	w.t.Helper()
	if catalog.Pending(c) {
		w.t.Fatal("an operation is still pending")
	}
	r, err := c.Check(w.ctx)
	if err != nil {
		w.t.Fatalf("check: %+v", err)
	}
	if !r.Clean() {
		w.t.Fatalf("catalog and pool disagree: %+v", r)
	}
	active := map[string]bool{}
	for _, v := range c.List() {
		if v.State == catalog.Active {
			active[v.Device] = true
		}
	}
	for _, d := range c.Deferred() {
		if d.Device != "" {
			active[d.Device] = true
		}
	}
	for _, d := range w.k.Devices() {
		if d.Suspended {
			w.t.Errorf("device %s left suspended", d.Name)
		}
		if d.Name != "pool" && !active[d.Name] {
			w.t.Errorf("device %s is not the catalog's", d.Name)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%+v", err)
	}
}

func TestLifecycle(t *testing.T) {
	w := newWorld(t)
	c := w.open()
	ctx := w.ctx
	base, err := c.Create(ctx, "base", thin.Size(64*thin.MiB), catalog.WithLabels(map[string]string{"fs": "ext4"}))
	must(t, err)
	if base.ID != 1 || base.Size != thin.Size(64*thin.MiB) || base.State != catalog.Inactive || base.Labels["fs"] != "ext4" {
		t.Fatalf("created %+v", base)
	}
	path, err := c.Activate(ctx, "base")
	must(t, err)
	if !strings.HasSuffix(path, "/dm-1") {
		t.Fatalf("device path %q", path)
	}
	again, err := c.Activate(ctx, "base")
	must(t, err)
	if again != path {
		t.Fatalf("second Activate gave %q, first %q", again, path)
	}
	must(t, w.k.ProvisionBlocks("pool", 1, 10))

	// A snapshot of the active base: its device is suspended around it.
	w.k.ResetCalls()
	snap, err := c.Snapshot(ctx, "snap", "base")
	must(t, err)
	suspends := 0
	for _, call := range w.k.Calls() {
		if call.Cmd == ioctl.CmdDevSuspend && call.Header.Name != "pool" { // by dev_t
			suspends++
		}
	}
	if suspends != 2 { // suspend and resume
		t.Errorf("snapshot of an active origin: %d suspend/resume ioctls on it, want 2", suspends)
	}
	if snap.Parent != "base" || snap.ParentID != 1 || snap.Size != base.Size || snap.ID == base.ID {
		t.Fatalf("snapshot %+v", snap)
	}
	big, err := c.Snapshot(ctx, "big", "snap", catalog.WithSize(thin.Size(128*thin.MiB)))
	must(t, err)
	if big.Size != thin.Size(128*thin.MiB) {
		t.Fatalf("snapshot with size: %+v", big)
	}
	us, err := c.Usage(ctx)
	must(t, err)
	if us["base"].Mapped != 10*64*thin.KiB || us["snap"].Mapped != 10*64*thin.KiB {
		t.Fatalf("usage %+v", us)
	}
	mapped, err := c.Mapped(ctx, "snap", "big")
	must(t, err)
	if len(mapped) != 2 || mapped["snap"] != us["snap"].Mapped || mapped["big"] != us["big"].Mapped {
		t.Fatalf("mapped %+v, usage %+v", mapped, us)
	}
	if _, err := c.Mapped(ctx, "snap", "nope"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("mapped of an unknown key: %v", err)
	}
	must(t, c.SetLabels(ctx, "snap", map[string]string{"k": "v"}))
	must(t, c.Rename(ctx, "snap", "snap2", catalog.WithLabels(map[string]string{"k": "v", "kind": "committed"})))
	must(t, c.Resize(ctx, "big", thin.Size(256*thin.MiB)))
	w.check(c)

	want := c.List()
	must(t, c.Close())
	c = w.open()
	if diff := cmp.Diff(want, c.List()); diff != "" {
		t.Fatalf("after reopen (-want +got):\n%s", diff)
	}
	if v, err := c.Get("snap2"); err != nil || v.Labels["k"] != "v" || v.Labels["kind"] != "committed" {
		t.Fatalf("get snap2: %+v %v", v, err)
	}
	var keys []string
	must(t, c.Walk(func(v catalog.Volume) error { keys = append(keys, v.Key); return nil }))
	if diff := cmp.Diff([]string{"base", "big", "snap2"}, keys); diff != "" {
		t.Fatalf("walk: %s", diff)
	}
	must(t, c.Delete(ctx, "base")) // active: deactivated first
	must(t, c.Delete(ctx, "snap2"))
	must(t, c.Delete(ctx, "big"))
	if n := len(c.List()); n != 0 {
		t.Fatalf("%d volumes left", n)
	}
	w.check(c)
	if pi, _ := w.k.Pool("pool"); len(pi.Thins) != 0 || pi.TransactionID != 6 {
		t.Fatalf("pool after deletes: %d thins, transaction %d", len(pi.Thins), pi.TransactionID)
	}
	must(t, c.Close())
}

func TestLock(t *testing.T) {
	w := newWorld(t)
	c := w.open()
	_, err := catalog.Open(w.ctx, w.pool, w.dir, w.opts...)
	if !errors.Is(err, catalog.ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	must(t, c.Close())
	if _, err := c.Create(w.ctx, "x", 1024); !errors.Is(err, catalog.ErrClosed) {
		t.Fatalf("create after close: %v", err)
	}
	c = w.open()
	must(t, c.Close())
}

func TestRefusalsSendNothing(t *testing.T) {
	w := newWorld(t)
	c := w.open()
	defer c.Close()
	ctx := w.ctx
	_, err := c.Create(ctx, "a", 2048)
	must(t, err)
	before := c.List()
	w.k.ResetCalls()
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"empty key", func() error { _, err := c.Create(ctx, "", 2048); return err }(), catalog.ErrInvalid},
		{"NUL in key", func() error { _, err := c.Create(ctx, "a\x00b", 2048); return err }(), catalog.ErrInvalid},
		{"long key", func() error { _, err := c.Create(ctx, strings.Repeat("k", catalog.MaxKeyLen+1), 2048); return err }(), catalog.ErrInvalid},
		{"bad UTF-8", func() error { _, err := c.Create(ctx, "\xff", 2048); return err }(), catalog.ErrInvalid},
		{"zero size", func() error { _, err := c.Create(ctx, "b", 0); return err }(), catalog.ErrInvalid},
		{"WithSize on create", func() error { _, err := c.Create(ctx, "b", 1, catalog.WithSize(2)); return err }(), catalog.ErrInvalid},
		{"key exists", func() error { _, err := c.Create(ctx, "a", 2048); return err }(), catalog.ErrExists},
		{"no parent", func() error { _, err := c.Snapshot(ctx, "s", "nope"); return err }(), catalog.ErrNotFound},
		{"activate unknown", func() error { _, err := c.Activate(ctx, "nope"); return err }(), catalog.ErrNotFound},
		{"delete unknown", c.Delete(ctx, "nope"), catalog.ErrNotFound},
		{"rename onto", func() error { _, _ = c.Create(ctx, "zz", 8); return c.Rename(ctx, "zz", "a") }(), catalog.ErrExists},
		{"resize zero", c.Resize(ctx, "a", 0), catalog.ErrInvalid},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
		var ce *catalog.Error
		if !errors.As(tc.err, &ce) {
			t.Errorf("%s: %T is not a *catalog.Error", tc.err, tc.err)
		}
	}
	// Only the "zz" create sent messages: create_thin, set_transaction_id.
	msgs := 0
	for _, call := range w.k.Calls() {
		if call.Cmd == ioctl.CmdTargetMsg {
			msgs++
		}
	}
	if msgs != 2 {
		t.Errorf("%d messages sent, want the 2 of one create", msgs)
	}
	if got := c.List(); len(got) != len(before)+1 {
		t.Errorf("refusals changed the catalog: %+v", got)
	}
}

func TestMinFreeSpace(t *testing.T) {
	w := newWorld(t, catalog.WithMinFreeSpace(50))
	c := w.open()
	defer c.Close()
	_, err := c.Create(w.ctx, "a", thin.Size(1*thin.GiB))
	must(t, err)
	must(t, w.k.ProvisionBlocks("pool", 1, 9000)) // of 16384
	_, err = c.Create(w.ctx, "b", 2048)
	var se *catalog.SpaceError
	if !errors.Is(err, catalog.ErrLowSpace) || !errors.As(err, &se) || se.Space != "data" || se.Free != 16384-9000 {
		t.Fatalf("create on a full pool: %v", err)
	}
	if _, err := c.Snapshot(w.ctx, "s", "a"); !errors.Is(err, catalog.ErrLowSpace) {
		t.Fatalf("snapshot on a full pool: %v", err)
	}
	if _, err := catalog.Open(w.ctx, w.pool, t.TempDir(), catalog.WithMinFreeSpace(101)); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("min free 101%%: %v", err)
	}
}

// A thin id someone else created in the pool is skipped, reported, and
// then adopted or deleted by Repair.
func TestForeignIDsAndRepair(t *testing.T) {
	for _, adopt := range []bool{false, true} {
		t.Run(fmt.Sprintf("adopt=%v", adopt), func(t *testing.T) {
			w := newWorld(t)
			c := w.open()
			defer c.Close()
			ctx := w.ctx
			must(t, w.pool.CreateThin(ctx, 1)) // behind the catalog's back
			v, err := c.Create(ctx, "a", 2048)
			must(t, err)
			if v.ID != 2 {
				t.Fatalf("create took id %d, want 2 (1 is foreign)", v.ID)
			}
			r, err := c.Check(ctx)
			must(t, err)
			if diff := cmp.Diff([]thin.DeviceID{1}, r.Orphans); diff != "" || r.Clean() {
				t.Fatalf("check: %+v", r)
			}
			// Another tool activates the orphan and moves the transaction id.
			_, err = w.pool.Activate(ctx, "other", 1, 2048)
			must(t, err)
			must(t, w.pool.SetTransactionID(ctx, 1, 7))
			if _, err := c.Create(ctx, "b", 2048); !errors.Is(err, catalog.ErrDrift) {
				t.Fatalf("create on a drifted pool: %v", err)
			}
			dry, err := c.Repair(ctx, catalog.RepairOptions{DryRun: true, Adopt: adopt})
			must(t, err)
			if len(dry.Actions) == 0 {
				t.Fatal("dry run lists no action")
			}
			if pi, _ := w.k.Pool("pool"); len(pi.Thins) != 2 {
				t.Fatal("dry run changed the pool")
			}
			r, err = c.Repair(ctx, catalog.RepairOptions{Adopt: adopt, AdoptSize: 4096})
			must(t, err)
			if diff := cmp.Diff(dry.Actions, r.Actions); diff != "" {
				t.Fatalf("repair did other than its dry run said:\n%s", diff)
			}
			w.check(c)
			_, err = c.Get("thin-1")
			if adopt != (err == nil) {
				t.Fatalf("adopt=%v: get thin-1: %v", adopt, err)
			}
			if _, ok := w.k.Device("other"); ok != adopt {
				t.Fatalf("adopt=%v: device other present=%v", adopt, ok)
			}
			if _, err := c.Create(ctx, "b", 2048); err != nil {
				t.Fatalf("create after repair: %+v", err)
			}
			w.check(c)
		})
	}
}

func TestDeferredDeletion(t *testing.T) {
	w := newWorld(t, catalog.WithDeferredDeletion())
	c := w.open()
	ctx := w.ctx
	_, err := c.Create(ctx, "a", 2048)
	must(t, err)
	_, err = c.Activate(ctx, "a")
	must(t, err)
	closeDev, err := w.k.Open("pool-1") // a mounted filesystem, say
	must(t, err)
	ctx2, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	must(t, c.Delete(ctx2, "a"))
	if _, err := c.Get("a"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("key still there: %v", err)
	}
	ds := c.Deferred()
	if len(ds) != 1 || ds[0].ID != 1 || ds[0].Key != "a" {
		t.Fatalf("deferred %+v", ds)
	}
	n, err := c.RetryDeferred(ctx)
	must(t, err)
	if n != 1 || c.Deferred()[0].Tries != 1 {
		t.Fatalf("retry while open: %d left, %+v", n, c.Deferred())
	}
	// The key is free again, and the id is not reused.
	v, err := c.Create(ctx, "a", 2048)
	must(t, err)
	if v.ID == 1 {
		t.Fatal("the deferred id was reused")
	}
	w.check(c)
	must(t, c.Close())
	closeDev()   // the kernel removes the device now
	c = w.open() // and Open deletes the id
	if len(c.Deferred()) != 0 {
		t.Fatalf("after close and reopen: %+v", c.Deferred())
	}
	if pi, _ := w.k.Pool("pool"); len(pi.Thins) != 1 {
		t.Fatalf("pool has %d thins", len(pi.Thins))
	}
	w.check(c)
	must(t, c.Close())
}

func TestBusyDeleteWithoutDeferral(t *testing.T) {
	w := newWorld(t)
	c := w.open()
	defer c.Close()
	ctx := w.ctx
	_, err := c.Create(ctx, "a", 2048)
	must(t, err)
	_, err = c.Activate(ctx, "a")
	must(t, err)
	closeDev, err := w.k.Open("pool-1")
	must(t, err)
	defer closeDev()
	ctx2, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := c.Delete(ctx2, "a"); !errors.Is(err, dm.ErrBusy) {
		t.Fatalf("delete of an open volume: %v, want dm.ErrBusy", err)
	}
	if v, err := c.Get("a"); err != nil || v.State != catalog.Active {
		t.Fatalf("after a refused delete: %+v %v", v, err)
	}
	w.check(c)
}

// A kernel failure at any ioctl of any operation leaves the catalog as it
// was before the operation or as after it, usable, and agreeing with the
// pool.
func TestKernelFailureAtEveryStep(t *testing.T) {
	for _, s := range steps {
		for i := 0; ; i++ {
			w := newWorld(t, catalog.WithDeferredDeletion())
			c := w.open()
			s.setup(w, c)
			before := c.List()
			n := 0
			w.k.SetBeforeIoctl(func(ioctl.Cmd, *ioctl.Header) error {
				n++
				if n == i+1 {
					return unix.EIO
				}
				return nil
			})
			err := s.run(w, c)
			w.k.SetBeforeIoctl(nil)
			if n <= i {
				c.Close()
				break // every ioctl of the step has been failed once
			}
			after := c.List()
			if err == nil && cmp.Equal(before, after) && !s.noop {
				t.Errorf("%s, ioctl %d fails: no error and no change", s.name, i)
			}
			w.check(c)
			// Still usable.
			if _, err := c.Create(w.ctx, "later", 2048); err != nil {
				t.Errorf("%s, ioctl %d failed: the catalog is unusable after: %+v", s.name, i, err)
			}
			c.Close()
		}
	}
}

type step struct {
	name  string
	setup func(*world, *catalog.Catalog)
	run   func(*world, *catalog.Catalog) error
	noop  bool // may succeed without changing the catalog
}

func mustDo(w *world, err error) {
	w.t.Helper()
	must(w.t, err)
}

func created(w *world, c *catalog.Catalog, active bool, keys ...string) {
	for _, k := range keys {
		_, err := c.Create(w.ctx, k, 2048)
		mustDo(w, err)
		if active {
			_, err := c.Activate(w.ctx, k)
			mustDo(w, err)
		}
	}
}

var steps = []step{
	{name: "create", setup: func(*world, *catalog.Catalog) {}, run: func(w *world, c *catalog.Catalog) error {
		_, err := c.Create(w.ctx, "a", 2048)
		return err
	}},
	{name: "snapshot of an inactive parent", setup: func(w *world, c *catalog.Catalog) { created(w, c, false, "a") },
		run: func(w *world, c *catalog.Catalog) error { _, err := c.Snapshot(w.ctx, "s", "a"); return err }},
	{name: "snapshot of an active parent", setup: func(w *world, c *catalog.Catalog) { created(w, c, true, "a") },
		run: func(w *world, c *catalog.Catalog) error { _, err := c.Snapshot(w.ctx, "s", "a"); return err }},
	{name: "activate", setup: func(w *world, c *catalog.Catalog) { created(w, c, false, "a") },
		run: func(w *world, c *catalog.Catalog) error { _, err := c.Activate(w.ctx, "a"); return err }},
	{name: "deactivate", setup: func(w *world, c *catalog.Catalog) { created(w, c, true, "a") },
		run: func(w *world, c *catalog.Catalog) error { return c.Deactivate(w.ctx, "a") }},
	{name: "delete inactive", setup: func(w *world, c *catalog.Catalog) { created(w, c, false, "a") },
		run: func(w *world, c *catalog.Catalog) error { return c.Delete(w.ctx, "a") }},
	{name: "delete active", setup: func(w *world, c *catalog.Catalog) { created(w, c, true, "a") },
		run: func(w *world, c *catalog.Catalog) error { return c.Delete(w.ctx, "a") }},
	{name: "retry deferred", setup: func(w *world, c *catalog.Catalog) {
		created(w, c, true, "a")
		closeDev, err := w.k.Open("pool-1")
		mustDo(w, err)
		ctx, cancel := context.WithTimeout(w.ctx, time.Second)
		defer cancel()
		mustDo(w, c.Delete(ctx, "a"))
		closeDev()
	}, run: func(w *world, c *catalog.Catalog) error { _, err := c.RetryDeferred(w.ctx); return err }, noop: true},
}

// crash is the panic a crashing process is modelled by.
type crash struct{}

// A crash before any ioctl of any operation (so also after the one before
// it, and between the journal's writes and the kernel's work) is settled
// by the next Open to exactly the state before or after the operation.
func TestCrashAtEveryStep(t *testing.T) {
	for _, s := range steps {
		// The state after the step, without a crash.
		ref := newWorld(t, catalog.WithDeferredDeletion())
		rc := ref.open()
		s.setup(ref, rc)
		mustDo(ref, s.run(ref, rc))
		want := rc.List()
		rc.Close()
		interrupted := 0
		for i := 0; ; i++ {
			w := newWorld(t, catalog.WithDeferredDeletion())
			c := w.open()
			s.setup(w, c)
			before := c.List()
			n := 0
			crashed := false
			w.k.SetBeforeIoctl(func(ioctl.Cmd, *ioctl.Header) error {
				if crashed {
					return unix.EIO // the dead process's deferred calls
				}
				n++
				if n == i+1 {
					crashed = true
					panic(crash{})
				}
				return nil
			})
			func() {
				defer func() {
					if r := recover(); r != nil {
						if _, ok := r.(crash); !ok {
							panic(r)
						}
					}
				}()
				_ = s.run(w, c)
			}()
			w.k.SetBeforeIoctl(nil)
			catalog.Abandon(c)
			if !crashed {
				break
			}
			interrupted++
			c = w.open()
			got := c.List()
			if !cmp.Equal(got, before) && !cmp.Equal(got, want) {
				t.Errorf("%s, crash before ioctl %d: state is neither before nor after:\n%s\nbefore->after:\n%s",
					s.name, i+1, cmp.Diff(before, got), cmp.Diff(before, want))
			}
			w.check(c)
			if _, err := c.Create(w.ctx, "later", 2048); err != nil {
				t.Errorf("%s, crash before ioctl %d: unusable after: %+v", s.name, i+1, err)
			}
			w.check(c)
			c.Close()
		}
		// And after the kernel's last step, before the outcome is written.
		w := newWorld(t, catalog.WithDeferredDeletion())
		c := w.open()
		s.setup(w, c)
		before := c.List()
		crashed := false
		catalog.SetBeforeEnd(c, func() {
			if !crashed {
				crashed = true
				panic(crash{})
			}
		})
		func() {
			defer func() {
				if r := recover(); r != nil {
					if _, ok := r.(crash); !ok {
						panic(r)
					}
				}
			}()
			_ = s.run(w, c)
		}()
		catalog.Abandon(c)
		if crashed {
			interrupted++
			c = w.open()
			if got := c.List(); !cmp.Equal(got, want) && !cmp.Equal(got, before) {
				t.Errorf("%s, crash before the outcome: %s", s.name, cmp.Diff(want, got))
			}
			w.check(c)
			c.Close()
		}
		if interrupted == 0 {
			t.Errorf("%s: no crash point", s.name)
		}
		t.Logf("%s: %d crash points", s.name, interrupted)
	}
}

// A journal record cut short by a crash (at any byte) is dropped on Open.
// An "op" record is synced before the kernel is asked anything, so a torn
// one means the pool never saw the operation; a torn "done" record, that
// it may have.
func TestTornJournal(t *testing.T) {
	w := newWorld(t)
	c := w.open()
	created(w, c, false, "a")
	before := c.List()
	must(t, c.Close())
	path := filepath.Join(w.dir, "journal")
	j0, err := os.ReadFile(path)
	must(t, err)
	c = w.open()
	_, err = c.Create(w.ctx, "b", 4096)
	must(t, err)
	after := c.List()
	must(t, c.Close())
	j1, err := os.ReadFile(path)
	must(t, err)
	opEnd := len(j0) + strings.IndexByte(string(j1[len(j0):]), '\n') + 1

	for cut := len(j0); cut < len(j1); cut++ {
		w := w
		want := after
		if cut < opEnd {
			// The op record never became durable: the pool has only a.
			w = newWorld(t)
			c := w.open()
			created(w, c, false, "a")
			must(t, c.Close())
			want = before
		}
		must(t, os.WriteFile(filepath.Join(w.dir, "journal"), j1[:cut], 0o600))
		c := w.open()
		if got := c.List(); !cmp.Equal(got, want) {
			t.Fatalf("cut at %d of %d: %s", cut, len(j1), cmp.Diff(want, got))
		}
		w.check(c)
		must(t, c.Close())
	}
	// A damaged record followed by good ones is corruption, not a tear.
	bad := []byte(strings.Replace(string(j1), `"key":"a"`, `"key":"A"`, 1))
	must(t, os.WriteFile(path, bad, 0o600))
	if _, err := catalog.Open(w.ctx, w.pool, w.dir, w.opts...); !errors.Is(err, catalog.ErrCorrupt) {
		t.Fatalf("damaged journal: %v", err)
	}
}

func TestCompaction(t *testing.T) {
	w := newWorld(t, catalog.WithMinFreeSpace(0))
	c := w.open()
	for i := 0; i < catalog.CompactEvery/2+10; i++ {
		_, err := c.Create(w.ctx, fmt.Sprint("v", i), 2048)
		must(t, err)
		if i == 0 {
			_, err := c.Snapshot(w.ctx, "s0", "v0")
			must(t, err)
		}
	}
	want := c.List()
	must(t, c.Close())
	st, err := os.Stat(filepath.Join(w.dir, "journal"))
	must(t, err)
	if st.Size() > 40*1024 {
		t.Errorf("journal is %d bytes after compaction", st.Size())
	}
	c = w.open()
	if diff := cmp.Diff(want, c.List()); diff != "" {
		t.Fatal(diff)
	}
	// The child index is rebuilt from the state file.
	if ch, err := c.Children("v0"); err != nil || len(ch) != 1 || ch[0].Key != "s0" {
		t.Fatalf("children of v0 after compaction: %+v, %v", ch, err)
	}
	w.check(c)
	must(t, c.Close())
}

// Children follows thin ids: renames of parent or child do not matter, a
// deleted parent's snapshots are no one's children, and the index is the
// same after a reopen (journal replay).
func TestChildren(t *testing.T) {
	w := newWorld(t, catalog.WithMinFreeSpace(0))
	c := w.open()
	ctx := w.ctx
	keys := func(key string) string {
		t.Helper()
		vs, err := c.Children(key)
		must(t, err)
		var ks []string
		for _, v := range vs {
			ks = append(ks, v.Key)
		}
		return strings.Join(ks, ",")
	}
	_, err := c.Create(ctx, "base", thin.Size(64*thin.MiB))
	must(t, err)
	for _, sn := range [][2]string{{"b", "base"}, {"a", "base"}, {"c", "a"}, {"d", "c"}} {
		_, err := c.Snapshot(ctx, sn[0], sn[1])
		must(t, err)
	}
	must(t, c.Rename(ctx, "base", "base2"))
	must(t, c.Rename(ctx, "b", "b2"))
	if got := keys("base2"); got != "a,b2" {
		t.Fatalf("children of base2: %q", got)
	}
	if got := keys("a"); got != "c" {
		t.Fatalf("children of a: %q", got)
	}
	must(t, c.Delete(ctx, "c"))
	if got := keys("a") + "|" + keys("d"); got != "|" {
		t.Fatalf("after deleting c, children of a and d: %q", got)
	}
	if _, err := c.Children("c"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("children of a deleted volume: %v", err)
	}
	_, err = c.Snapshot(ctx, "e", "d")
	must(t, err)
	must(t, c.Close())
	c = w.open()
	defer c.Close()
	if got := keys("base2") + "|" + keys("a") + "|" + keys("d"); got != "a,b2||e" {
		t.Fatalf("after reopen: %q", got)
	}
}

func TestConcurrent(t *testing.T) {
	w := newWorld(t, catalog.WithMinFreeSpace(0))
	c := w.open()
	defer c.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				k := fmt.Sprintf("g%d-%d", g, i)
				if _, err := c.Create(w.ctx, k, 2048); err != nil {
					errs <- err
					return
				}
				if _, err := c.Activate(w.ctx, k); err != nil {
					errs <- err
					return
				}
				if _, err := c.Snapshot(w.ctx, k+"-s", k); err != nil {
					errs <- err
					return
				}
				if i%2 == 0 {
					if err := c.Delete(w.ctx, k); err != nil {
						errs <- err
						return
					}
				}
				c.List()
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("%+v", err)
	}
	if n := len(c.List()); n != 16*15 {
		t.Fatalf("%d volumes, want %d", n, 16*15)
	}
	w.check(c)
}

func TestActivateOptions(t *testing.T) {
	w := newWorld(t)
	c := w.open()
	defer c.Close()
	ctx := w.ctx
	created(w, c, false, "a", "b")
	// A name another device has: refused, that device left alone.
	if _, err := w.ctl.Create(ctx, "taken", dm.Table{{Start: 0, Length: 8, Type: "zero"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Activate(ctx, "a", catalog.WithDeviceName("taken")); !errors.Is(err, dm.ErrExists) {
		t.Fatalf("activate onto a taken name: %v", err)
	}
	if _, ok := w.k.Device("taken"); !ok {
		t.Fatal("the other device was removed")
	}
	must(t, w.ctl.Remove(ctx, dm.Name("taken")))
	if _, err := c.Activate(ctx, "a", catalog.WithDeviceName("bad/name")); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	_, err := c.Activate(ctx, "a", catalog.WithDeviceName("mine"), catalog.ReadOnly())
	must(t, err)
	if v, _ := c.Get("a"); v.Device != "mine" {
		t.Fatalf("device %q", v.Device)
	}
	info, err := w.ctl.Info(ctx, dm.Name("mine"))
	must(t, err)
	if !info.ReadOnly {
		t.Error("ReadOnly activation is writable")
	}
	if err := c.Resize(ctx, "a", 4096); !errors.Is(err, catalog.ErrInvalid) {
		t.Errorf("resize of an active volume: %v", err)
	}
	w.check(c)
}

// Changes to the kernel's devices behind the catalog's back are reported
// by Check and put right by Repair.
func TestRepairDevices(t *testing.T) {
	w := newWorld(t)
	c := w.open()
	defer c.Close()
	ctx := w.ctx
	created(w, c, true, "gone", "suspended")
	created(w, c, false, "stray")
	gone, _ := c.Get("gone")
	must(t, w.ctl.Remove(ctx, dm.Name(gone.Device)))
	susp, _ := c.Get("suspended")
	must(t, w.ctl.Suspend(ctx, dm.Name(susp.Device)))
	stray, _ := c.Get("stray")
	_, err := w.pool.Activate(ctx, "other-tool", stray.ID, 2048)
	must(t, err)
	r, err := c.Check(ctx)
	must(t, err)
	if diff := cmp.Diff([]string{"gone"}, r.Gone); diff != "" {
		t.Error(diff)
	}
	if diff := cmp.Diff([]string{susp.Device}, r.Suspended); diff != "" {
		t.Error(diff)
	}
	if diff := cmp.Diff([]string{"other-tool"}, r.Unknown); diff != "" {
		t.Error(diff)
	}
	_, err = c.Repair(ctx, catalog.RepairOptions{})
	must(t, err)
	w.check(c)
	if v, _ := c.Get("stray"); v.State != catalog.Active || v.Device != "other-tool" {
		t.Errorf("stray: %+v", v)
	}
	if v, _ := c.Get("gone"); v.State != catalog.Inactive {
		t.Errorf("gone: %+v", v)
	}
	// And Open records a device that went while the catalog was closed.
	must(t, c.Close())
	must(t, w.ctl.Remove(ctx, dm.Name("other-tool")))
	c = w.open()
	if v, _ := c.Get("stray"); v.State != catalog.Inactive {
		t.Errorf("stray after its device went: %+v", v)
	}
	w.check(c)
}

// An interrupted operation that Open cannot settle (the pool moved on
// meanwhile) stays open until Repair, and nothing else is journalled
// around it: the files stay readable.
func TestUnsettledOperationThenRepair(t *testing.T) {
	w := newWorld(t)
	c := w.open()
	created(w, c, true, "a")
	crashed := false
	w.k.SetBeforeIoctl(func(cmd ioctl.Cmd, _ *ioctl.Header) error {
		if crashed {
			return unix.EIO
		}
		if cmd == ioctl.CmdTargetMsg {
			crashed = true
			panic(crash{})
		}
		return nil
	})
	func() {
		defer func() { recover() }()
		c.Snapshot(w.ctx, "s", "a")
	}()
	w.k.SetBeforeIoctl(nil)
	catalog.Abandon(c)
	if !crashed {
		t.Fatal("no crash")
	}
	// Behind the catalog's back: the transaction id moves, a's device goes.
	tid, err := w.pool.TransactionID(w.ctx)
	must(t, err)
	must(t, w.pool.SetTransactionID(w.ctx, tid, tid+5))
	a, _ := c.Get("a")
	must(t, w.ctl.Remove(w.ctx, dm.Name(a.Device)))
	c = w.open()
	if !catalog.Pending(c) {
		t.Fatal("the snapshot was settled against a moved pool")
	}
	if _, err := c.Create(w.ctx, "b", 2048); !errors.Is(err, catalog.ErrDrift) {
		t.Fatalf("create with an unsettled operation: %v", err)
	}
	must(t, c.Close())
	c = w.open() // the journal is still well formed
	r, err := c.Repair(w.ctx, catalog.RepairOptions{})
	must(t, err)
	if r.Interrupted == "" || len(r.Gone) != 1 {
		t.Errorf("repair found %+v", r)
	}
	w.check(c)
	must(t, c.Close())
	c = w.open()
	w.check(c)
	_, err = c.Create(w.ctx, "b", 2048)
	must(t, err)
	must(t, c.Close())
}

// Activations of different volumes overlap: n of them are held inside the
// kernel at once, and meanwhile the pool changes and a deactivation of one
// of them waits for it. A crash at that instant (the directory as it was
// then) leaves n open journal records interleaved with finished ones; Open
// settles each from the kernel's state.
func TestActivationsOverlap(t *testing.T) {
	const n = 8
	w := newWorld(t, catalog.WithMinFreeSpace(0))
	c := w.open()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("v%d", i)
		if _, err := c.Create(w.ctx, keys[i], 2048); err != nil {
			t.Fatalf("%+v", err)
		}
	}
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	release := make(chan struct{})
	fails := map[string]bool{}
	w.k.SetBeforeIoctl(func(cmd ioctl.Cmd, h *ioctl.Header) error {
		if cmd != ioctl.CmdDevCreate {
			return nil
		}
		mu.Lock()
		arrived++
		if arrived == n {
			close(all)
		}
		mu.Unlock()
		<-release
		if fails[h.Name] {
			return unix.EIO
		}
		return nil
	})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Activate(w.ctx, k)
		}()
	}
	select {
	case <-all:
	case <-time.After(time.Minute):
		mu.Lock()
		t.Fatalf("only %d of %d activations reached the kernel together: they do not overlap", arrived, n)
	}
	// While all n are in the kernel: the pool changes, other keys change.
	if _, err := c.Create(w.ctx, "other", 2048); err != nil {
		t.Fatalf("create beside activations: %+v", err)
	}
	if _, err := c.Snapshot(w.ctx, "other-snap", "other"); err != nil {
		t.Fatalf("snapshot beside activations: %+v", err)
	}
	if err := c.SetLabels(w.ctx, "other", map[string]string{"a": "b"}); err != nil {
		t.Fatalf("labels beside activations: %+v", err)
	}
	for _, k := range keys {
		if v, err := c.Get(k); err != nil || v.State != catalog.Inactive {
			t.Fatalf("%s in flight: %+v, %v; want inactive until it ends", k, v, err)
		}
	}
	// The instant of the crash, as a copy of the directory.
	crashDir := t.TempDir()
	ents, err := os.ReadDir(w.dir)
	must(t, err)
	for _, e := range ents {
		if e.Name() == "lock" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(w.dir, e.Name()))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(crashDir, e.Name()), b, 0o600))
	}
	// A deactivation of v0 waits for its activation, then undoes it.
	deact := make(chan error, 1)
	go func() { deact <- c.Deactivate(w.ctx, keys[0]) }()
	// Odd ones fail in the kernel and leave nothing.
	for i := 1; i < n; i += 2 {
		fails[fmt.Sprintf("pool-%d", i+1)] = true
	}
	close(release)
	wg.Wait()
	must(t, <-deact)
	w.k.SetBeforeIoctl(nil)
	// v0 deactivated, the odd ones failed, the rest active.
	want := func(i int) catalog.State {
		if i%2 == 1 || i == 0 {
			return catalog.Inactive
		}
		return catalog.Active
	}
	for i, k := range keys {
		v, err := c.Get(k)
		must(t, err)
		if i%2 == 1 && errs[i] == nil || i%2 == 0 && errs[i] != nil {
			t.Errorf("activate %s: %v", k, errs[i])
		}
		if v.State != want(i) {
			t.Errorf("%s: %v, want %v", k, v.State, want(i))
		}
	}
	w.check(c)
	must(t, c.Close())

	// The crashed catalog: every activation open, the pool changes after
	// them done. Each is settled by the device the kernel has.
	w.dir = crashDir
	c = w.open()
	defer c.Close()
	for i, k := range keys {
		v, err := c.Get(k)
		must(t, err)
		if v.State != want(i) {
			t.Errorf("after the crash, %s: %v, want %v", k, v.State, want(i))
		}
	}
	if v, err := c.Get("other"); err != nil || v.Labels["a"] != "b" {
		t.Errorf("after the crash, other: %+v, %v", v, err)
	}
	if _, err := c.Get("other-snap"); err != nil {
		t.Errorf("after the crash, other-snap: %v", err)
	}
	w.check(c)
}

// An activation held in the kernel does not stop compaction: the journal
// stays bounded while it runs, the state written meanwhile carries it as
// open, and its outcome, journalled after the compaction, settles it on
// the next Open. A crash at any instant of that (held, or between the
// state's write and the journal's restart) reopens to the same catalog.
func TestCompactionBesideActivation(t *testing.T) {
	w := newWorld(t, catalog.WithMinFreeSpace(0))
	c := w.open()
	for _, k := range []string{"held", "other"} {
		if _, err := c.Create(w.ctx, k, 2048); err != nil {
			t.Fatalf("%+v", err)
		}
	}
	arrived, release := make(chan struct{}), make(chan struct{})
	w.k.SetBeforeIoctl(func(cmd ioctl.Cmd, h *ioctl.Header) error {
		if cmd == ioctl.CmdDevCreate {
			close(arrived)
			<-release
		}
		return nil
	})
	done := make(chan error, 1)
	go func() { _, err := c.Activate(w.ctx, "held"); done <- err }()
	<-arrived
	w.k.SetBeforeIoctl(nil)

	journal := filepath.Join(w.dir, "journal")
	copyDir := func(files map[string][]byte) string {
		d := t.TempDir()
		for name, b := range files {
			must(t, os.WriteFile(filepath.Join(d, name), b, 0o600))
		}
		return d
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(w.dir, name))
		must(t, err)
		return b
	}
	// Label changes are two records each: enough of them to compact twice.
	var torn string // the new state beside the journal before its restart
	compactions := 0
	prev := read("journal")
	for i := 0; i < catalog.CompactEvery+10; i++ {
		must(t, c.SetLabels(w.ctx, "other", map[string]string{"n": fmt.Sprint(i)}))
		cur := read("journal")
		if len(cur) < len(prev) {
			compactions++
			if torn == "" {
				torn = copyDir(map[string][]byte{"catalog.json": read("catalog.json"), "journal": prev})
			}
		}
		prev = cur
	}
	if compactions < 2 {
		t.Fatalf("%d compactions while an activation was held, want 2", compactions)
	}
	if st, err := os.Stat(journal); err != nil || st.Size() > 1<<20 {
		t.Fatalf("journal after compaction beside an activation: %v, %v", st, err)
	}
	if !bytes.Contains(read("catalog.json"), []byte(`"open"`)) {
		t.Fatal("the state written during the activation does not list it as open")
	}
	held := copyDir(map[string][]byte{"catalog.json": read("catalog.json"), "journal": read("journal")})

	close(release)
	must(t, <-done)
	want := c.List()
	must(t, c.Close())
	c = w.open()
	if diff := cmp.Diff(want, c.List()); diff != "" {
		t.Fatalf("reopened after the activation ended:\n%s", diff)
	}
	if v, _ := c.Get("held"); v.State != catalog.Active {
		t.Fatalf("held after reopen: %+v", v)
	}
	w.check(c)
	must(t, c.Close())

	// Crashes: the activation open in the state, its device made since.
	for name, dir := range map[string]string{"held": held, "torn compaction": torn} {
		w.dir = dir
		c = w.open()
		if v, err := c.Get("held"); err != nil || v.State != catalog.Active {
			t.Errorf("%s: held after the crash: %+v, %v", name, v, err)
		}
		if v, err := c.Get("other"); err != nil || v.Labels["n"] == "" {
			t.Errorf("%s: other after the crash: %+v, %v", name, v, err)
		}
		w.check(c)
		must(t, c.Close())
	}
}

// groupWorld holds a creation of "first" in its create_thin message while
// n snapshots of "base" queue up behind it, and counts the pool messages;
// release lets the kernel go on and returns the snapshots' errors by key.
type groupWorld struct {
	*world
	c     *catalog.Catalog
	mu    sync.Mutex
	msgs  []string
	fail  func(msg string) error // the message hook's verdict
	hold  chan struct{}
	errs  map[string]error
	wg    sync.WaitGroup
	first chan error
}

func newGroupWorld(t *testing.T, n int) *groupWorld {
	g := &groupWorld{world: newWorld(t, catalog.WithMinFreeSpace(0)), hold: make(chan struct{}), errs: map[string]error{}, first: make(chan error, 1)}
	g.c = g.open()
	t.Cleanup(func() { g.c.Close() })
	if _, err := g.c.Create(g.ctx, "base", 2048); err != nil {
		t.Fatalf("%+v", err)
	}
	g.k.SetMessageHook(func(_ string, _ ioctl.TargetSpec, argv []string) (string, bool, bool, error) {
		msg := strings.Join(argv, " ")
		g.mu.Lock()
		g.msgs = append(g.msgs, msg)
		fail := g.fail
		g.mu.Unlock()
		if fail != nil {
			if err := fail(msg); err != nil {
				return "", false, true, err
			}
		}
		return "", false, false, nil
	})
	arrived := make(chan struct{})
	var once sync.Once
	g.k.SetBeforeIoctl(func(cmd ioctl.Cmd, _ *ioctl.Header) error {
		if cmd == ioctl.CmdTargetMsg {
			once.Do(func() { close(arrived); <-g.hold })
		}
		return nil
	})
	go func() {
		defer crashed(func(err error) { g.first <- err })
		_, err := g.c.Create(g.ctx, "first", 2048)
		g.first <- err
	}()
	<-arrived
	for i := 0; i < n; i++ {
		key := fmt.Sprint("s", i)
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			report := func(err error) {
				g.mu.Lock()
				g.errs[key] = err
				g.mu.Unlock()
			}
			defer crashed(report)
			_, err := g.c.Snapshot(g.ctx, key, "base")
			report(err)
		}()
	}
	deadline := time.Now().Add(time.Minute)
	for catalog.Queued(g.c) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d snapshots queued behind a running transaction", catalog.Queued(g.c), n)
		}
		time.Sleep(time.Millisecond)
	}
	return g
}

// crashed, deferred, reports a simulated crash (a crash{} panic) as an
// error.
func crashed(report func(error)) {
	if r := recover(); r != nil {
		if _, ok := r.(crash); !ok {
			panic(r)
		}
		report(errors.New("crashed"))
	}
}

func (g *groupWorld) release() error {
	close(g.hold)
	err := <-g.first
	g.wg.Wait()
	return err
}

// count is how many messages sent since the first begin with prefix.
func (g *groupWorld) count(prefix string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, m := range g.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// Snapshots that queue up while a transaction runs go into the next one
// together: one set_transaction_id and one journal record for all.
func TestGroupCommit(t *testing.T) {
	const n = 6
	g := newGroupWorld(t, n)
	must(t, g.release())
	for k, err := range g.errs {
		if err != nil {
			t.Errorf("%s: %+v", k, err)
		}
	}
	if got := g.count("create_snap"); got != n {
		t.Errorf("%d create_snap messages, want %d", got, n)
	}
	if got := g.count("set_transaction_id"); got != 2 {
		t.Errorf("%d transactions for a creation and %d snapshots queued behind it, want 2", got, n)
	}
	g.settled(`"type":"group"`, n)
}

// settled asserts the journal holds record, base has children snapshots,
// and the catalog agrees with the pool, before and after a reopen.
func (g *groupWorld) settled(record string, children int) {
	g.t.Helper()
	b, err := os.ReadFile(filepath.Join(g.dir, "journal"))
	must(g.t, err)
	if !bytes.Contains(b, []byte(record)) {
		g.t.Errorf("no %s in the journal:\n%s", record, b)
	}
	if ch, err := g.c.Children("base"); err != nil || len(ch) != children {
		g.t.Errorf("children of base: %d, %v; want %d", len(ch), err, children)
	}
	g.check(g.c)
	want := g.c.List()
	must(g.t, g.c.Close())
	g.c = g.open()
	if diff := cmp.Diff(want, g.c.List()); diff != "" {
		g.t.Fatalf("reopened:\n%s", diff)
	}
	g.check(g.c)
}

// A message failing in the middle of a group: the snapshots before it are
// kept (the group is cut down to them and the transaction id advanced), the
// one that failed gets the error and leaves nothing, the ones after it are
// sent again in the next transaction.
func TestGroupCommitFailsPartWay(t *testing.T) {
	const n = 5
	g := newGroupWorld(t, n)
	seen := 0
	g.fail = func(msg string) error {
		if strings.HasPrefix(msg, "create_snap") {
			if seen++; seen == 3 {
				return unix.ENOSPC
			}
		}
		return nil
	}
	must(t, g.release())
	var failed []string
	for k, err := range g.errs {
		if err != nil {
			failed = append(failed, k)
			if _, gerr := g.c.Get(k); !errors.Is(gerr, catalog.ErrNotFound) {
				t.Errorf("%s failed (%v) but the catalog has it: %v", k, err, gerr)
			}
		}
	}
	if len(failed) != 1 {
		t.Fatalf("failed: %v, want exactly the third of the group", failed)
	}
	g.settled(`"kind":"trim","keep":2`, n-1) // cut down to the first two
}

// A crash before any ioctl of a group's transaction, of the cut-down
// group's, or before an outcome is journalled: the next Open settles every
// record, and the catalog and the pool agree.
func TestGroupCommitCrash(t *testing.T) {
	const n = 4
	points := 0
	defer func() {
		if points < 16 {
			t.Errorf("only %d crash points", points)
		}
	}()
	for _, failPartWay := range []bool{false, true} {
		for i := 0; ; i++ {
			g := newGroupWorld(t, n)
			if failPartWay {
				seen := 0
				g.fail = func(msg string) error {
					if strings.HasPrefix(msg, "create_snap") {
						if seen++; seen == 2 {
							return unix.ENOSPC
						}
					}
					return nil
				}
			}
			calls, dead := 0, false
			g.k.SetBeforeIoctl(func(ioctl.Cmd, *ioctl.Header) error {
				if dead {
					return unix.EIO
				}
				if calls++; calls == i+1 {
					dead = true
					panic(crash{})
				}
				return nil
			})
			g.release()
			g.k.SetBeforeIoctl(nil)
			g.fail = nil
			catalog.Abandon(g.c)
			g.c = g.open()
			g.check(g.c)
			// All of a group or none of it. (A group whose message failed
			// and that was not yet cut down is rolled forward whole: its
			// callers had no answer.)
			ch, err := g.c.Children("base")
			must(t, err)
			if !failPartWay && len(ch) != 0 && len(ch) != n {
				t.Errorf("fail part-way %v, crash before ioctl %d: %d of %d snapshots", failPartWay, i+1, len(ch), n)
			}
			points++
			if _, err := g.c.Snapshot(g.ctx, "later", "base"); err != nil {
				t.Fatalf("fail part-way %v, crash before ioctl %d: unusable after: %+v", failPartWay, i+1, err)
			}
			g.check(g.c)
			if !dead {
				break
			}
		}
	}
}
