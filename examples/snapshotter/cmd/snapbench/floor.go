package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/thin"
)

// snapper is what the measurements call: the part of
// snapshots.Snapshotter they use, which the floor implements too.
type snapper interface {
	Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error)
	View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error)
	Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error
	Remove(ctx context.Context, key string) error
}

// floor is the kernel's share of what the thinp snapshotter does, issued
// straight through package dm on a pool of its own, with nothing above:
// no catalog, no journal, no snapshotter, no file system. Its Prepare is
// the pool's create_snap message and the create, load and resume of the
// snapshot's thin device (with the udev wait thinp's activation has when
// udevd runs); View the same, read-only; Commit removes the device;
// Remove removes the device if there is one and sends the delete message.
// It is the cost no snapshotter on this kernel can go below, so thinp's
// rate over the floor's says how much of thinp's time is its own.
//
// Every snapshot is of one origin, thin id 1, an unformatted thin device
// of the base image's size: create_snap shares the origin's mapping tree
// whatever it holds, so its cost does not depend on the contents.
type floor struct {
	ctl  *dm.Control
	pool *pool
	size dm.Sectors

	mu     sync.Mutex
	nextID thin.DeviceID
	snaps  map[string]*floorSnap // by key
}

// floorSnap is one snapshot of the floor: its thin id, and whether its
// device is active.
type floorSnap struct {
	id     thin.DeviceID
	active bool
}

// floorOrigin is the thin id of the floor's origin.
const floorOrigin thin.DeviceID = 1

// newFloor makes the origin in p, a thin device of size bytes.
func newFloor(ctx context.Context, ctl *dm.Control, p *pool, size uint64) (*floor, error) {
	f := &floor{ctl: ctl, pool: p, size: dm.Sectors(size / dm.SectorSize), nextID: floorOrigin + 1, snaps: map[string]*floorSnap{}}
	if err := f.message(ctx, "create_thin", floorOrigin); err != nil {
		return nil, err
	}
	return f, nil
}

// message sends the pool the message verb with the ids as arguments.
func (f *floor) message(ctx context.Context, verb string, ids ...thin.DeviceID) error {
	msg := verb
	for _, id := range ids {
		msg += " " + strconv.FormatUint(uint64(id), 10)
	}
	_, err := f.ctl.Message(ctx, dm.Name(f.pool.name), 0, msg)
	return err
}

func (f *floor) device(id thin.DeviceID) string {
	return f.pool.name + "-" + strconv.FormatUint(uint64(id), 10)
}

// take allocates an id for key.
func (f *floor) take(key string) (thin.DeviceID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.snaps[key]; ok {
		return 0, fmt.Errorf("floor: %q exists", key)
	}
	id := f.nextID
	f.nextID++
	f.snaps[key] = &floorSnap{id: id}
	return id, nil
}

// get returns a copy of key's snapshot.
func (f *floor) get(key string) (floorSnap, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.snaps[key]
	if !ok {
		return floorSnap{}, fmt.Errorf("floor: no snapshot %q", key)
	}
	return *s, nil
}

func (f *floor) make(ctx context.Context, key string, opts ...dm.CreateOption) ([]mount.Mount, error) {
	id, err := f.take(key)
	if err != nil {
		return nil, err
	}
	if err := f.message(ctx, "create_snap", id, floorOrigin); err != nil {
		f.mu.Lock()
		delete(f.snaps, key)
		f.mu.Unlock()
		return nil, err
	}
	spec := thin.ThinSpec{Pool: f.pool.pool.Dev(), ID: id}
	if _, err := f.ctl.Create(ctx, f.device(id), dm.Table{spec.Target(f.size)}, opts...); err != nil {
		return nil, err // the snapshot stays, inactive: Remove or close deletes it
	}
	f.mu.Lock()
	f.snaps[key].active = true
	f.mu.Unlock()
	return nil, nil
}

// Prepare makes a snapshot of the origin and activates it; parent is
// ignored.
func (f *floor) Prepare(ctx context.Context, key, _ string, _ ...snapshots.Opt) ([]mount.Mount, error) {
	return f.make(ctx, key)
}

// View makes a snapshot of the origin and activates it read-only.
func (f *floor) View(ctx context.Context, key, _ string, _ ...snapshots.Opt) ([]mount.Mount, error) {
	return f.make(ctx, key, dm.WithReadOnly())
}

// Commit removes the snapshot's device and names it name.
func (f *floor) Commit(ctx context.Context, name, key string, _ ...snapshots.Opt) error {
	s, err := f.get(key)
	if err != nil {
		return err
	}
	if err := f.ctl.Remove(ctx, dm.Name(f.device(s.id))); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s.active = false
	delete(f.snaps, key)
	f.snaps[name] = &s
	return nil
}

// Remove removes the snapshot's device, if active, and deletes it.
func (f *floor) Remove(ctx context.Context, key string) error {
	s, err := f.get(key)
	if err != nil {
		return err
	}
	if s.active {
		if err := f.ctl.Remove(ctx, dm.Name(f.device(s.id))); err != nil {
			return err
		}
		f.mu.Lock()
		f.snaps[key].active = false
		f.mu.Unlock()
	}
	if err := f.message(ctx, "delete", s.id); err != nil {
		return err
	}
	f.mu.Lock()
	delete(f.snaps, key)
	f.mu.Unlock()
	return nil
}

// close removes every snapshot left and the origin. The pool itself is
// the environment's to remove.
func (f *floor) close(ctx context.Context) error {
	f.mu.Lock()
	keys := make([]string, 0, len(f.snaps))
	for k := range f.snaps {
		keys = append(keys, k)
	}
	f.mu.Unlock()
	var errs []error
	for _, k := range keys {
		if err := f.Remove(ctx, k); err != nil {
			errs = append(errs, fmt.Errorf("floor: remove %q: %w", k, err))
		}
	}
	if err := f.message(ctx, "delete", floorOrigin); err != nil {
		errs = append(errs, fmt.Errorf("floor: delete the origin: %w", err))
	}
	return errors.Join(errs...)
}
