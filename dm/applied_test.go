package dm_test

import (
	"context"
	"errors"
	"testing"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/dm/dmtest"
	"github.com/thinp/thinp/ioctl"
)

// A resume that the kernel carried out but whose udev wait failed is
// Applied: Reload must not "roll back" a pool that has grown, and
// WithSuspended must report the device as resumed.
func TestAppliedResumeIsNotRolledBack(t *testing.T) {
	k := dmtest.New()
	c, err := dm.Open(dm.WithTransport(k))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	k.AddBlockDevice(ioctl.Dev{Major: 7, Minor: 0}, 1<<21)
	k.AddBlockDevice(ioctl.Dev{Major: 7, Minor: 1}, 8192)
	small := dm.Table{{Length: 1 << 20, Type: "thin-pool", Params: "7:1 7:0 128 0"}}
	if _, err := c.Create(ctx, "pool", small); err != nil {
		t.Fatal(err)
	}
	waits := dm.StickUdev(c)
	big := dm.Table{{Length: 1 << 21, Type: "thin-pool", Params: "7:1 7:0 128 0"}}
	err = c.Reload(ctx, dm.Name("pool"), big)
	if !dm.Applied(err) || !errors.Is(err, dm.ErrTimeout) {
		t.Fatalf("reload with a stuck udev: %v (applied %v)", err, dm.Applied(err))
	}
	d, _ := k.Device("pool")
	if d.Suspended || len(d.Live) != 1 || d.Live[0].Length != 1<<21 {
		t.Fatalf("pool after reload: suspended %v, live %+v", d.Suspended, d.Live)
	}
	// WithSuspended: fn fails and the resume's wait fails too: both are
	// reported, and the device is running.
	boom := errors.New("boom")
	err = c.WithSuspended(ctx, dm.Name("pool"), func() error { return boom })
	if !errors.Is(err, boom) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WithSuspended: %v", err)
	}
	if d, _ := k.Device("pool"); d.Suspended {
		t.Fatal("left suspended")
	}
	if n := waits(); n != 2 {
		t.Fatalf("%d udev waits, want 2", n)
	}
}
