package main

import (
	"context"
	"fmt"
	"math"
	"os"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/examples/internal/size"
	"github.com/thinp/thinp/loop"
	"github.com/thinp/thinp/thin"
)

// Policies (-policy).
const (
	// policyLWM grows the pool whenever its free data space is at or below
	// the threshold (the pool's low water mark by default).
	policyLWM = "lwm"
	// policyDmeventd is what lvm2's dmeventd thin plugin does for a pool
	// it monitors: nothing below 50% used; from 50%, one extension each
	// time usage reaches another 5% step (50, 55, 60, ...); a warning at
	// 80, 85, 90 and 95% used; for metadata as for data. The pool's status
	// is read every -interval (dmeventd: 10 s) as well as on its events.
	policyDmeventd = "dmeventd"
)

// dmeventd's thresholds, in percent of used space.
const (
	checkMinimum  = 50 // no action below this
	checkStep     = 5  // act again every this much more
	warnThreshold = 80 // warn from here, every checkStep, up to warnLast
	warnLast      = 95
)

// nextCheck is the usage, in percent, at which the dmeventd policy acts
// next, once usage is pct: the next step above it, and never below 50%.
func nextCheck(pct float64) float64 {
	return max(checkMinimum, (math.Floor(pct/checkStep)+1)*checkStep)
}

// warnStep is the warning step usage pct has reached (80, 85, 90 or 95),
// or 0 below 80%.
func warnStep(pct float64) int {
	if pct < warnThreshold {
		return 0
	}
	return min(warnLast, int(math.Floor(pct/checkStep))*checkStep)
}

// usageState is the dmeventd policy's memory of one kind of space (data
// or metadata): where it acts next and the last warning given.
type usageState struct {
	next   float64 // act at or above this percentage; 0 before the first look
	warned int     // the last warning step logged; 0 for none
}

// observe updates s for usage pct and reports whether to act now and
// which warning step to log (0: none).
func (s *usageState) observe(pct float64) (act bool, warn int) {
	if s.next == 0 {
		s.next = checkMinimum
	}
	if pct < s.next-checkStep {
		// Usage fell (an extension, discards): look from there.
		s.next = nextCheck(pct)
	}
	act = pct >= s.next
	if w := warnStep(pct); w == 0 {
		s.warned = 0
	} else if w > s.warned {
		s.warned, warn = w, w
	}
	return act, warn
}

// acted records that the policy acted, and usage is now pct.
func (s *usageState) acted(pct float64) { s.next = nextCheck(pct) }

// policy applies the dmeventd policy to the pool's state, and reports
// whether to try again later (an extension failed).
func (d *daemon) policy(ctx context.Context, st thin.PoolStatus, spec thin.PoolSpec) (retry bool) {
	if !d.growable(st) {
		return false
	}
	c := d.cfg
	act, warn := d.data.observe(st.DataPercent())
	if warn != 0 {
		d.log.Printf("warning: pool %s data is now %.2f%% full (%d of %d blocks used)", c.pool, st.DataPercent(), st.UsedData, st.TotalData)
	}
	if act {
		grew, err := d.extend(ctx, st, spec, d.thresholdBlocks(spec))
		switch {
		case err != nil && ctx.Err() != nil:
			return false
		case err != nil:
			d.logErr(err)
			d.log.Printf("retrying in %s", c.retry)
			return true
		}
		pct := st.DataPercent()
		if grew {
			if st, spec, err = d.state(ctx); err != nil {
				if ctx.Err() == nil {
					d.logErr(err)
				}
				return ctx.Err() == nil
			}
			pct = st.DataPercent()
		}
		d.data.acted(pct)
	}
	act, warn = d.meta.observe(st.MetaPercent())
	if warn != 0 {
		d.log.Printf("warning: pool %s metadata is now %.2f%% full (%d of %d blocks used)", c.pool, st.MetaPercent(), st.UsedMeta, st.TotalMeta)
	}
	if act {
		pct := st.MetaPercent()
		total, err := d.growMeta(ctx, st, spec)
		switch {
		case err != nil && ctx.Err() != nil:
			return false
		case err != nil:
			d.logErr(err)
			d.log.Printf("retrying in %s", c.retry)
			return true
		case total > st.TotalMeta:
			pct = float64(st.UsedMeta) * 100 / float64(total)
		}
		d.meta.acted(pct)
	}
	return false
}

// growMeta grows the metadata file by -meta-step (up to the most a pool
// can use), refreshes its loop device's size and makes the pool use it,
// returning the new total in metadata blocks. Without -meta-file it says
// once that it cannot, and returns the total as it was.
func (d *daemon) growMeta(ctx context.Context, st thin.PoolStatus, spec thin.PoolSpec) (thin.MetaBlocks, error) {
	c := d.cfg
	if c.metaFile == "" {
		if !d.saidNoMeta {
			d.log.Printf("pool %s metadata is %.2f%% full, but without -meta-file autoextend does not grow it", c.pool, st.MetaPercent())
			d.saidNoMeta = true
		}
		return st.TotalMeta, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), extendTimeout)
	defer cancel()
	ls, err := findLoopOf(c.metaFile, spec.Metadata, c.pool, "metadata")
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(c.metaFile)
	if err != nil {
		return 0, err
	}
	limit := thin.MaxMetadataSize.Bytes()
	cur := uint64(fi.Size())
	next := min(cur+c.metaStep, limit) &^ (4096 - 1)
	if next <= cur {
		if !d.metaAtMax {
			d.log.Printf("pool %s metadata (%s) is as large as a pool can use: not growing it", c.pool, size.IEC(cur))
			d.metaAtMax = true
		}
		return st.TotalMeta, nil
	}
	if err := loop.Grow(c.metaFile, int64(next)); err != nil {
		return 0, err
	}
	dev, err := loop.Open(ls.Number)
	if err != nil {
		return 0, err
	}
	err = dev.SetCapacity()
	dev.Close()
	if err != nil {
		return 0, err
	}
	total, err := d.pool.GrowMetadata(ctx)
	if err != nil {
		return 0, err
	}
	d.log.Printf("extended pool %s metadata from %s to %s (%d -> %d blocks): %.1f%% was used",
		c.pool, size.IEC(cur), size.IEC(next), st.TotalMeta, total, st.MetaPercent())
	return total, nil
}

// findLoopOf finds the loop device over file that is dev, the pool's
// device of the given role.
func findLoopOf(file string, dev dm.Dev, pool, role string) (loop.Status, error) {
	sts, err := loop.Find(file)
	if err != nil {
		return loop.Status{}, err
	}
	var others []string
	for _, s := range sts {
		if s.Dev == dev {
			return s, nil
		}
		others = append(others, s.Path+" ("+s.Dev.String()+")")
	}
	if len(others) == 0 {
		return loop.Status{}, fmt.Errorf("no loop device is backed by %s; pool %s's %s device is %s", file, pool, role, dev)
	}
	return loop.Status{}, fmt.Errorf("pool %s's %s device %s is not one of the loop devices over %s: %v", pool, role, dev, file, others)
}
