package thin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
)

// Pool is an active thin-pool device. Its methods send the pool's messages,
// activate its thin devices, resize and reconfigure it, and read its
// status. A Pool is safe for concurrent use: operations on different thin
// ids run in parallel, those on one id are ordered, and reloads,
// transactions and the pool-wide messages run alone. Two Pool values for
// the same device, or two processes, are not serialised with each other;
// transactions (Pool.Transaction) detect that.
type Pool struct {
	ctl       *dm.Control
	name      string
	dev       dm.Dev
	meta      dm.Dev // the metadata and data devices: fixed for a live pool
	data      dm.Dev
	blockSize dm.Sectors
	uuid      string // the pool device's dm uuid, which the kernel never changes once set
	cfg       poolConfig

	mu      sync.RWMutex        // held shared by per-id operations, alone by reloads, transactions and pool-wide messages
	ids     idLocks             // orders the operations on one thin id
	tmu     sync.Mutex          // one Transaction at a time (under mu shared)
	holders holderCache         // what this package's volumes among the pool's holders map
	omu     sync.Mutex          // guards origins
	origins map[DeviceID]dm.Dev // external origins learnt for thin ids
}

// PoolOption configures CreatePool and OpenPool.
type PoolOption func(*poolConfig)

type formatMode uint8

const (
	formatNone formatMode = iota
	formatFresh
	formatForce
)

type poolConfig struct {
	uuid     string
	format   formatMode
	metaPath string
	devDir   string
	shared   []dm.Dev // devices the caller lets the pool share (AllowInUse)
	host     hostDevs // nil: sysHost{ctl}
}

func newPoolConfig(ctl *dm.Control, opts []PoolOption) poolConfig {
	c := poolConfig{devDir: ctl.DevDir()}
	for _, o := range opts {
		o(&c)
	}
	if c.host == nil {
		c.host = sysHost{ctl: ctl}
	}
	return c
}

// WithPoolUUID gives a new pool device a device-mapper uuid.
func WithPoolUUID(uuid string) PoolOption { return func(c *poolConfig) { c.uuid = uuid } }

// FormatMetadata makes CreatePool prepare a fresh metadata device by
// zeroing its first 4 KiB, so that the kernel formats new, empty metadata
// when the pool is loaded. It refuses (ErrHasMetadata) a device that holds
// a thin-pool superblock, and the device must not be in use (it is opened
// exclusively). Without it, CreatePool opens the pool on whatever metadata
// the device holds.
func FormatMetadata() PoolOption { return func(c *poolConfig) { c.format = formatFresh } }

// ForceFormatMetadata is FormatMetadata that also overwrites an existing
// pool's superblock, destroying every thin device it had.
func ForceFormatMetadata() PoolOption { return func(c *poolConfig) { c.format = formatForce } }

// WithMetadataPath names the metadata device's node for FormatMetadata.
// By default it is found as /dev/block/<major>:<minor>, or from
// /sys/dev/block/<major>:<minor>/uevent. The node must be the metadata
// device: its device number is checked.
func WithMetadataPath(path string) PoolOption { return func(c *poolConfig) { c.metaPath = path } }

// AllowInUse lets CreatePool use dev although something else uses it
// (see CreatePool): for a caller who knows the sharing is safe, such as
// a device another tool holds open without writing. It is per device; a
// pool sharing a data device with another pool corrupts both.
func AllowInUse(dev dm.Dev) PoolOption {
	return func(c *poolConfig) { c.shared = append(c.shared, dev) }
}

// CreatePool creates the pool device name with spec's table and returns it
// ready for use. The metadata and data devices may be any block devices.
//
// Everything is checked before anything is sent: spec.Validate, and with a
// zero spec.Length the data device's size is read from sysfs (rounded down
// to whole blocks); a Length larger than the data device is refused. With
// FormatMetadata, the metadata device's first 4 KiB are zeroed first. If
// the kernel refuses the table, nothing is left behind (dm.Control.Create
// removes the device); the metadata device stays zeroed.
//
// One owner per device: neither device may be in use, by another pool, a
// thin or other dm device stacked on it, a mount in any mount namespace,
// or an exclusive claim (md, swap, a program's O_EXCL open). Device-mapper
// claims the devices under its tables with one holder for all dm devices,
// so the kernel itself refuses only a second pool on the same metadata
// device; a second pool on another pool's data device would run, and the
// two would overwrite each other's data without any check noticing. Such a
// device is refused before anything is sent, with ErrInUse (and
// dm.ErrBusy, unix.EBUSY) and a *dm.BusyError naming what uses it;
// AllowInUse opts one device out.
//
// Without FormatMetadata, metadata that records more data blocks than
// spec gives is refused with ErrShrink before anything is sent (the kernel
// would refuse the table at resume with EINVAL).
func CreatePool(ctx context.Context, ctl *dm.Control, name string, spec PoolSpec, opts ...PoolOption) (*Pool, error) {
	op := "create pool"
	cfg := newPoolConfig(ctl, opts)
	if err := checkName(name, cfg.uuid); err != nil {
		return nil, invalidFrom(op, name, err)
	}
	if err := spec.Validate(); err != nil {
		return nil, invalidFrom(op, name, err)
	}
	if cfg.format != formatNone && spec.ReadOnly {
		return nil, invalid(op, name, nil, "read_only", "a pool on fresh metadata cannot start read-only: the kernel only opens existing metadata read-only")
	}
	size, serr := cfg.host.size(spec.Data)
	switch {
	case spec.Length == 0 && serr != nil:
		return nil, invalid(op, name, nil, "length", "not given, and the data device's size is unknown: %v", serr)
	case spec.Length == 0:
		spec.Length = size / spec.BlockSize * spec.BlockSize
		if err := spec.Validate(); err != nil {
			return nil, invalidFrom(op, name, err)
		}
	case serr == nil && spec.Length > size:
		return nil, invalid(op, name, nil, "length", "%d sectors is more than the data device's %d", spec.Length, size)
	}
	for _, d := range []struct {
		what string
		dev  dm.Dev
	}{{"metadata device", spec.Metadata}, {"data device", spec.Data}} {
		if slices.Contains(cfg.shared, d.dev) {
			continue
		}
		u, err := cfg.host.users(ctx, d.dev)
		if err != nil {
			return nil, failed(op, name, nil, dm.DevNum(d.dev), err)
		}
		if u.InUse() {
			return nil, failed(op, name, ErrInUse, dm.Name(name), fmt.Errorf("%s %w", d.what, &dm.BusyError{Users: u}))
		}
	}
	if cfg.format == formatNone {
		if block, err := cfg.host.superblock(spec.Metadata); err == nil {
			if blocks, bs, ok := superblockDataBlocks(block); ok && bs == spec.BlockSize && uint64(spec.DataBlocks()) < blocks {
				return nil, invalid(op, name, ErrShrink, "length", "%d blocks is fewer than the %d the pool's metadata records", spec.DataBlocks(), blocks)
			}
		}
	}
	if cfg.format != formatNone {
		if err := cfg.host.format(spec.Metadata, cfg.metaPath, cfg.format == formatForce); err != nil {
			kind := error(nil)
			if errors.Is(err, ErrHasMetadata) {
				kind = ErrHasMetadata
			}
			return nil, failed("format metadata", name, kind, dm.DevNum(spec.Metadata), err)
		}
	}
	var copts []dm.CreateOption
	if cfg.uuid != "" {
		copts = append(copts, dm.WithUUID(cfg.uuid))
	}
	info, err := ctl.Create(ctx, name, spec.Table(), copts...)
	if err != nil {
		var kind error
		if errors.Is(err, dm.ErrBusy) {
			// The table load found a device in use: EBUSY from
			// DM_DEV_CREATE is a name taken, dm.ErrExists.
			kind = ErrInUse
		}
		return nil, newError(op, name, kind, err)
	}
	return &Pool{ctl: ctl, name: name, dev: info.Dev, meta: spec.Metadata, data: spec.Data, blockSize: spec.BlockSize, uuid: info.UUID, cfg: cfg}, nil
}

// OpenPool returns the existing pool device name. A device whose live table
// is not a single thin-pool target is refused with ErrNotPool.
func OpenPool(ctx context.Context, ctl *dm.Control, name string, opts ...PoolOption) (*Pool, error) {
	const op = "open pool"
	cfg := newPoolConfig(ctl, opts)
	info, err := ctl.Info(ctx, dm.Name(name))
	if err != nil {
		return nil, newError(op, name, nil, err)
	}
	table, err := ctl.Table(ctx, dm.Name(name))
	if err != nil {
		return nil, newError(op, name, nil, err)
	}
	spec, err := PoolSpecFromTable(table)
	if err != nil {
		return nil, failed(op, name, ErrNotPool, dm.Name(name), err)
	}
	return &Pool{ctl: ctl, name: name, dev: info.Dev, meta: spec.Metadata, data: spec.Data, blockSize: spec.BlockSize, uuid: info.UUID, cfg: cfg}, nil
}

// Name is the pool device's name.
func (p *Pool) Name() string { return p.name }

// Dev is the pool device's number, as thin tables refer to it.
func (p *Pool) Dev() dm.Dev { return p.dev }

// MetadataDev is the pool's metadata device; its node is
// Control().DevNode(pool.MetadataDev()).
func (p *Pool) MetadataDev() dm.Dev { return p.meta }

// DataDev is the pool's data device.
func (p *Pool) DataDev() dm.Dev { return p.data }

// Info reads the pool device's state: open count, event counter, whether
// it is suspended.
func (p *Pool) Info(ctx context.Context) (dm.Info, error) {
	info, err := p.ctl.Info(ctx, p.ref())
	if err != nil {
		return dm.Info{}, newError("info", p.name, nil, err)
	}
	return info, nil
}

// BlockSize is the pool's data block size.
func (p *Pool) BlockSize() dm.Sectors { return p.blockSize }

// Control is the device-mapper control the pool uses.
func (p *Pool) Control() *dm.Control { return p.ctl }

func (p *Pool) ref() dm.Ref { return dm.Name(p.name) }

// Spec reads the pool's live table.
func (p *Pool) Spec(ctx context.Context) (PoolSpec, error) {
	return p.spec(ctx, "table")
}

func (p *Pool) spec(ctx context.Context, op string) (PoolSpec, error) {
	table, err := p.ctl.Table(ctx, p.ref())
	if err != nil {
		return PoolSpec{}, newError(op, p.name, nil, err)
	}
	spec, err := PoolSpecFromTable(table)
	if err != nil {
		return PoolSpec{}, failed(op, p.name, ErrNotPool, p.ref(), err)
	}
	return spec, nil
}

// StatusOption configures Pool.Status.
type StatusOption func(*statusConfig)

type statusConfig struct{ commit bool }

// CommitMetadata makes Status commit the pool's metadata before reporting,
// so the figures include everything up to now. By default Status passes
// DM_NOFLUSH_FLAG and commits nothing, as monitoring should.
func CommitMetadata() StatusOption { return func(c *statusConfig) { c.commit = true } }

// Status reads the pool's status. By default it does not commit the
// metadata first (see CommitMetadata).
func (p *Pool) Status(ctx context.Context, opts ...StatusOption) (PoolStatus, error) {
	var c statusConfig
	for _, o := range opts {
		o(&c)
	}
	var flags []dm.Flag
	if !c.commit {
		flags = append(flags, dm.NoFlush)
	}
	return p.status(ctx, "status", flags...)
}

func (p *Pool) status(ctx context.Context, op string, flags ...dm.Flag) (PoolStatus, error) {
	r, err := readOneStatus(ctx, p.ctl, p.ref(), ParsePoolStatus, func(s *PoolStatus) []string { return s.Extra }, flags...)
	if err != nil {
		return PoolStatus{}, newError(op, p.name, nil, err)
	}
	if r.targets != 1 || r.first != PoolTargetType {
		return PoolStatus{}, failed(op, p.name, ErrNotPool, p.ref(), fmt.Errorf("status has %d targets, not one thin-pool (first: %q)", r.targets, r.first))
	}
	if r.parseErr != nil {
		return PoolStatus{}, failed(op, p.name, nil, p.ref(), r.parseErr)
	}
	return r.st, nil
}

func (p *Pool) parseStatus(op string, sts []dm.TargetStatus) (PoolStatus, error) {
	if len(sts) != 1 || sts[0].Type != PoolTargetType {
		return PoolStatus{}, failed(op, p.name, ErrNotPool, p.ref(), fmt.Errorf("status has %d targets, not one thin-pool", len(sts)))
	}
	st, err := ParsePoolStatus(sts[0].Status)
	if err != nil {
		return PoolStatus{}, failed(op, p.name, nil, p.ref(), err)
	}
	return st, nil
}

// TransactionID reads the pool's transaction id.
func (p *Pool) TransactionID(ctx context.Context) (uint64, error) {
	st, err := p.status(ctx, "transaction id", dm.NoFlush)
	if err != nil {
		return 0, err
	}
	if !st.Mode.Working() {
		return 0, modeError("transaction id", p.name, st)
	}
	return st.TransactionID, nil
}

// modeError is the error for a pool that refuses messages in its current
// state, or nil. The kernel refuses them with EOPNOTSUPP when read-only
// or failed; needs_check keeps a pool read-only, and this package refuses
// messages to it whatever its mode, as libdevmapper does.
func modeError(op, pool string, st PoolStatus) *Error {
	const errno = unix.EOPNOTSUPP
	switch {
	case st.Mode == ModeFail:
		return refused(op, pool, ErrPoolFailed, errno, "pool is in Fail mode")
	case st.Mode == ModeError:
		return refused(op, pool, ErrPoolFailed, errno, "pool status reads Error")
	case st.NeedsCheck:
		e := refused(op, pool, ErrNeedsCheck, errno, "pool metadata needs thin_check")
		if st.Mode == ModeReadOnly {
			e.also = []error{ErrPoolReadOnly}
		}
		return e
	case st.Mode == ModeReadOnly:
		return refused(op, pool, ErrPoolReadOnly, errno, "pool is read-only")
	}
	return nil
}

// checkMessages refuses messages to a pool LVM manages (checkOwner), then
// reads the pool's status and refuses if it would refuse messages. Only a
// transaction uses it: it needs the status (the transaction id) anyway.
// Single messages go straight to the kernel, which checks the mode itself.
func (p *Pool) checkMessages(ctx context.Context, op string) (PoolStatus, error) {
	if err := p.checkOwner(op); err != nil {
		return PoolStatus{}, err
	}
	st, err := p.status(ctx, op, dm.NoFlush)
	if err != nil {
		return st, err
	}
	if e := modeError(op, p.name, st); e != nil {
		return st, e
	}
	return st, nil
}

// message sends msg to the pool and classifies a failure. Nothing is read
// before sending: the kernel checks the pool's mode itself (EOPNOTSUPP in
// read-only and fail mode), and a check beforehand would cost an ioctl on
// every operation and still race with a mode change. An errno that says
// it all (in kinds, EINVAL aside) is classified at once; otherwise the
// pool's status, read afterwards, says why: its mode, or a device that is
// no thin-pool any more (a message to another target is EINVAL too).
func (p *Pool) message(ctx context.Context, op, msg string, kinds map[unix.Errno]error) error {
	_, err := p.ctl.Message(ctx, p.ref(), 0, msg)
	if err == nil {
		return nil
	}
	errno := errnoOf(err)
	if _, ok := kinds[errno]; errno == 0 || ok && errno != unix.EINVAL {
		// Not sent (a cancelled context), or the errno says it all.
		return wrap(op, p.name, err, kinds)
	}
	st, serr := p.status(context.WithoutCancel(ctx), op, dm.NoFlush)
	switch {
	case errors.Is(serr, ErrNotPool):
		return newError(op, p.name, ErrNotPool, err)
	case serr == nil:
		if me := modeError(op, p.name, st); me != nil {
			e := newError(op, p.name, me.Kind, err)
			e.also = me.also
			return e
		}
	}
	return wrap(op, p.name, err, kinds)
}

var (
	createKinds  = map[unix.Errno]error{unix.EEXIST: ErrIDInUse, unix.ENODATA: ErrUnknownID}
	deleteKinds  = map[unix.Errno]error{unix.ENODATA: ErrUnknownID, unix.EBUSY: ErrInUse}
	setTIDKinds  = map[unix.Errno]error{unix.EINVAL: ErrTransactionMismatch}
	reserveKinds = map[unix.Errno]error{unix.EBUSY: ErrMetadataSnapHeld}
	releaseKinds = map[unix.Errno]error{unix.EINVAL: ErrNoMetadataSnap}
	inUseKinds   = map[unix.Errno]error{unix.EBUSY: ErrInUse}
)

func createThinMsg(id DeviceID) string { return "create_thin " + strconv.FormatUint(uint64(id), 10) }

func createSnapMsg(id, origin DeviceID) string {
	return "create_snap " + strconv.FormatUint(uint64(id), 10) + " " + strconv.FormatUint(uint64(origin), 10)
}

func deleteMsg(id DeviceID) string { return "delete " + strconv.FormatUint(uint64(id), 10) }

// CreateThin creates thin device id in the pool (create_thin), empty and
// without a size: Activate gives it one. The kernel refuses an id in use,
// active or not (EEXIST: an active id exists in the metadata), which
// matches ErrIDInUse, dm.ErrExists and unix.EEXIST. It costs one ioctl,
// the message, however many devices the host and the pool have.
func (p *Pool) CreateThin(ctx context.Context, id DeviceID) error {
	op := createThinMsg(id)
	if err := validateID("device id", id); err != nil {
		return invalidFrom(op, p.name, err)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	defer p.ids.lock(id)()
	if err := p.checkOwner(op); err != nil {
		return err
	}
	return p.message(ctx, op, op, createKinds)
}

func idActive(op, pool string, id DeviceID, d thinDevice) *Error {
	return refused(op, pool, ErrIDInUse, unix.EEXIST, "thin id %d is active as %s", id, d.name)
}

// SnapshotOption configures CreateSnapshot: SnapshotNoFlush, or
// WithExternalOrigin (which is also an ActivateOption).
type SnapshotOption interface{ applySnapshot(*snapConfig) }

type snapFunc func(*snapConfig)

func (f snapFunc) applySnapshot(c *snapConfig) { f(c) }

type snapConfig struct {
	flags  []dm.Flag
	origin dm.Dev
}

// SnapshotNoFlush suspends an active origin without flushing its queued
// I/O (DM_NOFLUSH_FLAG), for an origin whose pool is out of data space in
// queue mode, where a flushing suspend would wait for the no-space
// timeout. The snapshot then does not include the queued writes.
func SnapshotNoFlush() SnapshotOption {
	return snapFunc(func(c *snapConfig) { c.flags = append(c.flags, dm.NoFlush) })
}

// CreateSnapshot creates thin device id as a snapshot of thin device
// origin (create_snap). Every active device mapping origin in this pool is
// suspended first, because a snapshot of a device with I/O in flight can
// corrupt data and the kernel does not check; each is resumed afterwards
// whatever happens, including when the message fails. Devices the caller
// has already suspended are left alone, suspended. With an active origin,
// the pool must not be suspended (suspending the origin would block):
// ErrPoolSuspended.
//
// If the origin has an external origin (from its active table, an earlier
// Activate through this Pool, or WithExternalOrigin), the snapshot
// inherits it: Activate uses it for id unless told otherwise, and refuses
// another one (ErrOriginMismatch). The pool itself does not record
// external origins; callers that restart should keep them with their ids.
func (p *Pool) CreateSnapshot(ctx context.Context, id, origin DeviceID, opts ...SnapshotOption) error {
	op := createSnapMsg(id, origin)
	var c snapConfig
	for _, o := range opts {
		o.applySnapshot(&c)
	}
	if err := validateID("device id", id); err != nil {
		return invalidFrom(op, p.name, err)
	}
	if err := validateID("origin id", origin); err != nil {
		return invalidFrom(op, p.name, err)
	}
	if id == origin {
		return invalid(op, p.name, ErrIDInUse, "device id", "a snapshot needs a new id, not its origin's")
	}
	if !c.origin.IsZero() {
		if err := validateDev("external origin", c.origin); err != nil {
			return invalidFrom(op, p.name, err)
		}
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	defer p.ids.lock(id, origin)()
	if err := p.checkOwner(op); err != nil {
		return err
	}
	active, err := p.activeThins(ctx, op, id, origin)
	if err != nil {
		return err
	}
	_, err = p.snapshot(ctx, op, id, origin, c, active, false)
	return err
}

// snapshot sends create_snap with every active device of origin suspended.
// It learns the snapshot's external origin. With tolerateExists, EEXIST
// counts as done (transaction replay), and skipped says so.
func (p *Pool) snapshot(ctx context.Context, op string, id, origin DeviceID, c snapConfig, active thinDevices, tolerateExists bool) (skipped bool, err error) {
	if d, ok := active.find(id); ok {
		if tolerateExists {
			return true, nil
		}
		return false, idActive(op, p.name, id, d)
	}
	ext := c.origin
	var refs []dm.Ref
	for _, d := range active {
		for _, s := range d.specs {
			if s.ID != origin {
				continue
			}
			if !s.ExternalOrigin.IsZero() {
				if !ext.IsZero() && ext != s.ExternalOrigin {
					return false, invalid(op, p.name, ErrOriginMismatch, "external origin", "origin %d is active as %s with external origin %s, not %s", origin, d.name, s.ExternalOrigin, ext)
				}
				ext = s.ExternalOrigin
			}
			// One status tells both what matters: whether the caller
			// suspended it (it stays so), and whether the pool is
			// suspended, which suspends its active thins internally
			// (suspending one then would block until the pool resumes).
			info, err := p.ctl.Info(ctx, dm.DevNum(d.dev))
			switch {
			case errors.Is(err, dm.ErrNotFound): // gone meanwhile
			case err != nil:
				return false, newError(op, p.name, nil, err)
			case info.Suspended: // one the caller suspended stays so
			case info.InternalSuspend:
				return false, refused(op, p.name, ErrPoolSuspended, unix.EBUSY, "the pool is suspended, so its active origin cannot be")
			default:
				refs = append(refs, dm.DevNum(d.dev))
			}
			break
		}
	}
	if known, ok := p.ExternalOrigin(origin); ok {
		if !ext.IsZero() && ext != known {
			return false, invalid(op, p.name, ErrOriginMismatch, "external origin", "origin %d descends from external origin %s, not %s", origin, known, ext)
		}
		ext = known
	}
	ran := false
	var msgErr error
	werr := p.withSuspended(ctx, refs, c.flags, func() error {
		ran = true
		msgErr = p.message(ctx, op, createSnapMsg(id, origin), createKinds)
		if tolerateExists && errnoOf(msgErr) == unix.EEXIST {
			msgErr, skipped = nil, true
		}
		return msgErr
	})
	var rerr error
	if werr != nil { // a resume may have failed
		rerr = p.ensureResumed(ctx, refs)
	}
	switch {
	case !ran: // a suspend failed: nothing was sent
		if rerr != nil {
			return false, joinErr(op, p.name, wrap(op, p.name, werr, nil), rerr)
		}
		return false, wrap(op, p.name, werr, nil)
	case msgErr != nil:
		if rerr != nil {
			return false, joinErr(op, p.name, msgErr, rerr)
		}
		return false, msgErr
	case rerr != nil:
		// The snapshot exists, but an origin is still suspended.
		return false, newError(op, p.name, nil, fmt.Errorf("snapshot %d created, but: %w", id, errors.Join(werr, rerr)))
	}
	// A resume that failed once (werr) and succeeded when retried is not
	// worth failing a snapshot that exists.
	if !ext.IsZero() {
		p.learnOrigin(id, ext)
	}
	return skipped, nil
}

// withSuspended suspends every device in refs, runs fn, and resumes them
// all in reverse order whatever fn returns.
func (p *Pool) withSuspended(ctx context.Context, refs []dm.Ref, flags []dm.Flag, fn func() error) error {
	if len(refs) == 0 {
		return fn()
	}
	return p.ctl.WithSuspended(ctx, refs[0], func() error {
		return p.withSuspended(ctx, refs[1:], flags, fn)
	}, flags...)
}

// ensureResumed checks that every device in refs is running, and resumes
// one that is not: dm.Control.WithSuspended reports only fn's error when
// both fn and the resume fail.
func (p *Pool) ensureResumed(ctx context.Context, refs []dm.Ref) error {
	bg := context.WithoutCancel(ctx)
	var errs []error
	for _, r := range refs {
		info, err := p.ctl.Info(bg, r)
		if err != nil {
			if !errors.Is(err, dm.ErrNotFound) {
				errs = append(errs, err)
			}
			continue
		}
		if info.Suspended {
			if _, err := p.ctl.Resume(bg, r); err != nil {
				errs = append(errs, fmt.Errorf("origin %s left suspended: %w", info.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func joinErr(op, pool string, err, more error) error {
	if err == nil {
		return newError(op, pool, nil, more)
	}
	var te *Error
	if errors.As(err, &te) {
		te.Err = errors.Join(te.Err, more)
		return te
	}
	return errors.Join(err, more)
}

func (p *Pool) learnOrigin(id DeviceID, origin dm.Dev) {
	p.omu.Lock()
	defer p.omu.Unlock()
	if p.origins == nil {
		p.origins = map[DeviceID]dm.Dev{}
	}
	p.origins[id] = origin
}

// ExternalOrigin is the external origin this Pool has learnt for thin
// device id (from Activate or CreateSnapshot), if any.
func (p *Pool) ExternalOrigin(id DeviceID) (dm.Dev, bool) {
	p.omu.Lock()
	defer p.omu.Unlock()
	d, ok := p.origins[id]
	return d, ok
}

func (p *Pool) forgetOrigin(id DeviceID) {
	p.omu.Lock()
	defer p.omu.Unlock()
	delete(p.origins, id)
}

// DeleteOption configures Delete.
type DeleteOption func(*deleteConfig)

type deleteConfig struct{ ignoreMissing bool }

// IgnoreMissing makes Delete of an id the pool does not have (ENODATA)
// succeed, so that a delete can be retried after a crash.
func IgnoreMissing() DeleteOption { return func(c *deleteConfig) { c.ignoreMissing = true } }

// Delete deletes thin device id and frees its blocks (delete). It cannot
// be undone. An id the pool does not have gives ErrUnknownID (ENODATA)
// unless IgnoreMissing; an active (open) id gives ErrInUse (EBUSY).
func (p *Pool) Delete(ctx context.Context, id DeviceID, opts ...DeleteOption) error {
	op := deleteMsg(id)
	var c deleteConfig
	for _, o := range opts {
		o(&c)
	}
	if err := validateID("device id", id); err != nil {
		return invalidFrom(op, p.name, err)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	defer p.ids.lock(id)()
	if err := p.checkOwner(op); err != nil {
		return err
	}
	err := p.message(ctx, op, op, deleteKinds)
	if c.ignoreMissing && errnoOf(err) == unix.ENODATA {
		err = nil
	}
	if err == nil {
		p.forgetOrigin(id)
	}
	return err
}

// SetTransactionID sets the pool's transaction id to next if it is current
// (set_transaction_id, a compare and swap); otherwise the kernel refuses
// with EINVAL, reported as ErrTransactionMismatch. See Transaction for the
// protocol built on it.
func (p *Pool) SetTransactionID(ctx context.Context, current, next uint64) error {
	op := "set_transaction_id " + strconv.FormatUint(current, 10) + " " + strconv.FormatUint(next, 10)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkOwner(op); err != nil {
		return err
	}
	return p.message(ctx, op, op, setTIDKinds)
}

// ReserveMetadataSnap commits the metadata and keeps a snapshot of it
// (reserve_metadata_snap), which tools read with --metadata-snap
// (thin_dump -m, thin_ls -m) while the pool runs; PoolStatus.HeldRoot
// shows it. Only one can be held: ErrMetadataSnapHeld (EBUSY).
func (p *Pool) ReserveMetadataSnap(ctx context.Context) error {
	const op = "reserve_metadata_snap"
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkOwner(op); err != nil {
		return err
	}
	return p.message(ctx, op, op, reserveKinds)
}

// ReleaseMetadataSnap drops the held metadata snapshot
// (release_metadata_snap); without one, ErrNoMetadataSnap (EINVAL).
func (p *Pool) ReleaseMetadataSnap(ctx context.Context) error {
	const op = "release_metadata_snap"
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkOwner(op); err != nil {
		return err
	}
	return p.message(ctx, op, op, releaseKinds)
}

// Remove removes the pool device. Its thin devices must be deactivated
// first (ErrInUse otherwise); Teardown does both. The metadata stays on
// the metadata device: CreatePool without FormatMetadata opens it again.
// Flags: dm.Deferred, dm.NoRetry.
func (p *Pool) Remove(ctx context.Context, flags ...dm.Flag) error {
	err := p.ctl.Remove(ctx, p.ref(), flags...)
	return wrap("remove", p.name, err, inUseKinds)
}

// Teardown deactivates every thin device of the pool, then removes the
// pool. It goes on after a failure and reports every one.
func (p *Pool) Teardown(ctx context.Context) error {
	const op = "teardown"
	active, err := p.holderThins(ctx, op)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range active {
		if err := p.ctl.Remove(ctx, dm.DevNum(d.dev)); err != nil && !errors.Is(err, dm.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if err := p.ctl.Remove(ctx, p.ref()); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil
	}
	return newError(op, p.name, nil, errors.Join(errs...))
}

// thinDevice is an active dm device with thin targets on this pool.
type thinDevice struct {
	name   string
	dev    dm.Dev
	size   dm.Sectors
	specs  []ThinSpec // one per thin target of this pool whose table the kernel printed
	single bool       // the table is one such thin target at sector 0
	// failed: the device has thin targets whose tables read "Fail": the
	// kernel prints that instead of the table while the pool has failed.
	failed bool
}

type thinDevices []thinDevice

func (ds thinDevices) find(id DeviceID) (thinDevice, bool) {
	for _, d := range ds {
		for _, s := range d.specs {
			if s.ID == id {
				return d, true
			}
		}
	}
	return thinDevice{}, false
}

// activeThins lists the dm devices whose live tables map thin devices ids
// of this pool (holderThins).
func (p *Pool) activeThins(ctx context.Context, op string, ids ...DeviceID) (thinDevices, error) {
	return p.holderThins(ctx, op, ids...)
}

// readThin reports whether ref's live table maps thin devices of this
// pool, and which.
func (p *Pool) readThin(ctx context.Context, ref dm.Ref) (thinDevice, bool, error) {
	deps, err := p.ctl.Deps(ctx, ref)
	if err != nil {
		return thinDevice{}, false, err
	}
	if !slices.Contains(deps, p.dev) {
		return thinDevice{}, false, nil
	}
	table, err := p.ctl.Table(ctx, ref)
	if err != nil {
		return thinDevice{}, false, err
	}
	td := thinDevice{size: table.Size()}
	for _, t := range table {
		if t.Type != ThinTargetType {
			continue
		}
		s, err := ParseThinSpec(t.Params)
		switch {
		case err != nil && t.Params == "Fail":
			// thin_status() prints "Fail" for the table too when the
			// pool has failed; the device depends on this pool.
			td.failed = true
		case err != nil || s.Pool != p.dev:
		default:
			td.specs = append(td.specs, s)
		}
	}
	if len(td.specs) == 0 && !td.failed {
		return thinDevice{}, false, nil
	}
	td.single = len(table) == 1 && len(td.specs) == 1 && table[0].Start == 0
	return td, true, nil
}

// checkName applies the kernel's rules for device names and uuids (those
// of dm.Control.Create) early, so that a bad name is refused before the
// metadata device is formatted.
func checkName(name, uuid string) error {
	if err := dm.ValidateName(name); err != nil {
		return err
	}
	return dm.ValidateUUID(uuid)
}
