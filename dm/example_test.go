package dm_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/thinp/thinp/dm"
)

// Create a linear device over a loop device, read it back, and remove it.
func Example() {
	ctx := context.Background()
	ctl, err := dm.Open()
	if err != nil {
		log.Fatal(err)
	}
	defer ctl.Close()

	info, err := ctl.Create(ctx, "example-linear", dm.Table{
		{Start: 0, Length: 2048, Type: "linear", Params: "7:0 0"},
	}, dm.WithUUID("EXAMPLE-linear-1"))
	if err != nil {
		log.Fatalf("%+v", err)
	}
	fmt.Println("created", info.Name, "as", info.Dev)

	table, err := ctl.Table(ctx, dm.Name("example-linear"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(table)

	if err := ctl.Remove(ctx, dm.Name("example-linear")); err != nil {
		log.Fatal(err)
	}
}

// Errors answer errors.Is for the library's sentinels and the raw errno.
func ExampleError() {
	ctx := context.Background()
	ctl, err := dm.Open()
	if err != nil {
		log.Fatal(err)
	}
	defer ctl.Close()

	_, err = ctl.Info(ctx, dm.Name("no-such-device"))
	if errors.Is(err, dm.ErrNotFound) {
		fmt.Println("not there:", err)
	}

	// Validation happens before anything reaches the kernel.
	_, err = ctl.Create(ctx, "bad/name", dm.Table{{Length: 8, Type: "zero"}})
	fmt.Println(errors.Is(err, dm.ErrInvalid))
}

// Wait for the next device-mapper event of a device, such as a thin pool
// crossing its low water mark.
func ExampleControl_Wait() {
	ctx := context.Background()
	ctl, err := dm.Open()
	if err != nil {
		log.Fatal(err)
	}
	defer ctl.Close()

	info, err := ctl.Info(ctx, dm.Name("pool"))
	if err != nil {
		log.Fatal(err)
	}
	ev, err := ctl.Wait(ctx, dm.Name("pool"), info.EventNr, dm.NoFlush)
	if err != nil {
		log.Fatal(err)
	}
	for _, st := range ev.Status {
		fmt.Println(st)
	}
}

// Scan the status of every thin volume without allocating per device, as
// a monitor polling thousands of volumes would.
func ExampleControl_StatusFunc() {
	ctx := context.Background()
	ctl, err := dm.Open()
	if err != nil {
		log.Fatal(err)
	}
	defer ctl.Close()

	devs, err := ctl.List(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, d := range devs {
		err := ctl.StatusFunc(ctx, dm.Name(d.Name), func(st dm.TargetStatus) error {
			if st.Type == "thin" {
				// st.Status is valid only here: parse it (thin.ParseThinStatus
				// does not allocate) or strings.Clone it.
				fmt.Println(d.Name, st.Status)
			}
			return nil
		})
		if err != nil && !errors.Is(err, dm.ErrNotFound) { // removed since the list
			log.Fatal(err)
		}
	}
}
