package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/plugins/snapshots/devmapper"

	"github.com/thinp/thinp/examples/snapshotter/thinsnap"
	"github.com/thinp/thinp/thin/catalog"
)

// subject is one snapshotter under test, or the floor.
type subject struct {
	name string
	sn   snapper
	full snapshots.Snapshotter // sn, if a snapshotter; nil for the floor
	// shutdown removes every snapshot the subject holds and closes it.
	shutdown func(ctx context.Context) error
}

// shutdownOf removes every snapshot of sn, children first, and runs
// closers in order. It goes on after failures (the device sweep of
// env.teardown removes what is left) and returns them all.
func shutdownOf(name string, sn snapshots.Snapshotter, closers ...func() error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		err := removeAll(ctx, sn)
		if err != nil {
			err = fmt.Errorf("%s: remove snapshots: %w", name, err)
		}
		for _, c := range closers {
			if cerr := c(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("%s: close: %w", name, cerr))
			}
		}
		return err
	}
}

// image is the committed snapshot every measured snapshot descends from.
const image = "image"

// run makes the pools and the snapshotters, measures, and removes it all.
func run(ctx context.Context, cfg config, out io.Writer) (err error) {
	e, err := newEnv(cfg)
	if err != nil {
		return err
	}
	var subs []*subject
	defer func() {
		setPhase("clean-up")
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		var cerr error
		for _, s := range subs {
			cerr = errors.Join(cerr, s.shutdown(cctx))
		}
		cerr = errors.Join(cerr, e.teardown())
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// Interrupted between ops: the caller says so; what
			// matters is whether the clean-up worked.
			err = cerr
			return
		}
		err = errors.Join(err, cerr)
	}()
	tp, err := e.makePool(ctx, "thinp")
	if err != nil {
		return err
	}
	dp, err := e.makePool(ctx, "dm")
	if err != nil {
		return err
	}

	catDir := filepath.Join(e.dir, "catalog")
	if err := os.Mkdir(catDir, 0o700); err != nil {
		return err
	}
	cat, err := catalog.Open(ctx, tp.pool, catDir, catalog.WithDevicePrefix(tp.name+"-snap-"))
	if err != nil {
		return err
	}
	ts, err := thinsnap.New(cat, thinsnap.Config{BaseImageSize: cfg.BaseSize, FSType: thinsnap.FSExt4})
	if err != nil {
		cat.Close()
		return err
	}
	subs = append(subs, &subject{name: "thinp", sn: ts, full: ts, shutdown: shutdownOf("thinp", ts, ts.Close, cat.Close)})

	ds, err := devmapper.NewSnapshotter(ctx, &devmapper.Config{
		RootPath:       filepath.Join(e.dir, "devmapper"),
		PoolName:       dp.name,
		BaseImageSize:  cfg.BaseSize,
		FileSystemType: "ext4",
	})
	if err != nil {
		return fmt.Errorf("devmapper snapshotter: %w", err)
	}
	subs = append(subs, &subject{name: "devmapper", sn: ds, full: ds, shutdown: shutdownOf("devmapper", ds, ds.Close)})
	e.logf("base image size %s, ext4, on both; prefix %s", cfg.BaseSize, cfg.Prefix)

	fp, err := e.makePool(ctx, "floor")
	if err != nil {
		return err
	}
	size, err := thinsnap.ParseSize(cfg.BaseSize)
	if err != nil {
		return err
	}
	fl, err := newFloor(ctx, e.ctl, fp, size)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	subs = append(subs, &subject{name: "floor", sn: fl, shutdown: fl.close})

	return measure(ctx, e, cfg, subs[0], subs[1], subs[2], out)
}

// measure runs the warm-up and every measurement: each on the two
// snapshotters, and those with a kernel floor on the floor too.
func measure(ctx context.Context, e *env, cfg config, thinp, devmapper, fl *subject, out io.Writer) error {
	// Ops run to their end: an interrupt is seen between them.
	opCtx := context.WithoutCancel(ctx)
	pair := []*subject{thinp, devmapper}
	all := []*subject{thinp, devmapper, fl}
	for _, s := range pair {
		setPhase("warm-up %s", s.name)
		t0 := time.Now()
		if err := warmUp(opCtx, s.full); err != nil {
			return fmt.Errorf("%s: warm-up: %w", s.name, err)
		}
		e.logf("%s: warm-up (mkfs of the base, commit of %q) took %v", s.name, image, time.Since(t0).Round(time.Millisecond))
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	phases := []struct {
		name string
		subs []*subject
		op   func(ctx context.Context, s *subject, i int) error
	}{
		{"prepare", all, func(ctx context.Context, s *subject, i int) error {
			_, err := s.sn.Prepare(ctx, fmt.Sprintf("active/%d", i), image)
			return err
		}},
		// The floor has no usage: it would be a read of the pool's
		// metadata, not a kernel call.
		{"usage", pair, func(ctx context.Context, s *subject, i int) error {
			_, err := s.full.Usage(ctx, fmt.Sprintf("active/%d", i))
			return err
		}},
		{"commit", all, func(ctx context.Context, s *subject, i int) error {
			return s.sn.Commit(ctx, fmt.Sprintf("layer/%d", i), fmt.Sprintf("active/%d", i))
		}},
		{"remove", all, func(ctx context.Context, s *subject, i int) error {
			return s.sn.Remove(ctx, fmt.Sprintf("layer/%d", i))
		}},
		{"view", all, func(ctx context.Context, s *subject, i int) error {
			_, err := s.sn.View(ctx, fmt.Sprintf("view/%d", i), image)
			return err
		}},
	}
	for _, ph := range phases {
		setPhase("%s", ph.name)
		e.settle(ctx)
		res, err := serial(ctx, ph.subs, cfg.N, ph.op)
		if err != nil {
			return fmt.Errorf("%s: %w", ph.name, err)
		}
		report(out, ph.name, res...)
	}
	for _, s := range all {
		setPhase("removing the views (%s), untimed", s.name)
		if err := removeKeys(ctx, s.sn, "view/%d", cfg.N); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}

	for gi, g := range cfg.Goroutines {
		res := make([]*sample, len(all))
		keys := fmt.Sprintf("start-g%d/%%d", g)
		for k, s := range all {
			setPhase("start-g%d %s", g, s.name)
			e.settle(ctx)
			r, err := start(ctx, s.sn, keys, cfg.Containers, g)
			if err != nil {
				return fmt.Errorf("%s: start-g%d: %w", s.name, g, err)
			}
			res[k] = r
		}
		report(out, fmt.Sprintf("start-g%d", g), res...)
		if gi == 0 {
			setPhase("remove-active")
			e.settle(ctx)
			rm, err := serial(ctx, all, cfg.Containers, func(ctx context.Context, s *subject, i int) error {
				return s.sn.Remove(ctx, fmt.Sprintf(keys, i))
			})
			if err != nil {
				return fmt.Errorf("remove-active: %w", err)
			}
			report(out, "remove-active", rm...)
			continue
		}
		for _, s := range all {
			setPhase("removing start-g%d's snapshots (%s), untimed", g, s.name)
			if err := removeKeys(ctx, s.sn, keys, cfg.Containers); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
		}
	}
	return nil
}

// warmUp prepares a snapshot without parent (the base file system is made
// then), commits it as the image, and prepares and removes a child of it.
func warmUp(ctx context.Context, sn snapshots.Snapshotter) error {
	if _, err := sn.Prepare(ctx, "warm/base", ""); err != nil {
		return err
	}
	if err := sn.Commit(ctx, image, "warm/base"); err != nil {
		return err
	}
	if _, err := sn.Prepare(ctx, "warm/child", image); err != nil {
		return err
	}
	return sn.Remove(ctx, "warm/child")
}

// serial runs op n times on each subject, taking turns op by op (the
// first subject first on op 0, the second on op 1, and so on round), and
// times each op. ctx is checked between ops; the ops get a context that
// is never cancelled.
func serial(ctx context.Context, subs []*subject, n int, op func(ctx context.Context, s *subject, i int) error) ([]*sample, error) {
	res := make([]*sample, len(subs))
	for k := range res {
		res[k] = &sample{}
	}
	opCtx := context.WithoutCancel(ctx)
	for i := range n {
		for j := range subs {
			k := (i + j) % len(subs)
			if err := ctx.Err(); err != nil {
				return res, err
			}
			t0 := time.Now()
			err := op(opCtx, subs[k], i)
			d := time.Since(t0)
			if err != nil {
				return res, fmt.Errorf("%s, op %d: %w", subs[k].name, i, err)
			}
			res[k].add(d)
		}
	}
	return res, nil
}

// start prepares n active snapshots of the image, named by the format
// keys with their index, with g goroutines taking indices in turn, and
// times each Prepare and the whole batch.
func start(ctx context.Context, sn snapper, keys string, n, g int) (*sample, error) {
	opCtx := context.WithoutCancel(ctx)
	idx := make(chan int)
	lat := make([]time.Duration, n)
	done := make([]bool, n)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	t0 := time.Now()
	for range g {
		wg.Go(func() {
			for i := range idx {
				s := time.Now()
				_, err := sn.Prepare(opCtx, fmt.Sprintf(keys, i), image)
				lat[i] = time.Since(s)
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("prepare %d: %w", i, err))
					mu.Unlock()
					continue
				}
				done[i] = true
			}
		})
	}
feed:
	for i := range n {
		select {
		case idx <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(idx)
	wg.Wait()
	wall := time.Since(t0)
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return nil, err
	}
	r := &sample{span: wall}
	for i := range n {
		if done[i] {
			r.ops = append(r.ops, lat[i])
		}
	}
	return r, nil
}

// removeKeys removes the snapshots named by the format keys with indices
// 0 to n-1, untimed.
func removeKeys(ctx context.Context, sn snapper, keys string, n int) error {
	opCtx := context.WithoutCancel(ctx)
	for i := range n {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := sn.Remove(opCtx, fmt.Sprintf(keys, i)); err != nil {
			return err
		}
	}
	return nil
}

// removeAll removes every snapshot, children first, a round at a time:
// each round removes the snapshots no other one names as parent.
func removeAll(ctx context.Context, sn snapshots.Snapshotter) error {
	var errs []error
	for {
		var keys []string
		parents := map[string]bool{}
		if err := sn.Walk(ctx, func(ctx context.Context, in snapshots.Info) error {
			keys = append(keys, in.Name)
			parents[in.Parent] = true
			return nil
		}); err != nil {
			return errors.Join(append(errs, err)...)
		}
		removed := 0
		for _, k := range keys {
			if parents[k] {
				continue
			}
			if err := sn.Remove(ctx, k); err != nil {
				errs = append(errs, fmt.Errorf("remove %q: %w", k, err))
				continue
			}
			removed++
		}
		if removed == 0 {
			if len(keys) > 0 && len(errs) == 0 {
				errs = append(errs, fmt.Errorf("snapshots %q left: each has a child", keys))
			}
			return errors.Join(errs...)
		}
	}
}
