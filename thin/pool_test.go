package thin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/dm/dmtest"
	"github.com/thinp/thinp/ioctl"
)

const anyCmd = -1

func TestCreatePool(t *testing.T) {
	e := newEnv(t)
	p := e.pool(func(s *PoolSpec) { s.ErrorIfNoSpace, s.LowWaterMark = true, 100 })
	if len(e.host.formatted) != 1 || e.host.formatted[0] != metaDev {
		t.Errorf("formatted %v, want the metadata device", e.host.formatted)
	}
	if p.Name() != "pool" || p.BlockSize() != 128 || p.Dev().Major != 253 || p.Control() != e.ctl {
		t.Errorf("pool %q %v bs %d", p.Name(), p.Dev(), p.BlockSize())
	}
	spec, err := p.Spec(e.ctx)
	ok(t, err)
	want := e.spec()
	want.ErrorIfNoSpace, want.LowWaterMark, want.Length = true, 100, dataSectors
	if spec != want {
		t.Errorf("live spec %+v, want %+v", spec, want)
	}
	// The kernel's table line is exactly what Params prints.
	table, err := e.ctl.Table(e.ctx, dm.Name("pool"))
	ok(t, err)
	if table[0].Params != want.Params() {
		t.Errorf("kernel table %q, Params %q", table[0].Params, want.Params())
	}
	st := e.status(p)
	if st.Mode != ModeReadWrite || st.TransactionID != 0 || st.TotalData != 16384 || st.UsedData != 0 ||
		st.TotalMeta != 1024 || st.NoSpace != ErrorIfNoSpace || st.Discard != DiscardPassdown || st.HeldRoot != 0 ||
		!st.HasMetadataLowWatermark || st.MetadataLowWatermark != 256 || st.NeedsCheck {
		t.Errorf("fresh status %+v", st)
	}
	st2, err := p.Status(e.ctx, CommitMetadata())
	ok(t, err)
	if st2.TotalData != st.TotalData {
		t.Errorf("committed status %+v", st2)
	}
	tid, err := p.TransactionID(e.ctx)
	if err != nil || tid != 0 {
		t.Errorf("TransactionID = %d, %v", tid, err)
	}

	// Reopen by name.
	q, err := OpenPool(e.ctx, e.ctl, "pool")
	ok(t, err)
	if q.Dev() != p.Dev() || q.BlockSize() != 128 {
		t.Errorf("OpenPool: %v %d", q.Dev(), q.BlockSize())
	}

	// A second pool on the same metadata device: EBUSY at load.
	_, err = CreatePool(e.ctx, e.ctl, "pool2", e.spec(), withHost(e.host))
	is(t, err, ErrInUse, dm.ErrBusy, unix.EBUSY)
	if _, err := e.ctl.Info(e.ctx, dm.Name("pool2")); !errors.Is(err, dm.ErrNotFound) {
		t.Errorf("failed CreatePool left a device: %v", err)
	}
	// The same name: EBUSY at create.
	_, err = CreatePool(e.ctx, e.ctl, "pool", PoolSpec{Metadata: origDev, Data: dm.Dev{Major: 7, Minor: 3}, BlockSize: 128, Length: 1024}, withHost(e.host))
	is(t, err, dm.ErrExists)
}

func TestCreatePoolLengthFromSysfs(t *testing.T) {
	e := newEnv(t)
	e.host.sizes[dataDev] = dataSectors + 100 // not a whole number of blocks
	p := e.pool(func(s *PoolSpec) { s.BlockSize = 1024 })
	spec, err := p.Spec(e.ctx)
	ok(t, err)
	if spec.Length != dataSectors {
		t.Errorf("length %d, want the data device rounded down to blocks, %d", spec.Length, dataSectors)
	}
	if st := e.status(p); st.TotalData != dataSectors/1024 {
		t.Errorf("total data %d", st.TotalData)
	}
}

func TestCreatePoolWithUUIDAndExistingMetadata(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ok(t, p.CreateThin(e.ctx, 1))
	ok(t, p.SetTransactionID(e.ctx, 0, 9))
	ok(t, p.Remove(e.ctx))
	// Without FormatMetadata the pool comes back with its metadata.
	p, err := CreatePool(e.ctx, e.ctl, "pool", e.spec(), withHost(e.host), WithPoolUUID("THINP-pool-1"))
	ok(t, err)
	if info := e.info("pool"); info.UUID != "THINP-pool-1" {
		t.Errorf("uuid %q", info.UUID)
	}
	if tid, _ := p.TransactionID(e.ctx); tid != 9 {
		t.Errorf("tid %d after reopening the metadata, want 9", tid)
	}
	is(t, p.CreateThin(e.ctx, 1), ErrIDInUse)
}

func TestOpenPoolRefusesOthers(t *testing.T) {
	e := newEnv(t)
	_, err := e.ctl.Create(e.ctx, "lin", dm.Table{{Length: 1024, Type: "linear", Params: "7:2 0"}})
	ok(t, err)
	_, err = OpenPool(e.ctx, e.ctl, "lin")
	is(t, err, ErrNotPool)
	_, err = OpenPool(e.ctx, e.ctl, "missing")
	is(t, err, dm.ErrNotFound)
	_, err = e.ctl.CreateDevice(e.ctx, "empty")
	ok(t, err)
	_, err = OpenPool(e.ctx, e.ctl, "empty")
	is(t, err, ErrNotPool)

	p := e.pool()
	_, err = p.Volume(e.ctx, "lin")
	is(t, err, ErrNotThin)
	v, err := p.Activate(e.ctx, "vol", 0, 1024)
	if err == nil {
		t.Fatalf("activated id 0, which does not exist: %v", v)
	}
	is(t, err, ErrUnknownID, dm.ErrNoData, unix.ENODATA)
}

// Bad input never reaches the kernel.
func TestValidationSendsNothing(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ok(t, p.CreateThin(e.ctx, 1))
	_, err := p.Activate(e.ctx, "vol1", 1, 2048)
	ok(t, err)
	spec := e.spec()
	cases := map[string]func() error{
		"block size 192": func() error {
			s := spec
			s.BlockSize = 192
			_, err := CreatePool(e.ctx, e.ctl, "p2", s, FormatMetadata(), withHost(e.host))
			return err
		},
		"block size 2^21+1": func() error {
			s := spec
			s.BlockSize = MaxBlockSize + 1
			_, err := CreatePool(e.ctx, e.ctl, "p2", s, withHost(e.host))
			return err
		},
		"lwm past the data size": func() error {
			s := spec
			s.LowWaterMark = 16384
			_, err := CreatePool(e.ctx, e.ctl, "p2", s, FormatMetadata(), withHost(e.host))
			return err
		},
		"lwm past an explicit length": func() error {
			s := spec
			s.Length, s.LowWaterMark = 1280, 10
			_, err := CreatePool(e.ctx, e.ctl, "p2", s, withHost(e.host))
			return err
		},
		"length past the data device": func() error {
			s := spec
			s.Length = dataSectors + 128
			_, err := CreatePool(e.ctx, e.ctl, "p2", s, withHost(e.host))
			return err
		},
		"no length, no sysfs": func() error {
			s := spec
			s.Data = dm.Dev{Major: 7, Minor: 9}
			_, err := CreatePool(e.ctx, e.ctl, "p2", s, withHost(e.host))
			return err
		},
		"five features": func() error {
			s := spec
			s.SkipBlockZeroing, s.IgnoreDiscard, s.NoDiscardPassdown, s.ReadOnly, s.ErrorIfNoSpace = true, true, true, true, true
			_, err := CreatePool(e.ctx, e.ctl, "p2", s, withHost(e.host))
			return err
		},
		"read-only on fresh metadata": func() error {
			s := spec
			s.ReadOnly = true
			_, err := CreatePool(e.ctx, e.ctl, "p2", s, FormatMetadata(), withHost(e.host))
			return err
		},
		"same devices": func() error { s := spec; s.Data = s.Metadata; _, err := CreatePool(e.ctx, e.ctl, "p2", s); return err },
		"bad pool name": func() error {
			_, err := CreatePool(e.ctx, e.ctl, "a/b", spec, FormatMetadata(), withHost(e.host))
			return err
		},
		"reserved pool name": func() error { _, err := CreatePool(e.ctx, e.ctl, "control", spec, withHost(e.host)); return err },
		"long pool name": func() error {
			_, err := CreatePool(e.ctx, e.ctl, strings.Repeat("p", 128), spec, FormatMetadata(), withHost(e.host))
			return err
		},
		"long pool uuid": func() error {
			_, err := CreatePool(e.ctx, e.ctl, "p2", spec, FormatMetadata(), withHost(e.host), WithPoolUUID(strings.Repeat("u", 129)))
			return err
		},
		"create_thin 2^24":    func() error { return p.CreateThin(e.ctx, 1<<24) },
		"create_snap 2^24":    func() error { return p.CreateSnapshot(e.ctx, 1<<24, 1) },
		"create_snap of 2^24": func() error { return p.CreateSnapshot(e.ctx, 2, 1<<24) },
		"snapshot of itself":  func() error { return p.CreateSnapshot(e.ctx, 1, 1) },
		"snapshot bad origin": func() error {
			return p.CreateSnapshot(e.ctx, 2, 1, WithExternalOrigin(dm.Dev{Major: 9999}))
		},
		"delete 2^24":      func() error { return p.Delete(e.ctx, 1<<24) },
		"activate size 0":  func() error { _, err := p.Activate(e.ctx, "v", 1, 0); return err },
		"activate size -1": func() error { _, err := p.Activate(e.ctx, "v", 1, ^dm.Sectors(0)); return err },
		"activate id 2^24": func() error { _, err := p.Activate(e.ctx, "v", 1<<24, 8); return err },
		"activate bad name": func() error {
			_, err := p.Activate(e.ctx, strings.Repeat("x", 200), 1, 8)
			return err
		},
		"activate origin is pool": func() error {
			_, err := p.Activate(e.ctx, "v", 1, 8, WithExternalOrigin(p.Dev()))
			return err
		},
		"resize 0":  func() error { return p.Resize(e.ctx, 0) },
		"resize -1": func() error { return p.Resize(e.ctx, ^dm.Sectors(0)) },
		"transaction max": func() error {
			_, err := p.Transaction(e.ctx, ^uint64(0), func(tx *Tx) error { tx.CreateThin(5); return nil })
			return err
		},
		"transaction id 2^24": func() error {
			_, err := p.Transaction(e.ctx, 0, func(tx *Tx) error { tx.CreateThin(5); tx.Delete(1 << 24); return nil })
			return err
		},
		"transaction snap of 2^24": func() error {
			_, err := p.Transaction(e.ctx, 0, func(tx *Tx) error { tx.CreateSnapshot(5, 1<<24); return nil })
			return err
		},
		"transaction snap of itself": func() error {
			_, err := p.Transaction(e.ctx, 0, func(tx *Tx) error { tx.CreateSnapshot(5, 5); return nil })
			return err
		},
	}
	for name, fn := range cases {
		e.reset()
		err := fn()
		if !errors.Is(err, dm.ErrInvalid) {
			t.Errorf("%s: %v, want dm.ErrInvalid", name, err)
		}
		var te *Error
		if !errors.As(err, &te) {
			t.Errorf("%s: %T is not a *thin.Error", name, err)
		}
		if errors.Is(err, unix.EINVAL) {
			t.Errorf("%s: a refusal before sending claims the kernel's EINVAL: %v", name, err)
		}
		e.noCalls(name)
	}
	if len(e.host.formatted) != 1 {
		t.Errorf("metadata formatted %d times, want once (the first pool)", len(e.host.formatted))
	}

	// A thin id that is active is in use: a snapshot onto it is refused
	// without a message (its origin is not suspended for nothing), and
	// create_thin is refused by the kernel, since the id exists.
	e.reset()
	is(t, p.CreateSnapshot(e.ctx, 1, 0), ErrIDInUse)
	if m := e.messages(); len(m) != 0 {
		t.Errorf("messages sent for an active id: %q", m)
	}
	is(t, p.CreateThin(e.ctx, 1), ErrIDInUse, dm.ErrExists, unix.EEXIST)
}

// The kernel's errno contract (see the package doc) as typed errors.
func TestErrnoContract(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	ok(t, p.CreateThin(ctx, 0))
	ok(t, p.CreateThin(ctx, uint32ID(MaxDeviceID)))
	if m := e.messages(); !cmp.Equal(m, []string{"create_thin 0", "create_thin 16777215"}) {
		t.Errorf("messages %q", m)
	}

	is(t, p.CreateThin(ctx, 0), ErrIDInUse, dm.ErrExists, unix.EEXIST)
	is(t, p.CreateSnapshot(ctx, 5, 77), ErrUnknownID, dm.ErrNoData, unix.ENODATA)
	is(t, p.Delete(ctx, 77), ErrUnknownID, dm.ErrNoData, unix.ENODATA)
	ok(t, p.Delete(ctx, 77, IgnoreMissing()))

	_, err := p.Activate(ctx, "vol0", 0, 1024)
	ok(t, err)
	is(t, p.Delete(ctx, 0), ErrInUse, dm.ErrBusy, unix.EBUSY)

	is(t, p.SetTransactionID(ctx, 5, 6), ErrTransactionMismatch, dm.ErrInvalid, unix.EINVAL)
	ok(t, p.SetTransactionID(ctx, 0, 1))
	is(t, p.SetTransactionID(ctx, 0, 1), ErrTransactionMismatch)

	is(t, p.ReleaseMetadataSnap(ctx), ErrNoMetadataSnap, dm.ErrInvalid, unix.EINVAL)
	ok(t, p.ReserveMetadataSnap(ctx))
	if st := e.status(p); st.HeldRoot == 0 {
		t.Errorf("held root not shown: %v", st)
	}
	is(t, p.ReserveMetadataSnap(ctx), ErrMetadataSnapHeld, dm.ErrBusy, unix.EBUSY)
	ok(t, p.ReleaseMetadataSnap(ctx))
	if st := e.status(p); st.HeldRoot != 0 {
		t.Errorf("held root after release: %v", st)
	}
	is(t, p.ReleaseMetadataSnap(ctx), ErrNoMetadataSnap)

	// Removing a pool with an active thin.
	is(t, p.Remove(ctx, dm.NoRetry), ErrInUse, dm.ErrBusy, unix.EBUSY)

	// Errors print the operation, the pool and the cause; %+v adds a stack.
	err = p.CreateThin(ctx, 0)
	// One sentence: the pool and the operation once, the sentinel's words.
	if s := err.Error(); !strings.HasPrefix(s, "thin pool pool: create_thin 0: thin device id in use") ||
		strings.Count(s, "pool pool") != 1 || strings.Count(s, "create_thin") != 1 {
		t.Errorf("error text %q", s)
	}
	// A missing device says so.
	if _, err := OpenPool(ctx, p.Control(), "nosuch"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("OpenPool of a missing device: %v", err)
	}
	if s := fmt.Sprintf("%+v", err); !strings.Contains(s, "pool_test.go") && !strings.Contains(s, "pool.go") {
		t.Errorf("%%+v has no stack: %s", s)
	}
	var te *Error
	if errors.As(err, &te); te.Errno() != unix.EEXIST || te.Kind != ErrIDInUse || te.Pool != "pool" {
		t.Errorf("Error fields %+v", te)
	}
	if q := fmt.Sprintf("%q", err); !strings.HasPrefix(q, `"thin`) {
		t.Errorf("%%q = %s", q)
	}
}

func uint32ID(id DeviceID) DeviceID { return id }

// A pool in a mode that refuses messages: the kernel says EOPNOTSUPP, and
// the error says why from the status read after it. A transaction reads the
// status first anyway (for the transaction id), so it refuses before
// sending. (needs_check always comes with read-only or fail mode: the
// kernel never lets a pool that needs checking switch to write mode.)
func TestModeRefusals(t *testing.T) {
	for _, tc := range []struct {
		name  string
		set   func(e *env)
		kinds []error
	}{
		{"read-only", func(e *env) { ok(e.t, e.k.SetPoolMode("pool", dmtest.PoolReadOnly)) }, []error{ErrPoolReadOnly}},
		{"out of metadata space", func(e *env) { ok(e.t, e.k.SetPoolMode("pool", dmtest.PoolOutOfMetadataSpace)) }, []error{ErrPoolReadOnly}},
		{"failed", func(e *env) { ok(e.t, e.k.FailPool("pool")) }, []error{ErrPoolFailed}},
		{"needs_check", func(e *env) {
			ok(e.t, e.k.SetNeedsCheck("pool", true))
			ok(e.t, e.k.SetPoolMode("pool", dmtest.PoolReadOnly))
		}, []error{ErrNeedsCheck, ErrPoolReadOnly}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p := e.pool()
			ok(t, p.CreateThin(e.ctx, 1))
			tc.set(e)
			single := map[string]func() error{
				"create_thin 2":          func() error { return p.CreateThin(e.ctx, 2) },
				"create_snap 2 1":        func() error { return p.CreateSnapshot(e.ctx, 2, 1) },
				"delete 1":               func() error { return p.Delete(e.ctx, 1) },
				"set_transaction_id 0 1": func() error { return p.SetTransactionID(e.ctx, 0, 1) },
				"reserve_metadata_snap":  func() error { return p.ReserveMetadataSnap(e.ctx) },
				"release_metadata_snap":  func() error { return p.ReleaseMetadataSnap(e.ctx) },
			}
			for msg, op := range single {
				e.reset()
				err := op()
				is(t, err, append(tc.kinds, dm.ErrNotSupported, unix.EOPNOTSUPP)...)
				if !strings.Contains(err.Error(), msg) {
					t.Errorf("error %q does not name the message", err)
				}
				want := []ioctl.Cmd{ioctl.CmdTargetMsg, ioctl.CmdTableStatus}
				if got := e.cmds(); !slices.Equal(got, want) {
					t.Errorf("%s: ioctls %v, want the message, then the status that explains its refusal %v", msg, got, want)
				}
			}
			e.reset()
			_, err := p.Transaction(e.ctx, 0, func(tx *Tx) error { tx.CreateThin(3); return nil })
			is(t, err, append(tc.kinds, dm.ErrNotSupported, unix.EOPNOTSUPP)...)
			if m := e.messages(); len(m) != 0 {
				t.Errorf("transaction: messages reached the kernel: %q", m)
			}
		})
	}
}

// When the mode changes between the check and the message, the kernel's
// EOPNOTSUPP is classified from a fresh status.
func TestModeChangeRace(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	e.k.SetBeforeIoctl(func(cmd ioctl.Cmd, _ *ioctl.Header) error {
		if cmd == ioctl.CmdTargetMsg {
			return e.k.SetPoolMode("pool", dmtest.PoolReadOnly)
		}
		return nil
	})
	err := p.CreateThin(e.ctx, 1)
	is(t, err, ErrPoolReadOnly, dm.ErrNotSupported, unix.EOPNOTSUPP)
	var de *dm.Error
	if errors.As(err, &de); !de.Sent {
		t.Errorf("the kernel's refusal is not marked sent: %+v", de)
	}
}

func TestActivate(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	ok(t, p.CreateThin(ctx, 1))
	v, err := p.Activate(ctx, "vol", 1, Size(64*MiB), WithVolumeUUID("THINP-vol"), ReadOnlyVolume())
	ok(t, err)
	if v.Name() != "vol" || v.ID() != 1 || v.Pool() != p || v.Size() != 131072 || !v.ExternalOrigin().IsZero() {
		t.Errorf("volume %+v", v)
	}
	if v.MapperPath() != "/dev/mapper/vol" || v.DevPath() != fmt.Sprintf("/dev/dm-%d", v.Dev().Minor) {
		t.Errorf("paths %s %s", v.MapperPath(), v.DevPath())
	}
	info := e.info("vol")
	if info.UUID != "THINP-vol" || !info.ReadOnly || info.Dev != v.Dev() {
		t.Errorf("info %+v", info)
	}
	if v.Spec() != (ThinSpec{Pool: p.Dev(), ID: 1}) {
		t.Errorf("spec %v", v.Spec())
	}
	st, err := v.Status(ctx)
	ok(t, err)
	if st.State != ThinActive || st.MappedSectors != 0 || st.HasHighest {
		t.Errorf("fresh thin status %+v", st)
	}
	ok(t, e.k.ProvisionBlocks("pool", 1, 3))
	st, err = v.Status(ctx)
	ok(t, err)
	if st.MappedSectors != 384 || !st.HasHighest || st.HighestMapped != 383 || st.MappedBlocks(128) != 3 {
		t.Errorf("status after 3 blocks %+v", st)
	}
	if ps := e.status(p); ps.UsedData != 3 {
		t.Errorf("pool used %d", ps.UsedData)
	}

	// Opening and listing.
	v2, err := p.Volume(ctx, "vol")
	ok(t, err)
	if v2.ID() != 1 || v2.Dev() != v.Dev() || v2.Size() != v.Size() {
		t.Errorf("Volume: %+v", v2)
	}
	ok(t, p.CreateThin(ctx, 2))
	_, err = p.Activate(ctx, "vol2", 2, 1024)
	ok(t, err)
	vs, err := p.Volumes(ctx)
	ok(t, err)
	if len(vs) != 2 || vs[0].Name() != "vol" || vs[1].Name() != "vol2" || vs[1].ID() != 2 {
		t.Errorf("Volumes: %v", vs)
	}
	// A thin of another pool is not ours.
	_, err = e.ctl.Create(ctx, "other", dm.Table{{Length: 8, Type: "zero"}})
	ok(t, err)
	if vs, _ := p.Volumes(ctx); len(vs) != 2 {
		t.Errorf("Volumes with a zero device: %d", len(vs))
	}

	v2, err = p.Volume(ctx, "vol2")
	ok(t, err)
	ok(t, v2.Deactivate(ctx))
	ok(t, v.Deactivate(ctx))
	if _, err := e.ctl.Info(ctx, dm.Name("vol")); !errors.Is(err, dm.ErrNotFound) {
		t.Errorf("vol still there: %v", err)
	}
	_, err = v.Status(ctx)
	is(t, err, dm.ErrNotFound)
	// The thin device and its blocks stay in the pool.
	if ps := e.status(p); ps.UsedData != 3 {
		t.Errorf("pool used %d after deactivation", ps.UsedData)
	}
	ok(t, p.Delete(ctx, 1))
	if ps := e.status(p); ps.UsedData != 0 {
		t.Errorf("pool used %d after delete", ps.UsedData)
	}
}

func TestActivateRefusals(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	ok(t, p.CreateThin(ctx, 1))
	ok(t, e.ctl.Suspend(ctx, dm.Name("pool")))
	_, err := p.Activate(ctx, "vol", 1, 1024)
	is(t, err, ErrPoolSuspended, dm.ErrInvalid, unix.EINVAL)
	_, err = e.ctl.Resume(ctx, dm.Name("pool"))
	ok(t, err)
	ok(t, e.k.FailPool("pool"))
	_, err = p.Activate(ctx, "vol", 1, 1024)
	is(t, err, ErrPoolFailed, dm.ErrInvalid, unix.EINVAL)
	for _, n := range []string{"vol"} {
		if _, err := e.ctl.Info(ctx, dm.Name(n)); !errors.Is(err, dm.ErrNotFound) {
			t.Errorf("failed Activate left %s: %v", n, err)
		}
	}
	if st := e.status(p); st.Mode != ModeFail {
		t.Errorf("mode %v", st.Mode)
	}
	_, err = p.TransactionID(ctx)
	is(t, err, ErrPoolFailed)
}

func TestRemoveAndTeardown(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	for i := DeviceID(0); i < 3; i++ {
		ok(t, p.CreateThin(ctx, i))
		_, err := p.Activate(ctx, fmt.Sprintf("t%d", i), i, 1024)
		ok(t, err)
	}
	ok(t, p.Teardown(ctx))
	devs, err := e.ctl.List(ctx)
	ok(t, err)
	if len(devs) != 0 {
		t.Errorf("devices left: %v", devs)
	}
	// The pool comes back with its three thin devices.
	p, err = CreatePool(ctx, e.ctl, "pool", e.spec(), withHost(e.host))
	ok(t, err)
	is(t, p.CreateThin(ctx, 2), ErrIDInUse)
	ok(t, p.Remove(ctx))
	err = p.Teardown(ctx)
	is(t, err, dm.ErrNotFound)
}

func TestFormatMetadataFailure(t *testing.T) {
	e := newEnv(t)
	e.host.formatErr = ErrHasMetadata
	e.reset()
	_, err := CreatePool(e.ctx, e.ctl, "pool", e.spec(), FormatMetadata(), withHost(e.host))
	is(t, err, ErrHasMetadata)
	e.noCalls("format refused")
	e.host.formatErr = errors.New("EIO")
	_, err = CreatePool(e.ctx, e.ctl, "pool", e.spec(), ForceFormatMetadata(), withHost(e.host))
	if err == nil || errors.Is(err, ErrHasMetadata) {
		t.Errorf("format failure: %v", err)
	}
	e.noCalls("format failed")
}

func TestContextCancelled(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	e.reset()
	err := p.CreateThin(ctx, 1)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("CreateThin with a cancelled context: %v", err)
	}
	e.noCalls("cancelled")
}

// A failed pool's thin tables read "Fail"; its thins are still found,
// deactivated and torn down.
func TestFailedPoolTeardown(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	for i := DeviceID(0); i < 3; i++ {
		ok(t, p.CreateThin(ctx, i))
		_, err := p.Activate(ctx, fmt.Sprintf("t%d", i), i, 1024)
		ok(t, err)
	}
	ok(t, e.k.FailPool("pool"))
	table, err := e.ctl.Table(ctx, dm.Name("t0"))
	ok(t, err)
	if table[0].Params != "Fail" {
		t.Logf("thin table of a failed pool: %q", table[0].Params)
	}
	_, err = p.Volume(ctx, "t0")
	is(t, err, ErrPoolFailed)
	if vs, err := p.Volumes(ctx); err != nil || len(vs) != 0 {
		t.Errorf("Volumes of a failed pool: %v, %v", vs, err)
	}
	// Teardown removes a failed pool's thin devices too.
	ok(t, p.Teardown(ctx))
	if devs, _ := e.ctl.List(ctx); len(devs) != 0 {
		t.Errorf("left: %v", devs)
	}
}

// A Pool whose device was replaced by something else says so.
func TestPoolReplaced(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ok(t, p.Remove(e.ctx))
	_, err := e.ctl.Create(e.ctx, "pool", dm.Table{{Length: 8, Type: "zero"}})
	ok(t, err)
	_, err = p.Spec(e.ctx)
	is(t, err, ErrNotPool)
	_, err = p.Status(e.ctx)
	is(t, err, ErrNotPool)
	is(t, p.CreateThin(e.ctx, 1), ErrNotPool)
	is(t, p.Resize(e.ctx, 1<<20), ErrNotPool)
	var se *SyntaxError
	_, err = ParsePoolStatus("x")
	if !errors.As(err, &se) || se.Error() != `pool status "x": transaction id is not a number` {
		t.Errorf("SyntaxError text %q", err)
	}
}
