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

// On a real pool (root, a kernel with dm-thin): the catalog's volumes with
// their usage read from the pool's metadata, and a reconcile of catalog,
// metadata and devices, first dry. It needs the kernel, so go test only
// compiles it.
func ExampleCatalog_Repair() {
	ctx := context.Background()
	ctl, err := dm.Open()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ctl.Close()
	pool, err := thin.OpenPool(ctx, ctl, "pool")
	if err != nil {
		fmt.Println(err)
		return
	}
	cat, err := catalog.Open(ctx, pool, "/var/lib/myapp/volumes", catalog.WithDeferredDeletion())
	if err != nil {
		fmt.Println(err) // catalog.ErrLocked: another process has it
		return
	}
	defer cat.Close()
	if _, err := cat.Create(ctx, "base", thin.Size(10*thin.GiB)); err != nil {
		fmt.Println(err) // catalog.ErrLowSpace below 10% free
		return
	}
	if _, err := cat.Activate(ctx, "base"); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := cat.Snapshot(ctx, "snap-1", "base"); err != nil {
		fmt.Println(err)
		return
	}
	usage, err := cat.Usage(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	for key, u := range usage {
		fmt.Printf("%s: %d bytes mapped, %d exclusive\n", key, u.Mapped, u.Exclusive)
	}
	// What would Repair do? (Nothing, unless something else changed the pool.)
	dry, err := cat.Repair(ctx, catalog.RepairOptions{DryRun: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, a := range dry.Actions {
		fmt.Println("would:", a)
	}
	if !dry.Clean() {
		if _, err := cat.Repair(ctx, catalog.RepairOptions{}); err != nil {
			fmt.Println(err)
		}
	}
}
