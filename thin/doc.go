// Package thin speaks Linux device-mapper thin provisioning (dm-thin) on top
// of package dm: thin pools, thin volumes, snapshots, their status, events
// and transactions, in pure Go.
//
// # Pools and volumes
//
// A pool is a thin-pool dm device over a metadata device and a data
// device, which may be any block devices (loop devices, partitions, linear
// dm devices). [CreatePool] validates a [PoolSpec] and creates the device;
// with [FormatMetadata] it first zeroes the metadata device's first 4 KiB so
// the kernel formats fresh metadata. [OpenPool] opens an existing pool and
// refuses a device that is not one ([ErrNotPool]).
//
// Thin devices live in the pool under 24-bit ids chosen by the caller:
// [Pool.CreateThin], [Pool.CreateSnapshot], [Pool.Delete]. They hold data
// only while the pool runs; [Pool.Activate] makes one available as a dm
// device, a [Volume], of the size the caller chooses ([Size] converts
// bytes: thin.Size(10*thin.GiB)).
//
//	pool, err := thin.CreatePool(ctx, ctl, "pool", thin.PoolSpec{
//		Metadata: meta, Data: data, BlockSize: 128, LowWaterMark: 1024,
//	}, thin.FormatMetadata())
//	err = pool.CreateThin(ctx, 1)
//	vol, err := pool.Activate(ctx, "vol", 1, thin.Size(10*thin.GiB))
//	err = vol.Snapshot(ctx, 2) // the origin is suspended around create_snap
//
// # Tables and status lines
//
// [PoolSpec] and [ThinSpec] print exactly the table lines the kernel prints
// back (Params) and parse them ([ParsePoolSpec], [ParseThinSpec]).
// [ParsePoolStatus] and [ParseThinStatus] read every form of status line
// the kernel prints: the working line with its usage figures, held
// metadata root, mode, discard mode, no-space policy, needs_check and
// metadata low watermark; older kernels' shorter lines; the whole-line
// forms Fail, Error and "-"; and tokens from newer kernels, kept in Extra.
// Units are types: [dm.Sectors], [DataBlocks] (the pool's block size) and
// [MetaBlocks] (4 KiB).
//
// # Safety
//
// Input is checked before anything is sent: a block size that is not a
// multiple of 128 sectors in [128, 2097152], a low water mark at or past
// the pool's size, an id of 2^24 or more, a snapshot onto an id an active
// thin device of the pool maps, a zero or negative size, a pool that would
// shrink, a change the kernel refuses on a live pool. Where the kernel
// answers a question itself, its answer is used instead of a search: an id
// in use for create_thin and create_snap (EEXIST; an active id exists in
// the metadata too), an open id for delete (EBUSY), an unknown id
// (ENODATA). Messages are refused, as the kernel would
// refuse them, when the pool is read-only, failed or needs checking
// ([ErrPoolReadOnly], [ErrPoolFailed], [ErrNeedsCheck]).
//
// Multi-step operations do not leave devices suspended: a snapshot resumes
// the origins it suspended even when create_snap fails, and a reload the
// kernel refuses at resume (a pool resized below its data, for instance)
// is rolled back to the previous table by [dm.Control.Reload].
//
// # Finding active thin devices
//
// A snapshot of an active origin needs every dm device that maps the
// origin's thin id suspended, whoever activated it (this package, dmsetup,
// lvm2, another process); [Pool.Teardown] and [Pool.Volumes] need every
// device that maps a thin id of the pool. A pool finds them without looking
// at the host's other dm devices, at a cost that does not grow with their
// number, nor, in the common case, with the pool's own volumes:
//
//   - The kernel links every dm device whose table (live or inactive) uses
//     the pool into the pool's holders directory in sysfs,
//     /sys/dev/block/MAJ:MIN/holders/dm-N. Those are the only candidates.
//   - Once per Pool, the directory's times are set (as touch does). From
//     then on sysfs stamps the directory with the time of every entry added
//     or removed, so one stat tells whether the holders changed; only then
//     is the directory listed again (getdents64, no ioctls).
//   - A volume this package activates gets the uuid
//     THINP-thin-<pool major>:<pool minor>-<thin id>-<name> unless the
//     caller gives one. A holder with such a uuid, whose live table is the
//     one thin target that uuid names, is read once (DM_DEV_STATUS,
//     DM_TABLE_DEPS, DM_TABLE_STATUS) and then trusted, indexed by thin id,
//     for as long as its holder link lives. Every other holder (activated
//     by another tool, or still loading) is read again whenever a snapshot
//     or transaction needs the answer, so a reload by another tool is seen.
//
// So create_thin, delete and create_snap of an inactive origin cost one
// ioctl, the message (create_snap also a stat): nothing is read before
// sending, because the kernel checks the pool's mode itself and its errno
// says what happened; the pool's status is read only after a failure whose
// errno leaves the cause open (EOPNOTSUPP: read-only or failed; EINVAL: the
// device may be no pool any more). A snapshot of an active origin costs
// DM_DEV_STATUS of the origin, which tells both whether the caller has
// suspended it (it stays so) and whether the pool is suspended (its active
// thins are then suspended internally, and suspending the origin would
// block), then suspend, message and resume; plus three ioctls for each
// holder that is not this package's volume, or that is new since the last
// look.
//
// Staleness: the entry's inode number identifies the holder link, and
// sysfs never reuses one, so a device removed and another created with the
// same minor (and a table on this pool) is a new holder, read afresh.
// Trusting this package's volumes assumes nobody reloads one of them to
// another thin id while keeping its uuid; reloads of other devices are
// always seen. Where sysfs is not there, or does not show this pool (a
// container with another host's /sys, [WithSysDir] pointing elsewhere, a
// directory whose times cannot be set), the pool falls back to listing
// holders every time, or to the scan of every dm device of the host (2N+1
// ioctls), so it never misses an origin for want of sysfs. A device that
// starts using the pool after the search, while create_snap runs, is not
// suspended: activations through the same Pool are ordered with snapshots
// of their id (see Concurrency), others are the caller's to order.
//
// # Errors
//
// Failures are [*Error] values wrapping a [*dm.Error]. errors.Is matches
// this package's sentinel (for example [ErrIDInUse]), dm's
// ([dm.ErrExists]) and the kernel's errno (unix.EEXIST) alike, whether the
// kernel refused the request or this package refused it first because the
// kernel would have.
//
// The kernel's answers to pool messages and thin activations, and what
// they become here (the tests pin every row, on the fake kernel and in the
// VM):
//
//	create_thin / create_snap of an id the pool has   EEXIST    ErrIDInUse
//	create_snap of an origin the pool lacks           ENODATA   ErrUnknownID
//	delete of an id the pool lacks                    ENODATA   ErrUnknownID
//	delete of an open (active) thin device            EBUSY     ErrInUse
//	any message to a read-only or failed pool         EOPNOTSUPP ErrPoolReadOnly, ErrPoolFailed
//	set_transaction_id with the wrong current id      EINVAL    ErrTransactionMismatch
//	reserve_metadata_snap while one is held           EBUSY     ErrMetadataSnapHeld
//	release_metadata_snap without one                 EINVAL    ErrNoMetadataSnap
//	activating an id the pool lacks                   ENODATA   ErrUnknownID
//	activating while the pool is suspended or failed  EINVAL    ErrPoolSuspended, ErrPoolFailed
//	removing a pool with active thin devices          EBUSY     ErrInUse
//	a pool table whose metadata device another pool uses  EBUSY  ErrInUse
//
// # Events
//
// The kernel raises a device-mapper event when free data space falls to the
// low water mark (once per resume), when free metadata space falls to its
// watermark, when the pool's mode changes and at every resume.
// [Pool.WaitEvent] waits for the next one and returns the pool's status;
// [Pool.Watch] reports them on a channel with what they mean (low water
// mark, metadata low, mode change), the loop an autoextend daemon needs.
//
// # Transactions
//
// [Pool.Transaction] sends a batch of create and delete messages and then
// advances the pool's transaction id with set_transaction_id, a compare and
// swap; after a crash, the pool's transaction id tells whether the batch
// was applied, and a replay ([Replay]) finishes a partial one. The
// protocol, and exactly what a failure leaves, are documented there.
//
// # Layout
//
// The package has two halves. The codec — spec.go (table lines), status.go
// (status lines), units.go — does no I/O and depends on package dm only for
// its value types; the orchestration — pool.go, volume.go, reload.go,
// snapshot handling, events.go, tx.go — drives a [dm.Control]. Layers above
// it live in packages of their own beside it (a reader of the pool's
// on-disk metadata, a catalog of named volumes), so this one does not grow
// with them. Another target's codec (cache, era, integrity) would be a
// package of its own under dm, built the same way: a spec that round-trips
// with its table line and a status parser that keeps unknown tokens.
//
// # Pools made by lvm2
//
// [OpenPool] opens a thin pool that lvm2 activated (its thin-pool device is
// <vg>-<pool>-tpool), and its status, table and thin volumes read as any
// other pool's. lvm2 records each thin volume's id and the pool's
// transaction id in its own metadata and checks them at activation, so a
// pool whose dm uuid starts with "LVM-" refuses create_thin, create_snap,
// delete, set_transaction_id and transactions with [ErrManagedByLVM]
// before anything reaches the kernel: make and remove its volumes with
// lvcreate and lvremove. Reserving and releasing a metadata snapshot stays
// allowed.
//
// # Concurrency
//
// A [Pool] is safe for concurrent use. Operations on different thin ids
// (CreateThin, CreateSnapshot, Delete, Activate) run in parallel: the
// kernel serialises the pool's messages itself, and device creation and
// removal, with their RCU waits, overlap. Operations on one id are ordered
// by a lock per id; a snapshot holds both its id's and its origin's, so no
// activation of the origin through the Pool slips in between finding and
// suspending the origin's devices. Reloads, transactions and the pool-wide
// messages (set_transaction_id, the metadata snapshot) run alone. Separate
// Pool values or processes are not serialised with each other:
// transactions detect their interference through the transaction id.
// Methods that wait honour their context; an ioctl already in the kernel
// cannot be interrupted.
package thin
