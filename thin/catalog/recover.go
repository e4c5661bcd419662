package catalog

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/thin"
)

// batchOf is the pool transaction of a pool operation.
func batchOf(o *op) func(*thin.Tx) error {
	return func(tx *thin.Tx) error {
		switch o.Type {
		case opGroup:
			for _, s := range o.Ops {
				batchOf(s)(tx)
			}
		case opCreate:
			tx.CreateThin(o.ID)
		case opSnapshot:
			tx.CreateSnapshot(o.ID, o.Vol.ParentID)
		default:
			tx.Delete(o.ID)
		}
		return nil
	}
}

// settle decides the open operation r from the kernel's state: finished
// if it can be finished, undone if nothing of it took effect. What cannot
// be decided (the pool's transaction id is neither before nor after)
// becomes drift, and the operation stays open for Repair.
func (c *Catalog) settle(ctx context.Context, r *record) error {
	o := r.Op
	if o.Device != "" {
		// Killed between an ioctl and its /dev/mapper node change, the
		// process left the node missing or stale (when no udev runs).
		defer c.ctl.SyncNode(ctx, o.Device)
	}
	switch o.Type {
	case opCreate, opSnapshot, opDelete, opPurge, opGroup:
		c.waitPool()
		tid, err := c.pool.TransactionID(ctx)
		if err != nil {
			return err
		}
		switch tid {
		case o.From + 1:
			return c.end(r, true)
		case o.From:
			// Finish it: a message already applied counts as done. A
			// message that fails changes nothing, so the pool is as before.
			if o.Type == opDelete {
				if err := c.removeDevice(ctx, o.Device); err != nil {
					if eerr := c.end(r, false); eerr != nil {
						return eerr
					}
					return c.syncDevice(ctx, o.Key)
				}
			}
			res, err := c.pool.Transaction(ctx, o.From, batchOf(o), thin.Replay())
			if err == nil {
				return c.end(r, true)
			}
			if res.Sent+res.Skipped == 0 && !errors.Is(err, thin.ErrTransactionMismatch) {
				if eerr := c.end(r, false); eerr != nil {
					return eerr
				}
				return c.syncDevice(ctx, o.Key)
			}
			c.drift = fmt.Errorf("%w: interrupted %s: %w", ErrDrift, o, err)
			return c.drift
		default:
			c.drift = fmt.Errorf("%w: interrupted %s from transaction %d, the pool is at %d", ErrDrift, o, o.From, tid)
			return c.drift
		}
	case opActivate:
		info, err := c.ctl.Info(ctx, dm.Name(o.Device))
		if errors.Is(err, dm.ErrNotFound) {
			return c.end(r, false)
		}
		if err != nil {
			return err
		}
		if !info.LivePresent {
			// Created, never loaded: remove it.
			if err := c.ctl.Remove(ctx, dm.Name(o.Device)); err != nil && !errors.Is(err, dm.ErrNotFound) {
				return err
			}
			return c.end(r, false)
		}
		if !c.maps(ctx, o.Device, o.ID) {
			return c.end(r, false) // someone else's device of that name
		}
		if info.Suspended {
			if _, err := c.ctl.Resume(ctx, dm.Name(o.Device)); err != nil {
				return err
			}
		}
		return c.end(r, true)
	case opDeactivate, opDefer:
		info, err := c.ctl.Info(ctx, dm.Name(o.Device))
		if errors.Is(err, dm.ErrNotFound) || err == nil && o.Type == opDefer && info.DeferredRemove {
			return c.end(r, true)
		}
		if err != nil {
			return err
		}
		var flags []dm.Flag
		if o.Type == opDefer {
			flags = append(flags, dm.Deferred)
		}
		if err := c.ctl.Remove(ctx, dm.Name(o.Device), flags...); err != nil && !errors.Is(err, dm.ErrNotFound) {
			return c.end(r, false)
		}
		return c.end(r, true)
	default:
		// Changes of the catalog alone are written whole with their
		// outcome; an op record without one was written whole too.
		return c.end(r, true)
	}
}

// maps says whether dm device name's live table is one thin target mapping
// thin id of the catalog's pool.
func (c *Catalog) maps(ctx context.Context, name string, id thin.DeviceID) bool {
	t, err := c.ctl.Table(ctx, dm.Name(name))
	if err != nil || len(t) != 1 || t[0].Type != thin.ThinTargetType {
		return false
	}
	s, err := thin.ParseThinSpec(t[0].Params)
	return err == nil && s.Pool == c.pool.Dev() && s.ID == id
}

// recover runs at Open: settle an interrupted operation, check the
// transaction id, resume devices left suspended, record devices that are
// gone, retry deferred deletions.
func (c *Catalog) recover(ctx context.Context) error {
	// Several activations and deactivations may have been in flight, and
	// one change to the pool; each is settled on its own.
	for _, r := range c.unsettled() {
		if err := c.settle(ctx, r); err != nil && !errors.Is(err, ErrDrift) {
			return err
		}
	}
	if len(c.open) > 0 {
		return nil // drift: Repair decides the rest
	}
	if c.drift == nil {
		tid, err := c.pool.TransactionID(ctx)
		if err != nil {
			return err
		}
		if tid != c.tid {
			c.drift = fmt.Errorf("%w: the catalog is at transaction %d, the pool at %d", ErrDrift, c.tid, tid)
		}
	}
	for _, k := range c.sortedKeys() {
		v := c.vols[k]
		if v.State != Active {
			continue
		}
		info, err := c.ctl.Info(ctx, dm.Name(v.Device))
		switch {
		case errors.Is(err, dm.ErrNotFound):
			if err := c.note(&op{Type: opDeactivate, Key: k, ID: v.ID, Device: v.Device}); err != nil {
				return err
			}
			c.ctl.SyncNode(ctx, v.Device)
		case err != nil:
			return err
		case info.Suspended:
			// A crash during a snapshot of this origin.
			if _, err := c.ctl.Resume(ctx, dm.Name(v.Device)); err != nil {
				return err
			}
		}
	}
	if c.drift == nil && len(c.deferred) > 0 {
		if _, err := c.retryDeferred(ctx); err != nil && c.failed != nil {
			return err
		}
	}
	return nil
}

// Report is what Check found, or what Repair found and did.
type Report struct {
	// CatalogTID and PoolTID are the transaction ids each records.
	CatalogTID, PoolTID uint64
	// Interrupted describes the operations a crash interrupted that Open
	// could not settle ("; " between two); empty if none.
	Interrupted string
	// Orphans are thin ids in the pool the catalog does not know (nor has
	// deferred).
	Orphans []thin.DeviceID
	// Missing are keys whose thin id the pool lacks.
	Missing []string
	// Unknown are dm devices mapping a thin id of the pool that the catalog
	// does not record as a volume's device.
	Unknown []string
	// Gone are keys recorded active whose device is gone.
	Gone []string
	// Suspended are dm devices mapping thin ids of the pool that are
	// suspended.
	Suspended []string
	// StaleDeferred are deferred deletions whose thin id is already gone.
	StaleDeferred []thin.DeviceID
	// Actions says what Repair did (or, dry, would do), one line each.
	Actions []string
}

// Clean says whether the catalog, the pool's metadata and its active
// devices agree.
func (r *Report) Clean() bool {
	return r.CatalogTID == r.PoolTID && r.Interrupted == "" && len(r.Orphans) == 0 && len(r.Missing) == 0 &&
		len(r.Unknown) == 0 && len(r.Gone) == 0 && len(r.Suspended) == 0 && len(r.StaleDeferred) == 0
}

// RepairOptions configures Repair.
type RepairOptions struct {
	// DryRun reports what would be done and changes nothing.
	DryRun bool
	// Adopt takes orphan thin ids into the catalog, under the key
	// "thin-<id>", instead of deleting them: how a pool made before its
	// catalog is taken over. Their size is their active device's length,
	// else AdoptSize (0: unknown until Resize).
	Adopt     bool
	AdoptSize dm.Sectors
}

type poolView struct {
	tid    uint64
	ids    map[thin.DeviceID]bool
	active []*thin.Volume
	infos  map[string]dm.Info
}

func (c *Catalog) view(ctx context.Context) (*poolView, error) {
	us, err := c.meta.details(ctx)
	if err != nil {
		return nil, err
	}
	pv := &poolView{ids: make(map[thin.DeviceID]bool, len(us)), infos: map[string]dm.Info{}}
	for _, u := range us {
		pv.ids[u.ID] = true
	}
	if pv.active, err = c.pool.Volumes(ctx); err != nil {
		return nil, err
	}
	for _, v := range pv.active {
		info, err := v.Info(ctx)
		if err != nil && !errors.Is(err, dm.ErrNotFound) {
			return nil, err
		}
		if err == nil {
			pv.infos[v.Name()] = info
		}
	}
	if pv.tid, err = c.pool.TransactionID(ctx); err != nil {
		return nil, err
	}
	return pv, nil
}

func (c *Catalog) report(pv *poolView) *Report {
	r := &Report{CatalogTID: c.tid, PoolTID: pv.tid}
	var interrupted []string
	for _, rec := range c.unsettled() {
		o := rec.Op
		interrupted = append(interrupted, fmt.Sprintf("%s from transaction %d", o, o.From))
	}
	r.Interrupted = strings.Join(interrupted, "; ")
	for id := range pv.ids {
		if _, ok := c.byID[id]; !ok && c.deferred[id] == nil {
			r.Orphans = append(r.Orphans, id)
		}
	}
	sort.Slice(r.Orphans, func(i, j int) bool { return r.Orphans[i] < r.Orphans[j] })
	devs := map[string]bool{}
	for _, v := range pv.active {
		devs[v.Name()] = true
		if info, ok := pv.infos[v.Name()]; ok && info.Suspended {
			r.Suspended = append(r.Suspended, v.Name())
		}
		k, ok := c.byID[v.ID()]
		if !ok || c.vols[k].State != Active || c.vols[k].Device != v.Name() {
			if d := c.deferred[v.ID()]; d == nil || d.Device != v.Name() {
				r.Unknown = append(r.Unknown, v.Name())
			}
		}
	}
	for _, k := range c.sortedKeys() {
		v := c.vols[k]
		if !pv.ids[v.ID] {
			r.Missing = append(r.Missing, k)
		}
		if v.State == Active && !devs[v.Device] {
			r.Gone = append(r.Gone, k)
		}
	}
	for _, d := range c.sortedDeferred() {
		if !pv.ids[d.ID] {
			r.StaleDeferred = append(r.StaleDeferred, d.ID)
		}
	}
	return r
}

// Check compares the catalog with the pool's metadata (read as Usage reads
// it) and with the pool's active devices, and reports every difference.
// It changes nothing.
func (c *Catalog) Check(ctx context.Context) (*Report, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waitQuiet()
	if c.closed {
		return nil, &Error{Op: "check", Err: ErrClosed}
	}
	pv, err := c.view(ctx)
	if err != nil {
		return nil, &Error{Op: "check", Err: err}
	}
	return c.report(pv), nil
}

// Repair makes the catalog and the pool agree, the pool's metadata being
// the referee of which thin ids exist, and returns what it found and did
// (Report.Actions):
//
//   - suspended devices of the pool are resumed;
//   - an interrupted operation is decided by whether its thin id exists:
//     a create or snapshot whose id exists is done, else undone; a delete
//     whose id is gone is done, else undone; an activation by whether its
//     device exists;
//   - an unknown device mapping a volume's id becomes that volume's device
//     if the volume has none; other unknown devices are removed (kept,
//     with their id adopted, under Adopt);
//   - volumes recorded active whose device is gone become inactive;
//   - volumes whose thin id is gone are dropped, and so are deferred
//     deletions whose id is gone;
//   - orphan thin ids are deleted from the pool (adopted under Adopt);
//   - the catalog takes the pool's transaction id, and changes are
//     allowed again.
//
// With DryRun it only reports. Repair is for after a drift or a damage
// (a restored metadata backup, another tool on the pool); Open settles
// ordinary crashes by itself.
func (c *Catalog) Repair(ctx context.Context, ro RepairOptions) (*Report, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waitQuiet()
	fail := func(r *Report, err error) (*Report, error) { return r, &Error{Op: "repair", Err: err} }
	if c.closed {
		return fail(nil, ErrClosed)
	}
	if c.failed != nil {
		return fail(nil, c.failed)
	}
	pv, err := c.view(ctx)
	if err != nil {
		return fail(nil, err)
	}
	r := c.report(pv)
	act := func(format string, args ...any) { r.Actions = append(r.Actions, fmt.Sprintf(format, args...)) }
	dry := ro.DryRun

	for _, name := range r.Suspended {
		act("resume device %s", name)
		if !dry {
			if _, err := c.ctl.Resume(ctx, dm.Name(name)); err != nil && !errors.Is(err, dm.ErrNotFound) {
				return fail(r, err)
			}
		}
	}
	for _, rec := range c.unsettled() {
		o := rec.Op
		var done bool
		switch o.Type {
		case opCreate, opSnapshot:
			done = pv.ids[o.ID]
		case opDelete, opPurge:
			done = !pv.ids[o.ID]
		case opGroup:
			// Its messages went in in order: the ids the pool has are
			// the first ones, and the group is cut down to them.
			in := 0
			for in < len(o.Ops) && pv.ids[o.Ops[in].ID] {
				in++
			}
			done = in > 0
			if done && in < len(o.Ops) {
				act("cut interrupted %s down to its first %d", o, in)
				if !dry {
					if err := c.trim(rec, in); err != nil {
						return fail(r, err)
					}
				}
			}
		}
		switch {
		case isPoolOp(o.Type):
			act("settle interrupted %s: %s", o, map[bool]string{true: "done", false: "undone"}[done])
			if !dry {
				if err := c.end(rec, done); err != nil {
					return fail(r, err)
				}
			}
		default:
			act("settle interrupted %s from the kernel's state", o)
			if !dry {
				if err := c.settle(ctx, rec); err != nil {
					return fail(r, err)
				}
			}
		}
	}
	byName := map[string]*thin.Volume{}
	for _, v := range pv.active {
		byName[v.Name()] = v
	}
	adoptDev := map[thin.DeviceID]*thin.Volume{}
	for _, name := range r.Unknown {
		v := byName[name]
		if k, ok := c.byID[v.ID()]; ok && c.vols[k].State != Active {
			act("record device %s as the device of %q", name, k)
			if !dry {
				if err := c.note(&op{Type: opActivate, Key: k, ID: v.ID(), Device: name}); err != nil {
					return fail(r, err)
				}
			}
			continue
		}
		if _, ok := c.byID[v.ID()]; !ok && ro.Adopt && adoptDev[v.ID()] == nil {
			adoptDev[v.ID()] = v
			continue
		}
		act("remove device %s (thin id %d)", name, v.ID())
		if !dry {
			if err := c.ctl.Remove(ctx, dm.Name(name)); err != nil && !errors.Is(err, dm.ErrNotFound) {
				return fail(r, err)
			}
		}
	}
	for _, k := range r.Gone {
		act("record %q as inactive: its device is gone", k)
		if !dry {
			if v := c.vols[k]; v != nil && v.State == Active {
				if err := c.note(&op{Type: opDeactivate, Key: k, ID: v.ID, Device: v.Device}); err != nil {
					return fail(r, err)
				}
			}
		}
	}
	for _, k := range r.Missing {
		act("drop %q: the pool has no thin id %d", k, c.vols[k].ID)
		if !dry {
			if v := c.vols[k]; v != nil {
				if v.State == Active {
					if err := c.ctl.Remove(ctx, dm.Name(v.Device)); err != nil && !errors.Is(err, dm.ErrNotFound) {
						return fail(r, err)
					}
				}
				if err := c.note(&op{Type: opForget, Key: k, ID: v.ID}); err != nil {
					return fail(r, err)
				}
			}
		}
	}
	for _, id := range r.StaleDeferred {
		act("drop the deferred deletion of thin id %d: it is gone", id)
		if !dry {
			if err := c.note(&op{Type: opForget, ID: id}); err != nil {
				return fail(r, err)
			}
		}
	}
	for _, id := range r.Orphans {
		if _, ok := c.byID[id]; ok {
			continue // settled into the catalog above
		}
		if ro.Adopt {
			key := "thin-" + strconv.FormatUint(uint64(id), 10)
			act("adopt thin id %d as %q", id, key)
			if dry {
				continue
			}
			if _, taken := c.vols[key]; taken {
				return fail(r, fmt.Errorf("cannot adopt thin id %d: key %q: %w", id, key, ErrExists))
			}
			v := &Volume{Key: key, ID: id, Size: ro.AdoptSize, Created: c.cfg.now().UTC()}
			if d := adoptDev[id]; d != nil {
				v.Size, v.State, v.Device = d.Size(), Active, d.Name()
			}
			if err := c.note(&op{Type: opAdopt, Key: key, ID: id, Vol: v}); err != nil {
				return fail(r, err)
			}
			continue
		}
		act("delete orphan thin id %d from the pool", id)
		if !dry {
			if err := c.pool.Delete(ctx, id, thin.IgnoreMissing()); err != nil {
				return fail(r, err)
			}
		}
	}
	if c.tid != pv.tid || c.drift != nil {
		act("take the pool's transaction id %d (the catalog had %d)", pv.tid, c.tid)
		if !dry {
			if err := c.note(&op{Type: opSetTID, From: pv.tid}); err != nil {
				return fail(r, err)
			}
		}
	}
	if !dry && len(c.open) == 0 {
		c.drift = nil
		clear(c.foreign)
	}
	return r, nil
}
