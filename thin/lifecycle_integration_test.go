package thin_test

// Privileged tests of thin device lifecycles on the real kernel, in the VM
// tier: many creates, create/delete churn, provisioning then deleting, and
// transaction ids. Run one alone with, for example,
//
//	go run ./internal/vm/cmd/vmrun test ./thin -run TestIntegrationMassCreate/snapshots

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/ioctl"
	"github.com/thinp/thinp/thin"
)

// Scenario 1: mass create, of thins, of snapshots of one origin, and of a
// chain of snapshots each of the previous one.
func TestIntegrationMassCreate(t *testing.T) {
	ctx := context.Background()
	const blk = 64 << 10 // the pool's block, 128 sectors

	t.Run("create_thin", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := newPool(t, ctl, prefix, poolOpts{})
		t0 := time.Now()
		want := map[thin.DeviceID]uint64{}
		for id := thin.DeviceID(0); id <= massSize; id++ {
			if err := tp.CreateThin(ctx, id); err != nil {
				t.Fatalf("create_thin %d: %+v", id, err)
			}
			want[id] = 0
		}
		t.Logf("create_thin 0..%d: %v", massSize, time.Since(t0))
		// Provision a little in the first and the last, to compare
		// mapped blocks as well as ids.
		v0 := tp.activate(t, prefix+"first", 0, thin.Size(1*thin.MiB), false)
		vn := tp.activate(t, prefix+"last", massSize, thin.Size(1*thin.MiB), false)
		writeVolume(t, v0, 0, blk, 0x11)
		writeVolume(t, vn, 0, 2*blk, 0x22)
		want[0], want[massSize] = uint64(mappedBlocks(t, v0)), uint64(mappedBlocks(t, vn))
		if want[0] != 1 || want[massSize] != 2 {
			t.Errorf("mapped blocks %d and %d, want 1 and 2", want[0], want[massSize])
		}
		lsMatches(t, tp, want, 3)
	})

	snaps := func(t *testing.T, originOf func(i thin.DeviceID) thin.DeviceID) {
		ctl, prefix := vmSetup(t)
		tp := newPool(t, ctl, prefix, poolOpts{})
		v := tp.activate(t, prefix+"origin", 0, thin.Size(1*thin.MiB), true)
		writeVolume(t, v, 0, 2*blk, 0x33)
		want := map[thin.DeviceID]uint64{0: uint64(mappedBlocks(t, v))}
		// An active origin is suspended around each create_snap; with
		// udev that costs a cookie wait per snapshot, so take them of
		// the inactive origin, as dmtest does.
		if err := v.Deactivate(ctx); err != nil {
			t.Fatalf("deactivate: %+v", err)
		}
		t0 := time.Now()
		for i := thin.DeviceID(1); i <= massSize; i++ {
			if err := tp.CreateSnapshot(ctx, i, originOf(i)); err != nil {
				t.Fatalf("create_snap %d %d: %+v", i, originOf(i), err)
			}
			want[i] = want[0]
		}
		t.Logf("create_snap 1..%d: %v", massSize, time.Since(t0))
		// Break the sharing of one block in the last snapshot; it still
		// maps two blocks, and the pool uses three.
		last := tp.activate(t, prefix+"last", massSize, thin.Size(1*thin.MiB), false)
		if got := readVolume(t, last, blk, blk); !bytes.Equal(got, bytes.Repeat([]byte{0x33}, blk)) {
			t.Errorf("snapshot %d does not read its origin's data", massSize)
		}
		writeVolume(t, last, 0, blk, 0x44)
		want[massSize] = uint64(mappedBlocks(t, last))
		if want[massSize] != 2 {
			t.Errorf("snapshot %d maps %d blocks, want 2", massSize, want[massSize])
		}
		lsMatches(t, tp, want, 3)
	}
	t.Run("create_snap_of_one", func(t *testing.T) {
		snaps(t, func(thin.DeviceID) thin.DeviceID { return 0 })
	})
	t.Run("create_snap_recursive", func(t *testing.T) {
		snaps(t, func(i thin.DeviceID) thin.DeviceID { return i - 1 })
	})
}

// Scenario 2: create/delete churn, on one id and rolling over many.
func TestIntegrationCreateDeleteChurn(t *testing.T) {
	ctx := context.Background()

	t.Run("one_id", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := newPool(t, ctl, prefix, poolOpts{})
		before := tp.status(t)
		t0 := time.Now()
		for i := 0; i < massSize; i++ {
			if err := tp.CreateThin(ctx, 0); err != nil {
				t.Fatalf("round %d: create_thin 0: %+v", i, err)
			}
			if err := tp.Delete(ctx, 0); err != nil {
				t.Fatalf("round %d: delete 0: %+v", i, err)
			}
		}
		t.Logf("%d x (create_thin 0; delete 0): %v", massSize, time.Since(t0))
		after := tp.status(t)
		t.Logf("metadata used: %d blocks before, %d after", before.UsedMeta, after.UsedMeta)
		// Churn must not leak metadata: a few blocks of slack for the
		// space maps' own bookkeeping.
		if after.UsedMeta > before.UsedMeta+16 {
			t.Errorf("metadata used grew from %d to %d blocks", before.UsedMeta, after.UsedMeta)
		}
		if after.TransactionID != 0 || !after.Mode.AcceptsMessages() {
			t.Errorf("pool after churn: %v", after)
		}
		lsMatches(t, tp, map[thin.DeviceID]uint64{}, 0)
	})

	t.Run("rolling", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := newPool(t, ctl, prefix, poolOpts{})
		want := map[thin.DeviceID]uint64{}
		for id := thin.DeviceID(0); id <= massSize; id++ {
			if err := tp.CreateThin(ctx, id); err != nil {
				t.Fatalf("create_thin %d: %+v", id, err)
			}
			want[id] = 0
		}
		v := tp.activate(t, prefix+"t0", 0, thin.Size(1*thin.MiB), false)
		writeVolume(t, v, 0, 64<<10, 0x55)
		if n := uint64(mappedBlocks(t, v)); n != 1 {
			t.Fatalf("thin 0 maps %d blocks, want 1", n)
		}
		if err := v.Deactivate(ctx); err != nil {
			t.Fatalf("deactivate: %+v", err)
		}
		t0 := time.Now()
		for id := thin.DeviceID(0); id <= massSize; id++ {
			if err := tp.Delete(ctx, id); err != nil {
				t.Fatalf("delete %d: %+v", id, err)
			}
			if err := tp.CreateThin(ctx, id); err != nil {
				t.Fatalf("create_thin %d: %+v", id, err)
			}
		}
		t.Logf("rolling delete/create_thin 0..%d: %v", massSize, time.Since(t0))
		// Thin 0 was recreated empty: nothing is used any more.
		lsMatches(t, tp, want, 0)
	})
}

// Scenario 3: provisioning one block uses one block, deleting frees it,
// at several block sizes.
func TestIntegrationProvisionThenDelete(t *testing.T) {
	ctx := context.Background()
	for _, bs := range []dm.Sectors{128, 1024, 8192} {
		t.Run(fmt.Sprintf("block%d", bs), func(t *testing.T) {
			ctl, prefix := vmSetup(t)
			tp := newPool(t, ctl, prefix, poolOpts{BlockSize: bs})
			v := tp.activate(t, prefix+"t0", 0, bs, true)
			writeVolume(t, v, 0, int(bs.Bytes()), 0x66)
			st, err := v.Status(ctx)
			if err != nil {
				t.Fatalf("%+v", err)
			}
			if st.MappedSectors != bs || !st.HasHighest || st.HighestMapped != bs-1 {
				t.Errorf("thin status %v, want %d sectors mapped up to %d", st, bs, bs-1)
			}
			if got := readVolume(t, v, 0, int(bs.Bytes())); !bytes.Equal(got, bytes.Repeat([]byte{0x66}, int(bs.Bytes()))) {
				t.Errorf("thin 0 does not read back what was written")
			}
			lsMatches(t, tp, map[thin.DeviceID]uint64{0: uint64(mappedBlocks(t, v))}, 1)
			if err := v.Deactivate(ctx); err != nil {
				t.Fatalf("deactivate: %+v", err)
			}
			if err := tp.Delete(ctx, 0); err != nil {
				t.Fatalf("delete 0: %+v", err)
			}
			lsMatches(t, tp, map[thin.DeviceID]uint64{}, 0)
		})
	}
}

// Scenario 7: set_transaction_id is a compare and swap.
func TestIntegrationTransactionID(t *testing.T) {
	ctx := context.Background()
	ctl, prefix := vmSetup(t)
	tp := newPool(t, ctl, prefix, poolOpts{})
	if tid, err := tp.TransactionID(ctx); err != nil || tid != 0 {
		t.Fatalf("fresh pool: transaction id %d, %v; want 0", tid, err)
	}
	t0 := time.Now()
	for n := uint64(0); n < massSize; n++ {
		if err := tp.SetTransactionID(ctx, n, n+1); err != nil {
			t.Fatalf("set_transaction_id %d %d: %+v", n, n+1, err)
		}
	}
	t.Logf("%d x set_transaction_id: %v", massSize, time.Since(t0))
	if tid, err := tp.TransactionID(ctx); err != nil || tid != massSize {
		t.Fatalf("transaction id %d, %v; want %d", tid, err, massSize)
	}
	kernelRefused(t, "set_transaction_id with a wrong current id", tp.SetTransactionID(ctx, 5, 6), ioctl.CmdTargetMsg, unix.EINVAL, thin.ErrTransactionMismatch)
	kernelRefused(t, "the last set_transaction_id again", tp.SetTransactionID(ctx, massSize-1, massSize), ioctl.CmdTargetMsg, unix.EINVAL, thin.ErrTransactionMismatch)

	// A transaction on top: a batch, then the id advanced; replaying it
	// sends nothing.
	body := func(tx *thin.Tx) error { tx.CreateThin(0); tx.CreateThin(1); return nil }
	res, err := tp.Transaction(ctx, massSize, body)
	if err != nil || res.Sent != 2 || res.To != massSize+1 {
		t.Fatalf("transaction: %+v, %+v", res, err)
	}
	res, err = tp.Transaction(ctx, massSize, body)
	if err != nil || !res.AlreadyApplied || res.Sent != 0 {
		t.Errorf("replayed transaction: %+v, %+v", res, err)
	}
	sb := dumpLive(t, tp)
	if sb.Transaction != massSize+1 {
		t.Errorf("thin_dump -m: transaction %d, want %d", sb.Transaction, massSize+1)
	}
	lsMatches(t, tp, map[thin.DeviceID]uint64{0: 0, 1: 0}, 0)
}
