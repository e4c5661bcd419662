package dm_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

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

// Read a pool's status once a second without allocating, as a monitor
// watching its pools would.
func ExampleControl_StatusFunc() {
	ctx := context.Background()
	ctl, err := dm.Open()
	if err != nil {
		log.Fatal(err)
	}
	defer ctl.Close()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for range 3 {
		err := ctl.StatusFunc(ctx, dm.Name("pool"), func(st dm.TargetStatus) error {
			// st.Status is valid only here: parse it (thin.ParsePoolStatus)
			// or strings.Clone it.
			fmt.Println(st.Status)
			return nil
		}, dm.NoFlush)
		if err != nil {
			log.Fatal(err)
		}
		<-tick.C
	}
}

// Scan the status of every thin volume whose uuid has a prefix, without
// allocating per device, as a monitor of thousands of volumes would.
func ExampleControl_StatusAll() {
	ctx := context.Background()
	ctl, err := dm.Open()
	if err != nil {
		log.Fatal(err)
	}
	defer ctl.Close()

	err = ctl.StatusAll(ctx, 0, func(d dm.Device, st []dm.TargetStatus) error {
		// d and st are valid only here: parse st[0].Status
		// (thin.ParseThinStatus does not allocate) or strings.Clone it.
		if len(st) == 1 && st[0].Type == "thin" {
			fmt.Println(d.Name, st[0].Status)
		}
		return nil
	}, dm.WithUUIDPrefix("thinp-"))
	if err != nil {
		log.Fatal(err)
	}
}
