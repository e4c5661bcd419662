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
// the pool's size, an id of 2^24 or more, an id an active thin device of the
// pool maps, a zero or negative size, a pool that would shrink, a change the
// kernel refuses on a live pool. Messages are refused, as the kernel would
// refuse them, when the pool is read-only, failed or needs checking
// ([ErrPoolReadOnly], [ErrPoolFailed], [ErrNeedsCheck]).
//
// Multi-step operations do not leave devices suspended: a snapshot resumes
// the origins it suspended even when create_snap fails, and a reload the
// kernel refuses at resume (a pool resized below its data, for instance)
// is rolled back to the previous table by [dm.Control.Reload].
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
// A [Pool] is safe for concurrent use; the operations that change the pool
// are serialised within it. Separate Pool values or processes are not
// serialised with each other: transactions detect their interference
// through the transaction id. Methods that wait honour their context; an
// ioctl already in the kernel cannot be interrupted.
package thin
