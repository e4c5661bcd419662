package thin

import (
	"context"
	"errors"
	"sync"

	"github.com/thinp/thinp/dm"
)

// Event is one device-mapper event of a pool: the pool device's info
// after it (Info.EventNr is the event counter to wait on next), and the
// pool status the kernel returned with it.
type Event struct {
	Info   dm.Info
	Status PoolStatus
}

// WaitEvent waits until the pool's event counter differs from last (0 to
// start: the counter of a device that has had an event, or Info.EventNr of
// the pool device read with dm.Control.Info) and
// returns the event with the pool's status (read without committing the
// metadata). The kernel raises pool events when free data space falls to
// the low water mark (once per resume), when free metadata space falls to
// the metadata low watermark, when the pool's mode changes, and at every
// resume and table load; so after each event re-read the status and decide
// from it, as Watch does. It honours ctx.
func (p *Pool) WaitEvent(ctx context.Context, last uint32) (Event, error) {
	const op = "wait event"
	ev, err := p.ctl.Wait(ctx, p.ref(), last, dm.NoFlush)
	if err != nil {
		return Event{}, newError(op, p.name, nil, err)
	}
	st, err := p.parseStatus(op, ev.Status)
	if err != nil {
		return Event{}, err
	}
	return Event{Info: ev.Info, Status: st}, nil
}

// WatchEvent is what a Watcher reports: an event, with what it means for
// the pool. The flags describe the pool's state after the event, not what
// caused it (the kernel does not say); a daemon acts on them and waits for
// the next event.
type WatchEvent struct {
	Event
	// Spec is the pool's live table after the event (its low water mark
	// decides LowWater).
	Spec PoolSpec
	// Initial marks the first report, of the state when Watch started.
	Initial bool
	// LowWater: free data space is at or below the low water mark.
	LowWater bool
	// MetadataLow: free metadata space is at or below the kernel's
	// metadata low watermark.
	MetadataLow bool
	// ModeChanged: the mode differs from the previous report's, PrevMode.
	ModeChanged bool
	PrevMode    PoolMode
}

// Watcher reports a pool's events on C until its context ends, Stop is
// called or an error happens; then C is closed and Err says why.
type Watcher struct {
	// C delivers the events. The watcher waits for each to be received:
	// a slow receiver does not lose the latest state, as every report
	// carries the full status.
	C <-chan WatchEvent

	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
}

// Watch starts a watcher on the pool. Its first report (Initial) is the
// pool's state now, so nothing that happened before is missed; then one
// report per event. Watch returns an error only if the first state cannot
// be read.
func (p *Pool) Watch(ctx context.Context) (*Watcher, error) {
	const op = "watch"
	info, err := p.ctl.Info(ctx, p.ref())
	if err != nil {
		return nil, newError(op, p.name, nil, err)
	}
	spec, err := p.spec(ctx, op)
	if err != nil {
		return nil, err
	}
	st, err := p.status(ctx, op, dm.NoFlush)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	c := make(chan WatchEvent)
	w := &Watcher{C: c, cancel: cancel, done: make(chan struct{})}
	first := report(Event{Info: info, Status: st}, spec, st.Mode)
	first.Initial, first.ModeChanged = true, false
	go w.run(ctx, p, c, first)
	return w, nil
}

func report(ev Event, spec PoolSpec, prev PoolMode) WatchEvent {
	return WatchEvent{
		Event:       ev,
		Spec:        spec,
		LowWater:    ev.Status.BelowLowWaterMark(spec),
		MetadataLow: ev.Status.MetadataLow(),
		ModeChanged: ev.Status.Mode != prev,
		PrevMode:    prev,
	}
}

func (w *Watcher) run(ctx context.Context, p *Pool, c chan<- WatchEvent, we WatchEvent) {
	defer close(w.done)
	defer close(c)
	for {
		select {
		case c <- we:
		case <-ctx.Done():
			return
		}
		ev, err := p.WaitEvent(ctx, we.Info.EventNr)
		if err == nil {
			var spec PoolSpec
			spec, err = p.spec(ctx, "watch")
			if err == nil {
				we = report(ev, spec, we.Status.Mode)
				continue
			}
		}
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return
		}
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
		return
	}
}

// Stop stops the watcher and waits for it to finish.
func (w *Watcher) Stop() {
	w.cancel()
	<-w.done
}

// Err is the error that stopped the watcher, once C is closed; nil if it
// stopped because its context ended or Stop was called.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}
