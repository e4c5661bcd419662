package thin

import (
	"errors"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/dm/dmtest"
	"github.com/thinp/thinp/ioctl"
)

func TestResizeGrow(t *testing.T) {
	e := newEnv(t)
	p := e.pool(func(s *PoolSpec) { s.Length = dataSectors / 2 })
	if st := e.status(p); st.TotalData != 8192 {
		t.Fatalf("total %d", st.TotalData)
	}
	ok(t, p.Resize(e.ctx, dataSectors))
	if st := e.status(p); st.TotalData != 16384 || st.Mode != ModeReadWrite {
		t.Errorf("after growing: %v", st)
	}
	if e.info("pool").Suspended {
		t.Error("pool left suspended")
	}
	// Grow the data device itself first, then the pool.
	e.host.resize(t, dataDev, 2*dataSectors)
	ok(t, p.Resize(e.ctx, 2*dataSectors))
	if st := e.status(p); st.TotalData != 32768 {
		t.Errorf("after growing the device: %v", st)
	}
	// Resize to the same size is a harmless reload.
	ok(t, p.Resize(e.ctx, 2*dataSectors))
}

func TestResizeRefusals(t *testing.T) {
	e := newEnv(t)
	p := e.pool(func(s *PoolSpec) { s.Length, s.LowWaterMark = dataSectors/2, 100 })
	for name, fn := range map[string]func() error{
		"shrink":                func() error { return p.Resize(e.ctx, dataSectors/4) },
		"past the data device":  func() error { return p.Resize(e.ctx, dataSectors+128) },
		"lwm past the new size": func() error { return p.Reconfigure(e.ctx, lwm(8192)) },
		"ignore_discard toggled": func() error {
			return p.Reconfigure(e.ctx, func(s *PoolSpec) { s.IgnoreDiscard = true })
		},
		"block size changed": func() error {
			return p.Reconfigure(e.ctx, func(s *PoolSpec) { s.BlockSize = 256 })
		},
		"data device changed": func() error {
			return p.Reconfigure(e.ctx, func(s *PoolSpec) { s.Data = origDev })
		},
		"metadata changed": func() error {
			return p.Reconfigure(e.ctx, func(s *PoolSpec) { s.Metadata = origDev })
		},
		"invalid spec": func() error {
			return p.Reconfigure(e.ctx, func(s *PoolSpec) { s.BlockSize = 192 })
		},
	} {
		e.reset()
		err := fn()
		is(t, err, dm.ErrInvalid)
		if n := e.calls(int(ioctl.CmdTableLoad)) + e.calls(int(ioctl.CmdDevSuspend)); n != 0 {
			t.Errorf("%s: %d loads or suspends reached the kernel", name, n)
		}
		if errors.Is(err, unix.EINVAL) {
			t.Errorf("%s: claims the kernel's EINVAL: %v", name, err)
		}
	}
	is(t, p.Resize(e.ctx, dataSectors/4), ErrShrink)
	is(t, p.Reconfigure(e.ctx, func(s *PoolSpec) { s.IgnoreDiscard = true }), ErrImmutable)
	is(t, p.Reconfigure(e.ctx, func(s *PoolSpec) { s.BlockSize = 256 }), ErrImmutable)

	// A pool whose metadata needs checking does not grow.
	ok(t, e.k.SetNeedsCheck("pool", true))
	e.reset()
	is(t, p.Resize(e.ctx, dataSectors), ErrNeedsCheck, unix.EOPNOTSUPP)
	_, err := p.GrowMetadata(e.ctx)
	is(t, err, ErrNeedsCheck)
	if n := e.calls(int(ioctl.CmdTableLoad)); n != 0 {
		t.Errorf("%d loads", n)
	}
}

// When the kernel refuses the new table at resume, the previous table is
// restored and the pool runs.
func TestResizeRollback(t *testing.T) {
	e := newEnv(t)
	p := e.pool(func(s *PoolSpec) { s.Length = dataSectors / 2 })
	var mu sync.Mutex
	var seq []string
	failed := false
	e.k.SetBeforeIoctl(func(cmd ioctl.Cmd, h *ioctl.Header) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case cmd == ioctl.CmdTableLoad:
			seq = append(seq, "load")
		case cmd == ioctl.CmdDevSuspend && h.Flags&ioctl.FlagSuspend == 0:
			seq = append(seq, "resume")
			if !failed {
				failed = true
				return unix.EINVAL // "pool target too small"
			}
		}
		return nil
	})
	err := p.Resize(e.ctx, dataSectors)
	is(t, err, dm.ErrInvalid, unix.EINVAL)
	mu.Lock()
	if len(seq) != 4 || seq[0] != "load" || seq[1] != "resume" || seq[2] != "load" || seq[3] != "resume" {
		t.Errorf("ioctls %v, want load resume(fails) load(old) resume", seq)
	}
	mu.Unlock()
	info := e.info("pool")
	if info.Suspended || info.InactivePresent {
		t.Errorf("pool state after rollback: %+v", info)
	}
	spec, err := p.Spec(e.ctx)
	ok(t, err)
	if spec.Length != dataSectors/2 {
		t.Errorf("live length %d, want the old %d", spec.Length, dataSectors/2)
	}
	if st := e.status(p); st.TotalData != 8192 || st.Mode != ModeReadWrite {
		t.Errorf("status after rollback %v", st)
	}
	e.k.SetBeforeIoctl(nil)
	ok(t, p.Resize(e.ctx, dataSectors))
}

func TestGrowMetadata(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ok(t, p.CreateThin(e.ctx, 1))
	for _, mib := range []dm.Sectors{8, 16, 64} {
		e.host.resize(t, metaDev, mib*2048)
		total, err := p.GrowMetadata(e.ctx)
		ok(t, err)
		if total != MetaBlocks(mib*256) {
			t.Errorf("%d MiB: total %d metadata blocks, want %d", mib, total, mib*256)
		}
		if st := e.status(p); st.TotalMeta != total || st.Mode != ModeReadWrite {
			t.Errorf("status %v", st)
		}
	}
	// Deletes after a metadata resize keep the pool writable (the "Kabi" bug).
	ok(t, p.Delete(e.ctx, 1))
	if st := e.status(p); st.Mode != ModeReadWrite {
		t.Errorf("mode %v after delete", st.Mode)
	}
	// Out of metadata space: growing the device brings the pool back.
	ok(t, e.k.SetPoolMode("pool", dmtest.PoolOutOfMetadataSpace))
	is(t, p.CreateThin(e.ctx, 2), ErrPoolReadOnly)
	e.host.resize(t, metaDev, 128*2048)
	_, err := p.GrowMetadata(e.ctx)
	ok(t, err)
	ok(t, p.CreateThin(e.ctx, 2))
}

func TestFeatureChanges(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	ok(t, p.Reconfigure(ctx, func(s *PoolSpec) { s.ErrorIfNoSpace = true }))
	if st := e.status(p); st.NoSpace != ErrorIfNoSpace {
		t.Errorf("no-space policy %v", st.NoSpace)
	}
	ok(t, p.Reconfigure(ctx, func(s *PoolSpec) { s.ErrorIfNoSpace = false }))
	if st := e.status(p); st.NoSpace != QueueIfNoSpace {
		t.Errorf("no-space policy %v", st.NoSpace)
	}
	ok(t, p.Reconfigure(ctx, func(s *PoolSpec) { s.NoDiscardPassdown = !false }))
	if st := e.status(p); st.Discard != DiscardNoPassdown {
		t.Errorf("discard %v", st.Discard)
	}
	ok(t, p.Reconfigure(ctx, func(s *PoolSpec) { s.SkipBlockZeroing = true }))
	ok(t, p.Reconfigure(ctx, lwm(1000)))
	spec, err := p.Spec(ctx)
	ok(t, err)
	if !spec.SkipBlockZeroing || !spec.NoDiscardPassdown || spec.LowWaterMark != 1000 || spec.ErrorIfNoSpace {
		t.Errorf("spec %+v", spec)
	}
	ok(t, p.Reconfigure(ctx, func(s *PoolSpec) { s.ReadOnly = true }))
	if st := e.status(p); st.Mode != ModeReadOnly {
		t.Errorf("mode %v", st.Mode)
	}
	is(t, p.CreateThin(ctx, 1), ErrPoolReadOnly)
	ok(t, p.Reconfigure(ctx, func(s *PoolSpec) { s.ReadOnly = false }))
	if st := e.status(p); st.Mode != ModeReadWrite {
		t.Errorf("mode %v", st.Mode)
	}
	// Reconfigure with a zero Length keeps the size.
	ok(t, p.Reconfigure(ctx, func(s *PoolSpec) { s.Length, s.ErrorIfNoSpace = 0, true }))
	if got, _ := p.Spec(ctx); got.Length != dataSectors || !got.ErrorIfNoSpace {
		t.Errorf("after Reconfigure %+v", got)
	}
}

// lwm sets the low water mark.
func lwm(blocks DataBlocks) func(*PoolSpec) {
	return func(s *PoolSpec) { s.LowWaterMark = blocks }
}
