// Package dmtest is a fake Linux kernel for tests: an in-memory model of the
// device-mapper control device (/dev/mapper/control) that stands behind
// [ioctl.Transport], so that code built on packages dm and thin — this
// module's and yours — is unit-tested without root, without a kernel that
// has device-mapper, and with faults no real kernel produces on demand.
//
// # Use
//
// [New] makes a kernel; [Kernel.AddBlockDevice] gives it block devices to
// build tables on (loop devices, disks); [NewControl] opens a *dm.Control
// on it, which package thin and your code use as they would use the real
// one. [Kernel.FailNext] makes the next ioctl of a kind fail with an errno,
// [Kernel.SetBeforeIoctl] runs code before each ioctl (to fail one, or to
// change the world between two), [Kernel.SetMessageHook] answers target
// messages, and [Kernel.Calls] is the log of every ioctl that reached the
// fake, to assert what was sent (or that nothing was). [Kernel.Devices],
// [Kernel.Pool] and [Kernel.Metadata] show the kernel's state.
//
// The model is byte-level. A request buffer is read the way
// drivers/md/dm-ioctl.c reads it (check_version, copy_params,
// validate_params, populate_table, ...), and the reply is written into a
// private copy of the caller's buffer exactly where the kernel writes it,
// then data_size bytes of that copy are copied back. Bytes the kernel does
// not write (padding, the tail of a name array after its NUL, byte 15 of a
// target type) keep whatever the caller had in them, and a failed ioctl
// copies back nothing but the interface version, so encoder and decoder bugs
// show up here as they would on a real kernel.
//
// It models interface 4.47.0 (Linux 6.1) by default: every control command,
// devices with live and inactive tables, suspend state, open counts,
// deferred removal, per-device and global event counters, and the targets
// linear, striped, zero, error, flakey, thin-pool and thin. The thin-pool
// model keeps its metadata on the metadata device (keyed by major:minor), so
// thin ids, the transaction id and mappings survive removing and re-creating
// the pool, as they do on disk.
//
// Data I/O is not modelled. Tests drive the pool with [Kernel.ProvisionBlocks],
// [Kernel.DiscardBlocks], [Kernel.SetPoolMode], [Kernel.FailPool] and
// friends, which raise the same events the kernel raises (low water mark,
// metadata low watermark, mode changes).
//
// # Departures from the kernel
//
// Places where the model departs from the kernel, or guesses, carry a
// comment that starts with "Differs from the kernel:". The main ones:
//
//   - Table layout: populate_table is checked with the rules of current
//     kernels (4.48+): the first spec may not overlap the header, each next
//     is 8-byte aligned, points past the previous spec's parameters and
//     leaves room for a spec and a NUL. Linux 6.1 only checks next >= 40 and
//     the NUL, so the fake is stricter than the kernel it claims to be.
//   - Devices in tables must be given as major:minor; a path is ENODEV (the
//     fake has no filesystem).
//   - Metadata space accounting is an approximation (10 blocks for a fresh
//     pool, one per thin, one per 126 mappings a thin made itself, one for
//     a held root, plus the kernel's reserve of min(4096, total/10)); the
//     errno for a metadata device too small to format (ENOSPC) is a guess.
//     Data blocks, snapshot sharing and the status line format are exact.
//   - Every resume that actually resumes a device raises a dm event (the
//     thin-provisioning documentation says resuming always does; where in
//     the code is not pinned down).
//   - After a failed first table load the next load is treated as a first
//     load again (device areas checked, disk added).
//   - Nothing ever blocks where the kernel would block a suspend or resume
//     (a thin whose pool is suspended); DEV_WAIT blocks for real.
//   - Deferred removal happens synchronously when the last opener goes away,
//     not from a work queue.
//   - In queue_if_no_space mode [Kernel.ProvisionBlocks] fails with ENOSPC
//     at once instead of holding the I/O.
//   - Only @cancel_deferred_remove and @stats_list (with no regions) are
//     known dm core messages; flakey's feature arguments and unknown target
//     types are kept opaque and printed back as given.
//   - The control fd's poll() is modelled as one fd: [Kernel.PollReady]
//     reports whether the global event counter moved since DM_DEV_ARM_POLL.
//
// # Kernel behaviours worth knowing
//
// The fake reproduces these because the real kernel does them:
// DM_VERSION, DM_REMOVE_ALL and DM_DEV_SET_GEOMETRY copy back nothing but
// the version; commands without parameters copy back 305 bytes; a
// DM_TARGET_MSG to a device without a live table "succeeds" (the kernel
// returns 2) without copying anything back; DM_TABLE_STATUS sets
// DM_BUFFER_FULL_FLAG when the last string fits but the 8-byte alignment
// after it does not; DM_LIST_VERSIONS reports 7 bytes of slack per entry in
// data_size; a failed first pool load has already formatted the metadata.
package dmtest
