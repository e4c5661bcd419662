package main

import (
	"context"
	"fmt"
	"github.com/thinp/thinp/examples/internal/size"
	"io"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/loop"
	"github.com/thinp/thinp/thin"
)

// daemon is one autoextend run.
type daemon struct {
	cfg  config
	log  *log.Logger
	ctl  *dm.Control
	pool *thin.Pool

	banner string // what is watched, logged once watching
	atMax  bool   // said that the pool reached -max, for this size

	foundLWM   thin.DataBlocks // the pool's low water mark when the daemon started
	changedLWM bool            // whether the daemon changed it (restoreLWM puts it back)
	badMode    thin.PoolMode   // the mode last said to block growth, or ModeUnknown
	needCheck  bool            // said that the pool needs thin_check

	// The dmeventd policy's state.
	data, meta usageState
	saidNoMeta bool // said that metadata would need -meta-file
	metaAtMax  bool // said that metadata is as large as it can be

	looks chan chan struct{} // lookNow's requests
}

func newDaemon(cfg config, w io.Writer) *daemon {
	return &daemon{cfg: cfg, log: log.New(w, "autoextend: ", log.LstdFlags), looks: make(chan chan struct{})}
}

func (d *daemon) close() {
	if d.ctl != nil {
		d.ctl.Close()
	}
}

// logErr logs err; -v adds the stack of library errors.
func (d *daemon) logErr(err error) {
	if d.cfg.verbose {
		d.log.Printf("error: %+v", err)
		return
	}
	d.log.Printf("error: %v", err)
}

func (d *daemon) debugf(format string, args ...any) {
	if d.cfg.verbose {
		d.log.Printf(format, args...)
	}
}

// open opens the pool and checks that its data device is a loop device
// over the data file; with -threshold it sets the pool's low water mark.
func (d *daemon) open(ctx context.Context) error {
	c := d.cfg
	ctl, err := dm.Open()
	if err != nil {
		return fmt.Errorf("open device-mapper: %w", err)
	}
	d.ctl = ctl
	pool, err := thin.OpenPool(ctx, ctl, c.pool)
	if err != nil {
		return err
	}
	d.pool = pool
	fi, err := os.Stat(c.dataFile)
	if err != nil {
		return fmt.Errorf("-data-file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("-data-file: %s is not a regular file", c.dataFile)
	}
	spec, err := pool.Spec(ctx)
	if err != nil {
		return err
	}
	ls, err := d.findLoop(spec.Data)
	if err != nil {
		return err
	}
	metaNote := ""
	if c.metaFile != "" {
		ml, err := findLoopOf(c.metaFile, spec.Metadata, c.pool, "metadata")
		if err != nil {
			return fmt.Errorf("-meta-file: %w", err)
		}
		metaNote = fmt.Sprintf(", metadata on %s (%s) in steps of %s", ml.Path, c.metaFile, size.IEC(c.metaStep))
	}
	bsBytes := spec.BlockSize.Bytes()
	total := uint64(spec.DataBlocks())
	if c.threshold.set {
		want := c.threshold.inBlocks(total, bsBytes)
		if want >= total {
			return fmt.Errorf("-threshold %s is %d blocks, not less than the pool's %d: the pool would grow without end", c.threshold.text, want, total)
		}
		if thin.DataBlocks(want) != spec.LowWaterMark {
			d.foundLWM, d.changedLWM = spec.LowWaterMark, true
			if err := pool.Reconfigure(ctx, func(s *thin.PoolSpec) { s.LowWaterMark = thin.DataBlocks(want) }); err != nil {
				return err
			}
			d.log.Printf("set pool %s's low water mark to %d blocks (was %d), the -threshold %s, so the kernel signals when it is crossed", c.pool, want, spec.LowWaterMark, c.threshold.text)
			spec.LowWaterMark = thin.DataBlocks(want)
		}
	} else if spec.LowWaterMark == 0 {
		d.log.Printf("warning: pool %s's low water mark is 0, so the kernel signals only when it is full; consider -threshold", c.pool)
	}
	if spec.Length.Bytes() > c.max {
		return &maxBelowSizeError{Pool: c.pool, Size: spec.Length.Bytes(), Max: c.max}
	}
	if spec.Length.Bytes() == c.max {
		d.log.Printf("warning: pool %s's data (%s) is already at -max %s: it will not grow", c.pool, size.IEC(spec.Length.Bytes()), size.IEC(c.max))
		d.atMax = true
	}
	d.banner = fmt.Sprintf("watching pool %s (%s): data %s in blocks of %s on %s (%s), threshold %d blocks (%s), step %s, max %s",
		c.pool, pool.Dev(), size.IEC(spec.Length.Bytes()), size.IEC(bsBytes), ls.Path, c.dataFile,
		spec.LowWaterMark, size.IEC(uint64(spec.LowWaterMark)*bsBytes), size.IEC(c.step), size.IEC(c.max))
	if c.policy == policyDmeventd {
		d.banner += fmt.Sprintf("; policy dmeventd: grow from %d%% used, again every %d%% more, warn from %d%%, status read every %s%s",
			checkMinimum, checkStep, warnThreshold, c.interval, metaNote)
	}
	return nil
}

// findLoop finds the loop device over the data file that is the pool's
// data device.
func (d *daemon) findLoop(data dm.Dev) (loop.Status, error) {
	return findLoopOf(d.cfg.dataFile, data, d.cfg.pool, "data")
}

// watch handles the pool's events until ctx is cancelled or the watch
// fails.
func (d *daemon) watch(ctx context.Context) error {
	w, err := d.pool.Watch(ctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	d.log.Print(d.banner)
	var retry *time.Timer
	var retryC, tickC <-chan time.Time
	if d.cfg.policy == policyDmeventd {
		// dmeventd reads the status on a timer too: the pool signals
		// only at its low water mark, not at every 5%.
		tick := time.NewTicker(d.cfg.interval)
		defer tick.Stop()
		tickC = tick.C
	}
	act := d.check
	if d.cfg.policy == policyDmeventd {
		act = d.policy
	}
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		var again bool
		select {
		case ev, ok := <-w.C:
			if !ok {
				if err := w.Err(); err != nil {
					return fmt.Errorf("watching pool %s: %w", d.cfg.pool, err)
				}
				d.log.Printf("stopping")
				return nil
			}
			d.report(ev)
			again = act(ctx, ev.Status, ev.Spec)
		case <-retryC:
			retryC = nil
			st, spec, err := d.state(ctx)
			if err != nil {
				if ctx.Err() != nil {
					continue // w.C closes next
				}
				d.logErr(err)
				again = true
				break
			}
			again = act(ctx, st, spec)
		case ack := <-d.looks:
			st, spec, err := d.state(ctx)
			if err == nil {
				again = act(ctx, st, spec)
			}
			close(ack)
			if err != nil && ctx.Err() == nil {
				d.logErr(err)
				again = true
			}
		case <-tickC:
			if retryC != nil {
				continue // a retry is due anyway
			}
			st, spec, err := d.state(ctx)
			if err != nil {
				if ctx.Err() != nil {
					continue
				}
				d.logErr(err)
				again = true
				break
			}
			again = act(ctx, st, spec)
		}
		if again && retryC == nil {
			if retry == nil {
				retry = time.NewTimer(d.cfg.retry)
			} else {
				retry.Reset(d.cfg.retry)
			}
			retryC = retry.C
		}
	}
}

// lookNow makes the watching daemon read the pool's status and act on it
// now, as on an event, and returns once it has (or ctx ends first).
func (d *daemon) lookNow(ctx context.Context) {
	ack := make(chan struct{})
	select {
	case d.looks <- ack:
	case <-ctx.Done():
		return
	}
	select {
	case <-ack:
	case <-ctx.Done():
	}
}

// report logs what an event says about the pool.
func (d *daemon) report(ev thin.WatchEvent) {
	st := ev.Status
	what := "event"
	if ev.Initial {
		what = "initial state"
	}
	if st.Mode.Working() {
		d.debugf("%s %d: mode %s, data %d/%d blocks used, %d free, low water mark %d", what, ev.Info.EventNr, st.Mode, st.UsedData, st.TotalData, st.FreeData(), ev.Spec.LowWaterMark)
	} else {
		d.debugf("%s %d: %s", what, ev.Info.EventNr, st.Mode)
	}
	if ev.ModeChanged {
		d.log.Printf("pool %s: mode %s -> %s", d.cfg.pool, ev.PrevMode, st.Mode)
	}
	if ev.MetadataLow && d.cfg.policy != policyDmeventd {
		d.log.Printf("warning: pool %s is low on metadata: %d of %d blocks free; autoextend grows only data (but for -policy dmeventd -meta-file)", d.cfg.pool, st.FreeMeta(), st.TotalMeta)
	}
}

// state reads the pool's status and table.
func (d *daemon) state(ctx context.Context) (thin.PoolStatus, thin.PoolSpec, error) {
	st, err := d.pool.Status(ctx)
	if err != nil {
		return st, thin.PoolSpec{}, err
	}
	spec, err := d.pool.Spec(ctx)
	return st, spec, err
}

// check grows the pool while its free data space is at or below the
// threshold, and reports whether to try again later (an extension
// failed).
func (d *daemon) check(ctx context.Context, st thin.PoolStatus, spec thin.PoolSpec) (retry bool) {
	for {
		if !d.growable(st) {
			return false
		}
		thr := d.thresholdBlocks(spec)
		if uint64(st.FreeData()) > thr {
			return false
		}
		grew, err := d.extend(ctx, st, spec, thr)
		switch {
		case err != nil && ctx.Err() != nil:
			return false
		case err != nil:
			d.logErr(err)
			d.log.Printf("retrying in %s", d.cfg.retry)
			return true
		case !grew:
			return false
		}
		// Still low if writes are faster than steps: look again now
		// rather than wait for the event of our resume.
		if st, spec, err = d.state(ctx); err != nil {
			if ctx.Err() == nil {
				d.logErr(err)
			}
			return ctx.Err() == nil
		}
	}
}

// growable says whether the kernel would grow the pool in its mode, and
// logs once why not.
func (d *daemon) growable(st thin.PoolStatus) bool {
	switch {
	case st.NeedsCheck:
		if !d.needCheck {
			d.log.Printf("pool %s needs thin_check: the kernel will not grow it; waiting", d.cfg.pool)
			d.needCheck = true
		}
		return false
	case st.Mode == thin.ModeReadOnly, !st.Mode.Working():
		if d.badMode != st.Mode {
			d.log.Printf("pool %s is %s: not growing it; waiting", d.cfg.pool, st.Mode)
			d.badMode = st.Mode
		}
		return false
	}
	d.badMode, d.needCheck = thin.ModeUnknown, false
	return true
}

// thresholdBlocks is the number of free blocks at or below which the pool
// grows: -threshold for the pool's current size, or its low water mark.
func (d *daemon) thresholdBlocks(spec thin.PoolSpec) uint64 {
	if !d.cfg.threshold.set {
		return uint64(spec.LowWaterMark)
	}
	return d.lowWaterFor(uint64(spec.DataBlocks()), spec.BlockSize.Bytes())
}

// lowWaterFor is -threshold for a pool of total blocks, kept below total
// as the kernel requires.
func (d *daemon) lowWaterFor(total, bsBytes uint64) uint64 {
	return min(d.cfg.threshold.inBlocks(total, bsBytes), max(total, 1)-1)
}

// extend grows the data file by one step (up to -max), refreshes the loop
// device's size and reloads the pool with the larger size. It reports
// false, with no error, when the pool is at -max.
//
// Once started, an extension runs to its end even if ctx is cancelled (a
// SIGTERM stops the daemon after it), bounded by extendTimeout: a
// cancellation while the library waits for udev after the pool's resume
// would make dm.Control.Reload undo a resize the kernel had accepted.
func (d *daemon) extend(ctx context.Context, st thin.PoolStatus, spec thin.PoolSpec, thr uint64) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), extendTimeout)
	defer cancel()
	t0 := time.Now()
	c := d.cfg
	bs := spec.BlockSize
	bsBytes := bs.Bytes()
	cur := spec.DataBlocks()
	step := thin.DataBlocks((c.step + bsBytes - 1) / bsBytes)
	next := min(cur+step, thin.DataBlocks(c.max/bsBytes))
	if next <= cur {
		if !d.atMax {
			d.log.Printf("pool %s is at -max %s with %d blocks free (threshold %d): not growing it further", c.pool, size.IEC(c.max), st.FreeData(), thr)
			d.atMax = true
		}
		return false, nil
	}
	length := next.Sectors(bs)

	// 1. The file, sparsely.
	fi, err := os.Stat(c.dataFile)
	if err != nil {
		return false, err
	}
	if uint64(fi.Size()) < length.Bytes() {
		if err := loop.Grow(c.dataFile, int64(length.Bytes())); err != nil {
			return false, err
		}
	}
	// 2. The loop device's size. It is opened for this only: an open
	// descriptor would keep an autoclear device attached after the pool
	// is gone.
	ls, err := d.findLoop(spec.Data)
	if err != nil {
		return false, err
	}
	dev, err := loop.Open(ls.Number)
	if err != nil {
		return false, err
	}
	err = dev.SetCapacity()
	dev.Close()
	if err != nil {
		return false, err
	}
	// 3. The pool: a reload with the new length (and low water mark),
	// rolled back by the library if the kernel refuses it.
	lwm := spec.LowWaterMark
	if c.threshold.set {
		lwm = thin.DataBlocks(d.lowWaterFor(uint64(next), bsBytes))
	}
	if lwm == spec.LowWaterMark {
		err = d.pool.Resize(ctx, length)
	} else {
		// One reload for both; only these two fields change.
		err = d.pool.Reconfigure(ctx, func(s *thin.PoolSpec) { s.Length, s.LowWaterMark = length, lwm })
	}
	if err != nil {
		d.unsuspend(ctx, length, lwm)
		return false, err
	}
	d.atMax = false
	d.log.Printf("extended pool %s data from %s to %s (+%s, %d -> %d blocks): %d blocks were free (%.1f%% used), threshold %d; took %.2fs",
		c.pool, size.IEC(spec.Length.Bytes()), size.IEC(length.Bytes()), size.IEC(length.Bytes()-spec.Length.Bytes()), cur, next,
		st.FreeData(), st.DataPercent(), thr, time.Since(t0).Seconds())
	if free, ok := fsFree(filepath.Dir(c.dataFile)); ok {
		offered := uint64(next-min(next, st.UsedData)) * bsBytes
		if free < offered {
			d.log.Printf("warning: the file system holding %s has %s free, less than the %s the pool now offers", c.dataFile, size.IEC(free), size.IEC(offered))
		}
	}
	return true, nil
}

// extendTimeout bounds one extension: the udev waits of the reload (30 s
// at most each) and the rest.
const extendTimeout = 2 * time.Minute

// unsuspend makes sure a failed reload did not leave the pool suspended.
// dm.Control.Reload restores the previous table when the resume fails; but
// when the kernel did accept the larger table and only the wait for udev
// failed, the previous, smaller table is then refused ("pool target too
// small") and the pool stays suspended with it, its I/O blocked. Reloading
// the larger table, which the kernel accepts, resumes it.
func (d *daemon) unsuspend(ctx context.Context, length dm.Sectors, lwm thin.DataBlocks) {
	info, err := d.ctl.Info(ctx, dm.Name(d.cfg.pool))
	if err != nil || !info.Suspended {
		return
	}
	d.log.Printf("warning: pool %s was left suspended by the failed reload; reloading it with %s", d.cfg.pool, size.IEC(length.Bytes()))
	live, err := d.pool.Spec(ctx)
	if err == nil {
		live.Length, live.LowWaterMark = length, lwm
		err = d.ctl.Reload(ctx, dm.Name(d.cfg.pool), live.Table())
	}
	if info, ierr := d.ctl.Info(ctx, dm.Name(d.cfg.pool)); ierr == nil && info.Suspended {
		_, err = d.ctl.Resume(ctx, dm.Name(d.cfg.pool))
	}
	if err != nil {
		d.logErr(fmt.Errorf("resuming pool %s: %w", d.cfg.pool, err))
	}
}

// maxBelowSizeError is a -max smaller than the pool's data space already
// is: the daemon could never honour it.
type maxBelowSizeError struct {
	Pool      string
	Size, Max uint64 // bytes
}

func (e *maxBelowSizeError) Error() string {
	return fmt.Sprintf("-max %s is below pool %s's current data size %s", size.IEC(e.Max), e.Pool, size.IEC(e.Size))
}

// restoreLWM puts the pool's low water mark back as the daemon found it, if
// it changed it, so that stopping the daemon leaves the pool's table as it
// was (but for the growth).
func (d *daemon) restoreLWM(ctx context.Context) error {
	if !d.changedLWM || d.pool == nil {
		return nil
	}
	err := d.pool.Reconfigure(ctx, func(s *thin.PoolSpec) { s.LowWaterMark = d.foundLWM })
	if err == nil {
		d.log.Printf("restored pool %s's low water mark to %d blocks", d.cfg.pool, d.foundLWM)
		d.changedLWM = false
	}
	return err
}
