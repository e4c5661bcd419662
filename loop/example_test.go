package loop_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/thinp/thinp/loop"
)

// The common case: a sparse file on a loop device, ready for a thin pool's
// table as "major:minor". (Needs root; not run by go test.)
func Example() {
	ctx := context.Background()
	if err := loop.CreateSparseFile("/var/lib/thinp/data", 10<<30); err != nil {
		log.Fatal(err)
	}
	dev, err := loop.Attach(ctx, "/var/lib/thinp/data", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Detach(ctx)
	fmt.Println(dev.Path(), dev.Dev()) // /dev/loop0 7:0
}

// A program that attaches devices repeatedly keeps one Control, which
// probes the kernel once.
func ExampleControl_Attach() {
	ctx := context.Background()
	ctl, err := loop.OpenControl()
	if err != nil {
		log.Fatal(err)
	}
	defer ctl.Close()

	dev, err := ctl.Attach(ctx, "/var/lib/thinp/metadata", &loop.Options{
		Autoclear: true, // detached when the last opener closes it
		DirectIO:  true, // bypass the backing file's page cache
		BlockSize: 4096,
	})
	switch {
	case errors.Is(err, loop.ErrNotSupported):
		log.Fatalf("this kernel or file system cannot do that: %v", err)
	case err != nil:
		log.Fatalf("%+v", err)
	}
	defer dev.Close() // Autoclear: closing detaches
	st, err := dev.Status()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.BackingFile, st.Size, st.DirectIO)
}

// Growing the backing file of an attached device.
func ExampleDevice_SetCapacity() {
	dev, err := loop.Open(0)
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Close()
	st, err := dev.Status()
	if err != nil {
		log.Fatal(err)
	}
	if err := loop.Grow(st.BackingFile, 20<<30); err != nil {
		log.Fatal(err)
	}
	if err := dev.SetCapacity(); err != nil {
		log.Fatal(err)
	}
}

// Finding the devices that back a file, for example to clean up after a
// crash.
func ExampleFind() {
	sts, err := loop.Find("/var/lib/thinp/data")
	if err != nil {
		log.Fatal(err)
	}
	for _, st := range sts {
		dev, err := loop.Open(st.Number)
		if err != nil {
			continue // detached meanwhile
		}
		if err := dev.Detach(context.Background()); err != nil {
			log.Print(err)
		}
	}
}
