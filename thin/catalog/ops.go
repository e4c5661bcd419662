package catalog

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/thin"
)

// op is one change to the catalog, as the journal records it.
type op struct {
	Type   string            `json:"type"`
	Key    string            `json:"key,omitempty"`
	NewKey string            `json:"new_key,omitempty"`
	ID     thin.DeviceID     `json:"id"`
	Vol    *Volume           `json:"vol,omitempty"`
	Device string            `json:"device,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// SetLabels: a rename also replaces the labels with Labels.
	SetLabels bool `json:"set_labels,omitempty"`
	// From is, for an operation on the pool, its transaction id before;
	// for settid, the id the catalog takes.
	From uint64    `json:"from"`
	Time time.Time `json:"time,omitempty"`
	// Ops are a group's creations and snapshots, in the order sent; each
	// has the group's From.
	Ops []*op `json:"ops,omitempty"`
}

// The operation types. Those in poolOps change the pool and advance its
// transaction id from From to From+1.
const (
	opCreate     = "create"
	opSnapshot   = "snapshot"
	opDelete     = "delete"
	opPurge      = "purge" // a deferred deletion's thin id deleted
	opActivate   = "activate"
	opDeactivate = "deactivate"
	opDefer      = "defer" // a busy volume's device put on deferred remove, its key freed
	opTried      = "tried"
	opRename     = "rename"
	opLabels     = "labels"
	opResize     = "resize"
	opAdopt      = "adopt"  // Repair: a thin id of the pool taken into the catalog
	opForget     = "forget" // Repair: an entry whose thin id the pool lacks dropped
	opSetTID     = "settid" // Repair: the catalog takes the pool's transaction id
	opGroup      = "group"  // creations and snapshots sent as one transaction
)

func isPoolOp(t string) bool {
	return t == opCreate || t == opSnapshot || t == opDelete || t == opPurge || t == opGroup
}

// String names o for messages: its type, key and thin id, or those of each
// operation of a group.
func (o *op) String() string {
	if o.Type != opGroup {
		return fmt.Sprintf("%s of %q (thin id %d)", o.Type, o.Key, o.ID)
	}
	parts := make([]string, len(o.Ops))
	for i, s := range o.Ops {
		parts[i] = s.String()
	}
	return "group of " + strings.Join(parts, ", ")
}

// apply changes the in-memory state by o, which took effect.
func (c *Catalog) apply(o *op) {
	switch o.Type {
	case opGroup:
		for _, s := range o.Ops {
			c.apply(s)
		}
	case opCreate, opSnapshot, opAdopt:
		v := o.Vol.clone()
		c.vols[v.Key] = &v
		c.byID[v.ID] = v.Key
		c.link(&v)
		delete(c.foreign, v.ID)
		if o.Type != opAdopt {
			c.tid = o.From + 1
			c.nextID = uint32(v.ID) + 1
			if c.nextID > uint32(thin.MaxDeviceID) {
				c.nextID = 1
			}
		}
	case opActivate:
		if v := c.vols[o.Key]; v != nil {
			v.State, v.Device = Active, o.Device
		}
	case opDeactivate:
		if v := c.vols[o.Key]; v != nil {
			v.State, v.Device = Inactive, ""
		}
	case opDelete:
		c.drop(o.Key)
		c.tid = o.From + 1
	case opDefer:
		c.drop(o.Key)
		c.deferred[o.ID] = &Deferred{ID: o.ID, Key: o.Key, Device: o.Device, Since: o.Time}
	case opPurge:
		delete(c.deferred, o.ID)
		c.tid = o.From + 1
	case opTried:
		if d := c.deferred[o.ID]; d != nil {
			d.Tries++
		}
	case opRename:
		if v := c.vols[o.Key]; v != nil {
			delete(c.vols, o.Key)
			v.Key = o.NewKey
			c.vols[o.NewKey] = v
			c.byID[v.ID] = o.NewKey
			if o.SetLabels {
				v.Labels = cloneLabels(o.Labels)
			}
		}
	case opLabels:
		if v := c.vols[o.Key]; v != nil {
			v.Labels = cloneLabels(o.Labels)
		}
	case opResize:
		if v := c.vols[o.Key]; v != nil {
			v.Size = o.Vol.Size
		}
	case opForget:
		if o.Key != "" {
			c.drop(o.Key)
		} else {
			delete(c.deferred, o.ID)
		}
	case opSetTID:
		c.tid = o.From
	}
}

func (c *Catalog) drop(key string) {
	if v := c.vols[key]; v != nil {
		delete(c.byID, v.ID)
		delete(c.vols, key)
		// Its snapshots are no one's children now, and it no longer one.
		delete(c.children, v.ID)
		if m := c.children[v.ParentID]; m != nil {
			delete(m, v)
			if len(m) == 0 {
				delete(c.children, v.ParentID)
			}
		}
	}
}

// usable says whether the catalog may change: not closed, its journal
// writable, no interrupted operation left (it settles them first), no
// drift.
func (c *Catalog) usable(ctx context.Context) error {
	if c.closed {
		return ErrClosed
	}
	if c.failed != nil {
		return c.failed
	}
	for _, r := range c.unsettled() {
		if err := c.settle(ctx, r); err != nil {
			return err
		}
	}
	return c.drift
}

// unsettled returns the open operations that no call is running, oldest
// first: those a crash left, or whose settling failed (drift). The caller
// holds c.mu.
func (c *Catalog) unsettled() []*record {
	var rs []*record
	for _, r := range c.openRecords() {
		if !c.running[r.Seq] {
			rs = append(rs, r)
		}
	}
	return rs
}

// openRecords lists the open operations by sequence number.
func (c *Catalog) openRecords() []*record {
	rs := make([]*record, 0, len(c.open))
	for _, r := range c.open {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Seq < rs[j].Seq })
	return rs
}

// waitIdle waits, with c.mu held, until no call on any of keys runs
// without c.mu (an activation, a deactivation, a creation).
func (c *Catalog) waitIdle(keys ...string) {
	for slices.ContainsFunc(keys, func(k string) bool { return c.busy[k] }) {
		c.idle.Wait()
	}
}

// waitQuiet waits, with c.mu held, until no call runs without c.mu: for
// what compares the whole catalog with the kernel.
func (c *Catalog) waitQuiet() {
	for len(c.busy) > 0 {
		c.idle.Wait()
	}
}

// waitPool waits, with c.mu held, until no pool transaction runs without
// c.mu, so that the caller may begin one from c.tid.
func (c *Catalog) waitPool() {
	for c.sending {
		c.idle.Wait()
	}
}

// outside runs call, the kernel's part of the operation r on key, without
// c.mu (which the caller holds, and holds again when outside returns, even
// if call panics): calls on other keys go on meanwhile, calls on key wait.
func (c *Catalog) outside(key string, r *record, call func() error) error {
	c.busy[key], c.running[r.Seq] = true, true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.busy, key)
		delete(c.running, r.Seq)
		c.idle.Broadcast()
	}()
	return call()
}

// volume returns the volume with key, once no call on it is in flight and
// the catalog may change; the caller holds c.mu.
func (c *Catalog) volume(ctx context.Context, key string) (*Volume, error) {
	c.waitIdle(key)
	if err := c.usable(ctx); err != nil {
		return nil, err
	}
	v := c.vols[key]
	if v == nil {
		return nil, ErrNotFound
	}
	return v, nil
}

// begin records o as begun, durably, before anything is sent for it.
func (c *Catalog) begin(o *op) (*record, error) {
	r := &record{Seq: c.seq + 1, Kind: "op", Op: o}
	if err := c.j.append(true, *r); err != nil {
		c.failed = fmt.Errorf("catalog journal unusable, reopen the catalog: %w", err)
		return nil, err
	}
	c.seq++
	c.open[r.Seq] = r
	return r, nil
}

// end records the outcome of the open operation r, and applies it if
// done. The record is not synced: the next operation's begin, or Close,
// makes it durable, and until then a crash is settled from the kernel's
// state as if end had not been written.
func (c *Catalog) end(r *record, done bool) error {
	if c.beforeEnd != nil {
		c.beforeEnd()
	}
	kind := "undo"
	if done {
		kind = "done"
	}
	if err := c.j.append(false, record{Seq: r.Seq, Kind: kind}); err != nil {
		c.failed = fmt.Errorf("catalog journal unusable, reopen the catalog: %w", err)
		return err
	}
	if done {
		c.apply(r.Op)
	}
	delete(c.open, r.Seq)
	if err := c.compact(); err != nil {
		c.failed = fmt.Errorf("catalog journal unusable, reopen the catalog: %w", err)
		return err
	}
	return nil
}

// note records a change to the catalog alone (no kernel involved), begun
// and done in one synced write.
func (c *Catalog) note(o *op) error {
	if c.failed != nil {
		return c.failed
	}
	if rs := c.unsettled(); len(rs) > 0 {
		return fmt.Errorf("%w: operation %d (%s) is not settled", ErrDrift, rs[0].Seq, rs[0].Op.Type)
	}
	rs := []record{{Seq: c.seq + 1, Kind: "op", Op: o}, {Seq: c.seq + 1, Kind: "done"}}
	if err := c.j.append(true, rs...); err != nil {
		c.failed = fmt.Errorf("catalog journal unusable, reopen the catalog: %w", err)
		return err
	}
	c.seq++
	c.apply(o)
	return c.compact()
}

// poolOp begins o, runs pre if not nil (a failure undoes o), sends batch
// as one transaction from the catalog's transaction id, and settles the
// outcome.
func (c *Catalog) poolOp(ctx context.Context, o *op, pre func() error, batch func(*thin.Tx)) error {
	if c.sending {
		c.waitPool()
		if err := c.usable(ctx); err != nil {
			return err
		}
	}
	o.From = c.tid
	r, err := c.begin(o)
	if err != nil {
		return err
	}
	if pre != nil {
		if err := pre(); err != nil {
			if eerr := c.end(r, false); eerr != nil {
				return eerr
			}
			return err
		}
	}
	res, err := c.pool.Transaction(ctx, o.From, func(tx *thin.Tx) error { batch(tx); return nil })
	if err == nil {
		return c.end(r, true)
	}
	if res.Sent+res.Skipped == 0 && !res.AlreadyApplied {
		// Nothing was applied: a failed message changes nothing.
		if eerr := c.end(r, false); eerr != nil {
			return eerr
		}
		if errors.Is(err, thin.ErrTransactionMismatch) {
			c.drift = fmt.Errorf("%w: %w", ErrDrift, err)
			return c.drift
		}
		return err
	}
	// The batch went in but the transaction id did not move on.
	if serr := c.settle(ctx, r); serr != nil {
		return serr
	}
	return err
}

// VolumeOption configures Create and Snapshot.
type VolumeOption func(*volConfig)

type volConfig struct {
	labels    map[string]string
	labelsSet bool
	size      dm.Sectors
}

// WithLabels gives the new volume labels (Create, Snapshot), or new labels
// to a renamed one (Rename).
func WithLabels(labels map[string]string) VolumeOption {
	return func(c *volConfig) { c.labels, c.labelsSet = cloneLabels(labels), true }
}

// WithSize gives a snapshot a virtual size other than its parent's.
func WithSize(size dm.Sectors) VolumeOption { return func(c *volConfig) { c.size = size } }

// Create makes a new, empty thin volume of size sectors under key, inactive.
// The catalog chooses its thin id.
func (c *Catalog) Create(ctx context.Context, key string, size dm.Sectors, opts ...VolumeOption) (Volume, error) {
	var vc volConfig
	for _, o := range opts {
		o(&vc)
	}
	if vc.size != 0 {
		return Volume{}, &Error{Op: "create", Key: key, Err: fmt.Errorf("%w: WithSize is for snapshots; Create takes the size", ErrInvalid)}
	}
	return c.make(ctx, "create", key, "", size, vc.labels)
}

// Snapshot makes a new volume under key, a thin snapshot of the volume
// parent: active or not (an active parent's device is suspended around
// the snapshot and always resumed). Its size is the parent's unless
// WithSize.
func (c *Catalog) Snapshot(ctx context.Context, key, parent string, opts ...VolumeOption) (Volume, error) {
	var vc volConfig
	for _, o := range opts {
		o(&vc)
	}
	if err := checkKey(parent); err != nil {
		return Volume{}, &Error{Op: "snapshot", Key: key, Err: fmt.Errorf("parent: %w", err)}
	}
	return c.make(ctx, "snapshot", key, parent, vc.size, vc.labels)
}

func (c *Catalog) make(ctx context.Context, what, key, parent string, size dm.Sectors, labels map[string]string) (Volume, error) {
	fail := func(err error) (Volume, error) { return Volume{}, &Error{Op: what, Key: key, Err: err} }
	if err := checkKey(key); err != nil {
		return fail(err)
	}
	if size < 0 || what == "create" && size == 0 {
		return fail(fmt.Errorf("%w: size %d sectors", ErrInvalid, size))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// A creation of key in flight decides whether it exists; an
	// activation or deactivation of the parent, whether it is suspended
	// around the snapshot.
	if parent != "" {
		c.waitIdle(key, parent)
	} else {
		c.waitIdle(key)
	}
	if err := c.usable(ctx); err != nil {
		return fail(err)
	}
	if _, ok := c.vols[key]; ok {
		return fail(ErrExists)
	}
	var pv *Volume
	if parent != "" {
		if pv = c.vols[parent]; pv == nil {
			return fail(fmt.Errorf("parent %q: %w", parent, ErrNotFound))
		}
		if size == 0 {
			size = pv.Size
		}
	}
	if err := c.checkSpace(ctx); err != nil {
		return fail(err)
	}
	// The key is taken from here on: a second creation of it waits.
	c.busy[key] = true
	defer func() {
		delete(c.busy, key)
		c.idle.Broadcast()
	}()
	// An id the pool turns out to have (EEXIST) was left by someone else:
	// it is remembered as foreign (Check reports it) and the next is tried.
	for tries := 0; ; tries++ {
		id, err := c.allocID()
		if err != nil {
			return fail(err)
		}
		v := &Volume{Key: key, ID: id, Size: size, Created: c.cfg.now().UTC(), Labels: cloneLabels(labels)}
		o := &op{Type: opCreate, Key: key, ID: id, Vol: v}
		if pv != nil {
			v.Parent, v.ParentID = pv.Key, pv.ID
			o.Type = opSnapshot
		}
		err = c.commit(ctx, o)
		if err == nil {
			return v.clone(), nil
		}
		if errors.Is(err, thin.ErrIDInUse) && tries < 64 && len(c.unsettled()) == 0 {
			c.foreign[id] = true
			c.nextID = uint32(id) + 1
			continue
		}
		return fail(err)
	}
}

// pending is a creation or snapshot queued for a pool transaction, and
// once sent, its outcome.
type pending struct {
	o    *op
	done bool
	err  error
}

// commit sends o, a creation or snapshot, in a pool transaction, and
// settles its outcome; the caller holds c.mu. Creations queue up while a
// transaction runs, and the next one sends all of them (group commit):
// many create_thin and create_snap messages, one set_transaction_id and
// one journal record for all, so a hundred containers starting at once
// cost a few transactions, not a hundred. The first caller to find no
// transaction running sends the queue, until its own creation is done.
func (c *Catalog) commit(ctx context.Context, o *op) error {
	p := &pending{o: o}
	c.reserved[o.ID] = true
	defer delete(c.reserved, o.ID)
	c.queue = append(c.queue, p)
	for !p.done {
		if c.committing {
			c.idle.Wait()
			continue
		}
		c.committing = true
		batch := c.queue
		c.queue = nil
		func() {
			defer func() {
				c.committing = false
				c.idle.Broadcast()
				if r := recover(); r != nil {
					// Their callers must not wait for ever; the open
					// record is settled like a crash's.
					for _, q := range batch {
						q.done, q.err = true, errors.New("the pool transaction it was sent in panicked")
					}
					panic(r)
				}
			}()
			c.sendQueued(ctx, batch)
		}()
	}
	return p.err
}

// sendQueued sends batch, queued creations, as one transaction from c.tid,
// with c.mu released while the kernel works, and settles each. One whose
// message failed gets the error; those after it in the group go back to
// the queue.
func (c *Catalog) sendQueued(ctx context.Context, batch []*pending) {
	finish := func(ps []*pending, err error) {
		for _, p := range ps {
			p.done, p.err = true, err
		}
	}
	if err := c.usable(ctx); err != nil {
		finish(batch, err)
		return
	}
	o := batch[0].o
	if len(batch) > 1 {
		o = &op{Type: opGroup, Ops: make([]*op, len(batch))}
		for i, p := range batch {
			o.Ops[i] = p.o
		}
	}
	o.From = c.tid
	for _, s := range o.Ops {
		s.From = c.tid
	}
	r, err := c.begin(o)
	if err != nil {
		finish(batch, err)
		return
	}
	// The batch runs to its end once begun: another caller's cancelled
	// context must not cut this one's creation short.
	var res thin.TxResult
	err = c.unlocked(r, func() (err error) {
		res, err = c.pool.Transaction(context.WithoutCancel(ctx), o.From, batchOf(o))
		return err
	})
	if err == nil {
		finish(batch, c.end(r, true))
		return
	}
	in := res.Sent + res.Skipped // the messages that went in
	switch {
	case in == 0 && !res.AlreadyApplied:
		// Nothing was applied: a failed message changes nothing.
		if eerr := c.end(r, false); eerr != nil {
			finish(batch, eerr)
			return
		}
		if errors.Is(err, thin.ErrTransactionMismatch) {
			c.drift = fmt.Errorf("%w: %w", ErrDrift, err)
			finish(batch, c.drift)
			return
		}
		finish(batch[:1], err)
		c.queue = append(batch[1:], c.queue...)
	case len(batch) > 1 && in < len(batch):
		// Message in failed: cut the group down to the ones before it,
		// durably, then advance the transaction id over them.
		if terr := c.trim(r, in); terr != nil {
			finish(batch, terr)
			return
		}
		if _, rerr := c.pool.Transaction(context.WithoutCancel(ctx), o.From, batchOf(o), thin.Replay()); rerr != nil {
			if serr := c.settle(ctx, r); serr != nil {
				rerr = serr
			}
			finish(batch, rerr)
			return
		}
		if eerr := c.end(r, true); eerr != nil {
			finish(batch, eerr)
			return
		}
		finish(batch[:in], nil)
		finish(batch[in:in+1], err)
		c.queue = append(batch[in+1:], c.queue...)
	default:
		// Every message went in but the transaction id did not move on.
		if serr := c.settle(ctx, r); serr != nil {
			err = serr
		}
		finish(batch, err)
	}
}

// unlocked runs send, the pool transaction of the open record r, without
// c.mu (which the caller holds, and holds again when unlocked returns, even
// if send panics): calls that change the pool wait for it, others go on.
func (c *Catalog) unlocked(r *record, send func() error) error {
	c.running[r.Seq], c.sending = true, true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.running, r.Seq)
		c.sending = false
		c.idle.Broadcast()
	}()
	return send()
}

// trim cuts the open group r down to its first keep operations, durably,
// before anything is sent to finish it.
func (c *Catalog) trim(r *record, keep int) error {
	if err := c.j.append(true, record{Seq: r.Seq, Kind: "trim", Keep: keep}); err != nil {
		c.failed = fmt.Errorf("catalog journal unusable, reopen the catalog: %w", err)
		return err
	}
	r.Op.Ops = r.Op.Ops[:keep]
	return nil
}

// allocID returns the next thin id from nextID on, around the 24-bit space,
// that no volume, deferred deletion or foreign device holds, nor a creation
// waiting for its transaction.
func (c *Catalog) allocID() (thin.DeviceID, error) {
	id := c.nextID
	for n := uint32(0); n < uint32(thin.MaxDeviceID); n++ {
		if id == 0 || id > uint32(thin.MaxDeviceID) {
			id = 1
		}
		d := thin.DeviceID(id)
		_, used := c.byID[d]
		if !used && c.deferred[d] == nil && !c.foreign[d] && !c.reserved[d] {
			return d, nil
		}
		id++
	}
	return 0, fmt.Errorf("every thin id is in use")
}

func (c *Catalog) checkSpace(ctx context.Context) error {
	if c.cfg.minFree == 0 {
		return nil
	}
	st, err := c.pool.Status(ctx)
	if err != nil {
		return err
	}
	min := uint64(c.cfg.minFree)
	if t := uint64(st.TotalData); t > 0 && (t-uint64(st.UsedData))*100 < min*t {
		return &SpaceError{Space: "data", Free: t - uint64(st.UsedData), Total: t, MinPercent: c.cfg.minFree}
	}
	if t := uint64(st.TotalMeta); t > 0 && (t-uint64(st.UsedMeta))*100 < min*t {
		return &SpaceError{Space: "metadata", Free: t - uint64(st.UsedMeta), Total: t, MinPercent: c.cfg.minFree}
	}
	return nil
}

func (c *Catalog) deviceName(id thin.DeviceID) string {
	return c.cfg.prefix + strconv.FormatUint(uint64(id), 10)
}

// ActivateOption configures Activate.
type ActivateOption func(*activateConfig)

type activateConfig struct {
	name     string
	readOnly bool
}

// WithDeviceName names the volume's dm device, instead of the catalog's
// prefix and the thin id.
func WithDeviceName(name string) ActivateOption { return func(c *activateConfig) { c.name = name } }

// ReadOnly activates the volume read-only (a view).
func ReadOnly() ActivateOption { return func(c *activateConfig) { c.readOnly = true } }

// Activate makes the volume available as a dm device and returns the
// device's node, /dev/dm-<minor>. An active volume's node is returned as
// is. The device is named by the catalog's prefix and the thin id
// ("pool-12") unless WithDeviceName; a name another device has fails with
// dm.ErrExists and leaves that device alone.
func (c *Catalog) Activate(ctx context.Context, key string, opts ...ActivateOption) (string, error) {
	fail := func(err error) (string, error) { return "", &Error{Op: "activate", Key: key, Err: err} }
	var ac activateConfig
	for _, o := range opts {
		o(&ac)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, err := c.volume(ctx, key)
	if err != nil {
		return fail(err)
	}
	if v.State == Active {
		info, err := c.ctl.Info(ctx, dm.Name(v.Device))
		if err != nil {
			return fail(err)
		}
		return c.devPath(info.Dev), nil
	}
	if v.Size == 0 {
		return fail(fmt.Errorf("%w: the volume's size is unknown (adopted without a device); Resize it first", ErrInvalid))
	}
	name := ac.name
	if name == "" {
		name = c.deviceName(v.ID)
	}
	if err := dm.ValidateName(name); err != nil {
		return fail(fmt.Errorf("%w: device name: %w", ErrInvalid, err))
	}
	var topts []thin.ActivateOption
	if ac.readOnly {
		topts = append(topts, thin.ReadOnlyVolume())
	}
	r, err := c.begin(&op{Type: opActivate, Key: key, ID: v.ID, Device: name})
	if err != nil {
		return fail(err)
	}
	id, size := v.ID, v.Size
	var vol *thin.Volume
	err = c.outside(key, r, func() (err error) {
		vol, err = c.pool.Activate(ctx, name, id, size, topts...)
		return err
	})
	if err != nil {
		// A failed Activate leaves no device; a name someone else holds
		// (EEXIST) is theirs.
		if eerr := c.end(r, false); eerr != nil {
			return fail(eerr)
		}
		return fail(err)
	}
	if err := c.end(r, true); err != nil {
		return fail(err)
	}
	return vol.DevPath(), nil
}

func (c *Catalog) devPath(d dm.Dev) string {
	return filepath.Join(c.ctl.DevDir(), "dm-"+strconv.FormatUint(uint64(d.Minor), 10))
}

// Deactivate removes the volume's dm device. An inactive volume is left as
// it is. A device in use fails with dm.ErrBusy (after dm's retries) and
// stays active.
func (c *Catalog) Deactivate(ctx context.Context, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, err := c.volume(ctx, key)
	if err != nil {
		return &Error{Op: "deactivate", Key: key, Err: err}
	}
	if v.State != Active {
		return nil
	}
	r, err := c.begin(&op{Type: opDeactivate, Key: v.Key, ID: v.ID, Device: v.Device})
	if err != nil {
		return &Error{Op: "deactivate", Key: key, Err: err}
	}
	dev := v.Device
	if err := c.outside(key, r, func() error { return c.removeDevice(ctx, dev) }); err != nil {
		if eerr := c.end(r, false); eerr != nil {
			return &Error{Op: "deactivate", Key: key, Err: eerr}
		}
		return &Error{Op: "deactivate", Key: key, Err: err}
	}
	if err := c.end(r, true); err != nil {
		return &Error{Op: "deactivate", Key: key, Err: err}
	}
	return nil
}

// Delete deactivates the volume and deletes its thin device, freeing its
// blocks and its key, as one operation. With WithDeferredDeletion, a volume
// whose device is open is deleted later (see Deferred, RetryDeferred) and
// Delete succeeds; without, it fails with dm.ErrBusy and the volume stays.
func (c *Catalog) Delete(ctx context.Context, key string) error {
	fail := func(err error) error { return &Error{Op: "delete", Key: key, Err: err} }
	c.mu.Lock()
	defer c.mu.Unlock()
	v, err := c.volume(ctx, key)
	if err != nil {
		return fail(err)
	}
	if v.State == Active && c.cfg.deferred {
		// Open now (a mount, say): no point waiting out dm's retries.
		if info, err := c.ctl.Info(ctx, dm.Name(v.Device)); err == nil && info.OpenCount > 0 {
			return c.deferDelete(ctx, v)
		}
	}
	id, dev := v.ID, v.Device
	o := &op{Type: opDelete, Key: key, ID: id, Device: dev}
	err = c.poolOp(ctx, o, func() error { return c.removeDevice(ctx, dev) }, func(tx *thin.Tx) { tx.Delete(id) })
	if err == nil {
		return nil
	}
	if len(c.unsettled()) > 0 || c.failed != nil {
		return fail(err)
	}
	if err := c.syncDevice(ctx, key); err != nil {
		return fail(err)
	}
	switch {
	case errors.Is(err, thin.ErrUnknownID) && c.drift == nil:
		// The pool lost the id already (another tool): the entry goes;
		// Check would report it missing otherwise.
		if err := c.note(&op{Type: opForget, Key: key, ID: id}); err != nil {
			return fail(err)
		}
		return nil
	case (errors.Is(err, dm.ErrBusy) || errors.Is(err, thin.ErrInUse)) && c.cfg.deferred:
		return c.deferDelete(ctx, c.vols[key])
	}
	return fail(err)
}

// removeDevice removes dm device name, if name is not empty and the device
// exists.
func (c *Catalog) removeDevice(ctx context.Context, name string) error {
	if name == "" {
		return nil
	}
	if err := c.ctl.Remove(ctx, dm.Name(name)); err != nil && !errors.Is(err, dm.ErrNotFound) {
		return err
	}
	return nil
}

// syncDevice records an active volume whose device is gone as inactive.
func (c *Catalog) syncDevice(ctx context.Context, key string) error {
	v := c.vols[key]
	if v == nil || v.State != Active {
		return nil
	}
	if _, err := c.ctl.Info(ctx, dm.Name(v.Device)); !errors.Is(err, dm.ErrNotFound) {
		return nil
	}
	return c.note(&op{Type: opDeactivate, Key: key, ID: v.ID, Device: v.Device})
}

// deferDelete puts the volume's device on deferred remove and frees its key.
func (c *Catalog) deferDelete(ctx context.Context, v *Volume) error {
	fail := func(err error) error { return &Error{Op: "delete", Key: v.Key, Err: err} }
	r, err := c.begin(&op{Type: opDefer, Key: v.Key, ID: v.ID, Device: v.Device, Time: c.cfg.now().UTC()})
	if err != nil {
		return fail(err)
	}
	if v.Device != "" {
		err := c.ctl.Remove(ctx, dm.Name(v.Device), dm.Deferred)
		if err != nil && !errors.Is(err, dm.ErrNotFound) {
			if eerr := c.end(r, false); eerr != nil {
				return fail(eerr)
			}
			return fail(err)
		}
	}
	if err := c.end(r, true); err != nil {
		return fail(err)
	}
	return nil
}

// RetryDeferred deletes the thin devices of deferred deletions whose
// device has closed, and counts a try for the others. It returns how many
// remain. Open runs it; a program using deferred deletion runs it from
// time to time, as Docker's daemon does.
func (c *Catalog) RetryDeferred(ctx context.Context) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usable(ctx); err != nil {
		return len(c.deferred), &Error{Op: "retry deferred", Err: err}
	}
	return c.retryDeferred(ctx)
}

func (c *Catalog) retryDeferred(ctx context.Context) (int, error) {
	for _, d := range c.sortedDeferred() {
		busy := false
		if d.Device != "" {
			_, err := c.ctl.Info(ctx, dm.Name(d.Device))
			switch {
			case err == nil:
				busy = true
			case !errors.Is(err, dm.ErrNotFound):
				return len(c.deferred), &Error{Op: "retry deferred", Key: d.Key, Err: err}
			}
		}
		if !busy {
			id := d.ID
			err := c.poolOp(ctx, &op{Type: opPurge, Key: d.Key, ID: id}, nil, func(tx *thin.Tx) { tx.Delete(id) })
			switch {
			case err == nil:
				continue
			case errors.Is(err, thin.ErrUnknownID) && len(c.unsettled()) == 0 && c.drift == nil:
				if err := c.note(&op{Type: opForget, ID: id}); err != nil {
					return len(c.deferred), &Error{Op: "retry deferred", Key: d.Key, Err: err}
				}
				continue
			case !errors.Is(err, thin.ErrInUse) || len(c.unsettled()) > 0:
				return len(c.deferred), &Error{Op: "retry deferred", Key: d.Key, Err: err}
			}
		}
		if err := c.note(&op{Type: opTried, ID: d.ID}); err != nil {
			return len(c.deferred), &Error{Op: "retry deferred", Key: d.Key, Err: err}
		}
	}
	return len(c.deferred), nil
}

// Rename gives the volume key the key newKey; with WithLabels it also
// replaces the volume's labels, in the same journal record, so a crash
// leaves both changes or neither. Its device keeps its name.
func (c *Catalog) Rename(ctx context.Context, key, newKey string, opts ...VolumeOption) error {
	fail := func(err error) error { return &Error{Op: "rename", Key: key, Err: err} }
	var vc volConfig
	for _, o := range opts {
		o(&vc)
	}
	if vc.size != 0 {
		return fail(fmt.Errorf("%w: Rename takes no size", ErrInvalid))
	}
	if err := checkKey(newKey); err != nil {
		return fail(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waitIdle(key, newKey) // a creation of newKey in flight decides whether it exists
	v, err := c.volume(ctx, key)
	if err != nil {
		return fail(err)
	}
	if _, ok := c.vols[newKey]; ok {
		return fail(fmt.Errorf("%q: %w", newKey, ErrExists))
	}
	o := &op{Type: opRename, Key: key, ID: v.ID, NewKey: newKey, Labels: vc.labels, SetLabels: vc.labelsSet}
	if err := c.note(o); err != nil {
		return fail(err)
	}
	return nil
}

// SetLabels replaces the volume's labels.
func (c *Catalog) SetLabels(ctx context.Context, key string, labels map[string]string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.volume(ctx, key); err != nil {
		return &Error{Op: "set labels", Key: key, Err: err}
	}
	if err := c.note(&op{Type: opLabels, Key: key, Labels: cloneLabels(labels)}); err != nil {
		return &Error{Op: "set labels", Key: key, Err: err}
	}
	return nil
}

// Resize sets an inactive volume's virtual size, the length its device
// gets at the next Activate. Growing is always safe; shrinking hides the
// tail (its blocks stay allocated until discarded).
func (c *Catalog) Resize(ctx context.Context, key string, size dm.Sectors) error {
	if size <= 0 {
		return &Error{Op: "resize", Key: key, Err: fmt.Errorf("%w: size %d sectors", ErrInvalid, size)}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, err := c.volume(ctx, key)
	if err != nil {
		return &Error{Op: "resize", Key: key, Err: err}
	}
	if v.State == Active {
		return &Error{Op: "resize", Key: key, Err: fmt.Errorf("%w: the volume is active; deactivate it first", ErrInvalid)}
	}
	if err := c.note(&op{Type: opResize, Key: key, ID: v.ID, Vol: &Volume{Size: size}}); err != nil {
		return &Error{Op: "resize", Key: key, Err: err}
	}
	return nil
}
