package thin

import (
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/ioctl"
)

// suspendLog records, for each create_snap the kernel receives, whether
// the origin device was suspended at that moment, and every suspend and
// resume of it.
type suspendLog struct {
	mu        sync.Mutex
	atMessage []bool
	events    []string
}

func (e *env) watchOrigin(origin string) *suspendLog {
	l := &suspendLog{}
	originDev := e.info(origin).Dev
	e.k.SetBeforeIoctl(func(cmd ioctl.Cmd, h *ioctl.Header) error {
		switch cmd {
		case ioctl.CmdTargetMsg:
			info, err := e.ctl.Info(e.ctx, dm.Name(origin))
			l.mu.Lock()
			l.atMessage = append(l.atMessage, err == nil && info.Suspended)
			l.mu.Unlock()
		case ioctl.CmdDevSuspend:
			d := ioctl.DecodeDev(h.Dev)
			maj, min := d.Major, d.Minor
			if h.Name == origin || (dm.Dev{Major: maj, Minor: min}) == originDev {
				l.mu.Lock()
				if h.Flags&ioctl.FlagSuspend != 0 {
					l.events = append(l.events, "suspend")
				} else {
					l.events = append(l.events, "resume")
				}
				l.mu.Unlock()
			}
		}
		return nil
	})
	return l
}

func (l *suspendLog) get() ([]bool, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]bool(nil), l.atMessage...), append([]string(nil), l.events...)
}

func TestSnapshotSuspendsActiveOrigin(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	ok(t, p.CreateThin(ctx, 1))
	v, err := p.Activate(ctx, "origin", 1, 4096)
	ok(t, err)
	ok(t, e.k.ProvisionBlocks("pool", 1, 2))
	l := e.watchOrigin("origin")
	ok(t, v.Snapshot(ctx, 2))
	at, ev := l.get()
	if len(at) != 1 || !at[0] {
		t.Errorf("origin suspended at create_snap: %v, want [true]", at)
	}
	if len(ev) != 2 || ev[0] != "suspend" || ev[1] != "resume" {
		t.Errorf("origin events %v", ev)
	}
	if e.info("origin").Suspended {
		t.Error("origin left suspended")
	}
	// The snapshot shares the origin's blocks.
	_, err = p.Activate(ctx, "snap", 2, 4096)
	ok(t, err)
	sv, _ := p.Volume(ctx, "snap")
	st, err := sv.Status(ctx)
	ok(t, err)
	if st.MappedSectors != 256 {
		t.Errorf("snapshot maps %d sectors, want 256", st.MappedSectors)
	}
	if ps := e.status(p); ps.UsedData != 2 {
		t.Errorf("pool uses %d blocks, want 2 shared", ps.UsedData)
	}

	// An inactive origin is not suspended.
	ok(t, p.CreateThin(ctx, 5))
	l = e.watchOrigin("origin")
	ok(t, p.CreateSnapshot(ctx, 6, 5, SnapshotNoFlush()))
	if _, ev := l.get(); len(ev) != 0 {
		t.Errorf("unrelated device suspended: %v", ev)
	}
}

// The origin is resumed even when create_snap fails.
func TestSnapshotResumesOnFailure(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	ok(t, p.CreateThin(ctx, 1))
	_, err := p.Activate(ctx, "origin", 1, 4096)
	ok(t, err)
	l := e.watchOrigin("origin")
	e.failMessage("create_snap", unix.ENOSPC)
	err = p.CreateSnapshot(ctx, 2, 1)
	is(t, err, unix.ENOSPC)
	if e.info("origin").Suspended {
		t.Fatal("origin left suspended after a failed create_snap")
	}
	if _, ev := l.get(); len(ev) != 2 || ev[0] != "suspend" || ev[1] != "resume" {
		t.Errorf("origin events %v", ev)
	}
	// The snapshot does not exist: retrying works.
	ok(t, p.CreateSnapshot(ctx, 2, 1))

	// EEXIST from the kernel also resumes.
	e.k.SetBeforeIoctl(nil)
	is(t, p.CreateSnapshot(ctx, 2, 1), ErrIDInUse, dm.ErrExists, unix.EEXIST)
	if e.info("origin").Suspended {
		t.Fatal("origin left suspended after EEXIST")
	}
}

// A suspend that fails sends nothing; a resume that fails once is retried.
func TestSnapshotSuspendResumeFailures(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	ok(t, p.CreateThin(ctx, 1))
	_, err := p.Activate(ctx, "origin", 1, 4096)
	ok(t, err)

	e.k.FailNext(ioctl.CmdDevSuspend, unix.EIO)
	e.reset()
	is(t, p.CreateSnapshot(ctx, 2, 1), unix.EIO)
	if m := e.messages(); len(m) != 0 {
		t.Errorf("messages sent though the origin could not be suspended: %q", m)
	}

	// The first resume fails: ensureResumed resumes it again, and the
	// snapshot, which exists, is reported as made.
	var mu sync.Mutex
	failed := false
	e.k.SetBeforeIoctl(func(cmd ioctl.Cmd, h *ioctl.Header) error {
		mu.Lock()
		defer mu.Unlock()
		if cmd == ioctl.CmdDevSuspend && h.Flags&ioctl.FlagSuspend == 0 && !failed {
			failed = true
			return unix.EIO
		}
		return nil
	})
	ok(t, p.CreateSnapshot(ctx, 2, 1))
	if !failed {
		t.Error("the resume was not failed")
	}
	if e.info("origin").Suspended {
		t.Error("origin left suspended")
	}

	// Every resume fails: the error says the snapshot exists and the
	// origin is suspended.
	e.k.SetBeforeIoctl(func(cmd ioctl.Cmd, h *ioctl.Header) error {
		if cmd == ioctl.CmdDevSuspend && h.Flags&ioctl.FlagSuspend == 0 {
			return unix.EIO
		}
		return nil
	})
	err = p.CreateSnapshot(ctx, 3, 1)
	is(t, err, unix.EIO)
	if err == nil || !strings.Contains(err.Error(), "snapshot 3 created") {
		t.Errorf("error %v does not say the snapshot exists", err)
	}
	e.k.SetBeforeIoctl(nil)
	_, err = e.ctl.Resume(ctx, dm.Name("origin"))
	ok(t, err)
}

// An origin the caller has suspended stays suspended.
func TestSnapshotOfPausedOrigin(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	ok(t, p.CreateThin(ctx, 1))
	_, err := p.Activate(ctx, "origin", 1, 4096)
	ok(t, err)
	ok(t, e.ctl.Suspend(ctx, dm.Name("origin")))
	l := e.watchOrigin("origin")
	for id := DeviceID(2); id < 12; id++ {
		ok(t, p.CreateSnapshot(ctx, id, 1))
	}
	at, ev := l.get()
	if len(ev) != 0 {
		t.Errorf("the paused origin was suspended or resumed: %v", ev)
	}
	for i, s := range at {
		if !s {
			t.Errorf("create_snap %d with the origin running", i)
		}
	}
	if !e.info("origin").Suspended {
		t.Error("the caller's pause was undone")
	}
}

// With an active origin, a suspended pool would make the origin's suspend
// block: refused first.
func TestSnapshotWhilePoolSuspended(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	ok(t, p.CreateThin(ctx, 1))
	ok(t, p.CreateThin(ctx, 7))
	_, err := p.Activate(ctx, "origin", 1, 4096)
	ok(t, err)
	ok(t, e.ctl.Suspend(ctx, dm.Name("pool")))
	e.reset()
	is(t, p.CreateSnapshot(ctx, 2, 1), ErrPoolSuspended)
	if m := e.messages(); len(m) != 0 {
		t.Errorf("messages: %q", m)
	}
	if e.info("origin").Suspended {
		t.Error("origin suspended")
	}
	// An inactive origin needs no suspend: allowed.
	ok(t, p.CreateSnapshot(ctx, 8, 7))
	_, err = e.ctl.Resume(ctx, dm.Name("pool"))
	ok(t, err)
}

func TestExternalOrigin(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	ok(t, p.CreateThin(ctx, 1))
	base, err := p.Activate(ctx, "base", 1, 4096, WithExternalOrigin(origDev))
	ok(t, err)
	if base.ExternalOrigin() != origDev {
		t.Errorf("origin %v", base.ExternalOrigin())
	}
	table, err := e.ctl.Table(ctx, dm.Name("base"))
	ok(t, err)
	if want := (ThinSpec{Pool: p.Dev(), ID: 1, ExternalOrigin: origDev}).Params(); table[0].Params != want {
		t.Errorf("table %q, want %q", table[0].Params, want)
	}
	// A snapshot, and a snapshot of the snapshot, inherit the origin.
	ok(t, base.Snapshot(ctx, 2))
	ok(t, p.CreateSnapshot(ctx, 3, 2))
	for _, id := range []DeviceID{2, 3} {
		if o, ok := p.ExternalOrigin(id); !ok || o != origDev {
			t.Errorf("origin of %d: %v %v", id, o, ok)
		}
	}
	snap, err := p.Activate(ctx, "snap3", 3, 4096)
	ok(t, err)
	if snap.ExternalOrigin() != origDev {
		t.Errorf("snapshot activated without the origin: %v", snap.ExternalOrigin())
	}
	_, err = p.Activate(ctx, "bad", 2, 4096, WithExternalOrigin(dm.Dev{Major: 7, Minor: 1}))
	is(t, err, ErrOriginMismatch, dm.ErrInvalid)

	// A Pool that remembers nothing learns the origin from the active
	// origin's table.
	q, err := OpenPool(ctx, e.ctl, "pool")
	ok(t, err)
	ok(t, q.CreateSnapshot(ctx, 4, 1))
	if o, _ := q.ExternalOrigin(4); o != origDev {
		t.Errorf("learnt origin %v", o)
	}
	is(t, q.CreateSnapshot(ctx, 5, 1, WithExternalOrigin(dm.Dev{Major: 7, Minor: 1})), ErrOriginMismatch)
	// An inactive origin's external origin comes from the caller.
	ok(t, base.Deactivate(ctx))
	r, err := OpenPool(ctx, e.ctl, "pool")
	ok(t, err)
	ok(t, r.CreateSnapshot(ctx, 6, 1, WithExternalOrigin(origDev)))
	v6, err := r.Activate(ctx, "v6", 6, 4096)
	ok(t, err)
	if v6.ExternalOrigin() != origDev {
		t.Errorf("v6 origin %v", v6.ExternalOrigin())
	}
	// Delete forgets.
	ok(t, v6.Deactivate(ctx))
	ok(t, r.Delete(ctx, 6))
	if _, ok := r.ExternalOrigin(6); ok {
		t.Error("deleted id keeps its origin")
	}
}
