package thin

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/thinp/thinp/thin/metadata"
)

// ThinDetails is one thin device's entry in a pool's metadata.
type ThinDetails struct {
	// ID is the thin device id.
	ID DeviceID
	// Mapped is the number of data blocks the device maps.
	Mapped DataBlocks
	// TransactionID is the pool's transaction id when the device last
	// changed.
	TransactionID uint64
	// CreationTime and SnapshotTime are the pool's snapshot time counter
	// when the device was created and last snapshotted.
	CreationTime, SnapshotTime uint32
}

// ThinUsage is one thin device as a pool's metadata records it: its
// details and its share of the data device.
type ThinUsage struct {
	ThinDetails
	// Exclusive is the number of the mapped blocks no other thin device
	// maps: what deleting the device would free.
	Exclusive DataBlocks
	// Shared is Mapped - Exclusive: blocks shared with snapshots or
	// origins.
	Shared DataBlocks
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
	var out []ThinUsage
	err := p.readMetadata(ctx, "usage", func(md *metadata.Metadata) error {
		devs, err := md.DeviceList()
		if err != nil {
			return err
		}
		us, err := md.Usage()
		if err != nil {
			return err
		}
		out = make([]ThinUsage, len(us))
		for i, u := range us {
			out[i] = ThinUsage{ThinDetails: details(devs[i]), Exclusive: DataBlocks(u.Exclusive), Shared: DataBlocks(u.Shared)}
		}
		return nil
	})
	return out, err
}

// Details returns the metadata entries of the thin devices ids, in the
// order given (ids the pool lacks are left out), or of every thin device,
// in id order, when no id is given. It reads the pool's metadata as Usage
// does, in one consistent view, but only the device details tree: no
// mapping is walked, so a few ids cost a few block reads however many
// devices and mappings the pool has, and all of them one read of the
// tree.
func (p *Pool) Details(ctx context.Context, ids ...DeviceID) ([]ThinDetails, error) {
	var out []ThinDetails
	err := p.readMetadata(ctx, "details", func(md *metadata.Metadata) error {
		if len(ids) == 0 {
			for d, err := range md.Devices() {
				if err != nil {
					return err
				}
				out = append(out, details(d))
			}
			return nil
		}
		for _, id := range ids {
			if id > MaxDeviceID {
				continue
			}
			d, err := md.Device(uint32(id))
			if errors.Is(err, metadata.ErrNoDevice) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, details(d))
		}
		return nil
	})
	return out, err
}

func details(d metadata.Device) ThinDetails {
	return ThinDetails{
		ID: DeviceID(d.ID), Mapped: DataBlocks(d.MappedBlocks),
		TransactionID: d.TransactionID, CreationTime: d.CreationTime, SnapshotTime: d.SnapshottedTime,
	}
}

// readMetadata calls read on the pool's metadata seen through a metadata
// snapshot it reserves and releases (or one another user holds), as Usage
// documents.
func (p *Pool) readMetadata(ctx context.Context, op string, read func(*metadata.Metadata) error) error {
	path := p.cfg.metaPath
	if path == "" {
		var err error
		if path, err = p.ctl.DevNode(p.meta); err != nil {
			return newError(op, p.name, nil, err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return newError(op, p.name, nil, err)
	}
	defer f.Close()

	ours := true
	if err := p.ReserveMetadataSnap(ctx); err != nil {
		if !errors.Is(err, ErrMetadataSnapHeld) {
			return err
		}
		ours = false
	}
	// The kernel writes metadata around the page cache: drop what is
	// cached, then read through the held root.
	dropCache(f)
	md, err := metadata.Open(ctxReader{ctx, f}, metadata.Options{MetadataSnap: true})
	if err == nil {
		err = read(md)
	}
	if ours {
		// Release even when ctx is done: a held snapshot pins metadata
		// blocks until released.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		rerr := p.ReleaseMetadataSnap(rctx)
		cancel()
		if err == nil && rerr != nil {
			return rerr
		}
	}
	if err != nil {
		return newError(op, p.name, nil, err)
	}
	return nil
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
