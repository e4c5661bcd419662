package thin_test

// Privileged scenarios (pool lifecycle, snapshots, space, bad input), the
// errno contract of the package doc and "bad input never reaches the kernel", against the real kernel in
// the VM tier (go run ./internal/vm/cmd/vmrun test -run Integration ./thin).
//
// Every pool comes from saPool, which is newPool (teardown, then thin_check
// on the metadata at cleanup) plus a log line "thin_check passed" once that
// check has passed, so the VM output can be counted. Every mutating
// scenario cross-checks the library's figures (Volume.Status, PoolStatus)
// with thin_ls -m or thin_dump -m on the live pool.
//
// Helpers private to this file are named sa* so that they cannot collide
// with those of the other scenario files of package thin_test.
//
// THINP_SCENARIO_SCALE scales the scenarios that are too slow under TCG at
// full size (only scenario 9 today): unset, the reduced default; "full" or
// "1", the full size (50 lifetimes); a number f in (0, 1], that fraction
// of the full size. It does not depend on testing.Short.

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/ioctl"
	"github.com/thinp/thinp/thin"
)

// saMass is the size of the mass scenarios (1, 2, 7): message-only, fast
// enough under TCG at full size.
const saMass = 1000

// saScale returns how many iterations to run of a scenario whose full size
// is full and whose default (reduced) size is def; see the file comment.
func saScale(t *testing.T, full, def int) int {
	t.Helper()
	v := os.Getenv("THINP_SCENARIO_SCALE")
	n := def
	switch {
	case v == "":
	case v == "full":
		n = full
	default:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f <= 1) {
			t.Fatalf("THINP_SCENARIO_SCALE=%q: want full or a number in (0, 1]", v)
		}
		n = max(1, int(math.Round(float64(full)*f)))
	}
	return n
}

// saPool is newPool that logs "thin_check passed" after its cleanup has
// torn the pool down and thin_check has passed on the metadata.
func saPool(t *testing.T, ctl *dm.Control, prefix string, o poolOpts) *testPool {
	t.Helper()
	var failedBefore bool
	// Registered before newPool's cleanups, so it runs after them.
	t.Cleanup(func() {
		switch {
		case failedBefore:
			t.Logf("thin_check: not counted (the test had failed before teardown)")
		case t.Failed(): // teardown or thin_check failed, and said so
		default:
			t.Logf("thin_check passed")
		}
	})
	tp := newPool(t, ctl, prefix, o)
	t.Cleanup(func() { failedBefore = t.Failed() })
	return tp
}

// saThinCheck runs thin_check on an inactive pool's metadata and logs
// "thin_check passed" if it passes.
func saThinCheck(t *testing.T, meta string) {
	t.Helper()
	failed := t.Failed()
	testenv.ThinCheck(t, meta)
	if !failed && !t.Failed() {
		t.Logf("thin_check passed")
	}
}

// saKernel asserts that err is the kernel's errno for ioctl cmd, and that
// it matches every target as well.
func saKernel(t *testing.T, what string, err error, cmd ioctl.Cmd, errno unix.Errno, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %v from %v", what, errno, cmd)
	}
	var de *dm.Error
	switch {
	case !errors.As(err, &de):
		t.Errorf("%s: %v is not a *dm.Error", what, err)
	case !de.Sent:
		t.Errorf("%s: %v did not come from the kernel", what, err)
	case de.Cmd != cmd || de.Errno() != errno:
		t.Errorf("%s: %v: the kernel said %v to %v, want %v to %v", what, err, de.Errno(), de.Cmd, errno, cmd)
	}
	for _, tg := range append([]error{errno}, targets...) {
		if !errors.Is(err, tg) {
			t.Errorf("%s: %v does not match %v", what, err, tg)
		}
	}
	t.Logf("%s: %v", what, err)
}

// saRefused asserts that err is a refusal made before anything was sent,
// matching every target.
func saRefused(t *testing.T, what string, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want a refusal matching %v", what, targets)
	}
	var te *thin.Error
	if !errors.As(err, &te) {
		t.Errorf("%s: %v is not a *thin.Error", what, err)
	}
	var de *dm.Error
	if errors.As(err, &de) && de.Sent {
		t.Errorf("%s: %v came from the kernel (%v), want a refusal before it", what, err, de.Cmd)
	}
	for _, tg := range targets {
		if !errors.Is(err, tg) {
			t.Errorf("%s: %v does not match %v", what, err, tg)
		}
	}
	t.Logf("%s: %v", what, err)
}

// saGone asserts that no dm device name exists.
func saGone(t *testing.T, ctl *dm.Control, name string) {
	t.Helper()
	if info, err := ctl.Info(context.Background(), dm.Name(name)); !errors.Is(err, dm.ErrNotFound) {
		t.Errorf("device %s: %+v, %v; want it gone", name, info, err)
	}
}

// saNames lists the dm devices whose names start with prefix.
func saNames(t *testing.T, ctl *dm.Control, prefix string) []string {
	t.Helper()
	devs, err := ctl.List(context.Background(), dm.WithNamePrefix(prefix))
	if err != nil {
		t.Fatalf("list: %+v", err)
	}
	var names []string
	for _, d := range devs {
		names = append(names, d.Name)
	}
	slices.Sort(names)
	return names
}

// saRaw sends a message straight to the pool with dm.Control, bypassing
// the library's checks, to learn the kernel's own answer.
func saRaw(tp *testPool, msg string) error {
	_, err := tp.Ctl.Message(context.Background(), dm.Name(tp.Name), 0, msg)
	return err
}

// saMapped is the volume's mapped blocks as the library reports them.
func saMapped(t *testing.T, v *thin.Volume) uint64 {
	t.Helper()
	st, err := v.Status(context.Background())
	if err != nil {
		t.Fatalf("status %s: %+v", v.Name(), err)
	}
	return uint64(st.MappedBlocks(v.Pool().BlockSize()))
}

// saLsMatches compares the live pool's thin_ls -m with want (device id to
// mapped blocks, as the library reported them) and the pool's used data
// blocks with used.
func saLsMatches(t *testing.T, tp *testPool, want map[thin.DeviceID]uint64, used thin.DataBlocks) {
	t.Helper()
	got := tp.thinLsLive(t)
	if len(got) != len(want) {
		t.Errorf("thin_ls -m: %d devices, the library made %d", len(got), len(want))
	}
	n := 0
	for id, w := range want {
		if g, ok := got[id]; !ok || g != w {
			if n++; n <= 10 {
				t.Errorf("thin_ls -m: device %d: mapped %d (present %v), the library says %d", id, g, ok, w)
			}
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			if n++; n <= 10 {
				t.Errorf("thin_ls -m: device %d, which the library did not make", id)
			}
		}
	}
	if st := tp.status(t); st.UsedData != used {
		t.Errorf("pool used data %d blocks, want %d", st.UsedData, used)
	}
	t.Logf("thin_ls -m agrees with the library: %d devices, %d data blocks used", len(got), used)
}

// saRecorder is an ioctl.Transport over the real control node that records
// every command it issues, so a test can prove what reached the kernel.
type saRecorder struct {
	f    *ioctl.File
	mu   sync.Mutex
	cmds []ioctl.Cmd
}

func (r *saRecorder) Ioctl(req uint, b []byte) error {
	r.mu.Lock()
	r.cmds = append(r.cmds, ioctl.Cmd(req&0xff))
	r.mu.Unlock()
	return r.f.Ioctl(req, b)
}

// take returns and forgets the commands issued so far.
func (r *saRecorder) take() []ioctl.Cmd {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.cmds
	r.cmds = nil
	return c
}

// saReadOnlyCmds are the commands that change nothing.
var saReadOnlyCmds = map[ioctl.Cmd]bool{
	ioctl.CmdVersion: true, ioctl.CmdListDevices: true, ioctl.CmdDevStatus: true,
	ioctl.CmdTableDeps: true, ioctl.CmdTableStatus: true, ioctl.CmdListVersions: true,
	ioctl.CmdGetTargetVersion: true,
}

// saRecordingControl opens a Control whose ioctls are recorded.
func saRecordingControl(t *testing.T) (*dm.Control, *saRecorder) {
	t.Helper()
	f, err := ioctl.Open(ioctl.ControlPath)
	if err != nil {
		t.Fatal(err)
	}
	rec := &saRecorder{f: f}
	ctl, err := dm.Open(dm.WithTransport(rec))
	if err != nil {
		f.Close()
		t.Fatalf("%+v", err)
	}
	t.Cleanup(func() {
		ctl.Close()
		f.Close()
	})
	rec.take()
	return ctl, rec
}

// thin_dump's XML, the parts the scenarios compare.
type saSuperblock struct {
	XMLName       xml.Name   `xml:"superblock"`
	Transaction   uint64     `xml:"transaction,attr"`
	DataBlockSize uint64     `xml:"data_block_size,attr"`
	NrDataBlocks  uint64     `xml:"nr_data_blocks,attr"`
	Devices       []saDevice `xml:"device"`
}

type saDevice struct {
	ID           thin.DeviceID `xml:"dev_id,attr"`
	MappedBlocks uint64        `xml:"mapped_blocks,attr"`
	Singles      []struct {
		Origin uint64 `xml:"origin_block,attr"`
		Data   uint64 `xml:"data_block,attr"`
	} `xml:"single_mapping"`
	Ranges []struct {
		Origin uint64 `xml:"origin_begin,attr"`
		Data   uint64 `xml:"data_begin,attr"`
		Length uint64 `xml:"length,attr"`
	} `xml:"range_mapping"`
}

// mappings is the device's block map, origin block to data block.
func (d saDevice) mappings() map[uint64]uint64 {
	m := map[uint64]uint64{}
	for _, s := range d.Singles {
		m[s.Origin] = s.Data
	}
	for _, r := range d.Ranges {
		for i := uint64(0); i < r.Length; i++ {
			m[r.Origin+i] = r.Data + i
		}
	}
	return m
}

func saParseDump(t *testing.T, text string) saSuperblock {
	t.Helper()
	var sb saSuperblock
	if err := xml.Unmarshal([]byte(text), &sb); err != nil {
		t.Fatalf("thin_dump output: %v\n%s", err, text)
	}
	return sb
}

// saDumpLive reserves a metadata snapshot, dumps it (thin_dump -m) and
// releases it.
func saDumpLive(t *testing.T, tp *testPool) saSuperblock {
	t.Helper()
	ctx := context.Background()
	if err := tp.ReserveMetadataSnap(ctx); err != nil {
		t.Fatalf("reserve_metadata_snap: %+v", err)
	}
	defer func() {
		if err := tp.ReleaseMetadataSnap(ctx); err != nil {
			t.Errorf("release_metadata_snap: %+v", err)
		}
	}()
	return saParseDump(t, thinTool(t, "thin_dump", "-m", tp.Meta.Loop.Path()))
}

// Scenario 1: mass create, of thins, of snapshots of one origin, and of a
// chain of snapshots each of the previous one.
func TestIntegrationMassCreate(t *testing.T) {
	ctx := context.Background()
	const blk = 64 << 10 // the pool's block, 128 sectors

	t.Run("create_thin", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := saPool(t, ctl, prefix, poolOpts{})
		t0 := time.Now()
		want := map[thin.DeviceID]uint64{}
		for id := thin.DeviceID(0); id <= saMass; id++ {
			if err := tp.CreateThin(ctx, id); err != nil {
				t.Fatalf("create_thin %d: %+v", id, err)
			}
			want[id] = 0
		}
		t.Logf("create_thin 0..%d: %v", saMass, time.Since(t0))
		// Provision a little in the first and the last, to compare
		// mapped blocks as well as ids.
		v0 := tp.activate(t, prefix+"first", 0, thin.Size(1*thin.MiB), false)
		vn := tp.activate(t, prefix+"last", saMass, thin.Size(1*thin.MiB), false)
		writeVolume(t, v0, 0, blk, 0x11)
		writeVolume(t, vn, 0, 2*blk, 0x22)
		want[0], want[saMass] = saMapped(t, v0), saMapped(t, vn)
		if want[0] != 1 || want[saMass] != 2 {
			t.Errorf("mapped blocks %d and %d, want 1 and 2", want[0], want[saMass])
		}
		saLsMatches(t, tp, want, 3)
	})

	snaps := func(t *testing.T, originOf func(i thin.DeviceID) thin.DeviceID) {
		ctl, prefix := vmSetup(t)
		tp := saPool(t, ctl, prefix, poolOpts{})
		v := tp.activate(t, prefix+"origin", 0, thin.Size(1*thin.MiB), true)
		writeVolume(t, v, 0, 2*blk, 0x33)
		want := map[thin.DeviceID]uint64{0: saMapped(t, v)}
		// An active origin is suspended around each create_snap; with
		// udev that costs a cookie wait per snapshot, so take them of
		// the inactive origin, as dmtest does.
		if err := v.Deactivate(ctx); err != nil {
			t.Fatalf("deactivate: %+v", err)
		}
		t0 := time.Now()
		for i := thin.DeviceID(1); i <= saMass; i++ {
			if err := tp.CreateSnapshot(ctx, i, originOf(i)); err != nil {
				t.Fatalf("create_snap %d %d: %+v", i, originOf(i), err)
			}
			want[i] = want[0]
		}
		t.Logf("create_snap 1..%d: %v", saMass, time.Since(t0))
		// Break the sharing of one block in the last snapshot; it still
		// maps two blocks, and the pool uses three.
		last := tp.activate(t, prefix+"last", saMass, thin.Size(1*thin.MiB), false)
		if got := readVolume(t, last, blk, blk); !bytes.Equal(got, bytes.Repeat([]byte{0x33}, blk)) {
			t.Errorf("snapshot %d does not read its origin's data", saMass)
		}
		writeVolume(t, last, 0, blk, 0x44)
		want[saMass] = saMapped(t, last)
		if want[saMass] != 2 {
			t.Errorf("snapshot %d maps %d blocks, want 2", saMass, want[saMass])
		}
		saLsMatches(t, tp, want, 3)
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
		tp := saPool(t, ctl, prefix, poolOpts{})
		before := tp.status(t)
		t0 := time.Now()
		for i := 0; i < saMass; i++ {
			if err := tp.CreateThin(ctx, 0); err != nil {
				t.Fatalf("round %d: create_thin 0: %+v", i, err)
			}
			if err := tp.Delete(ctx, 0); err != nil {
				t.Fatalf("round %d: delete 0: %+v", i, err)
			}
		}
		t.Logf("%d x (create_thin 0; delete 0): %v", saMass, time.Since(t0))
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
		saLsMatches(t, tp, map[thin.DeviceID]uint64{}, 0)
	})

	t.Run("rolling", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := saPool(t, ctl, prefix, poolOpts{})
		want := map[thin.DeviceID]uint64{}
		for id := thin.DeviceID(0); id <= saMass; id++ {
			if err := tp.CreateThin(ctx, id); err != nil {
				t.Fatalf("create_thin %d: %+v", id, err)
			}
			want[id] = 0
		}
		v := tp.activate(t, prefix+"t0", 0, thin.Size(1*thin.MiB), false)
		writeVolume(t, v, 0, 64<<10, 0x55)
		if n := saMapped(t, v); n != 1 {
			t.Fatalf("thin 0 maps %d blocks, want 1", n)
		}
		if err := v.Deactivate(ctx); err != nil {
			t.Fatalf("deactivate: %+v", err)
		}
		t0 := time.Now()
		for id := thin.DeviceID(0); id <= saMass; id++ {
			if err := tp.Delete(ctx, id); err != nil {
				t.Fatalf("delete %d: %+v", id, err)
			}
			if err := tp.CreateThin(ctx, id); err != nil {
				t.Fatalf("create_thin %d: %+v", id, err)
			}
		}
		t.Logf("rolling delete/create_thin 0..%d: %v", saMass, time.Since(t0))
		// Thin 0 was recreated empty: nothing is used any more.
		saLsMatches(t, tp, want, 0)
	})
}

// Scenario 3: provisioning one block uses one block, deleting frees it,
// at several block sizes.
func TestIntegrationProvisionThenDelete(t *testing.T) {
	ctx := context.Background()
	for _, bs := range []dm.Sectors{128, 1024, 8192} {
		t.Run(fmt.Sprintf("block%d", bs), func(t *testing.T) {
			ctl, prefix := vmSetup(t)
			tp := saPool(t, ctl, prefix, poolOpts{BlockSize: bs})
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
			saLsMatches(t, tp, map[thin.DeviceID]uint64{0: saMapped(t, v)}, 1)
			if err := v.Deactivate(ctx); err != nil {
				t.Fatalf("deactivate: %+v", err)
			}
			if err := tp.Delete(ctx, 0); err != nil {
				t.Fatalf("delete 0: %+v", err)
			}
			saLsMatches(t, tp, map[thin.DeviceID]uint64{}, 0)
		})
	}
}

// Scenario 4 and the package doc's errno contract: every row, as the
// library reports it (typed) and, where the library refuses first, as the
// kernel answers the raw request. (Activating a thin while the pool is
// suspended is TestIntegrationActivateWhilePoolSuspended; a failed pool is
// TestIntegrationErrnoContractFailedPool.)
func TestIntegrationErrnoContract(t *testing.T) {
	ctx := context.Background()
	ctl, prefix := vmSetup(t)
	tp := saPool(t, ctl, prefix, poolOpts{})
	size := thin.Size(1 * thin.MiB)
	v0 := tp.activate(t, prefix+"t0", 0, size, true)
	writeVolume(t, v0, 0, 64<<10, 0x77)
	if err := tp.CreateThin(ctx, 1); err != nil {
		t.Fatalf("create_thin 1: %+v", err)
	}

	t.Run("create_existing_name", func(t *testing.T) {
		_, err := tp.Activate(ctx, v0.Name(), 1, size)
		saKernel(t, "activate under a name in use", err, ioctl.CmdDevCreate, unix.EBUSY, dm.ErrExists)
		// The existing device is untouched.
		if got := readVolume(t, v0, 0, 64<<10); !bytes.Equal(got, bytes.Repeat([]byte{0x77}, 64<<10)) {
			t.Errorf("%s no longer reads its data", v0.Name())
		}
	})
	t.Run("create_thin_2^24", func(t *testing.T) {
		saRefused(t, "create_thin 16777216", tp.CreateThin(ctx, 1<<24), dm.ErrInvalid)
		saKernel(t, "raw create_thin 16777216", saRaw(tp, "create_thin 16777216"), ioctl.CmdTargetMsg, unix.EINVAL, dm.ErrInvalid)
		if err := tp.CreateThin(ctx, thin.MaxDeviceID); err != nil {
			t.Fatalf("create_thin 16777215: %+v", err)
		}
	})
	t.Run("create_thin_existing", func(t *testing.T) {
		saKernel(t, "create_thin 1 again", tp.CreateThin(ctx, 1), ioctl.CmdTargetMsg, unix.EEXIST, thin.ErrIDInUse, dm.ErrExists)
	})
	t.Run("create_snap_missing_origin", func(t *testing.T) {
		saKernel(t, "create_snap 2 777", tp.CreateSnapshot(ctx, 2, 777), ioctl.CmdTargetMsg, unix.ENODATA, thin.ErrUnknownID, dm.ErrNoData)
	})
	t.Run("delete_unknown", func(t *testing.T) {
		saKernel(t, "delete 778", tp.Delete(ctx, 778), ioctl.CmdTargetMsg, unix.ENODATA, thin.ErrUnknownID, dm.ErrNoData)
		if err := tp.Delete(ctx, 778, thin.IgnoreMissing()); err != nil {
			t.Errorf("delete 778 with IgnoreMissing: %+v", err)
		}
	})
	t.Run("delete_active", func(t *testing.T) {
		saKernel(t, "delete 0 while active", tp.Delete(ctx, 0), ioctl.CmdTargetMsg, unix.EBUSY, thin.ErrInUse, dm.ErrBusy)
	})
	t.Run("set_transaction_id_wrong", func(t *testing.T) {
		saKernel(t, "set_transaction_id 5 6", tp.SetTransactionID(ctx, 5, 6), ioctl.CmdTargetMsg, unix.EINVAL, thin.ErrTransactionMismatch, dm.ErrInvalid)
	})
	t.Run("unknown_message", func(t *testing.T) {
		saKernel(t, "raw frobnicate 1", saRaw(tp, "frobnicate 1"), ioctl.CmdTargetMsg, unix.EINVAL, dm.ErrInvalid)
	})
	t.Run("release_without_reserve", func(t *testing.T) {
		saKernel(t, "release_metadata_snap", tp.ReleaseMetadataSnap(ctx), ioctl.CmdTargetMsg, unix.EINVAL, thin.ErrNoMetadataSnap, dm.ErrInvalid)
	})
	t.Run("reserve_twice", func(t *testing.T) {
		if err := tp.ReserveMetadataSnap(ctx); err != nil {
			t.Fatalf("reserve_metadata_snap: %+v", err)
		}
		saKernel(t, "reserve_metadata_snap again", tp.ReserveMetadataSnap(ctx), ioctl.CmdTargetMsg, unix.EBUSY, thin.ErrMetadataSnapHeld, dm.ErrBusy)
		if err := tp.ReleaseMetadataSnap(ctx); err != nil {
			t.Fatalf("release_metadata_snap: %+v", err)
		}
	})
	t.Run("remove_pool_with_active_thin", func(t *testing.T) {
		saKernel(t, "remove pool", tp.Remove(ctx, dm.NoRetry), ioctl.CmdDevRemove, unix.EBUSY, thin.ErrInUse, dm.ErrBusy)
		if _, err := tp.Status(ctx); err != nil {
			t.Errorf("the pool is gone: %+v", err)
		}
	})
	t.Run("activate_unknown_id", func(t *testing.T) {
		_, err := tp.Activate(ctx, prefix+"ghost", 4242, size)
		saKernel(t, "activate id 4242", err, ioctl.CmdTableLoad, unix.ENODATA, thin.ErrUnknownID, dm.ErrNoData)
		saGone(t, ctl, prefix+"ghost")
	})
	t.Run("second_pool_same_metadata", func(t *testing.T) {
		data := newBacking(t, 16<<20)
		spec := thin.PoolSpec{Metadata: tp.Meta.Dev, Data: data.Dev, BlockSize: 128}
		_, err := thin.CreatePool(ctx, ctl, prefix+"pool2", spec)
		saKernel(t, "second pool on the metadata", err, ioctl.CmdTableLoad, unix.EBUSY, thin.ErrInUse)
		saGone(t, ctl, prefix+"pool2")
		// Asked to format it, the library cannot even open the
		// metadata device exclusively: the live metadata is untouched.
		_, err = thin.CreatePool(ctx, ctl, prefix+"pool2", spec, thin.FormatMetadata(), thin.WithMetadataPath(tp.Meta.Loop.Path()))
		saRefused(t, "format the metadata of a live pool", err, unix.EBUSY)
		saGone(t, ctl, prefix+"pool2")
		if st := tp.status(t); st.Mode != thin.ModeReadWrite || st.UsedData != 1 {
			t.Errorf("pool after the attempts: %v", st)
		}
	})
	t.Run("block_size_192", func(t *testing.T) {
		meta, data := newBacking(t, 8<<20), newBacking(t, 16<<20)
		spec := thin.PoolSpec{Metadata: meta.Dev, Data: data.Dev, BlockSize: 192, Length: 32768}
		_, err := thin.CreatePool(ctx, ctl, prefix+"bs192", spec, thin.FormatMetadata(), thin.WithMetadataPath(meta.Loop.Path()))
		saRefused(t, "pool with block size 192", err, dm.ErrInvalid)
		_, err = ctl.Create(ctx, prefix+"bs192", spec.Table())
		saKernel(t, "raw pool table with block size 192", err, ioctl.CmdTableLoad, unix.EINVAL, dm.ErrInvalid)
		saGone(t, ctl, prefix+"bs192")
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
		saRefused(t, "create_thin 9 (read-only)", tp.CreateThin(ctx, 9), thin.ErrPoolReadOnly, unix.EOPNOTSUPP, dm.ErrNotSupported)
		saRefused(t, "delete 1 (read-only)", tp.Delete(ctx, 1), thin.ErrPoolReadOnly, unix.EOPNOTSUPP)
		saRefused(t, "reserve_metadata_snap (read-only)", tp.ReserveMetadataSnap(ctx), thin.ErrPoolReadOnly, unix.EOPNOTSUPP)
		for _, msg := range []string{"create_thin 9", "create_snap 9 1", "delete 1", "set_transaction_id 0 1", "reserve_metadata_snap", "release_metadata_snap", "frobnicate"} {
			saKernel(t, "raw "+msg+" (read-only)", saRaw(tp, msg), ioctl.CmdTargetMsg, unix.EOPNOTSUPP, dm.ErrNotSupported)
		}
	})
	if t.Failed() {
		return
	}
	// Nothing above changed the pool but create_thin 16777215.
	saLsMatches(t, tp, map[thin.DeviceID]uint64{0: saMapped(t, v0), 1: 0, thin.MaxDeviceID: 0}, 1)
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
		saThinCheck(t, metaLoop.Loop.Path())
		// On disk is the last commit: thin 0 with its one block, and
		// thin 1; the write after the failure is lost.
		sb := saParseDump(t, thinTool(t, "thin_dump", metaLoop.Loop.Path()))
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
	mapped0 = saMapped(t, v)

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
	saRefused(t, "create_thin 2 (failed pool)", tp.CreateThin(ctx, 2), kind, unix.EOPNOTSUPP, dm.ErrNotSupported)
	saRefused(t, "delete 1 (failed pool)", tp.Delete(ctx, 1), kind, unix.EOPNOTSUPP)
	saRefused(t, "set_transaction_id 0 1 (failed pool)", tp.SetTransactionID(ctx, 0, 1), kind, unix.EOPNOTSUPP)
	for _, msg := range []string{"create_thin 2", "create_snap 2 0", "delete 1", "set_transaction_id 0 1", "reserve_metadata_snap", "release_metadata_snap"} {
		saKernel(t, "raw "+msg+" (failed pool)", saRaw(tp, msg), ioctl.CmdTargetMsg, unix.EOPNOTSUPP, dm.ErrNotSupported)
	}
	if st.Mode == thin.ModeFail {
		_, err := tp.Activate(ctx, prefix+"t1", 1, thin.Size(1*thin.MiB))
		saKernel(t, "activate on a failed pool", err, ioctl.CmdTableLoad, unix.EINVAL, thin.ErrPoolFailed)
		saGone(t, ctl, prefix+"t1")
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
			saRefused(t, fmt.Sprintf("pool with block size %d", bs), err, dm.ErrInvalid)
			saGone(t, ctl, name)
			_, err = ctl.Create(ctx, name, spec.Table())
			saKernel(t, fmt.Sprintf("raw pool table with block size %d", bs), err, ioctl.CmdTableLoad, unix.EINVAL, dm.ErrInvalid)
			saGone(t, ctl, name)
		}
	})
	t.Run("block_size_2^21", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		// One 1 GiB block. Nothing is written: provisioning it would
		// zero 1 GiB under TCG.
		tp := saPool(t, ctl, prefix, poolOpts{DataSize: 1 << 30, BlockSize: 1 << 21})
		st := tp.status(t)
		if st.TotalData != 1 || tp.BlockSize() != 1<<21 {
			t.Errorf("pool of %d blocks of %d sectors, want 1 of %d", st.TotalData, tp.BlockSize(), 1<<21)
		}
		if err := tp.CreateThin(ctx, 0); err != nil {
			t.Fatalf("create_thin 0: %+v", err)
		}
		sb := saDumpLive(t, tp)
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
			saKernel(t, "pool on 16 KiB of metadata", err, ioctl.CmdTableLoad, de.Errno())
		} else {
			saRefused(t, "pool on 16 KiB of metadata", err, dm.ErrInvalid)
		}
		saGone(t, ctl, name)
		spec.Length = 64 << 20 / 512
		_, err = ctl.Create(ctx, name, spec.Table())
		if errors.As(err, &de) && de.Sent {
			t.Logf("the kernel refuses a pool on 16 KiB of metadata with %v (%d) at %v", de.Errno(), de.Errno(), de.Cmd)
		}
		saKernel(t, "raw pool table on 16 KiB of metadata", err, ioctl.CmdTableLoad, unix.ENOSPC)
		saGone(t, ctl, name)
	})
	t.Run("data_smaller_than_pool", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := saPool(t, ctl, prefix, poolOpts{})
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
		saRefused(t, "pool longer than its data device", err, dm.ErrInvalid)
		saGone(t, ctl, prefix+"long")
		_, err = ctl.Create(ctx, prefix+"long", other.Table())
		saKernel(t, "raw pool table longer than its data device", err, ioctl.CmdTableLoad, unix.EINVAL, dm.ErrInvalid)
		saGone(t, ctl, prefix+"long")

		// The live pool, reloaded longer than its data device.
		v := tp.activate(t, prefix+"t0", 0, thin.Size(1*thin.MiB), true)
		writeVolume(t, v, 0, 64<<10, 0x88)
		before := tp.status(t)
		saRefused(t, "resize past the data device", tp.Resize(ctx, big.Length), dm.ErrInvalid)
		// By hand, to see what the kernel does: it takes the table,
		// refuses it at resume (the table's devices are checked when
		// it is swapped in), and leaves the pool suspended on its old
		// table with no inactive table.
		pool := dm.Name(tp.Name)
		if err := ctl.Load(ctx, pool, big.Table()); err != nil {
			t.Fatalf("load of the longer table: %+v", err)
		}
		_, err = ctl.Resume(ctx, pool)
		saKernel(t, "resume of the longer table", err, ioctl.CmdDevSuspend, unix.EINVAL, dm.ErrInvalid)
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
		saKernel(t, "raw reload past the data device", err, ioctl.CmdDevSuspend, unix.EINVAL, dm.ErrInvalid)
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
		saLsMatches(t, tp, map[thin.DeviceID]uint64{0: saMapped(t, v)}, 2)
	})
}

// Scenario 6: a thin cannot be activated while its pool is suspended
// (EINVAL), with or without another thin active; nothing is left behind.
func TestIntegrationActivateWhilePoolSuspended(t *testing.T) {
	ctx := context.Background()
	ctl, prefix := vmSetup(t)
	tp := saPool(t, ctl, prefix, poolOpts{})
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
	saKernel(t, "activate while the pool is suspended", err, ioctl.CmdTableLoad, unix.EINVAL, thin.ErrPoolSuspended, dm.ErrInvalid)
	saGone(t, ctl, prefix+"t1")
	if _, err := ctl.Resume(ctx, pool); err != nil {
		t.Fatalf("resume pool: %+v", err)
	}
	v := tp.activate(t, prefix+"t1", 1, size, false)
	writeVolume(t, v, 0, 2*64<<10, 0xbb)
	saLsMatches(t, tp, map[thin.DeviceID]uint64{0: saMapped(t, idle), 1: saMapped(t, v)}, 3)
}

// Scenario 7: set_transaction_id is a compare and swap.
func TestIntegrationTransactionID(t *testing.T) {
	ctx := context.Background()
	ctl, prefix := vmSetup(t)
	tp := saPool(t, ctl, prefix, poolOpts{})
	if tid, err := tp.TransactionID(ctx); err != nil || tid != 0 {
		t.Fatalf("fresh pool: transaction id %d, %v; want 0", tid, err)
	}
	t0 := time.Now()
	for n := uint64(0); n < saMass; n++ {
		if err := tp.SetTransactionID(ctx, n, n+1); err != nil {
			t.Fatalf("set_transaction_id %d %d: %+v", n, n+1, err)
		}
	}
	t.Logf("%d x set_transaction_id: %v", saMass, time.Since(t0))
	if tid, err := tp.TransactionID(ctx); err != nil || tid != saMass {
		t.Fatalf("transaction id %d, %v; want %d", tid, err, saMass)
	}
	saKernel(t, "set_transaction_id with a wrong current id", tp.SetTransactionID(ctx, 5, 6), ioctl.CmdTargetMsg, unix.EINVAL, thin.ErrTransactionMismatch)
	saKernel(t, "the last set_transaction_id again", tp.SetTransactionID(ctx, saMass-1, saMass), ioctl.CmdTargetMsg, unix.EINVAL, thin.ErrTransactionMismatch)

	// A transaction on top: a batch, then the id advanced; replaying it
	// sends nothing.
	body := func(tx *thin.Tx) error { tx.CreateThin(0); tx.CreateThin(1); return nil }
	res, err := tp.Transaction(ctx, saMass, body)
	if err != nil || res.Sent != 2 || res.To != saMass+1 {
		t.Fatalf("transaction: %+v, %+v", res, err)
	}
	res, err = tp.Transaction(ctx, saMass, body)
	if err != nil || !res.AlreadyApplied || res.Sent != 0 {
		t.Errorf("replayed transaction: %+v, %+v", res, err)
	}
	sb := saDumpLive(t, tp)
	if sb.Transaction != saMass+1 {
		t.Errorf("thin_dump -m: transaction %d, want %d", sb.Transaction, saMass+1)
	}
	saLsMatches(t, tp, map[thin.DeviceID]uint64{0: 0, 1: 0}, 0)
}

// Scenario 8: the metadata snapshot: reserve/release and their errnos, a
// live thin_dump -m equal to the expected XML and frozen while the thin
// changes, and a teardown with the snapshot still held.
func TestIntegrationMetadataSnapshot(t *testing.T) {
	ctx := context.Background()
	ctl, prefix := vmSetup(t)
	tp := saPool(t, ctl, prefix, poolOpts{})
	meta := tp.Meta.Loop.Path()
	const blk = 64 << 10
	v := tp.activate(t, prefix+"t0", 0, thin.Size(4*thin.MiB), true)
	writeVolume(t, v, 0, blk, 0xc1)

	if err := tp.ReserveMetadataSnap(ctx); err != nil {
		t.Fatalf("reserve_metadata_snap: %+v", err)
	}
	st := tp.status(t)
	if st.HeldRoot == 0 {
		t.Fatalf("status after reserve: no held root: %v", st)
	}
	t.Logf("held root %d", st.HeldRoot)
	saKernel(t, "second reserve_metadata_snap", tp.ReserveMetadataSnap(ctx), ioctl.CmdTargetMsg, unix.EBUSY, thin.ErrMetadataSnapHeld)

	held := thinTool(t, "thin_dump", "-m", meta)
	// nr_data_blocks is 0: the kernel clears the space map roots in
	// the superblock copy it keeps for the snapshot
	// (__reserve_metadata_snap), and thin_dump reads the count there.
	const want = `<superblock uuid="" time="0" transaction="0" flags="0" version="2" data_block_size="128" nr_data_blocks="0">
  <device dev_id="0" mapped_blocks="1" transaction="0" creation_time="0" snap_time="0">
    <single_mapping origin_block="0" data_block="0" time="0"/>
  </device>
</superblock>
`
	if diff := cmp.Diff(want, held); diff != "" {
		t.Errorf("thin_dump -m of the held root (-want +got):\n%s", diff)
	}
	heldSB := saParseDump(t, held)

	// Write more: the held snapshot does not change.
	writeVolume(t, v, 5*blk, 3*blk, 0xc2)
	if again := thinTool(t, "thin_dump", "-m", meta); again != held {
		t.Errorf("the held metadata snapshot changed under writes:\n%s", cmp.Diff(held, again))
	}

	if err := tp.ReleaseMetadataSnap(ctx); err != nil {
		t.Fatalf("release_metadata_snap: %+v", err)
	}
	if st := tp.status(t); st.HeldRoot != 0 {
		t.Errorf("status after release: held root %d", st.HeldRoot)
	}
	saKernel(t, "second release_metadata_snap", tp.ReleaseMetadataSnap(ctx), ioctl.CmdTargetMsg, unix.EINVAL, thin.ErrNoMetadataSnap)

	// Hold one again, through the teardown.
	if err := tp.ReserveMetadataSnap(ctx); err != nil {
		t.Fatalf("reserve_metadata_snap: %+v", err)
	}
	mapped := saMapped(t, v)
	used := tp.status(t).UsedData
	if mapped != 4 || used != 4 {
		t.Errorf("thin 0 maps %d blocks, the pool uses %d; want 4 and 4", mapped, used)
	}
	if err := tp.Teardown(ctx); err != nil {
		t.Fatalf("teardown: %+v", err)
	}
	saThinCheck(t, meta)
	final := saParseDump(t, thinTool(t, "thin_dump", meta))
	if len(final.Devices) != 1 || final.Devices[0].ID != 0 || final.Devices[0].MappedBlocks != mapped {
		t.Fatalf("offline thin_dump: %+v; want device 0 mapping %d blocks", final, mapped)
	}
	hm, fm := heldSB.Devices[0].mappings(), final.Devices[0].mappings()
	if maps.Equal(hm, fm) {
		t.Errorf("the held dump and the final dump map the same blocks: %v", fm)
	}
	for _, b := range []uint64{0, 5, 6, 7} {
		if _, ok := fm[b]; !ok {
			t.Errorf("final dump: block %d is not mapped: %v", b, fm)
		}
	}
	t.Logf("held mappings %v, final %v", hm, fm)
}

// Scenario 9 (bz1382654): reserve/release the metadata snapshot over and
// over while a writer rewrites the thin, over several pool lifetimes, with
// thin_check after each.
//
// Full size is 50 lifetimes x 100 cycles; under TCG that takes minutes, so
// by default it runs 5 lifetimes x 100 cycles (THINP_SCENARIO_SCALE=full
// for all 50).
func TestIntegrationMetadataSnapshotUnderIO(t *testing.T) {
	lifetimes := saScale(t, 50, 5)
	const cycles = 100
	t.Logf("%d pool lifetimes x %d reserve/release cycles (THINP_SCENARIO_SCALE=full for 50)", lifetimes, cycles)
	for l := 0; l < lifetimes; l++ {
		t.Run(fmt.Sprintf("lifetime%d", l), func(t *testing.T) {
			saSnapUnderIO(t, cycles)
		})
	}
}

func saSnapUnderIO(t *testing.T, cycles int) {
	ctx := context.Background()
	ctl, prefix := vmSetup(t)
	tp := saPool(t, ctl, prefix, poolOpts{})
	const blk, blocks = 64 << 10, 16
	v := tp.activate(t, prefix+"t0", 0, thin.Size(blocks*blk), true)

	stop := make(chan struct{})
	done := make(chan error, 1)
	var writes int
	go func() {
		f, err := os.OpenFile(v.DevPath(), os.O_WRONLY, 0)
		if err != nil {
			done <- err
			return
		}
		defer f.Close()
		buf := make([]byte, blk)
		for i := 0; ; i++ {
			select {
			case <-stop:
				writes = i
				done <- nil
				return
			default:
			}
			for j := range buf {
				buf[j] = byte(i)
			}
			if _, err := f.WriteAt(buf, int64(i%blocks)*blk); err != nil {
				done <- fmt.Errorf("write %d: %w", i, err)
				return
			}
			if err := f.Sync(); err != nil {
				done <- fmt.Errorf("sync %d: %w", i, err)
				return
			}
		}
	}()
	var werr error
	writerDone := false
	defer func() {
		if !writerDone {
			close(stop)
			<-done
		}
	}()
	t0 := time.Now()
	for c := 0; c < cycles; c++ {
		if err := tp.ReserveMetadataSnap(ctx); err != nil {
			t.Fatalf("cycle %d: reserve_metadata_snap: %+v", c, err)
		}
		st, err := tp.Status(ctx)
		if err != nil || st.HeldRoot == 0 || st.Mode != thin.ModeReadWrite {
			t.Fatalf("cycle %d: status %v, %+v", c, st, err)
		}
		if err := tp.ReleaseMetadataSnap(ctx); err != nil {
			t.Fatalf("cycle %d: release_metadata_snap: %+v", c, err)
		}
	}
	elapsed := time.Since(t0)
	close(stop)
	werr, writerDone = <-done, true
	if werr != nil {
		t.Fatalf("writer: %v", werr)
	}
	t.Logf("%d cycles in %v with %d writes+syncs alongside", cycles, elapsed, writes)
	if writes == 0 {
		t.Errorf("the writer wrote nothing during the cycles")
	}
	mapped := saMapped(t, v)
	if want := uint64(min(writes, blocks)); mapped != want {
		t.Errorf("thin 0 maps %d blocks, want %d", mapped, want)
	}
	saLsMatches(t, tp, map[thin.DeviceID]uint64{0: mapped}, thin.DataBlocks(mapped))
}

// Bad input never reaches the kernel: each request below is refused by the
// library, typed, with no command that changes anything reaching the
// kernel (every ioctl is recorded), nothing left behind and the pool
// unchanged.
func TestIntegrationBadInputNeverReachesKernel(t *testing.T) {
	ctx := context.Background()
	ctl, prefix := vmSetup(t)
	tp := saPool(t, ctl, prefix, poolOpts{})
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
	beforeNames := saNames(t, ctl, prefix)

	rctl, rec := saRecordingControl(t)
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
			if !saReadOnlyCmds[c] {
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
			saRefused(t, "create pool: "+c.what, err, dm.ErrInvalid)
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
		saRefused(t, "create_thin 2^24", rp.CreateThin(ctx, big), dm.ErrInvalid)
		saRefused(t, "create_snap 2^24 0", rp.CreateSnapshot(ctx, big, 0), dm.ErrInvalid)
		saRefused(t, "create_snap 5 2^24", rp.CreateSnapshot(ctx, 5, big), dm.ErrInvalid)
		saRefused(t, "delete 2^24", rp.Delete(ctx, big), dm.ErrInvalid)
		saRefused(t, "delete 2^24 (ignore missing)", rp.Delete(ctx, big, thin.IgnoreMissing()), dm.ErrInvalid)
		_, err := rp.Activate(ctx, prefix+"big", big, size)
		saRefused(t, "activate 2^24", err, dm.ErrInvalid)
		_, err = rp.Activate(ctx, prefix+"big", ^thin.DeviceID(0), size)
		saRefused(t, "activate 2^32-1", err, dm.ErrInvalid)
		_, err = rp.Transaction(ctx, 0, func(tx *thin.Tx) error { tx.CreateThin(2); tx.CreateThin(big); return nil })
		saRefused(t, "transaction with create_thin 2^24", err, dm.ErrInvalid)
		none(t, "device id 2^24")
	})
	t.Run("thin_id_in_use", func(t *testing.T) {
		saRefused(t, "create_thin 0 (active)", rp.CreateThin(ctx, 0), thin.ErrIDInUse, unix.EEXIST, dm.ErrExists)
		reads(t, "create_thin 0 (active)")
		saRefused(t, "create_snap 0 1 (0 active)", rp.CreateSnapshot(ctx, 0, 1), thin.ErrIDInUse, unix.EEXIST)
		reads(t, "create_snap 0 1")
		saRefused(t, "create_snap 1 1", rp.CreateSnapshot(ctx, 1, 1), thin.ErrIDInUse)
		none(t, "create_snap 1 1")
		_, err := rp.Transaction(ctx, 0, func(tx *thin.Tx) error { tx.CreateThin(0); return nil })
		saRefused(t, "transaction with create_thin 0 (active)", err, thin.ErrIDInUse, unix.EEXIST)
		reads(t, "transaction with create_thin 0")
	})
	t.Run("zero_and_negative_sizes", func(t *testing.T) {
		for _, s := range []dm.Sectors{0, dm.Sectors(^uint64(0)), 1 << 63} {
			_, err := rp.Activate(ctx, prefix+"sized", 1, s)
			saRefused(t, fmt.Sprintf("activate %d sectors", s), err, dm.ErrInvalid)
			none(t, "activate")
			saRefused(t, fmt.Sprintf("resize to %d sectors", s), rp.Resize(ctx, s), dm.ErrInvalid)
			none(t, "resize")
		}
		saRefused(t, "resize to one block less", rp.Resize(ctx, beforeSpec.Length-128), thin.ErrShrink)
		reads(t, "shrink")
		saRefused(t, "resize past the data device", rp.Resize(ctx, beforeSpec.Length+128), dm.ErrInvalid)
		reads(t, "resize past the data device")
		saRefused(t, "low water mark = the pool size", rp.Reconfigure(ctx, func(s *thin.PoolSpec) { s.LowWaterMark = before.TotalData }), dm.ErrInvalid)
		saRefused(t, "low water mark past the pool size", rp.Reconfigure(ctx, func(s *thin.PoolSpec) { s.LowWaterMark = before.TotalData + 1000 }), dm.ErrInvalid)
		reads(t, "low water mark")
	})

	if names := saNames(t, ctl, prefix); !slices.Equal(names, beforeNames) {
		t.Errorf("devices now %v, before %v", names, beforeNames)
	}
	after := tp.status(t)
	if after.TransactionID != before.TransactionID || after.UsedData != before.UsedData || after.TotalData != before.TotalData || after.Mode != before.Mode {
		t.Errorf("pool changed: now %v, before %v", after, before)
	}
	if s, err := tp.Pool.Spec(ctx); err != nil || s != beforeSpec {
		t.Errorf("pool table now %v (%v), before %v", s, err, beforeSpec)
	}
	saLsMatches(t, tp, map[thin.DeviceID]uint64{0: saMapped(t, v0), 1: 0}, 1)
}
