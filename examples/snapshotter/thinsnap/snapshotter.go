// Package thinsnap is a containerd snapshotter on dm-thin, built on the
// volume catalog of package github.com/thinp/thinp/thin/catalog: every
// snapshot is a thin device of one pool, and the catalog's crash-proof
// journal is the snapshotter's only metadata store.
//
//   - A snapshot without parent is a thin snapshot of the base volume: a
//     thin volume of Config.BaseImageSize made and formatted (mkfs.ext4 or
//     mkfs.xfs) once, the first time it is needed, with its lost+found
//     removed so that it is an empty directory.
//   - Prepare and View make a thin snapshot of the parent and activate it,
//     a view read-only; Mounts returns one ext4 (or xfs) mount of its device
//     node, /dev/dm-N, "ro" for a view.
//   - Commit renames the active snapshot's catalog key to the committed name
//     and deactivates its device: the thin device, and so its data, stay as
//     they are. A committed snapshot is an inactive thin device, the origin of
//     its children's snapshots.
//   - Remove deletes the thin device; a snapshot with children is refused
//     with errdefs.ErrFailedPrecondition.
//   - Usage is read from the pool's metadata (catalog.Usage): the bytes the
//     snapshot maps beyond what its parent maps. Inodes are not counted.
//
// Catalog keys are the snapshot's kind and its containerd key or name,
// "active/KEY", "view/KEY", "committed/NAME", so a commit changes the kind
// and the name in one catalog operation; the base volume is "base". The
// containerd labels and the times of a snapshot are catalog labels (see
// Labels).
//
// Methods return errors that containerd's errdefs classify:
// errdefs.ErrNotFound, errdefs.ErrAlreadyExists, errdefs.ErrInvalidArgument,
// errdefs.ErrFailedPrecondition, wrapping the catalog's errors.
package thinsnap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/filters"
	"github.com/containerd/errdefs"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/ioctl"
	"github.com/thinp/thinp/thin"
	"github.com/thinp/thinp/thin/catalog"
)

// Catalog keys.
const (
	baseKey         = "base"
	prefixActive    = "active/"
	prefixView      = "view/"
	prefixCommitted = "committed/"
)

// Catalog labels the snapshotter keeps beside the containerd labels. A
// containerd label "L" is the catalog label LabelPrefix+"L".
const (
	// LabelPrefix starts the catalog label of each containerd label.
	LabelPrefix = "label:"
	// LabelCreated and LabelUpdated are the snapshot's times, RFC 3339
	// with nanoseconds, UTC.
	LabelCreated = "thinsnap.created"
	LabelUpdated = "thinsnap.updated"
	// LabelFSType is the file system of the snapshot (of the base volume
	// it descends from).
	LabelFSType = "thinsnap.fstype"
	// LabelFormatted marks the base volume once its file system is made.
	LabelFormatted = "thinsnap.formatted"
)

// formatter makes and readies file systems: the system's mkfs and mount in
// production, a stand-in in unit tests on the fake kernel.
type formatter interface {
	// Format makes a file system of type fs on the device node dev and
	// leaves its root an empty directory of mode 0755.
	Format(ctx context.Context, dev, fs, options string) error
	// Discard discards every block of the device node dev.
	Discard(ctx context.Context, dev string) error
	// UnmountStale unmounts what a Format a crash stopped left mounted of
	// the device major:minor.
	UnmountStale(major, minor uint32) error
}

// Snapshotter is a containerd snapshots.Snapshotter (and snapshots.Cleaner)
// on a thin pool's volume catalog. It is safe for concurrent use: Prepares
// and Views overlap whole (the catalog sends the snapshots that queue up
// while a pool transaction runs in the next one, together), and so do the
// deactivations of Commit; renames and removals run one at a time. A
// parent with a snapshot being made from it cannot be removed.
type Snapshotter struct {
	cat      *catalog.Catalog
	cfg      Config
	baseSize dm.Sectors
	fs       formatter
	now      func() time.Time

	mu sync.Mutex // serialises changes: a key's existence check and its creation
	// creating maps the keys whose snapshot is being made without mu to
	// their parent's catalog key: the key is taken, the parent is kept.
	creating map[string]string

	closeOnce sync.Once
	closeErr  error
	closers   []func() error // what Open opened, last first
}

// Open opens (or creates, from Config.MetadataDevice and DataDevice) the
// pool Config.PoolName and the catalog in Config.RootPath, and returns a
// Snapshotter that owns them: Close closes them. It needs root and a
// kernel with device-mapper. A committed snapshot whose device a crash in
// Commit left active is deactivated.
func Open(ctx context.Context, cfg Config) (*Snapshotter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctl, err := dm.Open()
	if err != nil {
		return nil, fmt.Errorf("thinsnap: open device-mapper: %w", err)
	}
	pool, err := thin.OpenPool(ctx, ctl, cfg.PoolName)
	if errors.Is(err, dm.ErrNotFound) && cfg.DataDevice != "" {
		pool, err = createPool(ctx, ctl, cfg)
	}
	if err != nil {
		ctl.Close()
		return nil, fmt.Errorf("thinsnap: pool %s: %w", cfg.PoolName, err)
	}
	opts := []catalog.Option{catalog.WithDevicePrefix(cfg.PoolName + "-snap-")}
	if cfg.AsyncRemove {
		opts = append(opts, catalog.WithDeferredDeletion())
	}
	cat, err := catalog.Open(ctx, pool, cfg.RootPath, opts...)
	if err != nil {
		ctl.Close()
		return nil, fmt.Errorf("thinsnap: catalog %s: %w", cfg.RootPath, err)
	}
	s, err := New(cat, cfg)
	if err != nil {
		cat.Close()
		ctl.Close()
		return nil, err
	}
	s.closers = []func() error{cat.Close, ctl.Close}
	s.settle(ctx)
	return s, nil
}

// settle finishes what a crash between the two steps of a Commit left: a
// committed snapshot whose device is still active is deactivated (one
// still open, mounted, stays so, as Commit leaves it).
func (s *Snapshotter) settle(ctx context.Context) {
	for _, v := range s.cat.List() {
		k, name := kindOf(v.Key)
		if k != snapshots.KindCommitted || v.State != catalog.Active {
			continue
		}
		if err := s.cat.Deactivate(ctx, v.Key); err != nil {
			slog.WarnContext(ctx, "thinsnap: committed snapshot's device stays active", "name", name, "err", err)
		}
	}
}

// createPool creates the pool on the configured devices, without zeroing
// the metadata: the kernel formats metadata that starts zeroed and opens
// metadata that is there.
func createPool(ctx context.Context, ctl *dm.Control, cfg Config) (*thin.Pool, error) {
	meta, err := ioctl.DevOf(cfg.MetadataDevice)
	if err != nil {
		return nil, &ConfigError{Key: "metadata_device", Value: cfg.MetadataDevice, Err: err}
	}
	data, err := ioctl.DevOf(cfg.DataDevice)
	if err != nil {
		return nil, &ConfigError{Key: "data_device", Value: cfg.DataDevice, Err: err}
	}
	bs, err := cfg.blockSizeBytes()
	if err != nil {
		return nil, err
	}
	return thin.CreatePool(ctx, ctl, cfg.PoolName, thin.PoolSpec{
		Metadata: meta, Data: data, BlockSize: dm.Sectors(bs / 512),
		LowWaterMark: 0, ErrorIfNoSpace: true,
	})
}

// New returns a Snapshotter on an open catalog, which the caller keeps
// and closes after the Snapshotter. cfg.PoolName, MetadataDevice,
// DataDevice, DataBlockSize and AsyncRemove are not used here: the catalog
// already has its pool and options. cfg.RootPath may be empty.
func New(cat *catalog.Catalog, cfg Config) (*Snapshotter, error) {
	check := cfg
	if check.RootPath == "" {
		check.RootPath = cat.Dir()
	}
	if check.PoolName == "" {
		check.PoolName = cat.Pool().Name()
	}
	check.MetadataDevice, check.DataDevice = "", ""
	if err := check.Validate(); err != nil {
		return nil, err
	}
	size, _ := check.baseImageBytes()
	return &Snapshotter{
		creating: map[string]string{},
		cat:      cat,
		cfg:      check,
		baseSize: thin.Size(size),
		fs:       systemFS{},
		now:      func() time.Time { return time.Now().UTC() },
	}, nil
}

// Catalog returns the snapshotter's catalog.
func (s *Snapshotter) Catalog() *catalog.Catalog { return s.cat }

// kindOf tells a catalog key's kind and the containerd key or name in it.
func kindOf(key string) (snapshots.Kind, string) {
	switch {
	case strings.HasPrefix(key, prefixActive):
		return snapshots.KindActive, key[len(prefixActive):]
	case strings.HasPrefix(key, prefixView):
		return snapshots.KindView, key[len(prefixView):]
	case strings.HasPrefix(key, prefixCommitted):
		return snapshots.KindCommitted, key[len(prefixCommitted):]
	}
	return snapshots.KindUnknown, ""
}

func catalogKey(k snapshots.Kind, name string) string {
	switch k {
	case snapshots.KindActive:
		return prefixActive + name
	case snapshots.KindView:
		return prefixView + name
	case snapshots.KindCommitted:
		return prefixCommitted + name
	}
	panic("thinsnap: no catalog key for kind " + k.String())
}

// lookup finds the snapshot with containerd key or name key, of any kind.
func (s *Snapshotter) lookup(key string) (catalog.Volume, error) {
	if key == "" {
		return catalog.Volume{}, fmt.Errorf("empty snapshot key: %w", errdefs.ErrInvalidArgument)
	}
	for _, k := range []snapshots.Kind{snapshots.KindActive, snapshots.KindView, snapshots.KindCommitted} {
		v, err := s.cat.Get(catalogKey(k, key))
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, catalog.ErrNotFound) {
			return catalog.Volume{}, err
		}
	}
	return catalog.Volume{}, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrNotFound)
}

// info builds a snapshot's Info from its catalog volume.
func info(v catalog.Volume) snapshots.Info {
	kind, name := kindOf(v.Key)
	in := snapshots.Info{Kind: kind, Name: name}
	if pk, pname := kindOf(v.Parent); pk == snapshots.KindCommitted {
		in.Parent = pname
	}
	for k, val := range v.Labels {
		if l, ok := strings.CutPrefix(k, LabelPrefix); ok {
			if in.Labels == nil {
				in.Labels = map[string]string{}
			}
			in.Labels[l] = val
		}
	}
	in.Created = parseTime(v.Labels[LabelCreated], v.Created)
	in.Updated = parseTime(v.Labels[LabelUpdated], in.Created)
	return in
}

func parseTime(s string, def time.Time) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return def.UTC()
	}
	return t
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// catalogLabels is what the catalog keeps for a snapshot: the containerd
// labels, prefixed, and the snapshotter's own.
func catalogLabels(labels map[string]string, fs string, created, updated time.Time) map[string]string {
	out := make(map[string]string, len(labels)+3)
	for k, v := range labels {
		out[LabelPrefix+k] = v
	}
	out[LabelFSType] = fs
	out[LabelCreated] = formatTime(created)
	out[LabelUpdated] = formatTime(updated)
	return out
}

// wrap turns a catalog error into one errdefs classifies.
func wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	var class error
	switch {
	case errdefs.IsNotFound(err), errdefs.IsAlreadyExists(err), errdefs.IsInvalidArgument(err),
		errdefs.IsFailedPrecondition(err):
		return fmt.Errorf("%s %q: %w", op, key, err)
	case errors.Is(err, catalog.ErrNotFound):
		class = errdefs.ErrNotFound
	case errors.Is(err, catalog.ErrExists):
		class = errdefs.ErrAlreadyExists
	case errors.Is(err, catalog.ErrInvalid):
		class = errdefs.ErrInvalidArgument
	case errors.Is(err, catalog.ErrLowSpace):
		class = errdefs.ErrResourceExhausted
	case errors.Is(err, dm.ErrBusy):
		class = errdefs.ErrFailedPrecondition
	case errors.Is(err, catalog.ErrClosed):
		class = errdefs.ErrUnavailable
	default:
		return fmt.Errorf("%s %q: %w", op, key, err)
	}
	return fmt.Errorf("%s %q: %w (%w)", op, key, class, err)
}

// Stat returns the info of the snapshot key, of any kind.
func (s *Snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	v, err := s.lookup(key)
	if err != nil {
		return snapshots.Info{}, wrap("stat", key, err)
	}
	return info(v), nil
}

// Update changes the labels of a snapshot, its only mutable field: all of
// them without fieldpaths or with "labels", or the one label of each
// "labels.KEY" (removed when info.Labels has no value for it). Other
// fieldpaths are errdefs.ErrInvalidArgument.
func (s *Snapshotter) Update(ctx context.Context, in snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.lookup(in.Name)
	if err != nil {
		return snapshots.Info{}, wrap("update", in.Name, err)
	}
	cur := info(v)
	labels := map[string]string{}
	for k, val := range cur.Labels {
		labels[k] = val
	}
	if len(fieldpaths) == 0 {
		labels = in.Labels
	}
	for _, p := range fieldpaths {
		if l, ok := strings.CutPrefix(p, "labels."); ok {
			if val := in.Labels[l]; val != "" {
				labels[l] = val
			} else {
				delete(labels, l)
			}
			continue
		}
		if p != "labels" {
			return snapshots.Info{}, fmt.Errorf("update %q: field %q cannot be changed: %w", in.Name, p, errdefs.ErrInvalidArgument)
		}
		labels = in.Labels
	}
	fs := v.Labels[LabelFSType]
	if err := s.cat.SetLabels(ctx, v.Key, catalogLabels(labels, fs, cur.Created, s.now())); err != nil {
		return snapshots.Info{}, wrap("update", in.Name, err)
	}
	v, err = s.cat.Get(v.Key)
	if err != nil {
		return snapshots.Info{}, wrap("update", in.Name, err)
	}
	return info(v), nil
}

// Usage returns the bytes of the pool's data device the snapshot maps
// beyond what its parent (or the base volume) maps, as the pool's metadata
// records them (catalog.Mapped: two entries of its device details, however
// many snapshots there are): about the blocks written since the snapshot
// was made. Inodes is 0.
func (s *Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	v, err := s.lookup(key)
	if err != nil {
		return snapshots.Usage{}, wrap("usage", key, err)
	}
	keys := []string{v.Key}
	if p, err := s.cat.Get(v.Parent); err == nil && p.ID == v.ParentID {
		keys = append(keys, p.Key)
	}
	mapped, err := s.cat.Mapped(ctx, keys...)
	if err != nil {
		return snapshots.Usage{}, wrap("usage", key, err)
	}
	self, ok := mapped[v.Key]
	if !ok {
		return snapshots.Usage{}, fmt.Errorf("usage %q: thin id %d is not in the pool's metadata: %w", key, v.ID, errdefs.ErrNotFound)
	}
	size := int64(self)
	if len(keys) == 2 {
		size -= int64(mapped[keys[1]])
	}
	return snapshots.Usage{Size: max(size, 0)}, nil
}

// Mounts returns the mounts of an active or view snapshot, activating its
// device if it is not (after a reboot, say).
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	v, err := s.lookup(key)
	if err != nil {
		return nil, wrap("mounts", key, err)
	}
	kind, _ := kindOf(v.Key)
	if kind == snapshots.KindCommitted {
		return nil, fmt.Errorf("mounts %q: a committed snapshot has no mounts: %w", key, errdefs.ErrFailedPrecondition)
	}
	return s.mounts(ctx, v)
}

func (s *Snapshotter) mounts(ctx context.Context, v catalog.Volume) ([]mount.Mount, error) {
	kind, name := kindOf(v.Key)
	var opts []catalog.ActivateOption
	if kind == snapshots.KindView {
		opts = append(opts, catalog.ReadOnly())
	}
	dev, err := s.cat.Activate(ctx, v.Key, opts...)
	if err != nil {
		return nil, wrap("activate", name, err)
	}
	fs := v.Labels[LabelFSType]
	if fs == "" {
		fs = FSExt4
	}
	var mopts []string
	if fs == FSXFS {
		mopts = append(mopts, "nouuid") // every snapshot has the base's uuid
	}
	if kind == snapshots.KindView {
		mopts = append(mopts, "ro")
	}
	return []mount.Mount{{Type: fs, Source: dev, Options: mopts}}, nil
}

// Prepare makes the active snapshot key, a writable thin snapshot of the
// committed snapshot parent (of the empty base volume if parent is ""), and
// returns its mount.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindActive, key, parent, opts)
}

// View makes the view key, a read-only thin snapshot of the committed
// snapshot parent (of the empty base volume if parent is ""), and returns
// its read-only mount.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindView, key, parent, opts)
}

func (s *Snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	op := strings.ToLower(kind.String())
	if kind == snapshots.KindActive {
		op = "prepare"
	}
	var base snapshots.Info
	for _, o := range opts {
		if err := o(&base); err != nil {
			return nil, fmt.Errorf("%s %q: %w", op, key, err)
		}
	}
	ck := catalogKey(kind, key)
	// The key is taken and the parent found under s.mu; the snapshot and
	// its activation are made without, beside other snapshots' (the
	// catalog sends the snapshots that queue up meanwhile in one pool
	// transaction).
	origin, labels, err := func() (catalog.Volume, map[string]string, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.creating[key]; ok {
			return catalog.Volume{}, nil, fmt.Errorf("%s %q: %w", op, key, errdefs.ErrAlreadyExists)
		}
		if _, err := s.lookup(key); err == nil {
			return catalog.Volume{}, nil, fmt.Errorf("%s %q: %w", op, key, errdefs.ErrAlreadyExists)
		} else if !errdefs.IsNotFound(err) {
			return catalog.Volume{}, nil, wrap(op, key, err)
		}
		var origin catalog.Volume
		if parent == "" {
			b, err := s.base(ctx)
			if err != nil {
				return catalog.Volume{}, nil, wrap(op, key, err)
			}
			origin = b
		} else {
			p, err := s.lookup(parent)
			if err != nil {
				return catalog.Volume{}, nil, wrap(op, key, fmt.Errorf("parent: %w", err))
			}
			if pk, _ := kindOf(p.Key); pk != snapshots.KindCommitted {
				return catalog.Volume{}, nil, fmt.Errorf("%s %q: parent %q is not a committed snapshot: %w", op, key, parent, errdefs.ErrInvalidArgument)
			}
			origin = p
		}
		now := s.now()
		s.creating[key] = origin.Key
		return origin, catalogLabels(base.Labels, origin.Labels[LabelFSType], now, now), nil
	}()
	if err != nil {
		return nil, err
	}
	v, err := s.cat.Snapshot(ctx, ck, origin.Key, catalog.WithLabels(labels))
	s.mu.Lock()
	delete(s.creating, key)
	s.mu.Unlock()
	if err != nil {
		return nil, wrap(op, key, err)
	}
	m, err := s.mounts(ctx, v)
	if err != nil {
		if derr := s.cat.Delete(ctx, ck); derr != nil {
			err = errors.Join(err, fmt.Errorf("and its thin device stays: %w", derr))
		}
		return nil, err
	}
	return m, nil
}

// base returns the base volume, making and formatting it the first time.
// A base volume whose formatting a crash interrupted is made again.
func (s *Snapshotter) base(ctx context.Context) (catalog.Volume, error) {
	v, err := s.cat.Get(baseKey)
	if err == nil && v.Labels[LabelFormatted] != "" {
		return v, nil
	}
	if err == nil {
		// A crash in Format may have left the base mounted.
		if v.State == catalog.Active {
			info, err := s.cat.Pool().Control().Info(ctx, dm.Name(v.Device))
			if err == nil {
				err = s.fs.UnmountStale(info.Dev.Major, info.Dev.Minor)
			}
			if err != nil && !errors.Is(err, dm.ErrNotFound) {
				return v, fmt.Errorf("base volume left unformatted: %w", err)
			}
		}
		if err := s.cat.Delete(ctx, baseKey); err != nil {
			return v, fmt.Errorf("base volume left unformatted: %w", err)
		}
	} else if !errors.Is(err, catalog.ErrNotFound) {
		return v, err
	}
	fs := s.cfg.fsType()
	labels := map[string]string{LabelFSType: fs}
	if _, err := s.cat.Create(ctx, baseKey, s.baseSize, catalog.WithLabels(labels)); err != nil {
		return v, fmt.Errorf("base volume: %w", err)
	}
	err = func() error {
		dev, err := s.cat.Activate(ctx, baseKey)
		if err != nil {
			return err
		}
		options := s.cfg.FSOptions
		if fs == FSExt4 && options == "" {
			options = DefaultExt4Options
		}
		if err := s.fs.Format(ctx, dev, fs, options); err != nil {
			return err
		}
		if err := s.cat.Deactivate(ctx, baseKey); err != nil {
			return err
		}
		labels[LabelFormatted] = formatTime(s.now())
		return s.cat.SetLabels(ctx, baseKey, labels)
	}()
	if err != nil {
		if derr := s.cat.Delete(ctx, baseKey); derr != nil {
			err = errors.Join(err, fmt.Errorf("and the base volume stays: %w", derr))
		}
		return v, fmt.Errorf("base volume: %w", err)
	}
	return s.cat.Get(baseKey)
}

// Commit makes the active snapshot key the committed snapshot name: its
// catalog key is renamed (one catalog operation, so a crash leaves either
// the active snapshot or the committed one), its labels become those of
// opts and its times now, and its device is deactivated. A device still
// open (mounted) stays active until Remove, with a warning in the log.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	var base snapshots.Info
	for _, o := range opts {
		if err := o(&base); err != nil {
			return fmt.Errorf("commit %q: %w", key, err)
		}
	}
	ck := catalogKey(snapshots.KindCommitted, name)
	// The rename is made under s.mu; the deactivation runs without (a
	// snapshot of it waits for that in the catalog).
	if err := s.rename(ctx, name, key, base); err != nil {
		return err
	}
	if err := s.cat.Deactivate(ctx, ck); err != nil {
		if !errors.Is(err, dm.ErrBusy) {
			return wrap("commit", key, err)
		}
		slog.WarnContext(ctx, "thinsnap: committed snapshot's device is still open; it stays active", "name", name, "err", err)
	}
	return nil
}

// rename gives the active snapshot key the committed name, with the labels
// of base, under s.mu.
func (s *Snapshotter) rename(ctx context.Context, name, key string, base snapshots.Info) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.lookup(key)
	if err != nil {
		return wrap("commit", key, err)
	}
	if k, _ := kindOf(v.Key); k != snapshots.KindActive {
		return fmt.Errorf("commit %q: a %s snapshot cannot be committed: %w", key, strings.ToLower(k.String()), errdefs.ErrFailedPrecondition)
	}
	if base.Parent != "" && base.Parent != info(v).Parent {
		return fmt.Errorf("commit %q: cannot change the parent to %q: %w", key, base.Parent, errdefs.ErrNotImplemented)
	}
	if _, err := s.lookup(name); err == nil {
		return fmt.Errorf("commit %q as %q: %w", key, name, errdefs.ErrAlreadyExists)
	} else if !errdefs.IsNotFound(err) {
		return wrap("commit", key, err)
	}
	now := s.now()
	// Key and labels change in one journal record: a crash leaves both.
	if err := s.cat.Rename(ctx, v.Key, catalogKey(snapshots.KindCommitted, name), catalog.WithLabels(catalogLabels(base.Labels, v.Labels[LabelFSType], now, now))); err != nil {
		return wrap("commit", key, err)
	}
	return nil
}

// Remove deletes the snapshot key and its thin device. A snapshot that is
// the parent of another is refused with errdefs.ErrFailedPrecondition, and
// so is one whose device is open (mounted), unless Config.AsyncRemove.
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.lookup(key)
	if err != nil {
		return wrap("remove", key, err)
	}
	children, err := s.cat.Children(v.Key)
	if err != nil {
		return wrap("remove", key, err)
	}
	if len(children) > 0 {
		_, child := kindOf(children[0].Key)
		return fmt.Errorf("remove %q: snapshot %q descends from it: %w", key, child, errdefs.ErrFailedPrecondition)
	}
	for child, parent := range s.creating {
		if parent == v.Key {
			return fmt.Errorf("remove %q: snapshot %q is being made from it: %w", key, child, errdefs.ErrFailedPrecondition)
		}
	}
	if k, _ := kindOf(v.Key); s.cfg.DiscardBlocks && k != snapshots.KindView {
		dev, err := s.cat.Activate(ctx, v.Key)
		if err != nil {
			return wrap("remove", key, err)
		}
		if err := s.fs.Discard(ctx, dev); err != nil {
			return wrap("remove", key, err)
		}
	}
	return wrap("remove", key, s.cat.Delete(ctx, v.Key))
}

// Walk calls fn for every snapshot that matches one of the filters
// (containerd's filter syntax on the fields kind, name, parent and
// labels.KEY), or for all without filters. fn may call the snapshotter.
func (s *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, fs ...string) error {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return err
	}
	return s.cat.Walk(func(v catalog.Volume) error {
		if k, _ := kindOf(v.Key); k == snapshots.KindUnknown {
			return nil // the base volume
		}
		in := info(v)
		if !filter.Match(adapt(in)) {
			return nil
		}
		return fn(ctx, in)
	})
}

// adapt exposes an Info's fields to containerd's filters.
func adapt(in snapshots.Info) filters.Adaptor {
	return filters.AdapterFunc(func(path []string) (string, bool) {
		if len(path) == 0 {
			return "", false
		}
		switch path[0] {
		case "kind":
			return strings.ToLower(in.Kind.String()), true
		case "name":
			return in.Name, true
		case "parent":
			return in.Parent, true
		case "labels":
			v, ok := in.Labels[strings.Join(path[1:], ".")]
			return v, ok
		}
		return "", false
	})
}

// Cleanup deletes the thin devices of snapshots removed while their
// device was open (Config.AsyncRemove) whose device has closed since.
func (s *Snapshotter) Cleanup(ctx context.Context) error {
	left, err := s.cat.RetryDeferred(ctx)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	if left > 0 {
		slog.DebugContext(ctx, "thinsnap: deletions still waiting for their device to close", "count", left)
	}
	return nil
}

// Close releases what Open opened (the catalog, the device-mapper control
// device); it leaves devices active. A second Close returns the first's
// result.
func (s *Snapshotter) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		for _, c := range s.closers {
			errs = append(errs, c())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

var (
	_ snapshots.Snapshotter = (*Snapshotter)(nil)
	_ snapshots.Cleaner     = (*Snapshotter)(nil)
)
