package dm

import (
	"context"
	"errors"
	"testing"

	"github.com/thinp/thinp/internal/fakedm"
)

// stuckUdev is a udevSync whose waits always time out, as when udevd stops
// answering after the Control decided to synchronise.
type stuckUdev struct{ waits int }

func (s *stuckUdev) begin() (uint32, udevWait, error) { return 0x0d4d0001, s, nil }
func (s *stuckUdev) end(ctx context.Context, generated bool) error {
	s.waits++
	return context.DeadlineExceeded
}
func (s *stuckUdev) abort() {}

// A resume that the kernel carried out but whose udev wait failed is
// Applied: Reload must not "roll back" a pool that has grown, and
// WithSuspended must report the device as resumed.
func TestAppliedResumeIsNotRolledBack(t *testing.T) {
	k := fakedm.New()
	c, err := Open(WithTransport(k))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	k.AddBlockDevice(7, 0, 1<<21)
	k.AddBlockDevice(7, 1, 8192)
	small := Table{{Length: 1 << 20, Type: "thin-pool", Params: "7:1 7:0 128 0"}}
	if _, err := c.Create(ctx, "pool", small); err != nil {
		t.Fatal(err)
	}
	stuck := &stuckUdev{}
	c.udev = stuck
	big := Table{{Length: 1 << 21, Type: "thin-pool", Params: "7:1 7:0 128 0"}}
	err = c.Reload(ctx, Name("pool"), big)
	if !Applied(err) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("reload with a stuck udev: %v (applied %v)", err, Applied(err))
	}
	d, _ := k.Device("pool")
	if d.Suspended || len(d.Live) != 1 || d.Live[0].Length != 1<<21 {
		t.Fatalf("pool after reload: suspended %v, live %+v", d.Suspended, d.Live)
	}
	// WithSuspended: fn fails and the resume's wait fails too: both are
	// reported, and the device is running.
	boom := errors.New("boom")
	err = c.WithSuspended(ctx, Name("pool"), func() error { return boom })
	if !errors.Is(err, boom) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WithSuspended: %v", err)
	}
	if d, _ := k.Device("pool"); d.Suspended {
		t.Fatal("left suspended")
	}
	if stuck.waits != 2 {
		t.Fatalf("%d udev waits, want 2", stuck.waits)
	}
}
