package thin

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
)

// A pool whose dm uuid says lvm2 manages it can be opened and read, and its
// metadata snapshot reserved and released, but nothing that changes its
// thin ids or transaction id reaches the kernel.
func TestLVMPoolRefusesIDChanges(t *testing.T) {
	e := newEnv(t)
	_, err := CreatePool(e.ctx, e.ctl, "vg-pool-tpool", e.spec(), FormatMetadata(), withHost(e.host),
		WithPoolUUID("LVM-0123456789abcdefghijklmnopqrstuvABCDEFGHIJKLMNOPQRSTUVWXYZ0123-tpool"))
	ok(t, err)
	p, err := OpenPool(e.ctx, e.ctl, "vg-pool-tpool")
	ok(t, err)
	if _, err := p.Status(e.ctx); err != nil {
		t.Fatalf("Status: %+v", err)
	}
	e.reset()
	for name, err := range map[string]error{
		"CreateThin":       p.CreateThin(e.ctx, 1),
		"CreateSnapshot":   p.CreateSnapshot(e.ctx, 2, 1),
		"Delete":           p.Delete(e.ctx, 1),
		"SetTransactionID": p.SetTransactionID(e.ctx, 0, 1),
		"Transaction": func() error {
			_, err := p.Transaction(e.ctx, 0, func(tx *Tx) error { tx.CreateThin(3); return nil })
			return err
		}(),
	} {
		t.Logf("%s: %v", name, err)
		is(t, err, ErrManagedByLVM, dm.ErrPermission, unix.EPERM)
	}
	if m := e.messages(); len(m) != 0 {
		t.Errorf("messages reached the kernel: %q", m)
	}
	ok(t, p.ReserveMetadataSnap(e.ctx))
	ok(t, p.ReleaseMetadataSnap(e.ctx))
}
