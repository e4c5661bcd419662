package thin

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/dm/dmtest"
)

func TestWaitEvent(t *testing.T) {
	e := newEnv(t)
	p := e.pool(func(s *PoolSpec) { s.LowWaterMark = 16384 - 10 })
	ok(t, p.CreateThin(e.ctx, 1))
	info, err := e.ctl.Info(e.ctx, dm.Name("pool"))
	nr := info.EventNr
	ok(t, err)

	// Nothing happens: the wait ends with its context.
	ctx, cancel := context.WithTimeout(e.ctx, 50*time.Millisecond)
	_, err = p.WaitEvent(ctx, nr)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitEvent without an event: %v", err)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(20 * time.Millisecond)
		if err := e.k.ProvisionBlocks("pool", 1, 12); err != nil {
			t.Error(err)
		}
	}()
	ev, err := p.WaitEvent(e.ctx, nr)
	ok(t, err)
	<-done
	if ev.Info.EventNr == nr || ev.Info.Name != "pool" {
		t.Errorf("event %+v", ev)
	}
	// Free space is at or below the mark once the kernel raised it.
	spec, _ := p.Spec(e.ctx)
	if st := e.status(p); !st.BelowLowWaterMark(spec) {
		t.Errorf("status %v not below the low water mark %d", st, spec.LowWaterMark)
	}
	if !ev.Status.Mode.Working() {
		t.Errorf("event status %v", ev.Status)
	}
}

func TestWatcher(t *testing.T) {
	e := newEnv(t)
	p := e.pool(func(s *PoolSpec) { s.LowWaterMark = 16384 - 10 })
	ok(t, p.CreateThin(e.ctx, 1))
	w, err := p.Watch(e.ctx)
	ok(t, err)
	defer w.Stop()
	next := func() WatchEvent {
		t.Helper()
		select {
		case ev, ok := <-w.C:
			if !ok {
				t.Fatalf("watcher stopped: %v", w.Err())
			}
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
		panic("unreachable")
	}
	first := next()
	if !first.Initial || first.LowWater || first.ModeChanged || first.Status.Mode != ModeReadWrite || first.Spec.LowWaterMark != 16374 {
		t.Errorf("initial report %+v", first)
	}

	ok(t, e.k.ProvisionBlocks("pool", 1, 12))
	ev := next()
	if ev.Initial || !ev.LowWater || ev.ModeChanged || ev.Status.UsedData == 0 {
		t.Errorf("low water report %+v", ev)
	}

	ok(t, e.k.SetPoolMode("pool", dmtest.PoolReadOnly))
	ev = next()
	for ev.Status.Mode != ModeReadOnly {
		ev = next()
	}
	if !ev.ModeChanged || ev.PrevMode != ModeReadWrite {
		t.Errorf("mode report %+v", ev)
	}
	w.Stop()
	if _, open := <-w.C; open {
		t.Error("C open after Stop")
	}
	if w.Err() != nil {
		t.Errorf("Err after Stop: %v", w.Err())
	}
}

func TestWatcherEndsWhenPoolGoes(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	w, err := p.Watch(e.ctx)
	ok(t, err)
	<-w.C // initial
	ok(t, p.Remove(e.ctx))
	for range w.C {
	}
	if !errors.Is(w.Err(), dm.ErrNotFound) {
		t.Errorf("Err = %v, want dm.ErrNotFound", w.Err())
	}
	w.Stop() // idempotent after the end

	// A cancelled context ends it quietly.
	p = e.pool()
	ctx, cancel := context.WithCancel(e.ctx)
	w, err = p.Watch(ctx)
	ok(t, err)
	cancel()
	for range w.C {
	}
	if w.Err() != nil {
		t.Errorf("Err after cancel: %v", w.Err())
	}
	_, err = (&Pool{ctl: e.ctl, name: "missing"}).Watch(e.ctx)
	is(t, err, dm.ErrNotFound)
}
