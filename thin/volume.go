package thin

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
)

// Volume is an active thin device: a dm device whose table is one thin
// target mapping a thin id of its pool.
type Volume struct {
	pool   *Pool
	name   string
	id     DeviceID
	dev    dm.Dev
	size   dm.Sectors
	origin dm.Dev
}

// Name is the dm device's name.
func (v *Volume) Name() string { return v.name }

// ID is the thin device id the volume maps.
func (v *Volume) ID() DeviceID { return v.id }

// Pool is the volume's pool.
func (v *Volume) Pool() *Pool { return v.pool }

// Dev is the dm device's number.
func (v *Volume) Dev() dm.Dev { return v.dev }

// Size is the volume's size when it was activated or opened.
func (v *Volume) Size() dm.Sectors { return v.size }

// ExternalOrigin is the volume's external origin, or the zero Dev.
func (v *Volume) ExternalOrigin() dm.Dev { return v.origin }

// Spec is the volume's thin parameters.
func (v *Volume) Spec() ThinSpec {
	return ThinSpec{Pool: v.pool.dev, ID: v.id, ExternalOrigin: v.origin}
}

// MapperPath is /dev/mapper/<name>, which exists once udev (or dm, when it
// manages nodes) has made it.
func (v *Volume) MapperPath() string {
	return filepath.Join(v.pool.cfg.devDir, "mapper", v.name)
}

// DevPath is /dev/dm-<minor>, the node devtmpfs makes for every dm device.
func (v *Volume) DevPath() string {
	return filepath.Join(v.pool.cfg.devDir, "dm-"+strconv.FormatUint(uint64(v.dev.Minor), 10))
}

func (v *Volume) ref() dm.Ref { return dm.Name(v.name) }

// Status reads the volume's status (mapped sectors, highest mapped sector).
func (v *Volume) Status(ctx context.Context) (ThinStatus, error) {
	const op = "thin status"
	r, err := readOneStatus(ctx, v.pool.ctl, v.ref(), ParseThinStatus, func(s *ThinStatus) []string { return s.Extra }, dm.NoFlush)
	if err != nil {
		return ThinStatus{}, newError(op, v.pool.name, nil, err)
	}
	if r.targets != 1 || r.first != ThinTargetType {
		return ThinStatus{}, failed(op, v.pool.name, ErrNotThin, v.ref(), errors.New("not a single thin target"))
	}
	if r.parseErr != nil {
		return ThinStatus{}, failed(op, v.pool.name, nil, v.ref(), r.parseErr)
	}
	return r.st, nil
}

// Deactivate removes the volume's dm device; the thin device and its data
// stay in the pool. Flags: dm.Deferred, dm.NoRetry.
func (v *Volume) Deactivate(ctx context.Context, flags ...dm.Flag) error {
	err := v.pool.ctl.Remove(ctx, v.ref(), flags...)
	return wrap("deactivate "+v.name, v.pool.name, err, inUseKinds)
}

// Info reads the volume's dm device state: open count, event counter,
// whether it is suspended.
func (v *Volume) Info(ctx context.Context) (dm.Info, error) {
	info, err := v.pool.ctl.Info(ctx, v.ref())
	if err != nil {
		return dm.Info{}, newError("info "+v.name, v.pool.name, nil, err)
	}
	return info, nil
}

// Snapshot creates thin device id as a snapshot of this volume; see
// Pool.CreateSnapshot.
func (v *Volume) Snapshot(ctx context.Context, id DeviceID, opts ...SnapshotOption) error {
	return v.pool.CreateSnapshot(ctx, id, v.id, opts...)
}

// ActivateOption configures Pool.Activate: WithExternalOrigin,
// WithVolumeUUID, ReadOnlyVolume.
type ActivateOption interface{ applyActivate(*activateConfig) }

type activateFunc func(*activateConfig)

func (f activateFunc) applyActivate(c *activateConfig) { f(c) }

type activateConfig struct {
	origin   dm.Dev
	uuid     string
	readOnly bool
}

// WithExternalOrigin names the read-only external origin device that
// supplies every block a thin device has not written. Given to Activate,
// the volume maps it; given to CreateSnapshot, it tells the pool the
// origin's external origin when the pool cannot learn it (the origin is
// not active and was not activated through this Pool), and the snapshot
// must then be activated over the same device, which Activate does by
// default.
func WithExternalOrigin(origin dm.Dev) ExternalOrigin { return ExternalOrigin{dev: origin} }

// ExternalOrigin is the option WithExternalOrigin makes; it is both an
// ActivateOption and a SnapshotOption.
type ExternalOrigin struct{ dev dm.Dev }

func (o ExternalOrigin) applyActivate(c *activateConfig) { c.origin = o.dev }
func (o ExternalOrigin) applySnapshot(c *snapConfig)     { c.origin = o.dev }

// WithVolumeUUID gives the volume's dm device a uuid. Without it the
// volume gets THINP-thin-<pool major>:<pool minor>-<thin id>-<name>, by
// which the pool recognises its own volumes among its holders (see "Finding
// active thin devices" in the package documentation); a volume with
// another uuid is read again at each snapshot of its pool.
func WithVolumeUUID(uuid string) ActivateOption {
	return activateFunc(func(c *activateConfig) { c.uuid = uuid })
}

// ReadOnlyVolume activates the volume read-only.
func ReadOnlyVolume() ActivateOption {
	return activateFunc(func(c *activateConfig) { c.readOnly = true })
}

// Activate makes thin device id available as the dm device name, size
// sectors long (thin.Size(10*thin.GiB)). The pool stores no size: a
// shorter volume hides the device's tail, a longer one provisions blocks
// on demand. Size and id are checked before anything is sent.
//
// A snapshot of an external-origin device gets the same external origin
// when this Pool knows it (see CreateSnapshot); another origin is refused
// (ErrOriginMismatch).
//
// The kernel refuses an id the pool does not have (ErrUnknownID, ENODATA),
// and any activation while the pool is suspended (ErrPoolSuspended) or
// failed (ErrPoolFailed), both EINVAL. A failed Activate leaves no device.
func (p *Pool) Activate(ctx context.Context, name string, id DeviceID, size dm.Sectors, opts ...ActivateOption) (*Volume, error) {
	op := "activate " + name
	var c activateConfig
	for _, o := range opts {
		o.applyActivate(&c)
	}
	if size == 0 {
		return nil, invalid(op, p.name, nil, "size", "zero")
	}
	if size > maxSize {
		return nil, invalid(op, p.name, nil, "size", "%d sectors is too large (a negative size?)", size)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	defer p.ids.lock(id)()
	origin := c.origin
	if known, ok := p.ExternalOrigin(id); ok {
		if !origin.IsZero() && origin != known {
			return nil, invalid(op, p.name, ErrOriginMismatch, "external origin", "thin id %d descends from external origin %s, not %s", id, known, origin)
		}
		origin = known
	}
	spec := ThinSpec{Pool: p.dev, ID: id, ExternalOrigin: origin}
	if err := spec.Validate(); err != nil {
		return nil, invalidFrom(op, p.name, err)
	}
	var copts []dm.CreateOption
	if c.uuid == "" {
		c.uuid = volumeUUID(p.dev, id, name)
	}
	if c.uuid != "" {
		copts = append(copts, dm.WithUUID(c.uuid))
	}
	if c.readOnly {
		copts = append(copts, dm.WithReadOnly())
	}
	info, err := p.ctl.Create(ctx, name, dm.Table{spec.Target(size)}, copts...)
	if err != nil {
		return nil, p.activateError(ctx, op, err)
	}
	if !origin.IsZero() {
		p.learnOrigin(id, origin)
	}
	return &Volume{pool: p, name: name, id: id, dev: info.Dev, size: size, origin: origin}, nil
}

// activateError classifies a failed thin activation. The kernel says
// EINVAL both for a suspended pool and a failed one; the pool's state
// tells them apart.
func (p *Pool) activateError(ctx context.Context, op string, err error) error {
	switch errnoOf(err) {
	case unix.ENODATA:
		return newError(op, p.name, ErrUnknownID, err)
	case unix.EINVAL:
		bg := context.WithoutCancel(ctx)
		if info, ierr := p.ctl.Info(bg, p.ref()); ierr == nil && info.Suspended {
			return newError(op, p.name, ErrPoolSuspended, err)
		}
		if st, serr := p.status(bg, op, dm.NoFlush); serr == nil && !st.Mode.Working() {
			return newError(op, p.name, ErrPoolFailed, err)
		}
	}
	return wrap(op, p.name, err, nil)
}

// Volume returns the active thin device name of this pool; a device that
// is not a single thin target on this pool gives ErrNotThin.
func (p *Pool) Volume(ctx context.Context, name string) (*Volume, error) {
	op := "open volume " + name
	info, err := p.ctl.Info(ctx, dm.Name(name))
	if err != nil {
		return nil, newError(op, p.name, nil, err)
	}
	td, ok, err := p.readThin(ctx, dm.DevNum(info.Dev))
	if err != nil {
		return nil, newError(op, p.name, nil, err)
	}
	td.name, td.dev = info.Name, info.Dev
	if ok && td.failed {
		return nil, failed(op, p.name, ErrPoolFailed, dm.Name(name), errors.New("the pool has failed: the kernel shows no thin table"))
	}
	if !ok || !td.single {
		return nil, failed(op, p.name, ErrNotThin, dm.Name(name), errors.New("not a single thin target on pool "+p.dev.String()))
	}
	return p.volumeOf(td), nil
}

func (p *Pool) volumeOf(td thinDevice) *Volume {
	s := td.specs[0]
	return &Volume{pool: p, name: td.name, id: s.ID, dev: td.dev, size: td.size, origin: s.ExternalOrigin}
}

// Volumes lists the pool's active thin devices (those whose table is a
// single thin target on this pool), in name order.
func (p *Pool) Volumes(ctx context.Context) ([]*Volume, error) {
	active, err := p.holderThins(ctx, "volumes")
	if err != nil {
		return nil, err
	}
	var out []*Volume
	for _, td := range active {
		if td.single {
			out = append(out, p.volumeOf(td))
		}
	}
	return out, nil
}
