package thin

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/thinp/thinp/thin/metadata"
)

// ThinUsage is one thin device as a pool's metadata records it: its id,
// its share of the data device and its details.
type ThinUsage struct {
	// ID is the thin device id.
	ID DeviceID
	// Mapped is the number of data blocks the device maps.
	Mapped DataBlocks
	// Exclusive is the number of those no other thin device maps: what
	// deleting the device would free.
	Exclusive DataBlocks
	// Shared is Mapped - Exclusive: blocks shared with snapshots or
	// origins.
	Shared DataBlocks
	// TransactionID is the pool's transaction id when the device last
	// changed.
	TransactionID uint64
	// CreationTime and SnapshotTime are the pool's snapshot time counter
	// when the device was created and last snapshotted.
	CreationTime, SnapshotTime uint32
}

// Usage returns every thin device of the running pool with its usage, in
// id order, in one consistent view: it reserves a metadata snapshot
// (reserve_metadata_snap, which also commits), reads the pool's metadata
// device through it with package thin/metadata, as thin_ls -m does, and
// releases the snapshot, also when reading fails or ctx is cancelled. If
// another user already holds a metadata snapshot (ErrMetadataSnapHeld),
// Usage reads through that one and leaves it held, so its view is as old
// as that snapshot.
//
// The metadata device is opened read-only by a fresh file descriptor and
// its page cache dropped first (the kernel writes metadata around the
// page cache, so cached pages may be stale). The pool must be in a mode
// that accepts messages (not read-only or failed).
func (p *Pool) Usage(ctx context.Context) ([]ThinUsage, error) {
	const op = "usage"
	path := p.cfg.metaPath
	if path == "" {
		var err error
		if path, err = p.ctl.DevNode(p.meta); err != nil {
			return nil, newError(op, p.name, nil, err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, newError(op, p.name, nil, err)
	}
	defer f.Close()

	ours := true
	if err := p.ReserveMetadataSnap(ctx); err != nil {
		if !errors.Is(err, ErrMetadataSnapHeld) {
			return nil, err
		}
		ours = false
	}
	us, err := readUsage(ctx, f)
	if ours {
		// Release even when ctx is done: a held snapshot pins metadata
		// blocks until released.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		rerr := p.ReleaseMetadataSnap(rctx)
		cancel()
		if err == nil && rerr != nil {
			return nil, rerr
		}
	}
	if err != nil {
		return nil, newError(op, p.name, nil, err)
	}
	return us, nil
}

// ctxReader fails reads once ctx is done, so a long walk stops promptly.
type ctxReader struct {
	ctx context.Context
	r   io.ReaderAt
}

func (c ctxReader) ReadAt(b []byte, off int64) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.ReadAt(b, off)
}

// readUsage drops f's cached pages and reads the usage through the held
// root.
func readUsage(ctx context.Context, f *os.File) ([]ThinUsage, error) {
	dropCache(f)
	md, err := metadata.Open(ctxReader{ctx, f}, metadata.Options{MetadataSnap: true})
	if err != nil {
		return nil, err
	}
	devs, err := md.DeviceList()
	if err != nil {
		return nil, err
	}
	us, err := md.Usage()
	if err != nil {
		return nil, err
	}
	out := make([]ThinUsage, len(us))
	for i, u := range us {
		d := devs[i]
		out[i] = ThinUsage{
			ID: DeviceID(u.ID), Mapped: DataBlocks(u.Mapped), Exclusive: DataBlocks(u.Exclusive), Shared: DataBlocks(u.Shared),
			TransactionID: d.TransactionID, CreationTime: d.CreationTime, SnapshotTime: d.SnapshottedTime,
		}
	}
	return out, nil
}
