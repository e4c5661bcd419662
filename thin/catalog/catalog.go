package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/thin"
)

// State is whether a volume is active: mapped by a dm device.
type State uint8

const (
	// Inactive: the thin device exists in the pool; no dm device maps it.
	Inactive State = iota
	// Active: a dm device of the catalog maps it (Volume.Device).
	Active
)

func (s State) String() string {
	if s == Active {
		return "active"
	}
	return "inactive"
}

// MarshalText writes the state as "active" or "inactive".
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads "active" or "inactive".
func (s *State) UnmarshalText(b []byte) error {
	switch string(b) {
	case "active":
		*s = Active
	case "inactive":
		*s = Inactive
	default:
		return fmt.Errorf("%w: unknown volume state %q", ErrCorrupt, b)
	}
	return nil
}

// Volume is one entry of the catalog: a thin device of the pool under the
// caller's key.
type Volume struct {
	// Key is the caller's name for the volume: any non-empty UTF-8 string
	// up to MaxKeyLen bytes.
	Key string `json:"key"`
	// ID is the thin device id, chosen by the catalog.
	ID thin.DeviceID `json:"id"`
	// Parent is the key the volume was snapshotted from, and ParentID
	// that volume's thin id; empty for a volume made by Create. The parent
	// may have been deleted or renamed since.
	Parent   string        `json:"parent,omitempty"`
	ParentID thin.DeviceID `json:"parent_id,omitempty"`
	// Size is the volume's virtual size, the length of its dm device.
	Size dm.Sectors `json:"size"`
	// Created is when the volume was made.
	Created time.Time `json:"created"`
	// Labels are the caller's, kept as given.
	Labels map[string]string `json:"labels,omitempty"`
	// State says whether the volume is active; Device is then the name of
	// its dm device.
	State  State  `json:"state"`
	Device string `json:"device,omitempty"`
}

func (v *Volume) clone() Volume {
	c := *v
	c.Labels = cloneLabels(v.Labels)
	return c
}

func cloneLabels(l map[string]string) map[string]string {
	if len(l) == 0 {
		return nil
	}
	c := make(map[string]string, len(l))
	for k, v := range l {
		c[k] = v
	}
	return c
}

// Deferred is a deletion that could not finish because the volume's device
// was open: the key is gone from the catalog, the thin id is deleted by a
// later RetryDeferred once the device is closed.
type Deferred struct {
	ID     thin.DeviceID `json:"id"`
	Key    string        `json:"key"`              // the key the volume had
	Device string        `json:"device,omitempty"` // its dm device, removed by the kernel on last close
	Since  time.Time     `json:"since"`
	Tries  int           `json:"tries"` // retries that found the device still busy
}

// MaxKeyLen is the longest key, in bytes.
const MaxKeyLen = 4096

// Option configures Open.
type Option func(*config)

type config struct {
	prefix   string
	deferred bool
	minFree  int
	now      func() time.Time
	meta     metadataSource // tests replace the pool's
}

// WithDevicePrefix names the dm devices of active volumes prefix+<thin id>;
// by default the prefix is the pool's name and a dash ("pool-12").
func WithDevicePrefix(prefix string) Option { return func(c *config) { c.prefix = prefix } }

// WithDeferredDeletion makes Delete of a volume whose device is open succeed:
// the device is removed by the kernel when its last user closes it
// (deferred remove), the key is freed at once, and the thin id is deleted
// by a later RetryDeferred (also run by Open). This is Docker's
// dm.use_deferred_removal plus dm.use_deferred_deletion. Without it, such a
// Delete fails with dm.ErrBusy and changes nothing.
func WithDeferredDeletion() Option { return func(c *config) { c.deferred = true } }

// WithMinFreeSpace refuses new volumes (ErrLowSpace) while the pool's free
// data or free metadata space is below percent of its total, as Docker's
// dm.min_free_space. The default is 10; 0 turns the check off.
func WithMinFreeSpace(percent int) Option { return func(c *config) { c.minFree = percent } }

// Config is a catalog's configuration, for reports.
type Config struct {
	DevicePrefix     string
	DeferredDeletion bool
	MinFreeSpace     int // percent
}

// Catalog is a crash-proof catalog of the volumes of one pool, kept in a
// directory. It is safe for concurrent use (see the package documentation,
// Concurrency).
type Catalog struct {
	pool *thin.Pool
	ctl  *dm.Control
	dir  string
	cfg  config
	lock *os.File

	// meta reads the pool's metadata (Pool.Usage, Pool.Details); tests
	// replace it.
	meta metadataSource
	// beforeEnd runs before an outcome is journalled; tests crash there.
	beforeEnd func()

	mu       sync.Mutex
	j        journal
	seq      uint64
	tid      uint64
	nextID   uint32
	vols     map[string]*Volume
	byID     map[thin.DeviceID]string
	children map[thin.DeviceID]map[*Volume]struct{} // by the parent's id: the snapshots of the volume that holds it
	deferred map[thin.DeviceID]*Deferred
	foreign  map[thin.DeviceID]bool // ids the pool had that the catalog did not know
	// open holds the operations begun and not ended: those in flight
	// (running) and those a crash, or a failure to settle, left
	// (unsettled).
	open    map[uint64]*record
	running map[uint64]bool
	// busy holds the keys of the calls whose kernel part runs without mu
	// (activations, deactivations, creations waiting for or in their pool
	// transaction): other calls on such a key wait on idle, calls on other
	// keys go on.
	busy map[string]bool
	idle sync.Cond // on mu: broadcast when a key leaves busy, or a send ends
	// queue holds the creations waiting for a pool transaction, reserved
	// their thin ids; committing is set while a call sends them, and
	// sending while that transaction runs without mu.
	queue      []*pending
	reserved   map[thin.DeviceID]bool
	committing bool
	sending    bool
	drift      error // why changes are refused until Repair
	failed     error // a journal write failed: the catalog must be reopened
	closed     bool
}

// Open opens the catalog kept in dir for pool, creating dir and an empty
// catalog if there is none. One Catalog at a time may have dir open (a lock
// on dir/lock): a second Open fails with ErrLocked.
//
// Open settles an operation a crash interrupted, to exactly the state
// before it or after it (see the package documentation), resumes the
// catalog's devices a crash left suspended, records as inactive those that
// are gone, and retries deferred deletions. If the pool's transaction id is
// not the catalog's, someone else changed the pool: Open succeeds, reads
// work, and changes fail with ErrDrift until Repair.
func Open(ctx context.Context, pool *thin.Pool, dir string, opts ...Option) (*Catalog, error) {
	cfg := config{prefix: pool.Name() + "-", minFree: 10, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.meta.usage == nil {
		cfg.meta = metadataSource{usage: pool.Usage, details: pool.Details}
	}
	if cfg.minFree < 0 || cfg.minFree > 100 {
		return nil, &Error{Op: "open", Err: fmt.Errorf("%w: minimum free space %d%% is not in [0, 100]", ErrInvalid, cfg.minFree)}
	}
	if err := dm.ValidateName(cfg.prefix + strconv.Itoa(int(thin.MaxDeviceID))); err != nil {
		return nil, &Error{Op: "open", Err: fmt.Errorf("%w: device prefix %q: %v", ErrInvalid, cfg.prefix, err)}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, &Error{Op: "open", Err: err}
	}
	lf, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, &Error{Op: "open", Err: err}
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lf.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &Error{Op: "open", Err: fmt.Errorf("%w: %s", ErrLocked, dir)}
		}
		return nil, &Error{Op: "open", Err: err}
	}
	c := &Catalog{
		pool: pool, ctl: pool.Control(), dir: dir, cfg: cfg, lock: lf,
		meta:     cfg.meta,
		vols:     map[string]*Volume{},
		byID:     map[thin.DeviceID]string{},
		children: map[thin.DeviceID]map[*Volume]struct{}{},
		deferred: map[thin.DeviceID]*Deferred{},
		foreign:  map[thin.DeviceID]bool{},
		open:     map[uint64]*record{},
		running:  map[uint64]bool{},
		busy:     map[string]bool{},
		reserved: map[thin.DeviceID]bool{},
		nextID:   1,
	}
	c.idle.L = &c.mu
	if err := c.load(ctx); err != nil {
		c.j.close()
		lf.Close()
		return nil, &Error{Op: "open", Err: err}
	}
	if err := c.recover(ctx); err != nil {
		c.j.close()
		lf.Close()
		return nil, &Error{Op: "open", Err: err}
	}
	return c, nil
}

// load reads the state file and the journal, and opens the journal for
// appending. A catalog made now starts at the pool's transaction id.
func (c *Catalog) load(ctx context.Context) error {
	b, err := os.ReadFile(filepath.Join(c.dir, snapshotFile))
	switch {
	case os.IsNotExist(err):
		tid, err := c.pool.TransactionID(ctx)
		if err != nil {
			return err
		}
		c.tid = tid
		if err := c.writeSnapshot(); err != nil {
			return err
		}
	case err != nil:
		return &JournalError{Op: "read", Path: filepath.Join(c.dir, snapshotFile), Err: err}
	default:
		var s snapshotState
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, filepath.Join(c.dir, snapshotFile), err)
		}
		if s.Version != 1 && s.Version != 2 {
			return fmt.Errorf("%w: %s: version %d, which this catalog does not know", ErrCorrupt, filepath.Join(c.dir, snapshotFile), s.Version)
		}
		c.seq, c.tid, c.nextID = s.Seq, s.TID, s.NextID
		for i := range s.Open {
			r := s.Open[i]
			if r.Kind != "op" || r.Op == nil || r.Seq > s.Seq {
				return fmt.Errorf("%w: %s: open operation %d is damaged", ErrCorrupt, filepath.Join(c.dir, snapshotFile), r.Seq)
			}
			c.open[r.Seq] = &r
		}
		for i := range s.Volumes {
			v := s.Volumes[i]
			c.vols[v.Key] = &v
			c.byID[v.ID] = v.Key
		}
		for _, v := range c.vols {
			c.link(v)
		}
		for i := range s.Deferred {
			d := s.Deferred[i]
			c.deferred[d.ID] = &d
		}
	}
	path := filepath.Join(c.dir, journalFile)
	rs, good, err := readJournal(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	// Records at or below the state's seq are in it already, but for the
	// outcomes of the operations the state lists as open. An old journal
	// that a crash left beside a new state holds no such outcome (the state
	// was written while they were open), only records to skip. Operations
	// may interleave: an activation's outcome can follow other operations
	// begun after it.
	stateSeq := c.seq
	for _, r := range rs {
		if r.Seq <= stateSeq && (r.Kind == "op" || c.open[r.Seq] == nil) {
			continue
		}
		switch r.Kind {
		case "op":
			if r.Seq <= c.seq || r.Op == nil {
				return fmt.Errorf("%w: %s: operation %d out of order", ErrCorrupt, path, r.Seq)
			}
			rec := r
			c.open[r.Seq] = &rec
			c.seq = r.Seq
		case "done", "undo":
			rec := c.open[r.Seq]
			if rec == nil {
				return fmt.Errorf("%w: %s: outcome of operation %d, which is not open", ErrCorrupt, path, r.Seq)
			}
			if r.Kind == "done" {
				c.apply(rec.Op)
			}
			delete(c.open, r.Seq)
		case "trim":
			rec := c.open[r.Seq]
			if rec == nil || rec.Op.Type != opGroup || r.Keep >= len(rec.Op.Ops) {
				return fmt.Errorf("%w: %s: trim of operation %d, which is not an open group of more than %d", ErrCorrupt, path, r.Seq, r.Keep)
			}
			rec.Op.Ops = rec.Op.Ops[:r.Keep]
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return &JournalError{Op: "open", Path: path, Err: err}
	}
	// Drop a record torn by a crash, so the next one starts a line.
	if err := f.Truncate(good); err != nil {
		f.Close()
		return &JournalError{Op: "truncate", Path: path, Err: err}
	}
	if _, err := f.Seek(good, 0); err != nil {
		f.Close()
		return &JournalError{Op: "seek", Path: path, Err: err}
	}
	c.j = journal{dir: c.dir, f: f, records: len(rs)}
	return nil
}

// writeSnapshot writes the whole state as of c.seq.
func (c *Catalog) writeSnapshot() error {
	s := snapshotState{Version: 1, Seq: c.seq, TID: c.tid, NextID: c.nextID, Volumes: make([]Volume, 0, len(c.vols))}
	for _, k := range c.sortedKeys() {
		s.Volumes = append(s.Volumes, *c.vols[k])
	}
	for _, d := range c.sortedDeferred() {
		s.Deferred = append(s.Deferred, *d)
	}
	for _, r := range c.openRecords() {
		s.Open = append(s.Open, *r)
	}
	if len(s.Open) > 0 {
		s.Version = 2
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return writeFileAtomic(c.dir, snapshotFile, b)
}

// compact writes the state out and starts an empty journal, once the
// journal holds more records than the state has volumes (and at least
// compactEvery), so that the work per operation stays flat. Operations in
// flight go into the state as open, so that the journal stays bounded
// however many activations overlap.
func (c *Catalog) compact() error {
	if c.j.records < compactEvery || c.j.records < len(c.vols) {
		return nil
	}
	if err := c.writeSnapshot(); err != nil {
		return err
	}
	// A crash here leaves the old journal beside the new state: its
	// records are at or below the state's sequence number and are skipped,
	// and none is the outcome of an operation the state lists as open.
	if err := writeFileAtomic(c.dir, journalFile, nil); err != nil {
		return err
	}
	path := filepath.Join(c.dir, journalFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return &JournalError{Op: "open", Path: path, Err: err}
	}
	c.j.f.Close()
	c.j.f, c.j.records = f, 0
	return nil
}

func (c *Catalog) sortedKeys() []string {
	keys := make([]string, 0, len(c.vols))
	for k := range c.vols {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (c *Catalog) sortedDeferred() []*Deferred {
	ds := make([]*Deferred, 0, len(c.deferred))
	for _, d := range c.deferred {
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].ID < ds[j].ID })
	return ds
}

// Close releases the directory, once the activations and deactivations
// in flight have ended. It does not deactivate volumes.
func (c *Catalog) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waitQuiet()
	if c.closed {
		return nil
	}
	c.closed = true
	err := c.j.close()
	if cerr := c.lock.Close(); err == nil {
		err = cerr
	}
	return err
}

// TransactionID is the pool transaction id the catalog has recorded: the
// pool's, unless someone else changed it (see Check).
func (c *Catalog) TransactionID() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tid
}

// Pool is the catalog's pool.
func (c *Catalog) Pool() *thin.Pool { return c.pool }

// Dir is the catalog's directory.
func (c *Catalog) Dir() string { return c.dir }

// Config returns the catalog's configuration.
func (c *Catalog) Config() Config {
	return Config{DevicePrefix: c.cfg.prefix, DeferredDeletion: c.cfg.deferred, MinFreeSpace: c.cfg.minFree}
}

// Get returns the volume with key.
func (c *Catalog) Get(key string) (Volume, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.vols[key]
	if !ok {
		return Volume{}, &Error{Op: "get", Key: key, Err: ErrNotFound}
	}
	return v.clone(), nil
}

// List returns every volume, in key order.
func (c *Catalog) List() []Volume {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Volume, 0, len(c.vols))
	for _, k := range c.sortedKeys() {
		out = append(out, c.vols[k].clone())
	}
	return out
}

// Walk calls fn for every volume in key order, on a copy of the catalog
// taken first (fn may call the catalog), until fn returns an error, which
// Walk returns.
func (c *Catalog) Walk(fn func(Volume) error) error {
	for _, v := range c.List() {
		if err := fn(v); err != nil {
			return err
		}
	}
	return nil
}

// Children returns the volumes snapshotted from the volume key, in key
// order: matched by thin id, so renames of either do not matter, and a
// snapshot of a deleted volume is no one's child (not even of a later
// volume given the same thin id). Its cost is the number of children, not
// of volumes.
func (c *Catalog) Children(key string) ([]Volume, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.vols[key]
	if !ok {
		return nil, &Error{Op: "children", Key: key, Err: ErrNotFound}
	}
	out := make([]Volume, 0, len(c.children[v.ID]))
	for ch := range c.children[v.ID] {
		out = append(out, ch.clone())
	}
	slices.SortFunc(out, func(a, b Volume) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// link records v as a child of the volume holding its parent's thin id,
// if that volume is not younger than v (so a snapshot whose parent was
// deleted is not taken for the child of a later holder of the id).
func (c *Catalog) link(v *Volume) {
	if v.Parent == "" {
		return
	}
	pk, ok := c.byID[v.ParentID]
	if !ok || pk == v.Key || c.vols[pk].Created.After(v.Created) {
		return
	}
	m := c.children[v.ParentID]
	if m == nil {
		m = map[*Volume]struct{}{}
		c.children[v.ParentID] = m
	}
	m[v] = struct{}{}
}

// Deferred returns the deletions waiting for their device to close, in id
// order.
func (c *Catalog) Deferred() []Deferred {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Deferred
	for _, d := range c.sortedDeferred() {
		out = append(out, *d)
	}
	return out
}

// Usage is a volume's share of the pool's data device.
type Usage struct {
	// Mapped is the bytes of data the volume maps; Exclusive is the part
	// no other thin device maps, what deleting the volume would free.
	Mapped, Exclusive uint64
}

// Usage returns the usage of every volume by key, read from the pool's
// metadata (Pool.Usage: one consistent view, no filesystem walked). A
// volume whose thin id the pool lacks is missing from the map (Check
// reports it).
func (c *Catalog) Usage(ctx context.Context) (map[string]Usage, error) {
	us, err := c.meta.usage(ctx)
	if err != nil {
		return nil, &Error{Op: "usage", Err: err}
	}
	block := uint64(c.pool.BlockSize()) * dm.SectorSize
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]Usage, len(c.vols))
	for _, u := range us {
		if k, ok := c.byID[u.ID]; ok {
			out[k] = Usage{Mapped: uint64(u.Mapped) * block, Exclusive: uint64(u.Exclusive) * block}
		}
	}
	return out, nil
}

// Mapped returns the bytes of the pool's data device each of the volumes
// keys maps, read from the pool's metadata: only their entries in its
// device details tree, so the cost does not grow with the number of
// volumes or mappings in the pool (Usage walks every mapping to tell what
// is exclusive). A volume whose thin id the pool lacks is missing from the
// map; a key the catalog lacks is an error matching ErrNotFound.
func (c *Catalog) Mapped(ctx context.Context, keys ...string) (map[string]uint64, error) {
	c.mu.Lock()
	ids := make([]thin.DeviceID, 0, len(keys))
	byID := make(map[thin.DeviceID]string, len(keys))
	for _, k := range keys {
		v, ok := c.vols[k]
		if !ok {
			c.mu.Unlock()
			return nil, &Error{Op: "mapped", Key: k, Err: ErrNotFound}
		}
		ids = append(ids, v.ID)
		byID[v.ID] = k
	}
	c.mu.Unlock()
	ds, err := c.meta.details(ctx, ids...)
	if err != nil {
		return nil, &Error{Op: "mapped", Err: err}
	}
	block := uint64(c.pool.BlockSize()) * dm.SectorSize
	out := make(map[string]uint64, len(ds))
	for _, d := range ds {
		out[byID[d.ID]] = uint64(d.Mapped) * block
	}
	return out, nil
}

// metadataSource reads the pool's metadata.
type metadataSource struct {
	usage   func(context.Context) ([]thin.ThinUsage, error)
	details func(context.Context, ...thin.DeviceID) ([]thin.ThinDetails, error)
}

func checkKey(key string) error {
	if key == "" || len(key) > MaxKeyLen || !utf8.ValidString(key) {
		return fmt.Errorf("%w: a key is 1 to %d bytes of UTF-8", ErrInvalid, MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if key[i] == 0 {
			return fmt.Errorf("%w: a key may not contain NUL", ErrInvalid)
		}
	}
	return nil
}
