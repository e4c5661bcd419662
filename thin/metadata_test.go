package thin_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/thinp/thinp/thin"
)

// TestIntegrationPoolUsage: Pool.Usage of a running pool with snapshots
// that share blocks equals thin_ls -m, and leaves no metadata snapshot
// held; with one already held it reads through it and keeps it.
func TestIntegrationPoolUsage(t *testing.T) {
	ctl, prefix := vmSetup(t)
	tp := newPool(t, ctl, prefix, poolOpts{})
	ctx := context.Background()
	const bs = 64 << 10 // 128-sector blocks
	v1 := tp.activate(t, prefix+"v1", 1, 16<<20>>9, true)
	writeVolume(t, v1, 0, 10*bs, 0xa1)
	if err := tp.CreateSnapshot(ctx, 2, 1); err != nil {
		t.Fatalf("create_snap: %+v", err)
	}
	writeVolume(t, v1, 2*bs, 3*bs, 0xb2) // 3 blocks of 1 no longer shared with 2
	if err := tp.CreateSnapshot(ctx, 3, 2); err != nil {
		t.Fatalf("create_snap: %+v", err)
	}
	if err := tp.CreateThin(ctx, 4); err != nil { // no mappings
		t.Fatalf("create_thin: %+v", err)
	}

	us, err := tp.Usage(ctx)
	if err != nil {
		t.Fatalf("Usage: %+v", err)
	}
	if st := tp.status(t); st.HeldRoot != 0 {
		t.Fatalf("Usage left a metadata snapshot held at %d", st.HeldRoot)
	}
	var got strings.Builder
	for _, u := range us {
		fmt.Fprintf(&got, "%d %d %d %d %d %d %d\n", u.ID, u.Mapped, u.Exclusive, u.Shared, u.TransactionID, u.CreationTime, u.SnapshotTime)
	}
	want := thinLsSnap(t, tp)
	if got.String() != want {
		t.Fatalf("Usage:\n%s\nthin_ls -m:\n%s", got.String(), want)
	}
	// 1 maps 10 blocks, 3 of them its own; 2 and 3 share the other 10.
	if len(us) != 4 || us[0] != (thin.ThinUsage{ThinDetails: thin.ThinDetails{ID: 1, Mapped: 10, TransactionID: us[0].TransactionID, CreationTime: 0, SnapshotTime: us[0].SnapshotTime}, Exclusive: 3, Shared: 7}) ||
		us[1].Exclusive != 0 || us[1].Shared != 10 || us[3].Mapped != 0 {
		t.Fatalf("usage %+v", us)
	}

	// Details: the same entries without the mapping walk, all of them or
	// the ids asked for, in the order asked, those the pool lacks left out.
	all, err := tp.Details(ctx)
	if err != nil {
		t.Fatalf("Details: %+v", err)
	}
	if len(all) != len(us) {
		t.Fatalf("Details lists %d devices, Usage %d", len(all), len(us))
	}
	for i := range all {
		if all[i] != us[i].ThinDetails {
			t.Fatalf("Details %+v, Usage %+v", all[i], us[i].ThinDetails)
		}
	}
	some, err := tp.Details(ctx, us[2].ID, 999, us[0].ID)
	if err != nil {
		t.Fatalf("Details of ids: %+v", err)
	}
	if len(some) != 2 || some[0] != us[2].ThinDetails || some[1] != us[0].ThinDetails {
		t.Fatalf("Details(%d, 999, %d) = %+v", us[2].ID, us[0].ID, some)
	}
	if st := tp.status(t); st.HeldRoot != 0 {
		t.Fatalf("Details left a metadata snapshot held at %d", st.HeldRoot)
	}

	// Someone else's metadata snapshot: read through it, keep it held.
	if err := tp.ReserveMetadataSnap(ctx); err != nil {
		t.Fatalf("reserve: %+v", err)
	}
	writeVolume(t, v1, 20*bs, bs, 0xc3) // after the snapshot: not seen
	us2, err := tp.Usage(ctx)
	if err != nil {
		t.Fatalf("Usage with a held snapshot: %+v", err)
	}
	if us2[0].Mapped != 10 {
		t.Fatalf("Usage through the older snapshot: %+v", us2[0])
	}
	if st := tp.status(t); st.HeldRoot == 0 {
		t.Fatal("Usage released a metadata snapshot it did not reserve")
	}
	if err := tp.ReleaseMetadataSnap(ctx); err != nil {
		t.Fatalf("release: %+v", err)
	}
	us3, err := tp.Usage(ctx)
	if err != nil || us3[0].Mapped != 11 {
		t.Fatalf("Usage after release: %+v, %+v", us3, err)
	}

	// A cancelled context: an error, and nothing left held.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := tp.Usage(cctx); err == nil {
		t.Fatal("Usage with a cancelled context succeeded")
	}
	if st := tp.status(t); st.HeldRoot != 0 {
		t.Fatalf("cancelled Usage left a metadata snapshot held at %d", st.HeldRoot)
	}
}

// thinLsSnap runs thin_ls -m with Usage's fields, under its own metadata
// snapshot.
func thinLsSnap(t *testing.T, tp *testPool) string {
	t.Helper()
	defer heldMetadataSnap(t, tp.Pool)()
	out := thinTool(t, "thin_ls", "-m", "--no-headers", "-o",
		"DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,TRANSACTION,CREATE_TIME,SNAP_TIME", tp.Meta.Loop.Path())
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			b.WriteString(strings.Join(f, " ") + "\n")
		}
	}
	return b.String()
}
