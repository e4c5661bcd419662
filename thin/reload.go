package thin

import (
	"context"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
)

// Reconfigure changes the pool's table (load, then resume): change edits a
// copy of the live spec, read under the pool's lock, so concurrent changes
// do not undo each other. A live pool can change its data size (Length;
// zero keeps the current one; Resize is the short form), its low water
// mark and the features skip_block_zeroing, no_discard_passdown,
// read_only and error_if_no_space:
//
//	err := pool.Reconfigure(ctx, func(s *thin.PoolSpec) { s.ErrorIfNoSpace = true })
//
// Refused before anything is loaded: an invalid spec; another metadata or
// data device, another block size, or another ignore_discard setting
// (ErrImmutable; the kernel would refuse or silently ignore them); fewer
// data blocks than now (ErrShrink); growth of a pool whose metadata needs
// checking (ErrNeedsCheck; the kernel would silently not grow); a Length
// past the data device's end, when sysfs tells its size.
//
// If the kernel refuses the new table when resuming it, the previous table
// is loaded and resumed again (dm.Control.Reload), so the pool keeps
// running as before and is never left suspended by us; the error is the
// kernel's.
func (p *Pool) Reconfigure(ctx context.Context, change func(*PoolSpec)) error {
	if change == nil {
		return invalid("reload", p.name, nil, "change", "nil")
	}
	return p.reconfigure(ctx, "reload", func(cur PoolSpec) (PoolSpec, error) {
		next := cur
		change(&next)
		if next.Length == 0 {
			next.Length = cur.Length
		}
		return next, nil
	})
}

// reconfigure reads the live spec, lets change derive the new one, checks
// it and reloads the pool with it.
func (p *Pool) reconfigure(ctx context.Context, op string, change func(PoolSpec) (PoolSpec, error)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur, err := p.spec(ctx, op)
	if err != nil {
		return err
	}
	next, err := change(cur)
	if err != nil {
		return err
	}
	if err := next.Validate(); err != nil {
		return invalidFrom(op, p.name, err)
	}
	switch {
	case next.Metadata != cur.Metadata:
		return invalid(op, p.name, ErrImmutable, "metadata device", "the pool uses %s; another device is another pool", cur.Metadata)
	case next.Data != cur.Data:
		return invalid(op, p.name, ErrImmutable, "data device", "the pool uses %s; another device is another pool (grow the data device itself, then Resize)", cur.Data)
	case next.BlockSize != cur.BlockSize:
		return invalid(op, p.name, ErrImmutable, "block size", "fixed at %d sectors for the pool's lifetime", cur.BlockSize)
	case next.IgnoreDiscard != cur.IgnoreDiscard:
		return invalid(op, p.name, ErrImmutable, "ignore_discard", "discard support cannot be turned on or off once the pool is loaded")
	case next.DataBlocks() < cur.DataBlocks():
		return invalid(op, p.name, ErrShrink, "length", "%d blocks is fewer than the pool's %d", next.DataBlocks(), cur.DataBlocks())
	}
	if next.Length > cur.Length {
		if size, err := p.cfg.host.size(next.Data); err == nil && next.Length > size {
			return invalid(op, p.name, nil, "length", "%d sectors is more than the data device's %d", next.Length, size)
		}
	}
	if next.DataBlocks() > cur.DataBlocks() {
		st, err := p.status(ctx, op, dm.NoFlush)
		if err != nil {
			return err
		}
		if st.NeedsCheck {
			return refused(op, p.name, ErrNeedsCheck, unix.EOPNOTSUPP, "the kernel will not grow a pool whose metadata needs thin_check")
		}
	}
	err = p.ctl.Reload(ctx, p.ref(), next.Table())
	return wrap(op, p.name, err, nil)
}

// Resize grows the pool's data size to length sectors, after the caller has
// grown the data device (a linear table reloaded, a loop device's capacity
// refreshed). A pool cannot shrink (ErrShrink). See Reconfigure for the
// checks and the rollback when the kernel refuses.
func (p *Pool) Resize(ctx context.Context, length dm.Sectors) error {
	if length == 0 || length > maxSize {
		return invalid("resize", p.name, nil, "length", "%d sectors is not a size", length)
	}
	return p.reconfigure(ctx, "resize", func(cur PoolSpec) (PoolSpec, error) {
		cur.Length = length
		return cur, nil
	})
}

// GrowMetadata makes the pool use all of its metadata device after the
// caller has grown it, by reloading the pool's table (the kernel reads the
// metadata device's size at every resume), and returns the new total.
// A metadata device smaller than the pool's metadata is refused by the
// kernel at resume, and the previous table is restored.
func (p *Pool) GrowMetadata(ctx context.Context) (MetaBlocks, error) {
	const op = "grow metadata"
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.status(ctx, op, dm.NoFlush)
	if err != nil {
		return 0, err
	}
	if st.NeedsCheck {
		return 0, refused(op, p.name, ErrNeedsCheck, unix.EOPNOTSUPP, "the kernel will not grow a pool whose metadata needs thin_check")
	}
	cur, err := p.spec(ctx, op)
	if err != nil {
		return 0, err
	}
	if err := p.ctl.Reload(ctx, p.ref(), cur.Table()); err != nil {
		return 0, wrap(op, p.name, err, nil)
	}
	st, err = p.status(ctx, op, dm.NoFlush)
	if err != nil {
		return 0, err
	}
	return st.TotalMeta, nil
}
