package thin_test

// Privileged tests of the kernel's errno contract (see the package doc) as
// the library reports it, and of bad input that must never reach the
// kernel.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/ioctl"
	"github.com/thinp/thinp/thin"
)

// Scenario 4 and the package doc's errno contract: every row, as the
// library reports it (typed) and, where the library refuses first, as the
// kernel answers the raw request. (Activating a thin while the pool is
// suspended is TestIntegrationActivateWhilePoolSuspended; a failed pool is
// TestIntegrationErrnoContractFailedPool.)
func TestIntegrationErrnoContract(t *testing.T) {
	ctx := context.Background()
	ctl, prefix := vmSetup(t)
	tp := newPool(t, ctl, prefix, poolOpts{})
	size := thin.Size(1 * thin.MiB)
	v0 := tp.activate(t, prefix+"t0", 0, size, true)
	writeVolume(t, v0, 0, 64<<10, 0x77)
	if err := tp.CreateThin(ctx, 1); err != nil {
		t.Fatalf("create_thin 1: %+v", err)
	}

	t.Run("create_existing_name", func(t *testing.T) {
		_, err := tp.Activate(ctx, v0.Name(), 1, size)
		kernelRefused(t, "activate under a name in use", err, ioctl.CmdDevCreate, unix.EBUSY, dm.ErrExists)
		// The existing device is untouched.
		if got := readVolume(t, v0, 0, 64<<10); !bytes.Equal(got, bytes.Repeat([]byte{0x77}, 64<<10)) {
			t.Errorf("%s no longer reads its data", v0.Name())
		}
	})
	t.Run("create_thin_2^24", func(t *testing.T) {
		refusedFirst(t, "create_thin 16777216", tp.CreateThin(ctx, 1<<24), dm.ErrInvalid)
		kernelRefused(t, "raw create_thin 16777216", rawMessage(tp, "create_thin 16777216"), ioctl.CmdTargetMsg, unix.EINVAL, dm.ErrInvalid)
		if err := tp.CreateThin(ctx, thin.MaxDeviceID); err != nil {
			t.Fatalf("create_thin 16777215: %+v", err)
		}
	})
	t.Run("create_thin_existing", func(t *testing.T) {
		kernelRefused(t, "create_thin 1 again", tp.CreateThin(ctx, 1), ioctl.CmdTargetMsg, unix.EEXIST, thin.ErrIDInUse, dm.ErrExists)
	})
	t.Run("create_snap_missing_origin", func(t *testing.T) {
		kernelRefused(t, "create_snap 2 777", tp.CreateSnapshot(ctx, 2, 777), ioctl.CmdTargetMsg, unix.ENODATA, thin.ErrUnknownID, dm.ErrNoData)
	})
	t.Run("delete_unknown", func(t *testing.T) {
		kernelRefused(t, "delete 778", tp.Delete(ctx, 778), ioctl.CmdTargetMsg, unix.ENODATA, thin.ErrUnknownID, dm.ErrNoData)
		if err := tp.Delete(ctx, 778, thin.IgnoreMissing()); err != nil {
			t.Errorf("delete 778 with IgnoreMissing: %+v", err)
		}
	})
	t.Run("delete_active", func(t *testing.T) {
		kernelRefused(t, "delete 0 while active", tp.Delete(ctx, 0), ioctl.CmdTargetMsg, unix.EBUSY, thin.ErrInUse, dm.ErrBusy)
	})
	t.Run("set_transaction_id_wrong", func(t *testing.T) {
		kernelRefused(t, "set_transaction_id 5 6", tp.SetTransactionID(ctx, 5, 6), ioctl.CmdTargetMsg, unix.EINVAL, thin.ErrTransactionMismatch, dm.ErrInvalid)
	})
	t.Run("unknown_message", func(t *testing.T) {
		kernelRefused(t, "raw frobnicate 1", rawMessage(tp, "frobnicate 1"), ioctl.CmdTargetMsg, unix.EINVAL, dm.ErrInvalid)
	})
	t.Run("release_without_reserve", func(t *testing.T) {
		kernelRefused(t, "release_metadata_snap", tp.ReleaseMetadataSnap(ctx), ioctl.CmdTargetMsg, unix.EINVAL, thin.ErrNoMetadataSnap, dm.ErrInvalid)
	})
	t.Run("reserve_twice", func(t *testing.T) {
		if err := tp.ReserveMetadataSnap(ctx); err != nil {
			t.Fatalf("reserve_metadata_snap: %+v", err)
		}
		kernelRefused(t, "reserve_metadata_snap again", tp.ReserveMetadataSnap(ctx), ioctl.CmdTargetMsg, unix.EBUSY, thin.ErrMetadataSnapHeld, dm.ErrBusy)
		if err := tp.ReleaseMetadataSnap(ctx); err != nil {
			t.Fatalf("release_metadata_snap: %+v", err)
		}
	})
	t.Run("remove_pool_with_active_thin", func(t *testing.T) {
		kernelRefused(t, "remove pool", tp.Remove(ctx, dm.NoRetry), ioctl.CmdDevRemove, unix.EBUSY, thin.ErrInUse, dm.ErrBusy)
		if _, err := tp.Status(ctx); err != nil {
			t.Errorf("the pool is gone: %+v", err)
		}
	})
	t.Run("activate_unknown_id", func(t *testing.T) {
		_, err := tp.Activate(ctx, prefix+"ghost", 4242, size)
		kernelRefused(t, "activate id 4242", err, ioctl.CmdTableLoad, unix.ENODATA, thin.ErrUnknownID, dm.ErrNoData)
		assertGone(t, ctl, prefix+"ghost")
	})
	t.Run("second_pool_same_metadata", func(t *testing.T) {
		data := newBacking(t, 16<<20)
		spec := thin.PoolSpec{Metadata: tp.Meta.Dev, Data: data.Dev, BlockSize: 128}
		// The library refuses a device in use before sending anything
		// (the same check keeps a second pool off another pool's data
		// device, which the kernel would accept)...
		_, err := thin.CreatePool(ctx, ctl, prefix+"pool2", spec)
		refusedFirst(t, "second pool on the metadata", err, thin.ErrInUse, dm.ErrBusy, unix.EBUSY)
		assertGone(t, ctl, prefix+"pool2")
		// ...and the kernel refuses the table itself, which leaves no
		// device behind either.
		raw := spec
		raw.Length = dm.Sectors(16 << 20 / dm.SectorSize)
		_, err = ctl.Create(ctx, prefix+"pool2", raw.Table())
		kernelRefused(t, "raw second pool on the metadata", err, ioctl.CmdTableLoad, unix.EBUSY, dm.ErrBusy)
		if errors.Is(err, dm.ErrExists) {
			t.Errorf("a table refused as busy matches dm.ErrExists: %v", err)
		}
		assertGone(t, ctl, prefix+"pool2")
		// Asked to format it, the library cannot even open the
		// metadata device exclusively: the live metadata is untouched.
		_, err = thin.CreatePool(ctx, ctl, prefix+"pool2", spec, thin.FormatMetadata(), thin.WithMetadataPath(tp.Meta.Loop.Path()))
		refusedFirst(t, "format the metadata of a live pool", err, unix.EBUSY)
		assertGone(t, ctl, prefix+"pool2")
		if st := tp.status(t); st.Mode != thin.ModeReadWrite || st.UsedData != 1 {
			t.Errorf("pool after the attempts: %v", st)
		}
	})
	t.Run("block_size_192", func(t *testing.T) {
		meta, data := newBacking(t, 8<<20), newBacking(t, 16<<20)
		spec := thin.PoolSpec{Metadata: meta.Dev, Data: data.Dev, BlockSize: 192, Length: 32768}
		_, err := thin.CreatePool(ctx, ctl, prefix+"bs192", spec, thin.FormatMetadata(), thin.WithMetadataPath(meta.Loop.Path()))
		refusedFirst(t, "pool with block size 192", err, dm.ErrInvalid)
		_, err = ctl.Create(ctx, prefix+"bs192", spec.Table())
		kernelRefused(t, "raw pool table with block size 192", err, ioctl.CmdTableLoad, unix.EINVAL, dm.ErrInvalid)
		assertGone(t, ctl, prefix+"bs192")
	})
	t.Run("messages_to_read_only_pool", func(t *testing.T) {
		if err := tp.Reconfigure(ctx, func(s *thin.PoolSpec) { s.ReadOnly = true }); err != nil {
			t.Fatalf("set read_only: %+v", err)
		}
		defer func() {
			if err := tp.Reconfigure(ctx, func(s *thin.PoolSpec) { s.ReadOnly = false }); err != nil {
				t.Fatalf("clear read_only: %+v", err)
			}
			if st := tp.status(t); st.Mode != thin.ModeReadWrite {
				t.Errorf("mode after clearing read_only: %v", st.Mode)
			}
		}()
		if st := tp.status(t); st.Mode != thin.ModeReadOnly {
			t.Fatalf("mode with read_only: %v", st.Mode)
		}
		kernelRefused(t, "create_thin 9 (read-only)", tp.CreateThin(ctx, 9), ioctl.CmdTargetMsg, unix.EOPNOTSUPP, thin.ErrPoolReadOnly, dm.ErrNotSupported)
		kernelRefused(t, "delete 1 (read-only)", tp.Delete(ctx, 1), ioctl.CmdTargetMsg, unix.EOPNOTSUPP, thin.ErrPoolReadOnly)
		kernelRefused(t, "reserve_metadata_snap (read-only)", tp.ReserveMetadataSnap(ctx), ioctl.CmdTargetMsg, unix.EOPNOTSUPP, thin.ErrPoolReadOnly)
		for _, msg := range []string{"create_thin 9", "create_snap 9 1", "delete 1", "set_transaction_id 0 1", "reserve_metadata_snap", "release_metadata_snap", "frobnicate"} {
			kernelRefused(t, "raw "+msg+" (read-only)", rawMessage(tp, msg), ioctl.CmdTargetMsg, unix.EOPNOTSUPP, dm.ErrNotSupported)
		}
	})
	if t.Failed() {
		return
	}
	// Nothing above changed the pool but create_thin 16777215.
	lsMatches(t, tp, map[thin.DeviceID]uint64{0: uint64(mappedBlocks(t, v0)), 1: 0, thin.MaxDeviceID: 0}, 1)
	if tid, err := tp.TransactionID(ctx); err != nil || tid != 0 {
		t.Errorf("transaction id %d, %v; want 0", tid, err)
	}
}

// The errno contract's last row: a failed pool refuses every message
// (EOPNOTSUPP) and every new thin device (EINVAL). The metadata device is a
// linear dm device swapped for an error target under the running pool, so
// that the next commit fails. (Scenario 17 covers recovery in depth.)
func TestIntegrationErrnoContractFailedPool(t *testing.T) {
	ctx := context.Background()
	ctl, prefix := vmSetup(t)
	metaLoop, data := newBacking(t, 8<<20), newBacking(t, 64<<20)
	const metaLen = dm.Sectors(8 << 20 / 512)
	linear := dm.Table{{Start: 0, Length: metaLen, Type: "linear", Params: metaLoop.Dev.String() + " 0"}}
	metaName := prefix + "meta"
	var mapped0 uint64 // thin 0's mapped blocks before the failure
	info, err := ctl.Create(ctx, metaName, linear)
	if err != nil {
		t.Fatalf("create metadata linear: %+v", err)
	}
	t.Cleanup(func() {
		// After the pool: remove the linear device, then check the
		// metadata on the loop device under it.
		if err := ctl.Remove(ctx, dm.Name(metaName)); err != nil {
			t.Errorf("remove %s: %+v", metaName, err)
		}
		thinCheck(t, metaLoop.Loop.Path())
		// On disk is the last commit: thin 0 with its one block, and
		// thin 1; the write after the failure is lost.
		sb := parseDump(t, thinTool(t, "thin_dump", metaLoop.Loop.Path()))
		got := map[thin.DeviceID]uint64{}
		for _, d := range sb.Devices {
			got[d.ID] = d.MappedBlocks
		}
		if want := map[thin.DeviceID]uint64{0: mapped0, 1: 0}; !maps.Equal(got, want) {
			t.Errorf("offline thin_dump after the failure: %v, want %v (what the library reported before it)", got, want)
		}
	})
	spec := thin.PoolSpec{Metadata: info.Dev, Data: data.Dev, BlockSize: 128}
	p, err := thin.CreatePool(ctx, ctl, prefix+"pool", spec, thin.FormatMetadata())
	if err != nil {
		t.Fatalf("create pool: %+v", err)
	}
	t.Cleanup(func() {
		// Put the metadata back first, so the teardown's last
		// operations read real metadata.
		if err := ctl.Reload(ctx, dm.Name(metaName), linear); err != nil {
			t.Errorf("restore the metadata linear: %+v", err)
		}
		if err := p.Teardown(ctx); err != nil {
			t.Errorf("teardown: %+v", err)
		}
	})
	tp := &testPool{Pool: p, Ctl: ctl, Name: prefix + "pool", Meta: metaLoop, Data: data, Spec: spec}
	v := tp.activate(t, prefix+"t0", 0, thin.Size(1*thin.MiB), true)
	writeVolume(t, v, 0, 64<<10, 0xe1)
	if err := tp.CreateThin(ctx, 1); err != nil {
		t.Fatalf("create_thin 1: %+v", err)
	}
	mapped0 = uint64(mappedBlocks(t, v))

	if err := ctl.Reload(ctx, dm.Name(metaName), dm.Table{{Start: 0, Length: metaLen, Type: "error"}}); err != nil {
		t.Fatalf("swap the metadata for an error target: %+v", err)
	}
	// Provision a new block and flush: the commit fails, the pool
	// cannot even reread its superblock, and it fails.
	f, err := os.OpenFile(v.DevPath(), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, werr := f.WriteAt(bytes.Repeat([]byte{0xe2}, 64<<10), 64<<10)
	serr := f.Sync()
	f.Close()
	t.Logf("write after the metadata failed: %v, sync: %v", werr, serr)
	var st thin.PoolStatus
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if st, err = tp.Status(ctx); err != nil {
			t.Fatalf("status: %+v", err)
		}
		if st.Mode == thin.ModeFail || st.Mode == thin.ModeReadOnly || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("pool status: %v", st)
	kind := thin.ErrPoolFailed
	switch st.Mode {
	case thin.ModeFail:
	case thin.ModeReadOnly:
		kind = thin.ErrPoolReadOnly
	default:
		t.Fatalf("pool mode %v after a failed metadata commit, want Fail or ro", st.Mode)
	}
	kernelRefused(t, "create_thin 2 (failed pool)", tp.CreateThin(ctx, 2), ioctl.CmdTargetMsg, unix.EOPNOTSUPP, kind, dm.ErrNotSupported)
	kernelRefused(t, "delete 1 (failed pool)", tp.Delete(ctx, 1), ioctl.CmdTargetMsg, unix.EOPNOTSUPP, kind)
	kernelRefused(t, "set_transaction_id 0 1 (failed pool)", tp.SetTransactionID(ctx, 0, 1), ioctl.CmdTargetMsg, unix.EOPNOTSUPP, kind)
	for _, msg := range []string{"create_thin 2", "create_snap 2 0", "delete 1", "set_transaction_id 0 1", "reserve_metadata_snap", "release_metadata_snap"} {
		kernelRefused(t, "raw "+msg+" (failed pool)", rawMessage(tp, msg), ioctl.CmdTargetMsg, unix.EOPNOTSUPP, dm.ErrNotSupported)
	}
	if st.Mode == thin.ModeFail {
		_, err := tp.Activate(ctx, prefix+"t1", 1, thin.Size(1*thin.MiB))
		kernelRefused(t, "activate on a failed pool", err, ioctl.CmdTableLoad, unix.EINVAL, thin.ErrPoolFailed)
		assertGone(t, ctl, prefix+"t1")
	}
}

// Scenario 5: table validation: block sizes, a tiny metadata device, a
// data device smaller than the pool.
func TestIntegrationTableValidation(t *testing.T) {
	ctx := context.Background()

	t.Run("block_size", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		meta, data := newBacking(t, 8<<20), newBacking(t, 64<<20)
		for _, bs := range []dm.Sectors{185, 64, 1<<21 + 1} {
			name := fmt.Sprintf("%sbs%d", prefix, bs)
			spec := thin.PoolSpec{Metadata: meta.Dev, Data: data.Dev, BlockSize: bs, Length: 64 << 20 / 512}
			_, err := thin.CreatePool(ctx, ctl, name, spec, thin.FormatMetadata(), thin.WithMetadataPath(meta.Loop.Path()))
			refusedFirst(t, fmt.Sprintf("pool with block size %d", bs), err, dm.ErrInvalid)
			assertGone(t, ctl, name)
			_, err = ctl.Create(ctx, name, spec.Table())
			kernelRefused(t, fmt.Sprintf("raw pool table with block size %d", bs), err, ioctl.CmdTableLoad, unix.EINVAL, dm.ErrInvalid)
			assertGone(t, ctl, name)
		}
	})
	t.Run("block_size_2^21", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		// One 1 GiB block. Nothing is written: provisioning it would
		// zero 1 GiB under TCG.
		tp := newPool(t, ctl, prefix, poolOpts{DataSize: 1 << 30, BlockSize: 1 << 21})
		st := tp.status(t)
		if st.TotalData != 1 || tp.BlockSize() != 1<<21 {
			t.Errorf("pool of %d blocks of %d sectors, want 1 of %d", st.TotalData, tp.BlockSize(), 1<<21)
		}
		if err := tp.CreateThin(ctx, 0); err != nil {
			t.Fatalf("create_thin 0: %+v", err)
		}
		sb := dumpLive(t, tp)
		if sb.DataBlockSize != 1<<21 || len(sb.Devices) != 1 || sb.Devices[0].ID != 0 {
			t.Errorf("thin_dump -m: %+v", sb)
		}
	})
	t.Run("metadata_16KiB", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		meta, data := newBacking(t, 16<<10), newBacking(t, 64<<20)
		spec := thin.PoolSpec{Metadata: meta.Dev, Data: data.Dev, BlockSize: 128}
		name := prefix + "pool"
		p, err := thin.CreatePool(ctx, ctl, name, spec, thin.FormatMetadata(), thin.WithMetadataPath(meta.Loop.Path()))
		if err == nil {
			p.Teardown(ctx)
			t.Fatalf("a pool on 16 KiB of metadata was created")
		}
		var de *dm.Error
		if errors.As(err, &de) && de.Sent {
			// The library leaves this to the kernel.
			kernelRefused(t, "pool on 16 KiB of metadata", err, ioctl.CmdTableLoad, de.Errno())
		} else {
			refusedFirst(t, "pool on 16 KiB of metadata", err, dm.ErrInvalid)
		}
		assertGone(t, ctl, name)
		spec.Length = 64 << 20 / 512
		_, err = ctl.Create(ctx, name, spec.Table())
		if errors.As(err, &de) && de.Sent {
			t.Logf("the kernel refuses a pool on 16 KiB of metadata with %v (%d) at %v", de.Errno(), de.Errno(), de.Cmd)
		}
		kernelRefused(t, "raw pool table on 16 KiB of metadata", err, ioctl.CmdTableLoad, unix.ENOSPC)
		assertGone(t, ctl, name)
	})
	t.Run("data_smaller_than_pool", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := newPool(t, ctl, prefix, poolOpts{})
		spec, err := tp.Pool.Spec(ctx)
		if err != nil {
			t.Fatalf("%+v", err)
		}
		big := spec
		big.Length = spec.Length + 128
		// A new pool longer than its data device.
		meta, data := newBacking(t, 8<<20), newBacking(t, 64<<20)
		other := thin.PoolSpec{Metadata: meta.Dev, Data: data.Dev, BlockSize: 128, Length: 64<<20/512 + 128}
		_, err = thin.CreatePool(ctx, ctl, prefix+"long", other, thin.FormatMetadata(), thin.WithMetadataPath(meta.Loop.Path()))
		refusedFirst(t, "pool longer than its data device", err, dm.ErrInvalid)
		assertGone(t, ctl, prefix+"long")
		_, err = ctl.Create(ctx, prefix+"long", other.Table())
		kernelRefused(t, "raw pool table longer than its data device", err, ioctl.CmdTableLoad, unix.EINVAL, dm.ErrInvalid)
		assertGone(t, ctl, prefix+"long")

		// The live pool, reloaded longer than its data device.
		v := tp.activate(t, prefix+"t0", 0, thin.Size(1*thin.MiB), true)
		writeVolume(t, v, 0, 64<<10, 0x88)
		before := tp.status(t)
		refusedFirst(t, "resize past the data device", tp.Resize(ctx, big.Length), dm.ErrInvalid)
		// By hand, to see what the kernel does: it takes the table,
		// refuses it at resume (the table's devices are checked when
		// it is swapped in), and leaves the pool suspended on its old
		// table with no inactive table.
		pool := dm.Name(tp.Name)
		if err := ctl.Load(ctx, pool, big.Table()); err != nil {
			t.Fatalf("load of the longer table: %+v", err)
		}
		_, err = ctl.Resume(ctx, pool)
		kernelRefused(t, "resume of the longer table", err, ioctl.CmdDevSuspend, unix.EINVAL, dm.ErrInvalid)
		info, err := ctl.Info(ctx, pool)
		t.Logf("pool after the failed resume: suspended %v, inactive table %v (%v)", info.Suspended, info.InactivePresent, err)
		if got, err := tp.Pool.Spec(ctx); err != nil || got != spec {
			t.Errorf("pool table after the failed resume: %v, %v; want the old %v", got, err, spec)
		}
		if info.Suspended {
			if _, err := ctl.Resume(ctx, pool); err != nil {
				t.Fatalf("resume of the old table: %+v", err)
			}
		}
		// dm.Control.Reload does the same and resumes the old table.
		err = ctl.Reload(ctx, pool, big.Table())
		kernelRefused(t, "raw reload past the data device", err, ioctl.CmdDevSuspend, unix.EINVAL, dm.ErrInvalid)
		// The old table keeps working.
		info, err = ctl.Info(ctx, pool)
		if err != nil || info.Suspended || info.InactivePresent {
			t.Errorf("pool after the failed reload: %+v, %v", info, err)
		}
		if got, err := tp.Pool.Spec(ctx); err != nil || got != spec {
			t.Errorf("pool table after the failed reload: %v, %v; want %v", got, err, spec)
		}
		writeVolume(t, v, 64<<10, 64<<10, 0x99)
		after := tp.status(t)
		if after.TotalData != before.TotalData || after.Mode != thin.ModeReadWrite {
			t.Errorf("pool after the failed reload: %v, before %v", after, before)
		}
		lsMatches(t, tp, map[thin.DeviceID]uint64{0: uint64(mappedBlocks(t, v))}, 2)
	})
}

// Scenario 6: a thin cannot be activated while its pool is suspended
// (EINVAL), with or without another thin active; nothing is left behind.
func TestIntegrationActivateWhilePoolSuspended(t *testing.T) {
	ctx := context.Background()
	ctl, prefix := vmSetup(t)
	tp := newPool(t, ctl, prefix, poolOpts{})
	size := thin.Size(1 * thin.MiB)
	idle := tp.activate(t, prefix+"idle", 0, size, true)
	writeVolume(t, idle, 0, 64<<10, 0xaa)
	if err := tp.CreateThin(ctx, 1); err != nil {
		t.Fatalf("create_thin 1: %+v", err)
	}
	pool := dm.Name(tp.Name)
	if err := ctl.Suspend(ctx, pool); err != nil {
		t.Fatalf("suspend pool: %+v", err)
	}
	t.Cleanup(func() {
		if info, err := ctl.Info(ctx, pool); err == nil && info.Suspended {
			ctl.Resume(ctx, pool)
		}
	})
	_, err := tp.Activate(ctx, prefix+"t1", 1, size)
	kernelRefused(t, "activate while the pool is suspended", err, ioctl.CmdTableLoad, unix.EINVAL, thin.ErrPoolSuspended, dm.ErrInvalid)
	assertGone(t, ctl, prefix+"t1")
	if _, err := ctl.Resume(ctx, pool); err != nil {
		t.Fatalf("resume pool: %+v", err)
	}
	v := tp.activate(t, prefix+"t1", 1, size, false)
	writeVolume(t, v, 0, 2*64<<10, 0xbb)
	lsMatches(t, tp, map[thin.DeviceID]uint64{0: uint64(mappedBlocks(t, idle)), 1: uint64(mappedBlocks(t, v))}, 3)
}

// Bad input never reaches the kernel: each request below is refused by the
// library, typed, with no command that changes anything reaching the
// kernel (every ioctl is recorded), nothing left behind and the pool
// unchanged.
func TestIntegrationBadInputNeverReachesKernel(t *testing.T) {
	ctx := context.Background()
	ctl, prefix := vmSetup(t)
	tp := newPool(t, ctl, prefix, poolOpts{})
	size := thin.Size(1 * thin.MiB)
	v0 := tp.activate(t, prefix+"t0", 0, size, true)
	writeVolume(t, v0, 0, 64<<10, 0xdd)
	if err := tp.CreateThin(ctx, 1); err != nil {
		t.Fatalf("create_thin 1: %+v", err)
	}
	before := tp.status(t)
	beforeSpec, err := tp.Pool.Spec(ctx)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	beforeNames := namesWithPrefix(t, ctl, prefix)

	rctl, rec := recordingControl(t)
	// none: nothing at all may be sent; reads: only commands that change
	// nothing (the library reads the pool's state before some refusals).
	none := func(t *testing.T, what string) {
		t.Helper()
		if cmds := rec.take(); len(cmds) != 0 {
			t.Errorf("%s: sent %v, want nothing", what, cmds)
		}
	}
	reads := func(t *testing.T, what string) {
		t.Helper()
		for _, c := range rec.take() {
			if !readOnlyCmds[c] {
				t.Errorf("%s: sent %v", what, c)
			}
		}
	}

	t.Run("create_pool", func(t *testing.T) {
		meta, data := newBacking(t, 8<<20), newBacking(t, 64<<20)
		// Mark the metadata device: FormatMetadata must not touch it.
		mark := bytes.Repeat([]byte{0xab}, 4096)
		if err := os.WriteFile(meta.Path, mark, 0); err != nil {
			t.Fatal(err)
		}
		blocks := thin.DataBlocks(64 << 20 / 512 / 128)
		good := thin.PoolSpec{Metadata: meta.Dev, Data: data.Dev, BlockSize: 128}
		for _, c := range []struct {
			what string
			name string
			edit func(*thin.PoolSpec)
		}{
			{"block size 192", "bad", func(s *thin.PoolSpec) { s.BlockSize = 192 }},
			{"block size 0", "bad", func(s *thin.PoolSpec) { s.BlockSize = 0 }},
			{"low water mark = the data size", "bad", func(s *thin.PoolSpec) { s.LowWaterMark = blocks }},
			{"low water mark past the data size", "bad", func(s *thin.PoolSpec) { s.LowWaterMark = blocks + 1000 }},
			{"low water mark past the length", "bad", func(s *thin.PoolSpec) { s.Length = 4096; s.LowWaterMark = 32 }},
			{"length below one block", "bad", func(s *thin.PoolSpec) { s.Length = 64 }},
			{"negative length", "bad", func(s *thin.PoolSpec) { s.Length = dm.Sectors(^uint64(0)) }},
			{"length past the data device", "bad", func(s *thin.PoolSpec) { s.Length = 64<<20/512 + 128 }},
			{"same metadata and data device", "bad", func(s *thin.PoolSpec) { s.Data = s.Metadata }},
			{"no data device", "bad", func(s *thin.PoolSpec) { s.Data = dm.Dev{} }},
			{"five features", "bad", func(s *thin.PoolSpec) {
				s.SkipBlockZeroing, s.IgnoreDiscard, s.NoDiscardPassdown, s.ReadOnly, s.ErrorIfNoSpace = true, true, true, true, true
			}},
			{"name with a slash", "a/b", func(*thin.PoolSpec) {}},
			{"name too long", strings.Repeat("n", 128), func(*thin.PoolSpec) {}},
		} {
			spec := good
			c.edit(&spec)
			name := prefix + c.name
			_, err := thin.CreatePool(ctx, rctl, name, spec, thin.FormatMetadata(), thin.WithMetadataPath(meta.Loop.Path()))
			refusedFirst(t, "create pool: "+c.what, err, dm.ErrInvalid)
			if errors.Is(err, unix.EINVAL) {
				t.Errorf("create pool: %s: a refusal claims the kernel's EINVAL", c.what)
			}
			none(t, "create pool: "+c.what)
		}
		if got, err := os.ReadFile(meta.Path); err != nil || !bytes.Equal(got[:4096], mark) {
			t.Errorf("the metadata device was written (%v)", err)
		}
	})

	rp, err := thin.OpenPool(ctx, rctl, tp.Name)
	if err != nil {
		t.Fatalf("open pool: %+v", err)
	}
	rec.take()
	const big = thin.DeviceID(1 << 24)

	t.Run("device_id_2^24", func(t *testing.T) {
		refusedFirst(t, "create_thin 2^24", rp.CreateThin(ctx, big), dm.ErrInvalid)
		refusedFirst(t, "create_snap 2^24 0", rp.CreateSnapshot(ctx, big, 0), dm.ErrInvalid)
		refusedFirst(t, "create_snap 5 2^24", rp.CreateSnapshot(ctx, 5, big), dm.ErrInvalid)
		refusedFirst(t, "delete 2^24", rp.Delete(ctx, big), dm.ErrInvalid)
		refusedFirst(t, "delete 2^24 (ignore missing)", rp.Delete(ctx, big, thin.IgnoreMissing()), dm.ErrInvalid)
		_, err := rp.Activate(ctx, prefix+"big", big, size)
		refusedFirst(t, "activate 2^24", err, dm.ErrInvalid)
		_, err = rp.Activate(ctx, prefix+"big", ^thin.DeviceID(0), size)
		refusedFirst(t, "activate 2^32-1", err, dm.ErrInvalid)
		_, err = rp.Transaction(ctx, 0, func(tx *thin.Tx) error { tx.CreateThin(2); tx.CreateThin(big); return nil })
		refusedFirst(t, "transaction with create_thin 2^24", err, dm.ErrInvalid)
		none(t, "device id 2^24")
	})
	t.Run("thin_id_in_use", func(t *testing.T) {
		// An id in use is the kernel's to refuse (EEXIST, whether the id
		// is active or not): one message, no scan of the host's devices,
		// and nothing changes.
		kernelRefused(t, "create_thin 0 (active)", rp.CreateThin(ctx, 0), ioctl.CmdTargetMsg, unix.EEXIST, thin.ErrIDInUse, dm.ErrExists)
		rec.take()
		refusedFirst(t, "create_snap 0 1 (0 active)", rp.CreateSnapshot(ctx, 0, 1), thin.ErrIDInUse, unix.EEXIST)
		reads(t, "create_snap 0 1")
		refusedFirst(t, "create_snap 1 1", rp.CreateSnapshot(ctx, 1, 1), thin.ErrIDInUse)
		none(t, "create_snap 1 1")
		_, err := rp.Transaction(ctx, 0, func(tx *thin.Tx) error { tx.CreateThin(0); return nil })
		refusedFirst(t, "transaction with create_thin 0 (active)", err, thin.ErrIDInUse, unix.EEXIST)
		reads(t, "transaction with create_thin 0")
	})
	t.Run("zero_and_negative_sizes", func(t *testing.T) {
		for _, s := range []dm.Sectors{0, dm.Sectors(^uint64(0)), 1 << 63} {
			_, err := rp.Activate(ctx, prefix+"sized", 1, s)
			refusedFirst(t, fmt.Sprintf("activate %d sectors", s), err, dm.ErrInvalid)
			none(t, "activate")
			refusedFirst(t, fmt.Sprintf("resize to %d sectors", s), rp.Resize(ctx, s), dm.ErrInvalid)
			none(t, "resize")
		}
		refusedFirst(t, "resize to one block less", rp.Resize(ctx, beforeSpec.Length-128), thin.ErrShrink)
		reads(t, "shrink")
		refusedFirst(t, "resize past the data device", rp.Resize(ctx, beforeSpec.Length+128), dm.ErrInvalid)
		reads(t, "resize past the data device")
		refusedFirst(t, "low water mark = the pool size", rp.Reconfigure(ctx, func(s *thin.PoolSpec) { s.LowWaterMark = before.TotalData }), dm.ErrInvalid)
		refusedFirst(t, "low water mark past the pool size", rp.Reconfigure(ctx, func(s *thin.PoolSpec) { s.LowWaterMark = before.TotalData + 1000 }), dm.ErrInvalid)
		reads(t, "low water mark")
	})

	if names := namesWithPrefix(t, ctl, prefix); !slices.Equal(names, beforeNames) {
		t.Errorf("devices now %v, before %v", names, beforeNames)
	}
	after := tp.status(t)
	if after.TransactionID != before.TransactionID || after.UsedData != before.UsedData || after.TotalData != before.TotalData || after.Mode != before.Mode {
		t.Errorf("pool changed: now %v, before %v", after, before)
	}
	if s, err := tp.Pool.Spec(ctx); err != nil || s != beforeSpec {
		t.Errorf("pool table now %v (%v), before %v", s, err, beforeSpec)
	}
	lsMatches(t, tp, map[thin.DeviceID]uint64{0: uint64(mappedBlocks(t, v0)), 1: 0}, 1)
}
