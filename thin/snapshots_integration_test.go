package thin_test

// Privileged tests of snapshots: many snapshots of one origin, and the
// ordering of suspends around create_snap.

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/thin"
)

// TestIntegrationManySnapshots writes an origin, pauses it, takes 1000
// snapshots of it, writes it again, and reads the old data back from the
// first and last snapshots.
func TestIntegrationManySnapshots(t *testing.T) {
	ctl, prefix := vmSetup(t)
	ctx := context.Background()
	const size = 4 << 20 // 64 blocks
	const snaps = 1000
	tp := selfCheckedPool(t, ctl, prefix, poolOpts{})
	origin := tp.activate(t, prefix+"origin", 0, thin.Size(size), true)
	before, after := patternBuf(size, 1), patternBuf(size, 101)
	if _, err := writeDirect(origin.DevPath(), 0, before, 1<<20); err != nil {
		t.Fatal(err)
	}

	// Pause the origin once; CreateSnapshot leaves a device its caller
	// suspended alone.
	start := time.Now()
	err := ctl.WithSuspended(ctx, dm.Name(origin.Name()), func() error {
		for id := thin.DeviceID(1); id <= snaps; id++ {
			if err := tp.CreateSnapshot(ctx, id, 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("snapshots: %+v", err)
	}
	t.Logf("%d snapshots in %v", snaps, time.Since(start).Round(time.Millisecond))
	if info, err := ctl.Info(ctx, dm.Name(origin.Name())); err != nil || info.Suspended {
		t.Fatalf("origin after the snapshots: %+v, suspended %v", err, info.Suspended)
	}

	if _, err := writeDirect(origin.DevPath(), 0, after, 1<<20); err != nil {
		t.Fatal(err)
	}
	first := tp.activate(t, prefix+"snap1", 1, thin.Size(size), false)
	last := tp.activate(t, prefix+"snap"+strconv.Itoa(snaps), snaps, thin.Size(size), false)
	expectData(t, first.DevPath(), 0, before)
	expectData(t, last.DevPath(), 0, before)
	expectData(t, origin.DevPath(), 0, after)

	// Every snapshot shares the first 64 blocks; the origin's rewrite broke
	// the sharing of all of them.
	st := tp.status(t)
	if st.UsedData != 128 {
		t.Errorf("used data blocks %d, want 128 (64 shared by the snapshots, 64 rewritten)", st.UsedData)
	}
	for _, v := range []*thin.Volume{origin, first, last} {
		if got := mappedBlocks(t, v); got != 64 {
			t.Errorf("%s maps %d blocks, want 64", v.Name(), got)
		}
	}
	want := map[thin.DeviceID]uint64{}
	for id := thin.DeviceID(0); id <= snaps; id++ {
		want[id] = 64
	}
	compareLs(t, tp.thinLsLive(t), want)
}

// TestIntegrationSuspendOrdering suspends pools with and without thins, and
// checks the orderings that block: I/O to a thin resumed while its pool is
// suspended, a thin's suspend or resume while its pool is suspended (the
// thin is internally suspended by the pool, and the kernel waits for the
// pool's resume), and a delete of a thin that is noflush-suspended during
// discards (bz1195506).
func TestIntegrationSuspendOrdering(t *testing.T) {
	ctx := context.Background()
	const size = 4 << 20
	// setup makes a pool with thins 0 and 1 active, and resumes all three
	// at cleanup, pool first.
	setup := func(t *testing.T) (*dm.Control, *testPool, *thin.Volume, *thin.Volume) {
		ctl, prefix := vmSetup(t)
		tp := selfCheckedPool(t, ctl, prefix, poolOpts{})
		a := tp.activate(t, prefix+"thin0", 0, thin.Size(size), true)
		b := tp.activate(t, prefix+"thin1", 1, thin.Size(size), true)
		resumeAtCleanup(t, ctl, tp.Name, a.Name(), b.Name())
		return ctl, tp, a, b
	}
	pause := func(t *testing.T, ctl *dm.Control, name string) {
		t.Helper()
		within(t, "pause "+name, func() error {
			return ctl.WithSuspended(ctx, dm.Name(name), func() error { return nil })
		})
	}
	suspend := func(ctl *dm.Control, name string, flags ...dm.Flag) func() (int64, error) {
		return func() (int64, error) {
			return 0, retryEINTR(func() error { return ctl.Suspend(ctx, dm.Name(name), flags...) })
		}
	}
	resume := func(ctl *dm.Control, name string) func() (int64, error) {
		return func() (int64, error) {
			return 0, retryEINTR(func() error { _, err := ctl.Resume(ctx, dm.Name(name)); return err })
		}
	}
	// isWorking writes and reads back one block of v.
	isWorking := func(t *testing.T, v *thin.Volume, seed byte) {
		t.Helper()
		b := patternBuf(blockBytes, seed)
		if _, err := writeDirect(v.DevPath(), 0, b, blockBytes); err != nil {
			t.Fatal(err)
		}
		expectData(t, v.DevPath(), 0, b)
	}

	t.Run("pool", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := selfCheckedPool(t, ctl, prefix, poolOpts{})
		resumeAtCleanup(t, ctl, tp.Name)
		pause(t, ctl, tp.Name) // no thins
		for _, id := range []thin.DeviceID{0, 1} {
			if err := tp.CreateThin(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		pause(t, ctl, tp.Name) // inactive thins
		a := tp.activate(t, prefix+"thin0", 0, thin.Size(size), false)
		b := tp.activate(t, prefix+"thin1", 1, thin.Size(size), false)
		resumeAtCleanup(t, ctl, a.Name(), b.Name())
		pause(t, ctl, tp.Name) // active idle thins
		// A pool paused under a suspended thin; I/O to the thin waits
		// for the thin.
		within(t, "suspend thin0", func() error { return ctl.Suspend(ctx, dm.Name(a.Name())) })
		pause(t, ctl, tp.Name)
		w := goAsync("write to the suspended thin", func() (int64, error) {
			return writeDirect(a.DevPath(), 0, patternBuf(blockBytes, 70), blockBytes)
		})
		w.blocked(t, blockSettle)
		within(t, "resume thin0", func() error { _, err := ctl.Resume(ctx, dm.Name(a.Name())); return err })
		if _, err := w.wait(t, kernelWait); err != nil {
			t.Fatal(err)
		}
		isWorking(t, b, 71)
		if st := tp.status(t); st.Mode != thin.ModeReadWrite || st.UsedData != 2 {
			t.Errorf("after the pauses: %q, want rw with 2 blocks used", st)
		}
		compareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 1, 1: 1})
	})

	t.Run("io to a thin resumed under a suspended pool", func(t *testing.T) {
		ctl, tp, a, _ := setup(t)
		within(t, "suspend the pool", func() error { return ctl.Suspend(ctx, dm.Name(tp.Name)) })
		// The thin was not suspended, so its resume does nothing; but
		// the pool's suspend suspended it internally.
		within(t, "resume thin0", func() error { _, err := ctl.Resume(ctx, dm.Name(a.Name())); return err })
		w := goAsync("write to thin0", func() (int64, error) {
			return writeDirect(a.DevPath(), 0, patternBuf(blockBytes, 72), blockBytes)
		})
		w.blocked(t, blockSettle)
		within(t, "resume the pool", func() error { _, err := ctl.Resume(ctx, dm.Name(tp.Name)); return err })
		if _, err := w.wait(t, kernelWait); err != nil {
			t.Fatalf("the held write: %v", err)
		}
		expectData(t, a.DevPath(), 0, patternBuf(blockBytes, 72))
		compareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 1, 1: 0})
	})

	t.Run("snapshot of an active origin under a suspended pool", func(t *testing.T) {
		ctl, tp, a, _ := setup(t)
		within(t, "suspend the pool", func() error { return ctl.Suspend(ctx, dm.Name(tp.Name)) })
		// The pool's suspend suspends its active thins internally, and
		// the thin's status says so: that is how CreateSnapshot knows,
		// from the origin alone, that suspending it would block.
		if info, err := ctl.Info(ctx, dm.Name(a.Name())); err != nil || info.Suspended || !info.InternalSuspend {
			t.Errorf("thin0 under the suspended pool: %+v %v; want suspended internally only", info, err)
		}
		var serr error
		within(t, "snapshot thin0", func() error { serr = tp.CreateSnapshot(ctx, 5, 0); return nil })
		if !errors.Is(serr, thin.ErrPoolSuspended) || !errors.Is(serr, unix.EBUSY) {
			t.Errorf("snapshot of an active origin under a suspended pool: %v, want ErrPoolSuspended, EBUSY", serr)
		}
		within(t, "resume the pool", func() error { _, err := ctl.Resume(ctx, dm.Name(tp.Name)); return err })
		if info, err := ctl.Info(ctx, dm.Name(a.Name())); err != nil || info.Suspended || info.InternalSuspend {
			t.Errorf("thin0 after the pool's resume: %+v %v", info, err)
		}
		within(t, "snapshot thin0", func() error { return tp.CreateSnapshot(ctx, 5, 0) })
		isWorking(t, a, 74)
	})

	t.Run("suspend a thin under a suspended pool", func(t *testing.T) {
		ctl, tp, a, _ := setup(t)
		within(t, "suspend the pool", func() error { return ctl.Suspend(ctx, dm.Name(tp.Name)) })
		s := goAsync("suspend thin0", suspend(ctl, a.Name()))
		s.blocked(t, blockSettle)
		within(t, "resume the pool", func() error { _, err := ctl.Resume(ctx, dm.Name(tp.Name)); return err })
		if _, err := s.wait(t, kernelWait); err != nil {
			t.Fatalf("suspend thin0 after the pool's resume: %+v", err)
		}
		if info, err := ctl.Info(ctx, dm.Name(a.Name())); err != nil || !info.Suspended {
			t.Errorf("thin0 after its suspend: %+v %v", info, err)
		}
		within(t, "resume thin0", func() error { _, err := ctl.Resume(ctx, dm.Name(a.Name())); return err })
		isWorking(t, a, 73)
		// And the nested case: thin suspended, then the pool; the thin's
		// resume waits for the pool's.
		within(t, "suspend thin0", func() error { return ctl.Suspend(ctx, dm.Name(a.Name())) })
		within(t, "suspend the pool", func() error { return ctl.Suspend(ctx, dm.Name(tp.Name)) })
		r := goAsync("resume thin0", resume(ctl, a.Name()))
		r.blocked(t, blockSettle)
		within(t, "resume the pool", func() error { _, err := ctl.Resume(ctx, dm.Name(tp.Name)); return err })
		if _, err := r.wait(t, kernelWait); err != nil {
			t.Fatalf("resume thin0 after the pool's resume: %+v", err)
		}
		isWorking(t, a, 74)
		compareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 1, 1: 0})
	})

	t.Run("duplicate inactive table", func(t *testing.T) {
		ctl, tp, a, _ := setup(t)
		table, err := ctl.Table(ctx, dm.Name(a.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := ctl.Load(ctx, dm.Name(a.Name()), table); err != nil {
			t.Fatalf("load thin0's table into its inactive slot: %+v", err)
		}
		// The inactive table's thin is on the pool's list of active
		// thins too: pausing the pool must not deadlock.
		pause(t, ctl, tp.Name)
		// Swapping it in while the pool is suspended waits for the pool.
		within(t, "suspend the pool", func() error { return ctl.Suspend(ctx, dm.Name(tp.Name)) })
		r := goAsync("resume thin0 with its new table", resume(ctl, a.Name()))
		r.blocked(t, blockSettle)
		within(t, "resume the pool", func() error { _, err := ctl.Resume(ctx, dm.Name(tp.Name)); return err })
		if _, err := r.wait(t, kernelWait); err != nil {
			t.Fatalf("resume thin0 after the pool's resume: %+v", err)
		}
		info, err := ctl.Info(ctx, dm.Name(a.Name()))
		if err != nil || info.Suspended || info.InactivePresent {
			t.Errorf("thin0 after the swap: %+v %v, want live, no inactive table", info, err)
		}
		isWorking(t, a, 75)
		compareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 1, 1: 0})
	})

	t.Run("bz1195506", func(t *testing.T) {
		ctl, tp, a, _ := setup(t)
		if _, err := writeDirect(a.DevPath(), 0, patternBuf(size, 76), 1<<20); err != nil {
			t.Fatal(err)
		}
		// Rewrite and discard thin0's blocks in a loop.
		stop := make(chan struct{})
		var stopped bool
		halt := func() {
			if !stopped {
				stopped = true
				close(stop)
			}
		}
		var done atomic.Int64 // discards completed
		d := goAsync("discards", func() (int64, error) {
			b := patternBuf(blockBytes, 77)
			for n := int64(0); ; n++ {
				select {
				case <-stop:
					return n, nil
				default:
				}
				off := n % (size / blockBytes) * blockBytes
				if _, err := writeDirect(a.DevPath(), off, b, blockBytes); err != nil {
					return n, err
				}
				if err := discardRange(a.DevPath(), off, blockBytes); err != nil {
					return n, err
				}
				done.Add(1)
			}
		})
		t.Cleanup(func() { halt(); d.wait(t, kernelWait) })
		for done.Load() < 10 {
			d.blocked(t, 10*time.Millisecond)
		}
		within(t, "suspend thin0 (noflush)", func() error { return ctl.Suspend(ctx, dm.Name(a.Name()), dm.NoFlush) })
		held := done.Load()
		for i := 0; i < 10; i++ {
			if err := tp.Delete(ctx, 0); !errors.Is(err, thin.ErrInUse) || !errors.Is(err, unix.EBUSY) {
				t.Fatalf("delete %d of the suspended thin: %v, want ErrInUse, EBUSY", i, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// The discard loop's I/O was held all along.
		if n := done.Load(); n > held+1 {
			t.Errorf("%d discards completed while thin0 was suspended", n-held)
		}
		within(t, "resume thin0", func() error { _, err := ctl.Resume(ctx, dm.Name(a.Name())); return err })
		halt()
		n, err := d.wait(t, kernelWait)
		if err != nil {
			t.Fatalf("discards: %v", err)
		}
		t.Logf("%d rewrites and discards", n)
		if st := tp.status(t); st.Mode != thin.ModeReadWrite || st.UsedData != thin.DataBlocks(mappedBlocks(t, a)) {
			t.Errorf("pool %q, want rw with thin0's blocks used", st)
		}
		if err := a.Deactivate(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tp.Delete(ctx, 0); err != nil {
			t.Fatalf("delete 0 once deactivated: %+v", err)
		}
		if st := tp.status(t); st.Mode != thin.ModeReadWrite || st.UsedData != 0 {
			t.Errorf("after delete 0: %q, want rw with nothing used", st)
		}
		compareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{1: 0})
	})
}
