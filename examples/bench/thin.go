package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/thin"
)

// thinRunner is the library path through package thin: what users of
// the library call (thin.Pool), with its typed pre-checks, its search for
// active origins, and its locks.
type thinRunner struct {
	pool *thin.Pool
	size dm.Sectors
}

func newThinRunner(ctx context.Context, e *env) (*thinRunner, error) {
	p, err := thin.OpenPool(ctx, e.ctl, e.pool)
	if err != nil {
		return nil, err
	}
	return &thinRunner{pool: p, size: dm.Sectors(e.cfg.VolumeSize)}, nil
}

func tid(id uint64) thin.DeviceID { return thin.DeviceID(id) }

// createThin makes thin device id and activates it as name.
func (t *thinRunner) createThin(ctx context.Context, name string, id uint64) (*thin.Volume, error) {
	if err := t.pool.CreateThin(ctx, tid(id)); err != nil {
		return nil, err
	}
	return t.pool.Activate(ctx, name, tid(id), t.size)
}

// destroyThin deactivates v and deletes its thin device.
func (t *thinRunner) destroyThin(ctx context.Context, v *thin.Volume) error {
	if err := v.Deactivate(ctx); err != nil {
		return err
	}
	return t.pool.Delete(ctx, v.ID())
}

// lifecycle is one cycle of (a) and (f): CreateThin, Activate, Deactivate,
// Delete.
func (t *thinRunner) lifecycle(ctx context.Context, name string, id uint64) error {
	v, err := t.createThin(ctx, name, id)
	if err != nil {
		return err
	}
	return t.destroyThin(ctx, v)
}

// lifecycleThin is workload (a) through package thin.
func (b *bench) lifecycleThin(ctx context.Context) error {
	w := b.lifecycleWorkload("a-lifecycle-thin", "at-", max(b.e.cfg.ExecN/4, 1), b.thin.lifecycle)
	_, err := b.measure(ctx, w)
	return err
}

// snapshotsThin is workload (b) through package thin: CreateSnapshot of
// an origin activated through it.
func (b *bench) snapshotsThin(ctx context.Context) (err error) {
	cfg := &b.e.cfg
	origin := cfg.Prefix + "bt-origin"
	originID := b.e.newID()
	ov, err := b.thin.createThin(ctx, origin, originID)
	if err != nil {
		return err
	}
	var made [3][]uint64
	flush := func(ctx context.Context, m method) error {
		for len(made[m]) > 0 {
			id := made[m][len(made[m])-1]
			if err := b.thin.pool.Delete(ctx, tid(id)); err != nil {
				return err
			}
			made[m] = made[m][:len(made[m])-1]
		}
		return nil
	}
	defer func() {
		bg := context.WithoutCancel(ctx)
		for m := range made {
			flush(bg, method(m))
		}
		if derr := b.thin.destroyThin(bg, ov); derr != nil && err == nil {
			err = derr
		}
	}()
	w := &workload{
		name: "b-snapshot-thin",
		n:    [3]int{cfg.N, max(cfg.ExecN/4, 1), cfg.N},
		warm: warmOps(cfg.N),
		op: func(ctx context.Context, m method, _ int) (sample, error) {
			id := b.e.newID()
			made[m] = append(made[m], id)
			t0 := time.Now()
			var err error
			switch m {
			case lib:
				err = b.thin.pool.CreateSnapshot(ctx, tid(id), tid(originID))
			case dmsetup:
				err = b.exec.snapshot(ctx, origin, originID, id)
			case raw:
				err = b.raw.snapshot(origin, originID, id)
			}
			return sample{d: time.Since(t0), units: 1}, err
		},
		flush: flush,
	}
	_, err = b.measure(ctx, w)
	return err
}

// scale is workload (e): create_thin, create_snap of an active origin and
// delete, each timed alone, with each number of other active thin volumes
// of -e-volumes in the same pool, activated through package thin as a
// user of the library would (a snapshotter with thousands of containers).
// The library is package thin; the floor is the raw message (and the raw
// suspend and resume around create_snap). It then reports how each op's
// cost changed from the smallest count to the largest.
func (b *bench) scale(ctx context.Context) (err error) {
	cfg := &b.e.cfg
	var vols []*thin.Volume
	defer func() {
		t0 := time.Now()
		if _, derr := parallel(context.WithoutCancel(ctx), vols, func(ctx context.Context, v *thin.Volume) error {
			return b.thin.destroyThin(ctx, v)
		}); derr != nil && err == nil {
			err = derr
		}
		b.e.logf("e: removed %d volumes in %.1fs", len(vols), time.Since(t0).Seconds())
	}()
	origin := cfg.Prefix + "e-origin"
	originID := b.e.newID()
	ov, err := b.thin.createThin(ctx, origin, originID)
	if err != nil {
		return err
	}
	defer func() {
		if derr := b.thin.destroyThin(context.WithoutCancel(ctx), ov); derr != nil && err == nil {
			err = derr
		}
	}()
	type cost struct{ lib, raw time.Duration }
	costs := map[string][]cost{}
	ops := []string{"create_thin", "create_snap", "delete"}
	for _, count := range cfg.EVolumes {
		t0 := time.Now()
		type vol struct {
			name string
			id   uint64
		}
		var todo []vol
		for i := len(vols); i < count; i++ {
			todo = append(todo, vol{name: fmt.Sprintf("%se-%06d", cfg.Prefix, i), id: b.e.newID()})
		}
		var mu sync.Mutex
		_, err := parallel(ctx, todo, func(ctx context.Context, v vol) error {
			tv, err := b.thin.createThin(ctx, v.name, v.id)
			if err == nil {
				mu.Lock()
				vols = append(vols, tv)
				mu.Unlock()
			}
			return err
		})
		if err != nil {
			return err
		}
		b.e.logf("e: %d other active volumes (made in %.1fs)", count, time.Since(t0).Seconds())
		for _, op := range ops {
			var made [3][]uint64
			w := &workload{
				name: "e-" + op + "-" + strconv.Itoa(count),
				n:    [3]int{cfg.EN, 0, cfg.EN},
				warm: warmOps(cfg.EN),
				op: func(ctx context.Context, m method, _ int) (sample, error) {
					id := b.e.newID()
					if op == "delete" { // untimed: the id to delete
						if err := b.raw.message("create_thin " + strconv.FormatUint(id, 10)); err != nil {
							return sample{}, err
						}
					} else {
						made[m] = append(made[m], id)
					}
					ids := strconv.FormatUint(id, 10)
					t0 := time.Now()
					var err error
					switch {
					case m == lib && op == "create_thin":
						err = b.thin.pool.CreateThin(ctx, tid(id))
					case m == lib && op == "create_snap":
						err = b.thin.pool.CreateSnapshot(ctx, tid(id), tid(originID))
					case m == lib:
						err = b.thin.pool.Delete(ctx, tid(id))
					case op == "create_thin":
						err = b.raw.message("create_thin " + ids)
					case op == "create_snap":
						err = b.raw.snapshot(origin, originID, id)
					default:
						err = b.raw.message("delete " + ids)
					}
					return sample{d: time.Since(t0), units: 1}, err
				},
				flush: func(ctx context.Context, m method) error {
					for len(made[m]) > 0 {
						id := made[m][len(made[m])-1]
						if err := b.raw.message("delete " + strconv.FormatUint(id, 10)); err != nil {
							return err
						}
						made[m] = made[m][:len(made[m])-1]
					}
					return nil
				},
			}
			r, err := b.measure(ctx, w)
			if err != nil {
				return err
			}
			costs[op] = append(costs[op], cost{lib: perOp(r.rate(lib)), raw: perOp(r.rate(raw))})
		}
	}
	if n := len(cfg.EVolumes); n > 1 {
		for _, op := range ops {
			a, z := costs[op][0], costs[op][n-1]
			fmt.Fprintf(cfg.Out, "bench: e-%s-growth volumes=%d->%d lib=%s->%s (x%.2f) raw=%s->%s (x%.2f)\n", op,
				cfg.EVolumes[0], cfg.EVolumes[n-1], formatDur(a.lib), formatDur(z.lib), growth(a.lib, z.lib),
				formatDur(a.raw), formatDur(z.raw), growth(a.raw, z.raw))
		}
	}
	return nil
}

func growth(a, z time.Duration) float64 {
	if a <= 0 {
		return 0
	}
	return float64(z) / float64(a)
}

// parallelLifecycles is workload (f): the lifecycle of (a) with each number
// of goroutines of -f-goroutines on the one pool, through package thin
// and through dmsetup execs with the same parallelism; ops/s is cycles
// over wall time.
func (b *bench) parallelLifecycles(ctx context.Context) error {
	cfg := &b.e.cfg
	var base [2]float64
	for _, g := range cfg.FGoroutines {
		var rates [2]float64
		for mi, m := range []method{lib, dmsetup} {
			n := cfg.FN
			if m == dmsetup {
				n = cfg.FExecN
			}
			n = max(n, g)
			ids := make([]uint64, n)
			for i := range ids {
				ids[i] = b.e.newID()
			}
			b.e.settle(ctx)
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make([]error, g)
			t0 := time.Now()
			for w := range g {
				wg.Add(1)
				go func() {
					defer wg.Done()
					name := fmt.Sprintf("%sf-%s-%02d", cfg.Prefix, m, w)
					for {
						i := int(next.Add(1)) - 1
						if i >= n || ctx.Err() != nil {
							return
						}
						var err error
						if m == lib {
							err = b.thin.lifecycle(ctx, name, ids[i])
						} else {
							err = b.exec.lifecycle(ctx, name, ids[i])
						}
						if err != nil {
							errs[w] = err
							return
						}
					}
				}()
			}
			wg.Wait()
			d := time.Since(t0)
			if err := errors.Join(errs...); err != nil {
				return fmt.Errorf("f, %d goroutines, %s: %w", g, m, err)
			}
			rates[mi] = float64(n) / d.Seconds()
		}
		if base[0] == 0 {
			base = rates
		}
		fmt.Fprintf(cfg.Out, "bench: f-lifecycle-parallel-%d lib=%s dmsetup=%s lib/serial=%.2f dmsetup/serial=%.2f lib/dmsetup=%.3f\n",
			g, formatRate(rates[0]), formatRate(rates[1]), rates[0]/base[0], rates[1]/base[1], rates[0]/rates[1])
	}
	return nil
}
