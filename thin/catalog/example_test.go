package catalog_test

import (
	"context"
	"fmt"
	"os"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/dm/dmtest"
	"github.com/thinp/thinp/thin"
	"github.com/thinp/thinp/thin/catalog"
)

// Open a catalog on a pool, make a volume and a snapshot of it while it is
// active, check that catalog and pool agree, and reopen: the catalog is
// what was made. The fake kernel of package dmtest stands in for the real
// one here; on a real pool, Usage reads the pool's metadata as well.
func Example() {
	ctx := context.Background()
	k := dmtest.New()
	meta, data := dm.Dev{Major: 7, Minor: 0}, dm.Dev{Major: 7, Minor: 1}
	k.AddBlockDevice(meta, 131072)
	k.AddBlockDevice(data, 2097152)
	ctl, err := dmtest.NewControl(k)
	if err != nil {
		panic(err)
	}
	defer ctl.Close()
	pool, err := thin.CreatePool(ctx, ctl, "pool", thin.PoolSpec{Metadata: meta, Data: data, BlockSize: 128, Length: 2097152})
	if err != nil {
		panic(err)
	}
	dir, _ := os.MkdirTemp("", "catalog")
	defer os.RemoveAll(dir)

	cat, err := catalog.Open(ctx, pool, dir, catalog.WithDeferredDeletion())
	if err != nil {
		panic(err)
	}
	base, err := cat.Create(ctx, "base", thin.Size(1*thin.GiB), catalog.WithLabels(map[string]string{"fs": "ext4"}))
	if err != nil {
		panic(err)
	}
	if _, err := cat.Activate(ctx, "base"); err != nil {
		panic(err)
	}
	snap, err := cat.Snapshot(ctx, "snap", "base")
	if err != nil {
		panic(err)
	}
	fmt.Println(base.Key, base.ID, snap.Key, snap.ID, "parent", snap.Parent)
	cat.Close()

	cat, err = catalog.Open(ctx, pool, dir)
	if err != nil {
		panic(err)
	}
	defer cat.Close()
	for _, v := range cat.List() {
		fmt.Println(v.Key, v.State, v.Device)
	}
	// Output:
	// base 1 snap 2 parent base
	// base active pool-1
	// snap inactive
}
