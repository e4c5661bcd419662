package thin_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/loop"
	"github.com/thinp/thinp/thin"
)

// From two sparse files to a snapshot: loop devices over the files, a pool
// on them, a thin volume, a write to it, a snapshot of it, and the pool's
// status; then everything torn down again. It needs root and a kernel
// with device-mapper, so go test compiles it but does not run it.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "thinp-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// Sparse files take no space until written; loop devices make them
	// block devices, whose numbers go straight into the pool's table.
	var devs [2]*loop.Device
	for i, f := range []struct {
		name string
		size int64
	}{{"meta", 64 << 20}, {"data", 4 << 30}} {
		path := filepath.Join(dir, f.name)
		if err := loop.CreateSparseFile(path, f.size); err != nil {
			log.Fatal(err)
		}
		d, err := loop.Attach(ctx, path, nil)
		if err != nil {
			log.Fatalf("%+v", err)
		}
		defer d.Detach(ctx)
		devs[i] = d
	}

	ctl, err := dm.Open()
	if err != nil {
		log.Fatal(err)
	}
	defer ctl.Close()
	pool, err := thin.CreatePool(ctx, ctl, "example-pool", thin.PoolSpec{
		Metadata:       devs[0].Dev(),
		Data:           devs[1].Dev(),
		BlockSize:      128, // 64 KiB
		LowWaterMark:   1024,
		ErrorIfNoSpace: true,
	}, thin.FormatMetadata())
	if err != nil {
		log.Fatalf("%+v", err)
	}
	defer pool.Teardown(ctx)

	if err := pool.CreateThin(ctx, 1); err != nil {
		log.Fatal(err)
	}
	vol, err := pool.Activate(ctx, "example-vol", 1, thin.Size(1*thin.GiB))
	if err != nil {
		log.Fatal(err)
	}
	f, err := os.OpenFile(vol.DevPath(), os.O_WRONLY, 0)
	if err != nil {
		log.Fatal(err)
	}
	_, err = f.WriteAt([]byte("hello, thin world\n"), 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		log.Fatal(err)
	}

	// The origin is suspended around create_snap, and always resumed.
	if err := vol.Snapshot(ctx, 2); err != nil {
		log.Fatal(err)
	}
	st, err := pool.Status(ctx, thin.CommitMetadata())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("data %d/%d blocks (%.1f%%), metadata %d/%d, mode %v\n",
		st.UsedData, st.TotalData, st.DataPercent(), st.UsedMeta, st.TotalMeta, st.Mode)
}

// Errors match this package's sentinels, dm's and the kernel's errno.
func ExamplePool_CreateThin() {
	ctx := context.Background()
	ctl, err := dm.Open()
	if err != nil {
		log.Fatal(err)
	}
	defer ctl.Close()
	pool, err := thin.OpenPool(ctx, ctl, "pool")
	if err != nil {
		log.Fatal(err)
	}
	err = pool.CreateThin(ctx, 1)
	switch {
	case errors.Is(err, thin.ErrIDInUse): // also dm.ErrExists and unix.EEXIST
		fmt.Println("id 1 exists already")
	case errors.Is(err, thin.ErrPoolReadOnly), errors.Is(err, thin.ErrNeedsCheck):
		fmt.Println("the pool needs repair:", err)
	case err != nil:
		log.Fatal(err)
	}
}

// Apply a batch of changes so that a crash can be recovered from: the
// pool's transaction id says whether the batch was applied.
func ExamplePool_Transaction() {
	ctx := context.Background()
	ctl, err := dm.Open()
	if err != nil {
		log.Fatal(err)
	}
	defer ctl.Close()
	pool, err := thin.OpenPool(ctx, ctl, "pool")
	if err != nil {
		log.Fatal(err)
	}

	// journal.Write("tid 7 -> 8: snapshot 1 as 42, delete 17")
	batch := func(tx *thin.Tx) error {
		tx.CreateSnapshot(42, 1)
		tx.Delete(17)
		return nil
	}
	res, err := pool.Transaction(ctx, 7, batch)
	if err != nil {
		// After a crash or a failure part-way, with the pool still at 7:
		// finish the batch, skipping what was applied.
		res, err = pool.Transaction(ctx, 7, batch, thin.Replay())
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pool at transaction", res.To)
	// journal.Write("at 8")
}

// Grow a pool's data when it crosses its low water mark: the loop of an
// autoextend daemon.
func ExamplePool_Watch() {
	ctx := context.Background()
	ctl, err := dm.Open()
	if err != nil {
		log.Fatal(err)
	}
	defer ctl.Close()
	pool, err := thin.OpenPool(ctx, ctl, "pool")
	if err != nil {
		log.Fatal(err)
	}
	w, err := pool.Watch(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Stop()
	for ev := range w.C {
		if ev.ModeChanged {
			fmt.Println("pool mode", ev.PrevMode, "->", ev.Status.Mode)
		}
		if ev.LowWater {
			// Grow the data device here (a linear table, a loop file),
			// then the pool:
			newLength := ev.Spec.Length + thin.Size(10*thin.GiB)
			if err := pool.Resize(ctx, newLength); err != nil {
				log.Print(err)
			}
		}
	}
	if err := w.Err(); err != nil {
		log.Fatal(err)
	}
}

// Status lines parse in every form the kernel prints.
func ExampleParsePoolStatus() {
	st, err := thin.ParsePoolStatus("3 180/1024 1200/16384 - rw discard_passdown queue_if_no_space - 256 ")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("tid %d, mode %v, data %.1f%% used, %d blocks free\n", st.TransactionID, st.Mode, st.DataPercent(), st.FreeData())
	fmt.Println("below a low water mark of 15000:", st.BelowLowWaterMark(thin.PoolSpec{LowWaterMark: 15000}))

	st, _ = thin.ParsePoolStatus("Fail")
	fmt.Println(st.Mode, st.Mode.Working())
	// Output:
	// tid 3, mode rw, data 7.3% used, 15184 blocks free
	// below a low water mark of 15000: false
	// Fail false
}

// Table lines round-trip exactly with the kernel's.
func ExampleParsePoolSpec() {
	spec, err := thin.ParsePoolSpec("7:0 7:1 128 32768 1 skip_block_zeroing ")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(spec.BlockSize, spec.LowWaterMark, spec.SkipBlockZeroing)
	fmt.Printf("%q\n", spec.Params())
	fmt.Println(spec.Validate())
	spec.BlockSize = 192
	fmt.Println(errors.Is(spec.Validate(), dm.ErrInvalid))
	// Output:
	// 128 32768 true
	// "7:0 7:1 128 32768 1 skip_block_zeroing "
	// <nil>
	// true
}

// A metadata device for 1 TiB of data in 64 KiB blocks.
func ExampleSuggestMetadataSize() {
	s := thin.SuggestMetadataSize(thin.Size(1*thin.TiB), 128)
	fmt.Println(s, "sectors =", s.Bytes()/thin.MiB, "MiB")
	// Output:
	// 1572864 sectors = 768 MiB
}
