package dmtest

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

const poolLen = 1 << 21 // 16384 blocks of 128 sectors

func thin(length uint64, params string) ioctl.TargetSpec {
	return ioctl.TargetSpec{Length: length, Type: "thin", Params: params}
}

func TestPoolStatus(t *testing.T) {
	f := newFixture(t)
	f.pool("pool", poolLen, "128 32")
	// 1024 metadata blocks: 10 used, 102 held back, threshold 1024/4.
	want := "0 112/1024 0/16384 - rw discard_passdown queue_if_no_space - 256 "
	if got := f.line("pool", 0); got != want {
		t.Errorf("info\n got %q\nwant %q", got, want)
	}
	if got := f.line("pool", ioctl.FlagStatusTable); got != "7:0 7:1 128 32 0 " {
		t.Errorf("table %q", got)
	}

	// Status commits, except with NOFLUSH or while suspended.
	c := poolInfo(t, f, "pool").Commits
	f.line("pool", ioctl.FlagNoFlush)
	if poolInfo(t, f, "pool").Commits != c {
		t.Error("NOFLUSH status committed")
	}
	f.line("pool", 0)
	if poolInfo(t, f, "pool").Commits != c+1 {
		t.Error("status did not commit")
	}
	f.suspend("pool") // postsuspend commits
	c = poolInfo(t, f, "pool").Commits
	f.line("pool", 0)
	if poolInfo(t, f, "pool").Commits != c {
		t.Error("status of a suspended pool committed")
	}
	f.mustResume("pool")

	g := newFixture(t)
	g.pool("pool", poolLen, "1024 0 4 skip_block_zeroing no_discard_passdown ERROR_IF_NO_SPACE skip_block_zeroing extra args")
	if got := g.line("pool", ioctl.FlagStatusTable); got != "7:0 7:1 1024 0 3 skip_block_zeroing no_discard_passdown error_if_no_space " {
		t.Errorf("table %q", got)
	}
	if got := g.line("pool", 0); got != "0 112/1024 0/2048 - rw no_discard_passdown error_if_no_space - 256 " {
		t.Errorf("info %q", got)
	}
	h := newFixture(t)
	h.pool("pool", poolLen, "128 0 1 ignore_discard")
	if got := h.line("pool", 0); got != "0 112/1024 0/16384 - rw ignore_discard queue_if_no_space - 256 " {
		t.Errorf("info %q", got)
	}
}

func poolInfo(t *testing.T, f *fixture, name string) PoolInfo {
	t.Helper()
	pi, ok := f.k.Pool(name)
	if !ok {
		t.Fatalf("no pool %s", name)
	}
	return pi
}

// TestErrnoContract: the kernel's answers to pool messages (see package thin's doc).
func TestErrnoContract(t *testing.T) {
	f := newFixture(t)
	f.pool("pool", poolLen, "128 0")
	f.mustMsg("pool", "create_thin 0")
	wantErrno(t, "create_thin of an id in use", f.msg("pool", "create_thin 0"), unix.EEXIST)
	wantErrno(t, "create_thin 2^24", f.msg("pool", "create_thin 16777216"), unix.EINVAL)
	f.mustMsg("pool", "create_thin 16777215")
	wantErrno(t, "create_snap of a missing origin", f.msg("pool", "create_snap 5 99"), unix.ENODATA)
	wantErrno(t, "create_snap onto an id in use", f.msg("pool", "create_snap 0 99"), unix.EEXIST)
	wantErrno(t, "delete of an unknown id", f.msg("pool", "delete 99"), unix.ENODATA)
	wantErrno(t, "set_transaction_id with the wrong current id", f.msg("pool", "set_transaction_id 1 2"), unix.EINVAL)
	wantErrno(t, "unknown pool message", f.msg("pool", "frobnicate"), unix.EINVAL)
	wantErrno(t, "release_metadata_snap without a reserve", f.msg("pool", "release_metadata_snap"), unix.EINVAL)
	f.mustMsg("pool", "reserve_metadata_snap")
	wantErrno(t, "reserve_metadata_snap twice", f.msg("pool", "reserve_metadata_snap"), unix.EBUSY)

	f.activate("thin", thin(1<<20, "253:0 0"))
	wantErrno(t, "delete of an active thin", f.msg("pool", "delete 0"), unix.EBUSY)
	wantErrno(t, "remove a pool that has an active thin", f.remove("pool"), unix.EBUSY)

	f.create("thin2")
	wantErrno(t, "thin table for a nonexistent id", f.load("thin2", thin(8, "253:0 7")), unix.ENODATA)

	f.create("pool2")
	wantErrno(t, "a second pool on the same metadata device",
		f.load("pool2", ioctl.TargetSpec{Length: poolLen, Type: "thin-pool", Params: "7:0 7:2 128 0"}), unix.EBUSY)
	wantErrno(t, "data block size 192",
		f.load("pool2", ioctl.TargetSpec{Length: poolLen, Type: "thin-pool", Params: "7:2 7:1 192 0"}), unix.EINVAL)

	f.suspend("pool")
	wantErrno(t, "activate a thin while its pool is suspended", f.load("thin2", thin(8, "253:0 16777215")), unix.EINVAL)
	f.mustResume("pool")
	f.mustLoad("thin2", thin(8, "253:0 16777215"))

	if err := f.k.SetPoolMode("pool", PoolReadOnly); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"create_thin 1", "delete 0", "release_metadata_snap", "frobnicate"} {
		wantErrno(t, "read-only pool: "+m, f.msg("pool", m), unix.EOPNOTSUPP)
	}
	f.k.FailPool("pool")
	wantErrno(t, "failed pool", f.msg("pool", "create_thin 1"), unix.EOPNOTSUPP)
}

func TestPoolMessages(t *testing.T) {
	f := newFixture(t)
	f.pool("pool", poolLen, "128 0")
	for _, m := range []string{"create_thin", "create_thin 1 2", "create_thin x", "create_thin -1", "create_thin 0x1",
		"create_snap 1", "delete", "set_transaction_id 0", "set_transaction_id 0 x", "reserve_metadata_snap now",
		"release_metadata_snap now"} {
		wantErrno(t, m, f.msg("pool", m), unix.EINVAL)
	}
	// Case-insensitive names, '+' and a trailing newline in numbers.
	f.mustMsg("pool", "CREATE_THIN +1")
	f.mustMsg("pool", "Set_Transaction_Id 0 18446744073709551615\n")
	if got := f.line("pool", 0); got[:21] != "18446744073709551615 " {
		t.Errorf("tid: %q", got)
	}
	// The message goes to the target at the sector; past the end is EINVAL.
	r := &ioctl.Request{Cmd: ioctl.CmdTargetMsg, Header: ioctl.Header{Name: "pool"}, Sector: poolLen - 1, Message: "create_thin 2"}
	f.mustDo(r)
	r.Sector = poolLen
	_, _, err := f.do(r)
	wantErrno(t, "sector past the pool", err, unix.EINVAL)

	// Transaction ids: compare and swap.
	f.mustMsg("pool", "set_transaction_id 18446744073709551615 0")
	for i := 0; i < 100; i++ {
		f.mustMsg("pool", fmt.Sprintf("set_transaction_id %d %d", i, i+1))
	}
	wantErrno(t, "repeat", f.msg("pool", "set_transaction_id 99 100"), unix.EINVAL)
	if pi := poolInfo(t, f, "pool"); pi.TransactionID != 100 {
		t.Errorf("tid %d", pi.TransactionID)
	}

	// The held root shows in the status, then goes.
	f.mustMsg("pool", "reserve_metadata_snap")
	pi := poolInfo(t, f, "pool")
	if pi.HeldRoot == 0 {
		t.Fatal("no held root")
	}
	if got, want := f.line("pool", 0), fmt.Sprintf("100 115/1024 0/16384 %d rw ", pi.HeldRoot); got[:len(want)] != want {
		t.Errorf("held: %q, want prefix %q", got, want)
	}
	f.mustMsg("pool", "release_metadata_snap")
	if got := f.line("pool", 0); got != "100 114/1024 0/16384 - rw discard_passdown queue_if_no_space - 256 " {
		t.Errorf("released: %q", got)
	}
}

func TestThin(t *testing.T) {
	f := newFixture(t)
	f.pool("pool", poolLen, "128 0")
	f.mustMsg("pool", "create_thin 0")
	f.activate("thin", thin(1<<30, "253:0 0")) // thins may be larger than the pool
	if got := f.line("thin", 0); got != "0 -" {
		t.Errorf("fresh thin %q", got)
	}
	if got := f.line("thin", ioctl.FlagStatusTable); got != "253:0 0" {
		t.Errorf("thin table %q", got)
	}
	if err := f.k.ProvisionBlocks("pool", 0, 3); err != nil {
		t.Fatal(err)
	}
	if got := f.line("thin", 0); got != "384 383" {
		t.Errorf("thin after 3 blocks %q", got)
	}
	if got := f.line("pool", 0); got != "0 114/1024 3/16384 - rw discard_passdown queue_if_no_space - 256 " {
		t.Errorf("pool after 3 blocks %q", got)
	}
	if di := f.info("pool"); di.OpenCount != 1 {
		t.Errorf("pool open count %d", di.OpenCount)
	}
	_, b := f.mustDo(named(ioctl.CmdTableDeps, "thin"))
	h := hdr(t, b)
	p, _ := h.Payload(b)
	if devs, _ := ioctl.ParseDeps(p); len(devs) != 1 || devs[0] != (ioctl.Dev{Major: 253, Minor: 0}.Encode()) {
		t.Errorf("thin deps %x", devs)
	}
	_, b = f.mustDo(named(ioctl.CmdTableDeps, "pool"))
	h = hdr(t, b)
	p, _ = h.Payload(b)
	if devs, _ := ioctl.ParseDeps(p); len(devs) != 2 || devs[0] != (ioctl.Dev{Major: 7, Minor: 1}.Encode()) || devs[1] != (ioctl.Dev{Major: 7, Minor: 0}.Encode()) {
		t.Errorf("pool deps %x", devs)
	}

	// External origin.
	f.mustMsg("pool", "create_thin 1")
	f.activate("ext", thin(1<<20, "253:0 1 7:2"))
	if got := f.line("ext", ioctl.FlagStatusTable); got != "253:0 1 7:2" {
		t.Errorf("external origin table %q", got)
	}
	f.create("bad")
	for _, tc := range []struct {
		params string
		want   unix.Errno
	}{
		{"253:0", unix.EINVAL},
		{"253:0 1 7:2 x", unix.EINVAL},
		{"253:0 1 253:0", unix.EINVAL}, // origin is the pool
		{"253:0 1 7:9", unix.ENXIO},
		{"253:9 1", unix.ENXIO},
		{"7:2 1", unix.EINVAL},   // not a dm device
		{"253:1 1", unix.EINVAL}, // a dm device without a pool
		{"253:0 16777216", unix.EINVAL},
		{"253:0 5", unix.ENODATA},
	} {
		wantErrno(t, tc.params, f.load("bad", thin(8, tc.params)), tc.want)
	}

	// While the pool is suspended its thins are internally suspended.
	f.suspend("pool")
	if st, _ := f.mustDo(named(ioctl.CmdDevStatus, "thin")); st.Flags&ioctl.FlagInternalSuspend == 0 || st.Flags&ioctl.FlagSuspend != 0 {
		t.Errorf("thin flags while the pool is suspended: %v", st.Flags)
	}
	f.mustResume("pool")
	if st, _ := f.mustDo(named(ioctl.CmdDevStatus, "thin")); st.Flags&ioctl.FlagInternalSuspend != 0 {
		t.Errorf("thin flags after: %v", st.Flags)
	}

	// An inactive thin table also keeps the id busy and the pool open.
	if err := f.remove("thin"); err != nil {
		t.Fatal(err)
	}
	f.create("thin")
	f.mustLoad("thin", thin(8, "253:0 0"))
	wantErrno(t, "delete with an inactive table", f.msg("pool", "delete 0"), unix.EBUSY)
	f.mustDo(named(ioctl.CmdTableClear, "thin"))
	f.mustMsg("pool", "delete 0")
	if pi := poolInfo(t, f, "pool"); pi.UsedDataBlocks != 0 || len(pi.Thins) != 1 {
		t.Errorf("after delete: %+v", pi)
	}
	for _, n := range []string{"ext", "thin", "bad"} {
		if err := f.remove(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.remove("pool"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.k.Pool("pool"); ok {
		t.Error("pool object left")
	}
}

func TestPoolTableValidation(t *testing.T) {
	f := newFixture(t)
	f.create("pool")
	f.k.AddBlockDevice(ioctl.Dev{Major: 7, Minor: 3}, 32) // 16 KiB
	for _, tc := range []struct {
		params string
		want   unix.Errno
	}{
		{"7:0 7:1 128", unix.EINVAL},
		{"7:0 7:0 128 0", unix.EINVAL},
		{"7:0 7:1 64 0", unix.EINVAL},
		{"7:0 7:1 185 0", unix.EINVAL},
		{"7:0 7:1 192 0", unix.EINVAL},
		{"7:0 7:1 2097280 0", unix.EINVAL},
		{"7:0 7:1 0 0", unix.EINVAL},
		{"7:0 7:1 x 0", unix.EINVAL},
		{"7:0 7:1 128 -1", unix.EINVAL},
		{"7:0 7:1 128 0 1", unix.EINVAL},
		{"7:0 7:1 128 0 1 bogus", unix.EINVAL},
		{"7:0 7:1 128 0 5 skip_block_zeroing ignore_discard no_discard_passdown read_only error_if_no_space", unix.EINVAL},
		{"7:0 7:1 128 0 1 read_only", unix.EPERM}, // fresh metadata cannot be opened read-only
		{"7:3 7:1 128 0", unix.ENOSPC},            // 16 KiB of metadata
		{"7:9 7:1 128 0", unix.ENXIO},
		{"7:0 7:9 128 0", unix.ENXIO},
	} {
		wantErrno(t, tc.params, f.load("pool", ioctl.TargetSpec{Length: poolLen, Type: "thin-pool", Params: tc.params}), tc.want)
	}
	wantErrno(t, "pool not alone", f.load("pool",
		ioctl.TargetSpec{Length: poolLen, Type: "thin-pool", Params: "7:0 7:1 128 0"},
		ioctl.TargetSpec{Start: poolLen, Length: 8, Type: "zero"}), unix.EINVAL)
	wantErrno(t, "pool after another target", f.load("pool",
		ioctl.TargetSpec{Length: 8, Type: "zero"},
		ioctl.TargetSpec{Start: 8, Length: poolLen, Type: "thin-pool", Params: "7:0 7:1 128 0"}), unix.EINVAL)
	// The first load checks the data device is large enough.
	wantErrno(t, "data device too small", f.load("pool",
		ioctl.TargetSpec{Length: dataSectors + 128, Type: "thin-pool", Params: "7:0 7:1 128 0"}), unix.EINVAL)
	if _, ok := f.k.Pool("pool"); ok {
		t.Error("failed loads left a pool object")
	}
	// The constructor ran before the size check: the metadata is formatted.
	if pi, ok := f.k.Metadata(ioctl.Dev{Major: 7, Minor: 0}); !ok || pi.BlockSize != 128 {
		t.Errorf("metadata after a failed first load: %+v %v", pi, ok)
	}
	f.k.WipeMetadata(ioctl.Dev{Major: 7, Minor: 0})
	f.mustLoad("pool", ioctl.TargetSpec{Length: poolLen, Type: "thin-pool", Params: "7:0 7:1 2097152 0"})
	// A different block size on the same metadata is refused once the
	// metadata exists.
	f.create("pool2")
	f.k.WipeMetadata(ioctl.Dev{Major: 7, Minor: 0}) // busy: the pool object holds it
	wantErrno(t, "wipe busy", f.k.WipeMetadata(ioctl.Dev{Major: 7, Minor: 0}), unix.EBUSY)
	f.mustDo(named(ioctl.CmdTableClear, "pool"))
	wantErrno(t, "block size change", f.load("pool2",
		ioctl.TargetSpec{Length: poolLen, Type: "thin-pool", Params: "7:0 7:1 128 0"}), unix.EINVAL)

	// Immutable: a live pool cannot become a linear, but an error target
	// may replace it.
	f.pool("live", poolLen, "2097152 0")
	wantErrno(t, "replace pool", f.load("live", linear(0, 8, "7:2 0")), unix.EINVAL)
	f.mustLoad("live", ioctl.TargetSpec{Length: 8, Type: "error"})
	// Reloading with other devices: the pool is found by its metadata
	// device first ("data device already in use by a pool"), then by the
	// pool device ("different pool cannot replace a pool").
	f.k.AddBlockDevice(ioctl.Dev{Major: 7, Minor: 4}, dataSectors)
	wantErrno(t, "other data device", f.load("live",
		ioctl.TargetSpec{Length: poolLen, Type: "thin-pool", Params: "7:0 7:4 2097152 0"}), unix.EBUSY)
	wantErrno(t, "other metadata device", f.load("live",
		ioctl.TargetSpec{Length: poolLen, Type: "thin-pool", Params: "7:2 7:1 2097152 0"}), unix.EINVAL)
	// Discard support cannot be turned off once on.
	wantErrno(t, "toggle ignore_discard", f.load("live",
		ioctl.TargetSpec{Length: poolLen, Type: "thin-pool", Params: "7:0 7:1 2097152 0 1 ignore_discard"}), unix.EINVAL)
}

func TestPoolResize(t *testing.T) {
	f := newFixture(t)
	f.pool("pool", poolLen, "128 0")
	pool := func(length uint64) ioctl.TargetSpec {
		return ioctl.TargetSpec{Length: length, Type: "thin-pool", Params: "7:0 7:1 128 0"}
	}
	// Grow.
	f.mustLoad("pool", pool(2*poolLen))
	f.mustResume("pool")
	if pi := poolInfo(t, f, "pool"); pi.DataBlocks != 32768 {
		t.Errorf("grown: %d blocks", pi.DataBlocks)
	}
	// Shrink: the load works, the resume fails and leaves the device
	// suspended with the new table live.
	f.mustLoad("pool", pool(poolLen))
	wantErrno(t, "shrink", f.resume("pool"), unix.EINVAL)
	di := f.info("pool")
	if !di.Suspended || di.Live[0].Length != poolLen || di.Inactive != nil {
		t.Errorf("after shrink: %+v", di)
	}
	// Thins cannot be activated meanwhile.
	f.mustMsg("pool", "create_thin 0")
	f.create("thin")
	wantErrno(t, "thin on a stuck pool", f.load("thin", thin(8, "253:0 0")), unix.EINVAL)
	// Recovery: reload the old table and resume.
	f.mustLoad("pool", pool(2*poolLen))
	f.mustResume("pool")
	if di := f.info("pool"); di.Suspended || poolInfo(t, f, "pool").DataBlocks != 32768 {
		t.Errorf("after recovery: %+v", di)
	}

	// A reload past the data device: the swap fails, the old table stays.
	f.mustLoad("pool", pool(dataSectors+128))
	wantErrno(t, "past the data device", f.resume("pool"), unix.EINVAL)
	di = f.info("pool")
	if !di.Suspended || di.Live[0].Length != 2*poolLen || poolInfo(t, f, "pool").DataBlocks != 32768 {
		t.Errorf("after a failed grow: %+v", di)
	}
	f.mustResume("pool")

	// Grow the metadata device and resume: the space map grows.
	f.suspend("pool")
	f.k.ResizeBlockDevice(ioctl.Dev{Major: 7, Minor: 0}, 3*metaSectors)
	f.mustResume("pool")
	if got := f.line("pool", 0); got != "0 318/3072 0/32768 - rw discard_passdown queue_if_no_space - 768 " {
		t.Errorf("after metadata grow: %q", got)
	}
	// Shrinking it is refused at resume.
	f.k.ResizeBlockDevice(ioctl.Dev{Major: 7, Minor: 0}, metaSectors)
	f.suspend("pool")
	wantErrno(t, "metadata shrink", f.resume("pool"), unix.EINVAL)
}

func TestLowWaterMark(t *testing.T) {
	f := newFixture(t)
	f.pool("pool", 100*128, "128 10") // 100 blocks, event at 10 free
	f.mustMsg("pool", "create_thin 0")
	ev := f.info("pool").EventNr
	if err := f.k.ProvisionBlocks("pool", 0, 90); err != nil {
		t.Fatal(err)
	}
	if got := f.info("pool").EventNr; got != ev {
		t.Errorf("event at 10 free before allocating: %d -> %d", ev, got)
	}
	// The check happens before each allocation, with free <= low water.
	f.k.ProvisionBlocks("pool", 0, 1)
	if got := f.info("pool").EventNr; got != ev+1 || !poolInfo(t, f, "pool").LowWaterTriggered {
		t.Errorf("no low water event: %d -> %d", ev, got)
	}
	f.k.ProvisionBlocks("pool", 0, 5)
	if got := f.info("pool").EventNr; got != ev+1 {
		t.Errorf("edge-triggered event fired again: %d", got)
	}
	// A resume (with an event of its own) re-arms it.
	f.suspend("pool")
	f.mustResume("pool")
	ev = f.info("pool").EventNr
	f.k.ProvisionBlocks("pool", 0, 1)
	if got := f.info("pool").EventNr; got != ev+1 {
		t.Errorf("no event after resume: %d -> %d", ev, got)
	}
}

func TestOutOfDataSpace(t *testing.T) {
	f := newFixture(t)
	f.pool("pool", 100*128, "128 0 1 error_if_no_space")
	f.mustMsg("pool", "create_thin 0")
	f.mustMsg("pool", "create_thin 1")
	if err := f.k.ProvisionBlocks("pool", 0, 100); err != nil {
		t.Fatal(err)
	}
	ev := f.info("pool").EventNr
	wantErrno(t, "101st block", f.k.ProvisionBlocks("pool", 1, 1), unix.ENOSPC)
	if got := f.line("pool", 0); got != "0 115/1024 100/100 - out_of_data_space discard_passdown error_if_no_space - 256 " {
		t.Errorf("out of space: %q", got)
	}
	if got := f.info("pool").EventNr; got <= ev {
		t.Error("no event on the mode change")
	}
	// Messages still work; deleting frees the space and the pool is rw.
	f.mustMsg("pool", "delete 0")
	if got := f.line("pool", 0); got != "0 113/1024 0/100 - rw discard_passdown error_if_no_space - 256 " {
		t.Errorf("after delete: %q", got)
	}

	// Queue mode: the timeout switches to error mode; growing recovers.
	g := newFixture(t)
	g.pool("pool", 10*128, "128 0")
	g.mustMsg("pool", "create_thin 0")
	g.k.ProvisionBlocks("pool", 0, 10)
	wantErrno(t, "queue mode", g.k.ProvisionBlocks("pool", 0, 1), unix.ENOSPC)
	g.k.ExpireNoSpaceTimeout("pool")
	if got := g.line("pool", 0); got != "0 114/1024 10/10 - out_of_data_space discard_passdown error_if_no_space - 256 " {
		t.Errorf("after timeout: %q", got)
	}
	g.mustLoad("pool", ioctl.TargetSpec{Length: 20 * 128, Type: "thin-pool", Params: "7:0 7:1 128 0"})
	g.mustResume("pool")
	if got := g.line("pool", 0); got != "0 114/1024 10/20 - rw discard_passdown queue_if_no_space - 256 " {
		t.Errorf("after grow: %q", got)
	}
	// Discards free blocks too.
	g.k.ProvisionBlocks("pool", 0, 10)
	g.k.ProvisionBlocks("pool", 0, 1)
	if err := g.k.DiscardBlocks("pool", 0, 3); err != nil {
		t.Fatal(err)
	}
	if pi := poolInfo(t, g, "pool"); pi.Mode != PoolWrite || pi.UsedDataBlocks != 17 {
		t.Errorf("after discard: %+v", pi)
	}
}

func TestPoolFailAndReadOnly(t *testing.T) {
	f := newFixture(t)
	f.pool("pool", poolLen, "128 0")
	f.mustMsg("pool", "create_thin 0")
	f.mustMsg("pool", "create_thin 1")
	f.activate("thin", thin(8, "253:0 0"))

	ev := f.info("pool").EventNr
	f.k.SetPoolMode("pool", PoolReadOnly)
	if got := f.line("pool", 0); got != "0 114/1024 0/16384 - ro discard_passdown queue_if_no_space - 256 " {
		t.Errorf("ro: %q", got)
	}
	if f.info("pool").EventNr != ev+1 {
		t.Error("no event on the mode change")
	}
	wantErrno(t, "write to ro", f.k.ProvisionBlocks("pool", 0, 1), unix.EIO)

	// A plain suspend and resume keeps the mode (set_pool_mode() synced
	// it into the bound target); reloading the table asks for write mode
	// again, which needs_check refuses.
	f.suspend("pool")
	f.mustResume("pool")
	if pi := poolInfo(t, f, "pool"); pi.Mode != PoolReadOnly {
		t.Errorf("mode after resume %v", pi.Mode)
	}
	rw := ioctl.TargetSpec{Length: poolLen, Type: "thin-pool", Params: "7:0 7:1 128 0"}
	f.k.SetNeedsCheck("pool", true)
	f.mustLoad("pool", rw)
	f.mustResume("pool")
	if got := f.line("pool", 0); got != "0 114/1024 0/16384 - ro discard_passdown queue_if_no_space needs_check 256 " {
		t.Errorf("needs_check: %q", got)
	}
	f.k.SetNeedsCheck("pool", false)
	f.mustLoad("pool", rw)
	f.mustResume("pool")
	if pi := poolInfo(t, f, "pool"); pi.Mode != PoolWrite {
		t.Errorf("mode %v", pi.Mode)
	}
	// read_only in the table.
	f.mustLoad("pool", ioctl.TargetSpec{Length: poolLen, Type: "thin-pool", Params: "7:0 7:1 128 0 1 read_only"})
	f.mustResume("pool")
	if got := f.line("pool", ioctl.FlagStatusTable); got != "7:0 7:1 128 0 1 read_only " {
		t.Errorf("table %q", got)
	}
	wantErrno(t, "read_only table", f.msg("pool", "create_thin 2"), unix.EOPNOTSUPP)

	f.k.FailPool("pool")
	f.k.SetPoolMode("pool", PoolWrite) // Fail is final
	if got := f.line("pool", 0); got != "Fail" {
		t.Errorf("failed pool %q", got)
	}
	if got := f.line("thin", 0); got != "Fail" {
		t.Errorf("failed thin %q", got)
	}
	if got := f.line("pool", ioctl.FlagStatusTable); got != "7:0 7:1 128 0 1 read_only " {
		t.Errorf("failed pool table %q", got)
	}
	f.create("thin1")
	wantErrno(t, "thin on a failed pool", f.load("thin1", thin(8, "253:0 1")), unix.EINVAL)
	wantErrno(t, "message to a failed pool", f.msg("pool", "delete 1"), unix.EOPNOTSUPP)
}

func TestMetadataPersists(t *testing.T) {
	f := newFixture(t)
	// Metadata on a linear device over 7:0, as lvm and the tests do.
	f.activate("meta", linear(0, metaSectors, "7:0 0"))
	poolSpec := ioctl.TargetSpec{Length: poolLen, Type: "thin-pool", Params: "253:0 7:1 128 0"}
	f.activate("pool", poolSpec)
	f.mustMsg("pool", "create_thin 3")
	f.mustMsg("pool", "set_transaction_id 0 7")
	f.k.ProvisionBlocks("pool", 3, 2)
	for _, n := range []string{"pool", "meta"} {
		if err := f.remove(n); err != nil {
			t.Fatal(err)
		}
	}
	if pi, ok := f.k.Metadata(ioctl.Dev{Major: 7, Minor: 0}); !ok || pi.TransactionID != 7 || len(pi.Thins) != 1 || pi.Thins[0].MappedBlocks != 2 {
		t.Errorf("metadata on 7:0: %+v", pi)
	}
	f.activate("meta", linear(0, metaSectors, "7:0 0"))
	f.activate("pool", poolSpec)
	if got := f.line("pool", 0); got != "7 114/1024 2/16384 - rw discard_passdown queue_if_no_space - 256 " {
		t.Errorf("reopened: %q", got)
	}
	if err := f.remove("pool"); err != nil {
		t.Fatal(err)
	}
	if err := f.k.WipeMetadata(ioctl.Dev{Major: 253, Minor: 0}); err != nil {
		t.Fatal(err)
	}
	f.activate("pool2", poolSpec)
	if pi := poolInfo(t, f, "pool2"); pi.TransactionID != 0 || len(pi.Thins) != 0 {
		t.Errorf("after wipe: %+v", pi)
	}
}

func TestSnapshotsShareBlocks(t *testing.T) {
	f := newFixture(t)
	f.pool("pool", poolLen, "128 0")
	f.mustMsg("pool", "create_thin 0")
	f.k.ProvisionBlocks("pool", 0, 10)
	for i := 1; i <= 100; i++ {
		f.mustMsg("pool", fmt.Sprintf("create_snap %d 0", i))
	}
	f.k.ProvisionBlocks("pool", 0, 1)
	pi := poolInfo(t, f, "pool")
	if pi.UsedDataBlocks != 11 || len(pi.Thins) != 101 || pi.Thins[1].MappedBlocks != 10 {
		t.Errorf("after snapshots: used %d, %d thins, %+v", pi.UsedDataBlocks, len(pi.Thins), pi.Thins[1])
	}
	f.mustMsg("pool", "delete 0")
	if pi := poolInfo(t, f, "pool"); pi.UsedDataBlocks != 10 {
		t.Errorf("after deleting the origin: %d", pi.UsedDataBlocks)
	}
	for i := 1; i <= 100; i++ {
		f.mustMsg("pool", fmt.Sprintf("delete %d", i))
	}
	if pi := poolInfo(t, f, "pool"); pi.UsedDataBlocks != 0 {
		t.Errorf("after deleting all: %d", pi.UsedDataBlocks)
	}
}

func TestMetadataSpace(t *testing.T) {
	f := newFixture(t)
	f.k.AddBlockDevice(ioctl.Dev{Major: 7, Minor: 3}, 200*8) // 200 blocks: 20 reserved, threshold 50
	f.activate("pool", ioctl.TargetSpec{Length: poolLen, Type: "thin-pool", Params: "7:3 7:1 128 0"})
	ev := f.info("pool").EventNr
	// Actual free drops to the threshold (50) after 140 thins.
	for i := 0; i < 139; i++ {
		f.mustMsg("pool", fmt.Sprintf("create_thin %d", i))
	}
	if f.info("pool").EventNr != ev {
		t.Error("early metadata event")
	}
	f.mustMsg("pool", "create_thin 139")
	if f.info("pool").EventNr != ev+1 {
		t.Error("no metadata low watermark event")
	}
	// Reported free space runs out 20 blocks before the device does; the
	// pool then refuses messages.
	for i := 140; i < 170; i++ {
		f.mustMsg("pool", fmt.Sprintf("create_thin %d", i))
	}
	if got := f.line("pool", 0); got != "0 200/200 0/16384 - ro discard_passdown queue_if_no_space - 50 " {
		t.Errorf("full: %q", got)
	}
	wantErrno(t, "full", f.msg("pool", "create_thin 999"), unix.EOPNOTSUPP)
	// Growing the metadata device brings it back.
	f.suspend("pool")
	f.k.ResizeBlockDevice(ioctl.Dev{Major: 7, Minor: 3}, 400*8)
	f.mustResume("pool")
	if pi := poolInfo(t, f, "pool"); pi.Mode != PoolWrite || pi.MetadataBlocks != 400 {
		t.Errorf("after grow: %+v", pi)
	}
	f.mustMsg("pool", "create_thin 999")

	// Provisioning with no metadata left aborts: needs_check, read-only.
	g := newFixture(t)
	g.k.AddBlockDevice(ioctl.Dev{Major: 7, Minor: 3}, 40*8) // 40 blocks, 4 reserved
	g.activate("pool", ioctl.TargetSpec{Length: poolLen, Type: "thin-pool", Params: "7:3 7:1 128 0"})
	g.mustMsg("pool", "create_thin 0")
	err := g.k.ProvisionBlocks("pool", 0, 126*40)
	wantErrno(t, "metadata exhausted", err, unix.EIO)
	if got := g.line("pool", 0); got != "0 40/40 3150/16384 - ro discard_passdown queue_if_no_space needs_check 10 " {
		t.Errorf("exhausted: %q", got)
	}
}
