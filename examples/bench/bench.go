package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/examples/internal/tool"
)

// method is one of the three ways each workload runs.
type method int

const (
	lib method = iota
	dmsetup
	raw
)

func (m method) String() string { return [...]string{"lib", "dmsetup", "raw"}[m] }

// sample is one timed op: d for units of work (more than one for a
// dmsetup status scan, which covers every device at once).
type sample struct {
	d     time.Duration
	units int
}

// per is the time of one unit.
func (s sample) per() time.Duration { return s.d / time.Duration(max(s.units, 1)) }

// workload is one of (a) to (d) as measure runs it.
type workload struct {
	name string
	// n is how many ops each method runs.
	n [3]int
	// warm is how many library ops run first, untimed, to warm up and to
	// measure the library's peak RSS on its own.
	warm int
	// op runs method m's i-th op and times the part that counts.
	op func(ctx context.Context, m method, i int) (sample, error)
	// flush, if set, does untimed clean-up after some of method m's ops
	// (b deletes its snapshots): every flushEvery ops and at the end.
	flush func(ctx context.Context, m method) error
}

const flushEvery = 64

// results are the samples of one workload.
type results struct {
	name    string
	samples [3][]sample
	// pairs are raw/lib unit-time quotients of a library op and a floor op
	// run back to back.
	pairs []float64
	rssKB int64 // peak RSS of the library warm-up
}

// rate is method m's ops/s from its median unit time: on shared cores an
// op that the host starved of CPU is an outlier, which the median ignores.
func (r *results) rate(m method) float64 {
	ts := make([]float64, len(r.samples[m]))
	for i, s := range r.samples[m] {
		ts[i] = s.per().Seconds()
	}
	med := median(ts)
	if med <= 0 {
		return 0
	}
	return 1 / med
}

// meanRate is method m's units over its total time.
func (r *results) meanRate(m method) float64 {
	var d time.Duration
	units := 0
	for _, s := range r.samples[m] {
		d += s.d
		units += s.units
	}
	if d <= 0 {
		return 0
	}
	return float64(units) / d.Seconds()
}

func median(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	x = slices.Clone(x)
	slices.Sort(x)
	if len(x)%2 == 1 {
		return x[len(x)/2]
	}
	return (x[len(x)/2-1] + x[len(x)/2]) / 2
}

// bench runs the workloads on one env.
type bench struct {
	e    *env
	lib  *libRunner
	exec *execRunner
	raw  *rawRunner
	thin *thinRunner
	rss  rssMeter
	prof *profiler
	// labels are the pprof label sets of the three methods.
	labels [3]context.Context
	// peakKB is the largest library peak RSS over all workloads.
	peakKB int64
}

// run sets up the pool, runs the configured workloads and tears
// everything down again, also on error or cancellation.
func run(ctx context.Context, cfg config) (err error) {
	dmsetupPath := cfg.Dmsetup
	if dmsetupPath == "" {
		if dmsetupPath, err = tool.Look("dmsetup"); err != nil {
			return err
		}
	}
	e, err := setup(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if terr := e.teardown(); terr != nil {
			err = errors.Join(err, fmt.Errorf("clean-up: %w", terr))
		}
	}()
	b := &bench{e: e, lib: newLibRunner(e, e.ctl), exec: newExecRunner(e, dmsetupPath, true), prof: newProfiler(cfg.CPUProfile, cfg.Out)}
	if b.raw, err = newRawRunner(e); err != nil {
		return err
	}
	defer b.raw.close()
	if b.thin, err = newThinRunner(ctx, e); err != nil {
		return err
	}
	for m := lib; m <= raw; m++ {
		b.labels[m] = pprof.WithLabels(ctx, pprof.Labels("method", m.String()))
	}
	b.rss = newRSSMeter()
	fmt.Fprintf(cfg.Out, "info: %s; GOMAXPROCS=%d; dm interface %s; n=%d dmsetup-n=%d udev-n=%d volumes=%s scans=%d raw-buffer=%d\n",
		machine(), runtime.GOMAXPROCS(0), e.ctl.Version(), cfg.N, cfg.ExecN, cfg.UdevN, formatCounts(cfg.Volumes), cfg.Scans, cfg.RawBuffer)
	for _, w := range cfg.Workloads {
		var err error
		switch w {
		case 'a':
			if err = b.lifecycle(ctx); err == nil {
				err = b.lifecycleThin(ctx)
			}
		case 'b':
			if err = b.snapshots(ctx); err == nil {
				err = b.snapshotsThin(ctx)
			}
		case 'c':
			err = b.status(ctx)
		case 'd':
			err = b.lifecycleUdev(ctx)
		case 'e':
			err = b.scale(ctx)
		case 'f':
			err = b.parallelLifecycles(ctx)
		}
		if err != nil {
			return fmt.Errorf("workload %c: %w", w, err)
		}
	}
	fmt.Fprintf(cfg.Out, "bench: peak-rss lib=%s source=%s\n", formatKB(b.peakKB), b.rss.source())
	return nil
}

// measure runs a workload. First the library alone runs w.warm ops,
// untimed, with its peak RSS measured. Then the three methods' ops are
// interleaved one by one: a library op and a floor op back to back (which
// goes first alternates), and a dmsetup op whenever dmsetup falls behind
// its share, so that the load of the machine, which on shared cores
// changes from second to second and moves a TCG guest's clock with it,
// weighs on the three methods alike. Each op runs with the pprof label
// method=<m>. udevd settles before the warm-up and before the timed part.
// It prints the result lines.
func (b *bench) measure(ctx context.Context, w *workload) (*results, error) {
	r := &results{name: w.name}
	if err := b.prof.start(w.name); err != nil {
		return nil, err
	}
	defer b.prof.stop()
	defer pprof.SetGoroutineLabels(ctx)

	// Warm-up, and the library's peak RSS. udevd first finishes what
	// earlier workloads gave it: (d) waits for it, and the others should
	// not pay for it.
	b.e.settle(ctx)
	runtime.GC()
	debug.FreeOSMemory()
	b.rss.reset()
	pprof.SetGoroutineLabels(b.labels[lib])
	for i := 0; i < w.warm; i++ {
		if _, err := w.op(ctx, lib, i); err != nil {
			return nil, fmt.Errorf("%s, lib warm-up: %w", w.name, err)
		}
	}
	if w.flush != nil {
		if err := w.flush(ctx, lib); err != nil {
			return nil, err
		}
	}
	b.rss.sample()
	r.rssKB = b.rss.peak
	b.peakKB = max(b.peakKB, r.rssKB)
	b.e.settle(ctx)

	var done [3]int
	step := func(m method) (sample, error) {
		if err := ctx.Err(); err != nil {
			return sample{}, err
		}
		pprof.SetGoroutineLabels(b.labels[m])
		s, err := w.op(ctx, m, done[m]+w.warm)
		if err != nil {
			if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
				err = errors.Join(err, cerr)
			}
			return s, fmt.Errorf("%s, %s op %d: %w", w.name, m, done[m], err)
		}
		r.samples[m] = append(r.samples[m], s)
		done[m]++
		if w.flush != nil && (done[m]%flushEvery == 0 || done[m] == w.n[m]) {
			if err := w.flush(ctx, m); err != nil {
				return s, err
			}
		}
		return s, nil
	}
	pairs := max(w.n[lib], w.n[raw])
	nextReport := time.Now().Add(30 * time.Second)
	for i := 0; i < pairs; i++ {
		order := [2]method{lib, raw}
		if i%2 == 1 {
			order = [2]method{raw, lib}
		}
		var got [3]sample
		for _, m := range order {
			if done[m] < w.n[m] {
				s, err := step(m)
				if err != nil {
					return nil, err
				}
				got[m] = s
			}
		}
		if got[lib].units > 0 && got[raw].units > 0 {
			r.pairs = append(r.pairs, got[raw].per().Seconds()/got[lib].per().Seconds())
		}
		// dmsetup keeps up with its share of the pairs.
		for done[dmsetup] < w.n[dmsetup] && done[dmsetup]*pairs < (i+1)*w.n[dmsetup] {
			if _, err := step(dmsetup); err != nil {
				return nil, err
			}
		}
		if time.Now().After(nextReport) {
			nextReport = time.Now().Add(30 * time.Second)
			b.e.logf("%s: %d/%d pairs; so far lib %s, dmsetup %s, raw %s ops/s", w.name, i+1, pairs,
				formatRate(r.rate(lib)), formatRate(r.rate(dmsetup)), formatRate(r.rate(raw)))
		}
	}
	for done[dmsetup] < w.n[dmsetup] {
		if _, err := step(dmsetup); err != nil {
			return nil, err
		}
	}
	pprof.SetGoroutineLabels(ctx)
	if err := b.prof.stop(); err != nil {
		return nil, err
	}
	b.report(r)
	return r, nil
}

// report prints a workload's bench: line and its info: line.
func (b *bench) report(r *results) {
	l, x, w := r.rate(lib), r.rate(dmsetup), r.rate(raw)
	ratio := func(a, c float64) string {
		if c == 0 {
			return "n/a"
		}
		return strconv.FormatFloat(a/c, 'f', 3, 64)
	}
	out := b.e.cfg.Out
	fmt.Fprintf(out, "bench: %s lib=%s dmsetup=%s raw=%s lib/raw=%s lib/dmsetup=%s\n",
		r.name, formatRate(l), formatRate(x), formatRate(w), ratio(l, w), ratio(l, x))
	var s strings.Builder
	for m := lib; m <= raw; m++ {
		var d time.Duration
		units := 0
		for _, x := range r.samples[m] {
			d += x.d
			units += x.units
		}
		fmt.Fprintf(&s, " %s %d ops in %.2fs, median %s, mean %s;", m, units, d.Seconds(), formatDur(perOp(r.rate(m))), formatDur(perOp(r.meanRate(m))))
	}
	fmt.Fprintf(out, "info: %s:%s lib/raw of back-to-back pairs: median %.3f, from means %s; lib peak RSS %s\n",
		r.name, s.String(), median(r.pairs), ratio(r.meanRate(lib), r.meanRate(raw)), formatKB(r.rssKB))
	// What the kernel leaves to win: no library can beat the floor, so
	// raw/dmsetup bounds lib/dmsetup; and the time each method adds to
	// the floor's, per op.
	if l > 0 && x > 0 && w > 0 {
		added := func(rate float64) string {
			d := perOp(rate) - perOp(w)
			if d < 0 {
				return "-" + formatDur(-d)
			}
			return formatDur(d)
		}
		fmt.Fprintf(out, "info: %s: lib/dmsetup can be at most raw/dmsetup=%s here; time added to the floor's per op: lib %s, dmsetup %s\n",
			r.name, ratio(w, x), added(l), added(x))
	}
}

// lifecycle is workload (a).
func (b *bench) lifecycle(ctx context.Context) error {
	cfg := &b.e.cfg
	w := b.lifecycleWorkload("a-lifecycle", "a-", cfg.ExecN, b.lib.lifecycle)
	b.raw.steps = stepTimes{}
	_, err := b.measure(ctx, w)
	if err == nil {
		fmt.Fprintf(cfg.Out, "info: %s: where the floor's cycle goes (mean per ioctl): %s\n", w.name, &b.raw.steps)
	}
	return err
}

// lifecycleWorkload is workload (a) with the library's cycle libCycle,
// the dmsetup cycle run execN times, and the raw floor's.
func (b *bench) lifecycleWorkload(name, prefix string, execN int, libCycle func(ctx context.Context, name string, id uint64) error) *workload {
	cfg := &b.e.cfg
	return &workload{
		name: name,
		n:    [3]int{cfg.N, execN, cfg.N},
		warm: warmOps(cfg.N),
		op: func(ctx context.Context, m method, _ int) (sample, error) {
			name := cfg.Prefix + prefix + m.String()
			id := b.e.newID()
			t0 := time.Now()
			var err error
			switch m {
			case lib:
				err = libCycle(ctx, name, id)
			case dmsetup:
				err = b.exec.lifecycle(ctx, name, id)
			case raw:
				err = b.raw.lifecycle(name, id)
			}
			return sample{d: time.Since(t0), units: 1}, err
		},
	}
}

// warmOps is the length of a warm-up: a tenth of the ops, at most 20.
func warmOps(n int) int { return min(max(n/10, 1), 20) }

// snapshots is workload (b): snapshots of one active origin, deleted
// (untimed) every flushEvery ops so that the pool stays about the same.
func (b *bench) snapshots(ctx context.Context) (err error) {
	cfg := &b.e.cfg
	origin := cfg.Prefix + "b-origin"
	originID := b.e.newID()
	if err := b.lib.createThin(ctx, origin, originID); err != nil {
		return err
	}
	var made [3][]uint64
	defer func() {
		bg := context.WithoutCancel(ctx)
		for m := range made {
			for _, id := range made[m] {
				b.lib.message(bg, "delete "+strconv.FormatUint(id, 10))
			}
		}
		if derr := b.lib.destroyThin(bg, origin, originID); derr != nil && err == nil {
			err = derr
		}
	}()
	w := &workload{
		name: "b-snapshot",
		n:    [3]int{cfg.N, cfg.ExecN, cfg.N},
		warm: warmOps(cfg.N),
		op: func(ctx context.Context, m method, _ int) (sample, error) {
			id := b.e.newID()
			made[m] = append(made[m], id)
			t0 := time.Now()
			var err error
			switch m {
			case lib:
				err = b.lib.snapshot(ctx, origin, originID, id)
			case dmsetup:
				err = b.exec.snapshot(ctx, origin, originID, id)
			case raw:
				err = b.raw.snapshot(origin, originID, id)
			}
			return sample{d: time.Since(t0), units: 1}, err
		},
		flush: func(ctx context.Context, m method) error {
			for len(made[m]) > 0 {
				id := made[m][len(made[m])-1]
				if err := b.lib.message(ctx, "delete "+strconv.FormatUint(id, 10)); err != nil {
					return err
				}
				made[m] = made[m][:len(made[m])-1]
			}
			return nil
		},
	}
	_, err = b.measure(ctx, w)
	return err
}

// status is workload (c): at each volume count, two workloads. c-status
// is the scan of every device: one op is one whole scan, timed per device
// (the library's Control.StatusAll; the floor's list and one status read
// per device; one `dmsetup status`). The library and the floor make
// 20*Scans scans and dmsetup Scans: a whole scan is long enough for the
// host to disturb it, so the medians want many. c-statusfunc is the read
// of one device's status as a caller that has the name makes it
// (Control.StatusFunc against the floor's read), Scans times over every
// device, without dmsetup, which has no such call apart from its scan.
// It then reports how the cost per device of the scan changed between the
// smallest and the largest count.
func (b *bench) status(ctx context.Context) (err error) {
	cfg := &b.e.cfg
	type vol struct {
		name string
		id   uint64
	}
	var vols []vol
	defer func() {
		t0 := time.Now()
		if _, derr := parallel(context.WithoutCancel(ctx), vols, func(ctx context.Context, v vol) error {
			return b.lib.destroyThin(ctx, v.name, v.id)
		}); derr != nil && err == nil {
			err = derr
		}
		b.e.logf("c: removed %d volumes in %.1fs", len(vols), time.Since(t0).Seconds())
	}()
	var scans []*results
	for _, count := range cfg.Volumes {
		t0 := time.Now()
		var todo []vol
		for i := len(vols); i < count; i++ {
			todo = append(todo, vol{name: fmt.Sprintf("%sc-%06d", cfg.Prefix, i), id: b.e.newID()})
		}
		made, err := parallel(ctx, todo, func(ctx context.Context, v vol) error {
			return b.lib.createThin(ctx, v.name, v.id)
		})
		vols = append(vols, made...)
		if err != nil {
			return err
		}
		b.e.logf("c: %d active volumes (made in %.1fs)", count, time.Since(t0).Seconds())
		devices := count + 1 // the volumes and the pool

		scan := &workload{
			name: "c-status-" + strconv.Itoa(count),
			n:    [3]int{20 * cfg.Scans, cfg.Scans, 20 * cfg.Scans},
			warm: 1,
			op: func(ctx context.Context, m method, _ int) (sample, error) {
				t0 := time.Now()
				var seen int
				var err error
				switch m {
				case lib:
					seen, err = b.lib.scan(ctx)
				case raw:
					seen, err = b.raw.scan()
				case dmsetup:
					seen, err = b.exec.scan(ctx)
				}
				d := time.Since(t0)
				if err == nil && seen < devices {
					err = fmt.Errorf("%s: a scan saw %d devices, want at least %d", m, seen, devices)
				}
				return sample{d: d, units: seen}, err
			},
		}
		r, err := b.measure(ctx, scan)
		if err != nil {
			return err
		}
		scans = append(scans, r)

		// The names each method reads, listed once.
		libDevs, err := b.lib.ctl.List(ctx)
		if err != nil {
			return err
		}
		n, err := b.raw.listNames()
		if err != nil {
			return err
		}
		if len(libDevs) < devices || n < devices {
			return fmt.Errorf("listed %d and %d devices, want at least %d", len(libDevs), n, devices)
		}
		one := &workload{
			name: "c-statusfunc-" + strconv.Itoa(count),
			n:    [3]int{cfg.Scans * devices, 0, cfg.Scans * devices},
			warm: devices,
			op: func(ctx context.Context, m method, i int) (sample, error) {
				t0 := time.Now()
				switch m {
				case lib:
					if err := b.lib.ctl.StatusFunc(ctx, dm.Name(libDevs[i%devices].Name), b.lib.sink); err != nil {
						return sample{}, err
					}
				case raw:
					if _, err := b.raw.status(b.raw.names[i%devices]); err != nil {
						return sample{}, err
					}
				}
				return sample{d: time.Since(t0), units: 1}, nil
			},
		}
		if _, err := b.measure(ctx, one); err != nil {
			return err
		}
	}
	if len(scans) > 1 {
		first, last := scans[0], scans[len(scans)-1]
		var s strings.Builder
		for m := lib; m <= raw; m++ {
			a, z := perOp(first.rate(m)), perOp(last.rate(m))
			growth := 0.0
			if a > 0 {
				growth = float64(z) / float64(a)
			}
			fmt.Fprintf(&s, " %s %s -> %s (x%.2f);", m, formatDur(a), formatDur(z), growth)
		}
		fmt.Fprintf(cfg.Out, "info: c-status cost per device, %d -> %d volumes:%s x1.00 is linear\n",
			cfg.Volumes[0], cfg.Volumes[len(cfg.Volumes)-1], s.String())
	}
	return nil
}

// lifecycleUdev is workload (d): the lifecycle synchronised with udev, or
// a line saying why it was skipped.
func (b *bench) lifecycleUdev(ctx context.Context) error {
	const name = "d-lifecycle-udev"
	cfg := &b.e.cfg
	if !b.e.udev.Sync {
		reason := b.e.udev.Reason
		if reason == "" {
			reason = "udev synchronisation is not possible"
		}
		fmt.Fprintf(cfg.Out, "bench: %s skipped: %s\n", name, reason)
		return nil
	}
	ctl, err := dm.Open(dm.WithUdev(dm.UdevRequired))
	if err != nil {
		return err
	}
	defer ctl.Close()
	l := newLibRunner(b.e, ctl)
	x := newExecRunner(b.e, b.exec.path, false)
	w := &workload{
		name: name,
		n:    [3]int{cfg.UdevN, cfg.UdevN, cfg.UdevN},
		warm: min(cfg.UdevN, 2),
		op: func(ctx context.Context, m method, _ int) (sample, error) {
			dev := cfg.Prefix + "d-" + m.String()
			id := b.e.newID()
			t0 := time.Now()
			var err error
			switch m {
			case lib:
				err = l.lifecycle(ctx, dev, id)
			case dmsetup:
				err = x.lifecycle(ctx, dev, id)
			case raw:
				err = b.raw.lifecycleSync(ctx, dev, id)
			}
			return sample{d: time.Since(t0), units: 1}, err
		},
	}
	_, err = b.measure(ctx, w)
	return err
}

// perOp is the cost of one op at rate ops/s.
func perOp(rate float64) time.Duration {
	if rate <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / rate)
}

func formatRate(r float64) string {
	switch {
	case r >= 100:
		return strconv.FormatFloat(r, 'f', 0, 64)
	case r >= 10:
		return strconv.FormatFloat(r, 'f', 1, 64)
	}
	return strconv.FormatFloat(r, 'f', 2, 64)
}

func formatDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
}

func formatKB(kb int64) string {
	return fmt.Sprintf("%.1fMiB", float64(kb)/1024)
}

// setupWorkers is how many goroutines make and remove the volumes of (c).
// Creating and removing a dm device mostly waits (for RCU grace periods
// and the like) rather than computes, so a few at once go several times
// faster than one, even on two CPUs.
const setupWorkers = 8

// parallel runs fn on every item with setupWorkers goroutines, on all of
// them even if some fail (unless ctx ends), and returns the items it
// succeeded on and the first error.
func parallel[T any](ctx context.Context, items []T, fn func(context.Context, T) error) ([]T, error) {
	errs := make([]error, len(items))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(setupWorkers, len(items)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = fn(ctx, items[i])
			}
		}()
	}
feed:
	for i := range items {
		select {
		case next <- i:
		case <-ctx.Done():
			for j := i; j < len(items); j++ {
				errs[j] = ctx.Err()
			}
			break feed
		}
	}
	close(next)
	wg.Wait()
	var done []T
	var first error
	for i, err := range errs {
		if err == nil {
			done = append(done, items[i])
		} else if first == nil {
			first = err
		}
	}
	return done, first
}
