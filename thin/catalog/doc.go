// Package catalog keeps a crash-proof catalog of the volumes of one thin
// pool: the caller's keys mapped to thin ids, with each volume's parent,
// size, creation time, labels and state, stored in a directory the caller
// chooses, and kept in agreement with the pool through crashes, with the
// pool's own metadata as the referee.
//
// It is the layer every user of dm-thin writes above the kernel's
// messages (Docker's DeviceSet, containerd's devmapper snapshotter), done
// once: ids are allocated here, never reused while they may still exist in
// the pool, and an id the pool has that the catalog does not know (left by
// a crash of some other program, or by another tool) is skipped, reported
// and repaired instead of blocking every later create.
//
//	pool, _ := thin.OpenPool(ctx, ctl, "pool")
//	cat, err := catalog.Open(ctx, pool, "/var/lib/myapp/volumes")
//	base, err := cat.Create(ctx, "base", thin.Size(10*thin.GiB))
//	path, err := cat.Activate(ctx, "base")            // /dev/dm-N
//	snap, err := cat.Snapshot(ctx, "snap-1", "base")  // base is suspended around it
//	usage, err := cat.Usage(ctx)                      // mapped and exclusive bytes per key
//	err = cat.Delete(ctx, "snap-1")
//
// # Crash consistency
//
// Every change is an operation written to a journal (dir/journal) and
// made durable (fdatasync) before anything is sent to the kernel; its
// outcome, "done" or "undo", is appended after. Operations on the pool
// (create, snapshot, delete) are pool transactions (thin.Pool.Transaction):
// their messages, then set_transaction_id from the catalog's transaction id
// N to N+1, sent last. So after a crash at any instant, Open finds at most
// one pool operation without an outcome, and activations and deactivations
// of other volumes that were in flight beside it (see Concurrency), and
// settles each from the kernel's state:
//
//   - create, snapshot, delete: the pool at N+1 means it was applied in full:
//     done. At N, it is finished now (a message already applied counts as
//     done, thin.Replay) and is done; if the kernel refuses it now, it had
//     changed nothing, and it is undone. At any other id someone else
//     changed the pool: drift (below).
//   - activate: the device exists with its thin table: done (resumed if a
//     crash left it suspended); a device that was created but never given
//     a table is removed, and the activation undone.
//   - deactivate: the device is removed if it is still there: done; if it
//     cannot be (open), undone.
//   - delete of an active volume is one operation: the device is removed,
//     then the id deleted.
//
// Each operation therefore ends exactly as before it or as after it. Then
// Open resumes the catalog's devices a crash left suspended (a snapshot of
// an active origin suspends it), records devices that are gone as inactive,
// and retries deferred deletions. Where no udev daemon manages /dev/mapper,
// the node of the interrupted operation's device is made or removed to
// match the kernel (dm.Control.SyncNode). A udev cookie the dead process
// was waiting on stays behind, as with libdevmapper; udev.CompleteAll
// removes stale ones, as `dmsetup udevcomplete_all` does. The catalog's
// own files are replaced only by writing a new file, syncing it, renaming
// it over the old one and syncing the directory; a journal record torn by
// a crash (each carries a CRC-32C) is the last one and is dropped. The
// journal is folded into the state file (dir/catalog.json) once it holds
// more records than the catalog has volumes (and at least 4096), so an
// operation's cost does not grow with the number of volumes. Activations
// and deactivations in flight at that moment are written into the state as
// open operations, and their outcomes follow in the new journal, so the
// journal stays bounded however constantly activations overlap.
//
// One Catalog at a time has a directory open: Open takes an exclusive
// flock on dir/lock, and a second Open, from this process or another,
// fails with ErrLocked. The kernel drops the lock when the process dies.
//
// # Drift and repair
//
// If the pool's transaction id is not the catalog's, something other than
// the catalog changed the pool (another program, a metadata backup
// restored, a power cut that lost the pool's last commits): reads still
// work, and changes fail with ErrDrift until Repair. Check compares the
// catalog with the pool's metadata (read through a held metadata snapshot,
// as thin_ls does) and with the pool's active devices, and reports every
// difference: orphan ids, missing ids, unknown devices, devices gone,
// suspended devices, stale deferred deletions, an unsettled operation.
// Repair resolves each one, as its documentation lists, with a dry run; with
// RepairOptions.Adopt it takes the ids it finds into the catalog, which is
// how a pool made before the catalog is taken over.
//
// # Space and deferred deletion
//
// New volumes are refused (ErrLowSpace, a *SpaceError) while the pool's
// free data or metadata space is below a minimum share, 10% by default
// (WithMinFreeSpace), as Docker's dm.min_free_space. With
// WithDeferredDeletion, deleting a volume whose device is open (mounted)
// succeeds: the device is put on deferred remove (the kernel removes it
// at its last close), the key is freed, and the thin id is deleted by a
// later RetryDeferred once the device is gone (Deferred lists them, with
// the number of tries).
//
// # Concurrency
//
// A Catalog is safe for concurrent use by many goroutines. Changes to the
// pool are transactions from the catalog's transaction id to the next, so
// one runs at a time; but creations (Create and Snapshot) that arrive while
// one runs queue up, and the next transaction sends all of them (group
// commit): their create_thin and create_snap messages, one
// set_transaction_id and one journal record, a group. A message failing
// part-way cuts the group down to the ones before it (durably, before the
// transaction id is advanced over them); the creation that failed gets the
// error and leaves nothing, and the ones after it are sent again. A crash
// leaves a group settled whole, as a single operation is. The transaction
// runs without the catalog's lock, and so do activations and deactivations
// of different volumes, which overlap with each other and with the
// transactions: their journal record is written under the lock, and the
// kernel's part (creating, loading and resuming the device, or removing
// it, with any udev wait) runs without it, so that a hundred containers
// starting at once wait on the kernel, not on each other. Calls on a
// volume whose activation or deactivation is in flight (and a Snapshot of
// it) wait for it to end, and so do a creation or a Rename onto a key
// being created; Check, Repair and Close wait for all of them.
package catalog
