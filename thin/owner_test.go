package thin

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
)

// One owner per device: a second pool on another pool's data device runs
// on the kernel (which checks only the metadata device) and corrupts both,
// so CreatePool refuses it, and a device held by anything else, before
// sending anything.
func TestCreatePoolRefusesDevicesInUse(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ok(t, e.host.k.AddBlockDevice(dm.Dev{Major: 7, Minor: 5}, metaSectors))
	other := dm.Dev{Major: 7, Minor: 5}

	e.reset()
	// The first pool's data device, with a metadata device of its own.
	_, err := CreatePool(e.ctx, e.ctl, "pool2", PoolSpec{Metadata: other, Data: dataDev, BlockSize: 128}, withHost(e.host))
	is(t, err, ErrInUse, dm.ErrBusy, unix.EBUSY)
	var be *dm.BusyError
	if !errors.As(err, &be) || len(be.Users.Holders) != 1 || be.Users.Holders[0] != "pool" {
		t.Errorf("BusyError %+v", be)
	}
	if errors.Is(err, dm.ErrExists) || errors.Is(err, dm.ErrInvalid) {
		t.Errorf("%v matches ErrExists or ErrInvalid", err)
	}
	if s := err.Error(); s != "thin pool pool2: create pool: in use: data device 7:1 is held by dm device pool (EBUSY)" {
		t.Errorf("error text %q", s)
	}
	e.noCalls("second pool on a used data device")

	// The first pool's metadata device: refused by us too (the kernel
	// would say EBUSY after the table was sent).
	_, err = CreatePool(e.ctx, e.ctl, "pool2", PoolSpec{Metadata: metaDev, Data: other, BlockSize: 128, Length: metaSectors}, withHost(e.host))
	is(t, err, ErrInUse, dm.ErrBusy)
	e.noCalls("second pool on a used metadata device")

	// A thin volume is a user of the pool, not of its devices; the pool
	// is still one user of each.
	ok(t, p.CreateThin(e.ctx, 1))
	_, err = p.Activate(e.ctx, "vol", 1, 1024)
	ok(t, err)

	// The explicit opt-out, per device: the data device is let through,
	// and the kernel does the rest.
	e.reset()
	_, err = CreatePool(e.ctx, e.ctl, "pool2", PoolSpec{Metadata: other, Data: dataDev, BlockSize: 128}, withHost(e.host), AllowInUse(dataDev))
	ok(t, err)
	if len(e.k.Calls()) == 0 {
		t.Error("the opted-out create sent nothing")
	}
	if _, ok := e.host.k.Device("pool2"); !ok {
		t.Error("the opted-out pool was not created")
	}
}

// Existing metadata that records more data blocks than the new table gives
// is ErrShrink, before anything is sent (the kernel says EINVAL at resume).
func TestCreatePoolOnLargerMetadataIsShrink(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ok(t, p.Remove(e.ctx))
	e.reset()
	s := e.spec()
	s.Length = dataSectors / 2
	_, err := CreatePool(e.ctx, e.ctl, "pool", s, withHost(e.host))
	is(t, err, ErrShrink, dm.ErrInvalid)
	e.noCalls("pool on larger metadata")
	// The same size, or more, is fine.
	s.Length = dataSectors
	_, err = CreatePool(e.ctx, e.ctl, "pool", s, withHost(e.host))
	ok(t, err)
}
