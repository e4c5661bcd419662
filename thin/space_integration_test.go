package thin_test

// Privileged tests of data space: discards, running out of data space in
// error and queue mode, and growing a pool with I/O held.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/thin"
)

// TestIntegrationDiscard discards through a thin device with BLKDISCARD:
// the whole device, one block, a block shared with a snapshot, past the
// end, and on a pool that ignores discards.
func TestIntegrationDiscard(t *testing.T) {
	const size = 4 << 20 // 64 blocks
	ctx := context.Background()

	t.Run("whole", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := selfCheckedPool(t, ctl, prefix, poolOpts{})
		v := tp.activate(t, prefix+"thin", 0, thin.Size(size), true)
		if _, err := writeDirect(v.DevPath(), 0, patternBuf(size, 3), 1<<20); err != nil {
			t.Fatal(err)
		}
		if st := tp.status(t); st.UsedData != 64 || st.Discard != thin.DiscardPassdown {
			t.Fatalf("after the wipe: used %d blocks, discards %v; want 64, discard_passdown", st.UsedData, st.Discard)
		}
		if err := discardRange(v.DevPath(), 0, size); err != nil {
			t.Fatal(err)
		}
		if st := tp.status(t); st.UsedData != 0 {
			t.Errorf("after discarding everything: used %d blocks, want 0", st.UsedData)
		}
		if got := mappedBlocks(t, v); got != 0 {
			t.Errorf("thin maps %d blocks, want 0", got)
		}
		compareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 0})
		expectData(t, v.DevPath(), 0, alignedBuf(size))

		// Offline, the metadata has no mappings left.
		if err := tp.Teardown(ctx); err != nil {
			t.Fatal(err)
		}
		thinCheck(t, tp.Meta.Loop.Path())
		_, devs := dumpOffline(t, tp.Meta.Loop.Path())
		if d, ok := devs[0]; !ok || d.MappedBlocks != 0 || len(d.blocks()) != 0 {
			t.Errorf("thin_dump: device 0 %+v (listed %v), want no mappings", d, ok)
		}
	})

	t.Run("one block", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := selfCheckedPool(t, ctl, prefix, poolOpts{})
		v := tp.activate(t, prefix+"thin", 0, thin.Size(size), true)
		data := patternBuf(size, 5)
		if _, err := writeDirect(v.DevPath(), 0, data, 1<<20); err != nil {
			t.Fatal(err)
		}
		if err := discardRange(v.DevPath(), 10*blockBytes, blockBytes); err != nil {
			t.Fatal(err)
		}
		if st := tp.status(t); st.UsedData != 63 {
			t.Errorf("used %d blocks, want 63", st.UsedData)
		}
		if got := mappedBlocks(t, v); got != 63 {
			t.Errorf("thin maps %d blocks, want 63", got)
		}
		compareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 63})
		copy(data[10*blockBytes:11*blockBytes], make([]byte, blockBytes)) // unprovisioned reads as zeros
		expectData(t, v.DevPath(), 0, data)
	})

	t.Run("shared with a snapshot", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := selfCheckedPool(t, ctl, prefix, poolOpts{})
		v := tp.activate(t, prefix+"thin", 0, thin.Size(size), true)
		data := patternBuf(size, 7)
		if _, err := writeDirect(v.DevPath(), 0, data, 1<<20); err != nil {
			t.Fatal(err)
		}
		if err := v.Snapshot(ctx, 1); err != nil {
			t.Fatalf("snapshot: %+v", err)
		}
		if err := discardRange(v.DevPath(), 10*blockBytes, blockBytes); err != nil {
			t.Fatal(err)
		}
		// The origin lost the block; the snapshot still maps it, so it
		// stays allocated and was not discarded on the data device.
		if got := mappedBlocks(t, v); got != 63 {
			t.Errorf("origin maps %d blocks, want 63", got)
		}
		if st := tp.status(t); st.UsedData != 64 || st.Discard != thin.DiscardPassdown {
			t.Errorf("used %d blocks, discards %v; want 64, discard_passdown", st.UsedData, st.Discard)
		}
		compareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 63, 1: 64})
		snap := tp.activate(t, prefix+"snap", 1, thin.Size(size), false)
		expectData(t, snap.DevPath(), 0, data)
	})

	t.Run("past the end", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := selfCheckedPool(t, ctl, prefix, poolOpts{})
		v := tp.activate(t, prefix+"thin", 0, thin.Size(size), true)
		if _, err := writeDirect(v.DevPath(), 0, patternBuf(size, 9), 1<<20); err != nil {
			t.Fatal(err)
		}
		for _, r := range [][2]int64{{size - blockBytes, 2 * blockBytes}, {size, blockBytes}} {
			if err := discardRange(v.DevPath(), r[0], r[1]); !errors.Is(err, unix.EINVAL) {
				t.Errorf("discard [%d, +%d) of a %d-byte device: %v, want EINVAL", r[0], r[1], size, err)
			}
		}
		if st := tp.status(t); st.UsedData != 64 {
			t.Errorf("used %d blocks after the failed discards, want 64", st.UsedData)
		}
		compareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 64})
	})

	t.Run("ignore_discard", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := selfCheckedPool(t, ctl, prefix, poolOpts{Edit: func(s *thin.PoolSpec) { s.IgnoreDiscard = true }})
		v := tp.activate(t, prefix+"thin", 0, thin.Size(size), true)
		if _, err := writeDirect(v.DevPath(), 0, patternBuf(size, 11), 1<<20); err != nil {
			t.Fatal(err)
		}
		if st := tp.status(t); st.Discard != thin.DiscardIgnore {
			t.Fatalf("discard mode %v, want ignore_discard", st.Discard)
		}
		if err := discardRange(v.DevPath(), 0, size); !errors.Is(err, unix.EOPNOTSUPP) {
			t.Errorf("discard with ignore_discard: %v, want EOPNOTSUPP", err)
		}
		if st := tp.status(t); st.UsedData != 64 {
			t.Errorf("used %d blocks, want 64", st.UsedData)
		}
		compareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 64})

		// Discard support cannot be toggled on a live pool: the library
		// refuses before loading anything, and the kernel refuses the
		// table (the old one keeps running).
		spec, err := tp.Pool.Spec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		on := spec
		on.IgnoreDiscard = false
		if err := tp.Reconfigure(ctx, func(s *thin.PoolSpec) { s.IgnoreDiscard = false }); !errors.Is(err, thin.ErrImmutable) {
			t.Errorf("Reconfigure without ignore_discard: %v, want ErrImmutable", err)
		}
		if err := ctl.Load(ctx, dm.Name(tp.Name), on.Table()); !errors.Is(err, unix.EINVAL) {
			t.Errorf("loading a table without ignore_discard: %v, want EINVAL", err)
		}
		info, err := ctl.Info(ctx, dm.Name(tp.Name))
		if err != nil || info.InactivePresent || info.Suspended {
			t.Errorf("pool after the refused load: %+v %+v", info, err)
		}
		if st := tp.status(t); st.Mode != thin.ModeReadWrite || st.Discard != thin.DiscardIgnore {
			t.Errorf("pool after the refused load: %q", st)
		}
	})

	t.Run("enable ignore_discard", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := selfCheckedPool(t, ctl, prefix, poolOpts{})
		spec, err := tp.Pool.Spec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		off := spec
		off.IgnoreDiscard = true
		if err := tp.Reconfigure(ctx, func(s *thin.PoolSpec) { s.IgnoreDiscard = true }); !errors.Is(err, thin.ErrImmutable) {
			t.Errorf("Reconfigure with ignore_discard: %v, want ErrImmutable", err)
		}
		if err := ctl.Load(ctx, dm.Name(tp.Name), off.Table()); !errors.Is(err, unix.EINVAL) {
			t.Errorf("loading a table with ignore_discard: %v, want EINVAL", err)
		}
		if st := tp.status(t); st.Mode != thin.ModeReadWrite || st.Discard != thin.DiscardPassdown {
			t.Errorf("pool after the refused load: %q", st)
		}
		if err := tp.CreateThin(ctx, 0); err != nil {
			t.Fatal(err)
		}
		compareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 0})
	})
}

// TestIntegrationOutOfDataSpaceError fills a thin device twice the size of
// its error_if_no_space pool: the writer gets ENOSPC and the pool reports
// out_of_data_space; discarding the thin, or deleting it, returns the pool
// to rw with nothing used.
func TestIntegrationOutOfDataSpaceError(t *testing.T) {
	ctl, prefix := vmSetup(t)
	ctx := context.Background()
	const size = 8 << 20 // 128 blocks on a pool of 64
	tp := selfCheckedPool(t, ctl, prefix, poolOpts{DataSize: size / 2, Edit: func(s *thin.PoolSpec) { s.ErrorIfNoSpace = true }})
	v := tp.activate(t, prefix+"thin", 0, thin.Size(size), true)

	fill := func(round int) {
		t.Helper()
		n, err := writeDirect(v.DevPath(), 0, patternBuf(size, byte(round)), blockBytes)
		if !errors.Is(err, unix.ENOSPC) || n != size/2 {
			t.Fatalf("round %d: wrote %d bytes, then %v; want %d, then ENOSPC", round, n, err, size/2)
		}
		st := poolStatusOf(t, tp.Pool, false)
		if st.Mode != thin.ModeOutOfDataSpace || st.UsedData != 64 || st.TotalData != 64 || st.NoSpace != thin.ErrorIfNoSpace || st.NeedsCheck {
			t.Fatalf("round %d: status %q, want out_of_data_space with 64/64 blocks, error_if_no_space, no needs_check", round, st)
		}
		if got := mappedBlocks(t, v); got != 64 {
			t.Errorf("round %d: thin maps %d blocks, want 64", round, got)
		}
		// Messages still work out of data space.
		compareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 64})
	}

	// Discarding the whole thin frees its blocks; the next commit sees
	// free space and the pool goes back to rw.
	fill(1)
	if err := discardRange(v.DevPath(), 0, size); err != nil {
		t.Fatal(err)
	}
	if st := tp.status(t); st.Mode != thin.ModeReadWrite || st.UsedData != 0 {
		t.Errorf("after the discard: %q, want rw with 0 blocks used", st)
	}

	// So does deleting the thin (its message commits).
	fill(2)
	if err := v.Deactivate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tp.Delete(ctx, 0); err != nil {
		t.Fatalf("delete 0: %+v", err)
	}
	if st := poolStatusOf(t, tp.Pool, false); st.Mode != thin.ModeReadWrite || st.UsedData != 0 {
		t.Errorf("after delete 0: %q, want rw with 0 blocks used", st)
	}
	compareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{})
}

// TestIntegrationOutOfDataSpaceQueue fills a thin device twice the size of
// its queue_if_no_space pool with no_space_timeout=5: the write that finds
// no space blocks until the timeout, then fails; needs_check stays clear.
func TestIntegrationOutOfDataSpaceQueue(t *testing.T) {
	ctl, prefix := vmSetup(t)
	const size = 8 << 20 // 128 blocks on a pool of 64
	const timeout = 5 * time.Second
	tp := selfCheckedPool(t, ctl, prefix, poolOpts{DataSize: size / 2})
	setNoSpaceTimeout(t, int(timeout/time.Second))
	v := tp.activate(t, prefix+"thin", 0, thin.Size(size), true)

	w := goAsync("write", func() (int64, error) { return writeDirect(v.DevPath(), 0, patternBuf(size, 1), blockBytes) })
	st := waitStatus(t, tp.Pool, "out_of_data_space", outOfData)
	full := time.Now()
	if st.UsedData != 64 || st.TotalData != 64 || st.NoSpace != thin.QueueIfNoSpace || st.NeedsCheck {
		t.Errorf("out of space: %q, want 64/64 blocks, queue_if_no_space, no needs_check", st)
	}
	w.blocked(t, time.Second)
	n, err := w.wait(t, kernelWait)
	held := time.Since(full)
	t.Logf("the write was held %v after the pool ran out of space, then: %v", held.Round(10*time.Millisecond), err)
	if !errors.Is(err, unix.ENOSPC) || n != size/2 {
		t.Errorf("wrote %d bytes, then %v; want %d, then ENOSPC", n, err, size/2)
	}
	if held < timeout/2 || held > timeout+10*time.Second {
		t.Errorf("the write was held %v, want about no_space_timeout (%v)", held, timeout)
	}

	// The timeout switches the pool to failing such writes at once: the
	// status reports error_if_no_space, although the table still asks to
	// queue. The mode stays out_of_data_space and needs_check stays clear.
	st = poolStatusOf(t, tp.Pool, false)
	if st.Mode != thin.ModeOutOfDataSpace || st.NeedsCheck || st.UsedData != 64 {
		t.Errorf("after the timeout: %q, want out_of_data_space, 64 blocks used, no needs_check", st)
	}
	if st.NoSpace != thin.ErrorIfNoSpace {
		t.Errorf("after the timeout the no-space policy is %v, want error_if_no_space", st.NoSpace)
	}
	if spec, err := tp.Pool.Spec(context.Background()); err != nil || spec.ErrorIfNoSpace {
		t.Errorf("table after the timeout: %+v %v, want queue_if_no_space", spec, err)
	}
	start := time.Now()
	if _, err := writeDirect(v.DevPath(), size/2, patternBuf(blockBytes, 2), blockBytes); !errors.Is(err, unix.ENOSPC) {
		t.Errorf("write after the timeout: %v, want ENOSPC", err)
	}
	if d := time.Since(start); d > timeout/2 {
		t.Errorf("a write after the timeout took %v, want an immediate failure", d)
	}
	compareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 64})
}

// TestIntegrationResizeHeldIO runs a queue_if_no_space pool out of space
// under a writer, and grows it while the write is held: with the thin
// paused noflush (dmtest), with LVM's preload ordering (new tables loaded
// first, then resumed), and in 8 steps (dmtest's resize_io). The held write
// completes and the pool is rw.
func TestIntegrationResizeHeldIO(t *testing.T) {
	const size = 8 << 20 // 128 blocks
	ctx := context.Background()

	// start builds a pool of half the thin's size on a linear data device,
	// and a writer of the whole thin held once the pool is out of space.
	start := func(t *testing.T) (*dm.Control, *linearDev, *poolStack, *thin.Volume, []byte, *asyncOp) {
		ctl, prefix := vmSetup(t)
		meta := newBacking(t, 8<<20)
		data := newLinear(t, ctl, prefix+"data", size/2)
		s := newPoolStack(t, ctl, prefix+"pool", thin.PoolSpec{Metadata: meta.Dev, Data: data.dev, BlockSize: 128}, meta.Loop.Path())
		// Long enough for the resize under TCG; short enough that a
		// failed test does not hold the write for the default minute.
		setNoSpaceTimeout(t, 30)
		v := activateVolume(t, s.pool, prefix+"thin", 0, size, true)
		resumeAtCleanup(t, ctl, s.name, v.Name())
		buf := patternBuf(size, 21)
		w := goAsync("write", func() (int64, error) { return writeDirect(v.DevPath(), 0, buf, blockBytes) })
		st := waitStatus(t, s.pool, "out_of_data_space", outOfData)
		if st.UsedData != 64 || st.TotalData != 64 {
			t.Fatalf("out of space: %q, want 64/64 blocks", st)
		}
		w.blocked(t, time.Second)
		return ctl, data, s, v, buf, w
	}
	// finish checks that the held write completed and the pool grew.
	finish := func(t *testing.T, s *poolStack, v *thin.Volume, buf []byte, w *asyncOp) {
		t.Helper()
		if n, err := w.wait(t, kernelWait); err != nil || n != size {
			t.Fatalf("held write: %d bytes, %v; want %d, no error", n, err, size)
		}
		st := poolStatusOf(t, s.pool, true)
		if st.Mode != thin.ModeReadWrite || st.UsedData != 128 || st.TotalData != 256 || st.NeedsCheck {
			t.Errorf("after the resize: %q, want rw with 128/256 blocks", st)
		}
		if got := mappedBlocks(t, v); got != 128 {
			t.Errorf("thin maps %d blocks, want 128", got)
		}
		expectData(t, v.DevPath(), 0, buf)
		compareLs(t, lsLive(t, s.pool, s.metaPath), map[thin.DeviceID]uint64{0: 128})
	}

	t.Run("noflush", func(t *testing.T) {
		ctl, data, s, v, buf, w := start(t)
		// Pause the thin with noflush: the held write goes back to dm
		// core instead of being waited for.
		within(t, "suspend the thin (noflush)", func() error { return ctl.Suspend(ctx, dm.Name(v.Name()), dm.NoFlush) })
		data.grow(t, 2*size)
		if err := ctl.Reload(ctx, data.ref(), data.table()); err != nil {
			t.Fatalf("reload the data device: %+v", err)
		}
		within(t, "resize the pool", func() error { return s.pool.Resize(ctx, thin.Size(2*size)) })
		w.blocked(t, 100*time.Millisecond) // the thin is still paused
		within(t, "resume the thin", func() error { _, err := ctl.Resume(ctx, dm.Name(v.Name())); return err })
		finish(t, s, v, buf, w)
	})

	t.Run("preload", func(t *testing.T) {
		ctl, data, s, v, buf, w := start(t)
		// LVM's order: grow the sub-device and resume it at once (libdm
		// resumes a child whose size grew during preload), load the
		// pool's new table while everything runs, then suspend the
		// thin (noflush) and the pool, and resume them the other way.
		data.grow(t, 2*size)
		if err := ctl.Reload(ctx, data.ref(), data.table()); err != nil {
			t.Fatalf("reload the data device: %+v", err)
		}
		spec, err := s.pool.Spec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		spec.Length = thin.Size(2 * size)
		if err := ctl.Load(ctx, dm.Name(s.name), spec.Table()); err != nil {
			t.Fatalf("preload the pool table: %+v", err)
		}
		if st := poolStatusOf(t, s.pool, false); st.Mode != thin.ModeOutOfDataSpace || st.TotalData != 64 {
			t.Errorf("with the new table loaded but not live: %q, want out_of_data_space, 64 blocks", st)
		}
		w.blocked(t, 100*time.Millisecond)
		within(t, "suspend the thin (noflush)", func() error { return ctl.Suspend(ctx, dm.Name(v.Name()), dm.NoFlush) })
		within(t, "suspend the pool", func() error { return ctl.Suspend(ctx, dm.Name(s.name)) })
		within(t, "resume the pool", func() error { _, err := ctl.Resume(ctx, dm.Name(s.name)); return err })
		within(t, "resume the thin", func() error { _, err := ctl.Resume(ctx, dm.Name(v.Name())); return err })
		if got, err := s.pool.Spec(ctx); err != nil || got.Length != thin.Size(2*size) {
			t.Errorf("live pool table %+v %v, want length %d", got, err, thin.Size(2*size))
		}
		finish(t, s, v, buf, w)
	})

	t.Run("8 steps", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		const steps = 8
		step := thin.Size(size / steps)
		tp := selfCheckedPool(t, ctl, prefix, poolOpts{DataSize: size, Edit: func(s *thin.PoolSpec) { s.Length = step }})
		setNoSpaceTimeout(t, 30)
		v := tp.activate(t, prefix+"thin", 0, thin.Size(size), true)
		resumeAtCleanup(t, ctl, tp.Name, v.Name())
		buf := patternBuf(size, 33)
		w := goAsync("write", func() (int64, error) { return writeDirect(v.DevPath(), 0, buf, blockBytes) })
		for i := 2; i <= steps; i++ {
			st := waitStatus(t, tp.Pool, fmt.Sprintf("out_of_data_space at step %d", i), outOfData)
			if want := thin.DataBlocks((i - 1) * size / steps / blockBytes); st.TotalData != want || st.UsedData != want {
				t.Fatalf("step %d: %q, want %d/%d blocks", i, st, want, want)
			}
			err := ctl.WithSuspended(ctx, dm.Name(v.Name()), func() error {
				return tp.Resize(ctx, dm.Sectors(i)*step)
			}, dm.NoFlush)
			if err != nil {
				t.Fatalf("step %d: %+v", i, err)
			}
		}
		if n, err := w.wait(t, kernelWait); err != nil || n != size {
			t.Fatalf("write: %d bytes, %v; want %d, no error", n, err, size)
		}
		// A suspend and resume must not flip the pool to read-only.
		within(t, "pause the pool", func() error {
			return ctl.WithSuspended(ctx, dm.Name(tp.Name), func() error { return nil })
		})
		st := tp.status(t)
		if st.Mode != thin.ModeReadWrite || st.UsedData != 128 || st.TotalData != 128 || st.NeedsCheck {
			t.Errorf("after the last pause: %q, want rw with 128/128 blocks", st)
		}
		expectData(t, v.DevPath(), 0, buf)
		compareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 128})
		if err := v.Deactivate(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tp.Delete(ctx, 0); err != nil {
			t.Fatalf("delete 0: %+v", err)
		}
		if st := tp.status(t); st.Mode != thin.ModeReadWrite || st.UsedData != 0 {
			t.Errorf("after delete 0: %q, want rw with nothing used", st)
		}
	})
}
