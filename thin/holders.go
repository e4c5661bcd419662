package thin

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/ioctl"
)

// This file finds the dm devices that map thin devices of a pool without
// looking at the other dm devices of the host; see "Finding active thin
// devices" in the package documentation.

// holderLink is one entry of the pool's holders directory in sysfs: dm
// device dm-<minor>, and the inode number of the entry, which identifies
// this link: sysfs numbers every node it makes afresh, so a device removed
// and another created with the same minor (and a table on this pool) shows
// a new link.
type holderLink struct {
	minor uint32
	link  uint64
}

// holderSource lists the dm devices that hold a block device open because
// a table of theirs (live or inactive) uses it. sysHost reads sysfs;
// tests give the fake kernel's view. A hostDevs without it, or a failure,
// makes the pool scan every dm device of the host instead.
type holderSource interface {
	holders(d dm.Dev) ([]holderLink, error)
	// dmName is the name of dm device d as sysfs shows it
	// (/sys/dev/block/<maj>:<min>/dm/name).
	dmName(d dm.Dev) (string, error)
	// watchHolders makes holdersStamp change whenever a holder link of d
	// is added or removed; holdersStamp reads it. Without it (an error),
	// the holders are listed every time.
	watchHolders(d dm.Dev) error
	holdersStamp(d dm.Dev) (holderStamp, error)
}

// holderStamp is what changes when a holders directory changes: its
// modification and change times.
type holderStamp [4]int64

// holderCache is the pool's view of its holders: the last listing and the
// stamp it was taken at, and what the holders that are volumes this
// package activated (volumeUUID) map, indexed by thin id. Those are
// trusted not to change their thin id while their link lives; every other
// holder (untrusted) is read again each time it matters.
type holderCache struct {
	mu sync.Mutex
	// checked: sysfs was asked once whether it shows this pool; usable:
	// it does (not a sysfs of another host or container). watched: the
	// holders directory's stamp moves with its entries.
	checked, usable, watched bool

	stamp     holderStamp
	haveStamp bool
	links     []holderLink            // the listing at stamp
	untrusted []holderLink            // the entries of links not in m
	m         map[uint32]cachedHolder // trusted holders by minor
	byID      map[DeviceID]map[uint32]struct{}
}

type cachedHolder struct {
	link uint64
	td   thinDevice
}

// usableFor reports whether src shows the pool itself at its device
// number, asking once per Pool, and sets up the stamp.
func (c *holderCache) usableFor(src holderSource, dev dm.Dev, name string) bool {
	if !c.checked {
		n, err := src.dmName(dev)
		c.checked, c.usable = true, err == nil && n == name
		if c.usable {
			c.watched = src.watchHolders(dev) == nil
		}
	}
	return c.usable
}

// refresh brings links up to date: a stat of the holders directory, and
// a listing only when its stamp moved (or cannot be trusted). The stamp is
// read before the listing, so a change that races with the listing moves
// the stamp past the one kept.
func (c *holderCache) refresh(src holderSource, dev dm.Dev) error {
	var st holderStamp
	stamped := false
	if c.watched {
		var err error
		st, err = src.holdersStamp(dev)
		stamped = err == nil
		if stamped && c.haveStamp && st == c.stamp {
			return nil
		}
	}
	links, err := src.holders(dev)
	if err != nil {
		c.haveStamp = false
		return err
	}
	c.stamp, c.haveStamp = st, stamped
	c.links = links
	c.prune()
	return nil
}

// prune forgets the trusted holders that are not in links (any more, or
// with another link: another device with the same minor), and lists the
// untrusted ones.
func (c *holderCache) prune() {
	live := make(map[uint32]uint64, len(c.links))
	for _, l := range c.links {
		live[l.minor] = l.link
	}
	for minor, h := range c.m {
		if link, ok := live[minor]; !ok || link != h.link {
			c.drop(minor)
		}
	}
	c.untrusted = c.untrusted[:0]
	for _, l := range c.links {
		if h, ok := c.m[l.minor]; !ok || h.link != l.link {
			c.untrusted = append(c.untrusted, l)
		}
	}
}

func (c *holderCache) drop(minor uint32) {
	h, ok := c.m[minor]
	if !ok {
		return
	}
	delete(c.m, minor)
	for _, s := range h.td.specs {
		delete(c.byID[s.ID], minor)
		if len(c.byID[s.ID]) == 0 {
			delete(c.byID, s.ID)
		}
	}
}

func (c *holderCache) trust(l holderLink, td thinDevice) {
	c.drop(l.minor)
	if c.m == nil {
		c.m = map[uint32]cachedHolder{}
		c.byID = map[DeviceID]map[uint32]struct{}{}
	}
	c.m[l.minor] = cachedHolder{link: l.link, td: td}
	for _, s := range td.specs {
		if c.byID[s.ID] == nil {
			c.byID[s.ID] = map[uint32]struct{}{}
		}
		c.byID[s.ID][l.minor] = struct{}{}
	}
	c.untrusted = slices.DeleteFunc(c.untrusted, func(u holderLink) bool { return u == l })
}

// volumeUUIDPrefix starts the dm uuid Activate gives a volume when the
// caller gives none: THINP-thin-<pool major>:<pool minor>-<thin id>-<name>.
// The name keeps it unique when one thin id is active twice.
const volumeUUIDPrefix = "THINP-thin-"

// volumeUUID is the uuid of volume name mapping thin id of pool, or ""
// when it would not fit the kernel's 128 bytes.
func volumeUUID(pool dm.Dev, id DeviceID, name string) string {
	u := volumeUUIDPrefix + pool.String() + "-" + strconv.FormatUint(uint64(id), 10) + "-" + name
	if len(u) > ioctl.UUIDLen-1 {
		return ""
	}
	return u
}

// volumeUUIDID is the thin id a volumeUUID of pool names.
func volumeUUIDID(uuid string, pool dm.Dev) (DeviceID, bool) {
	rest, ok := strings.CutPrefix(uuid, volumeUUIDPrefix)
	if !ok {
		return 0, false
	}
	rest, ok = strings.CutPrefix(rest, pool.String()+"-")
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(num, 10, 32)
	if err != nil || id > uint64(MaxDeviceID) {
		return 0, false
	}
	return DeviceID(id), true
}

// holderThins lists the dm devices whose live tables map thin devices of
// this pool, from the pool's holders in sysfs. With ids, only those that
// map one of ids, taking this package's volumes from the holder cache and
// reading only the other holders (DM_DEV_STATUS, DM_TABLE_DEPS,
// DM_TABLE_STATUS each): O(1) ioctls when every holder is this package's,
// and a stat of the holders directory, plus a listing of it when it
// changed. Without ids, every holder is read. Without sysfs it falls back
// to hostThins.
func (p *Pool) holderThins(ctx context.Context, op string, ids ...DeviceID) (thinDevices, error) {
	src, ok := p.cfg.host.(holderSource)
	if !ok {
		return p.hostThins(ctx, op, ids)
	}
	c := &p.holders
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.usableFor(src, p.dev, p.name) || c.refresh(src, p.dev) != nil {
		return p.hostThins(ctx, op, ids)
	}
	todo := c.untrusted
	if len(ids) == 0 {
		todo = c.links
	}
	var out thinDevices
	for _, l := range slices.Clone(todo) {
		td, ok, trusted, err := p.readHolder(ctx, l.minor)
		if err != nil {
			if errors.Is(err, dm.ErrNotFound) { // gone meanwhile
				continue
			}
			return nil, newError(op, p.name, nil, err)
		}
		if trusted {
			c.trust(l, td)
		}
		if ok && td.mapsAny(ids) {
			out = append(out, td)
		}
	}
	for _, id := range ids {
		for minor := range c.byID[id] {
			if !slices.ContainsFunc(out, func(d thinDevice) bool { return d.dev.Minor == minor }) {
				out = append(out, c.m[minor].td)
			}
		}
	}
	if len(out) > 1 {
		slices.SortFunc(out, func(a, b thinDevice) int { return strings.Compare(a.name, b.name) })
	}
	return out, nil
}

// mapsAny reports whether td maps one of ids; every id when there are none.
func (td thinDevice) mapsAny(ids []DeviceID) bool {
	if len(ids) == 0 {
		return true
	}
	for _, s := range td.specs {
		if slices.Contains(ids, s.ID) {
			return true
		}
	}
	return false
}

// readHolder reads holder dm-<minor> of the pool: whether its live table
// maps thin devices of the pool, and whether it is one of this package's
// volumes (its uuid is the volumeUUID of the one thin id its table maps),
// which may be cached.
func (p *Pool) readHolder(ctx context.Context, minor uint32) (td thinDevice, ok, trusted bool, err error) {
	dev := dm.Dev{Major: p.dev.Major, Minor: minor}
	info, err := p.ctl.Info(ctx, dm.DevNum(dev))
	if err != nil {
		return thinDevice{}, false, false, err
	}
	td, ok, err = p.readThin(ctx, dm.DevNum(dev))
	if err != nil || !ok {
		return thinDevice{}, false, false, err
	}
	td.name, td.dev = info.Name, dev
	id, mine := volumeUUIDID(info.UUID, p.dev)
	trusted = mine && td.single && !td.failed && td.specs[0].ID == id
	return td, true, trusted, nil
}

// hostThins is the scan of every dm device of the host, for hosts without
// sysfs: DM_LIST_DEVICES, then each device's dependencies, and the table
// of those that use the pool (so the tables of unrelated devices, dm-crypt
// keys among them, are never read). Devices that vanish meanwhile are
// skipped. It costs 2N+1 ioctls for N dm devices.
func (p *Pool) hostThins(ctx context.Context, op string, ids []DeviceID) (thinDevices, error) {
	devs, err := p.ctl.List(ctx)
	if err != nil {
		return nil, newError(op, p.name, nil, err)
	}
	var out thinDevices
	for _, d := range devs {
		if d.Dev == p.dev {
			continue
		}
		td, ok, err := p.readThin(ctx, dm.DevNum(d.Dev))
		if err != nil {
			if errors.Is(err, dm.ErrNotFound) {
				continue
			}
			return nil, newError(op, p.name, nil, err)
		}
		if ok && td.mapsAny(ids) {
			td.name, td.dev = d.Name, d.Dev
			out = append(out, td)
		}
	}
	return out, nil
}

// idLocks orders the operations on one thin id: a snapshot holds its id
// and its origin's while it finds, suspends and resumes the origin, so
// that no activation of the origin through this Pool slips in between.
// Operations on other ids go on in parallel.
type idLocks struct {
	mu sync.Mutex
	m  map[DeviceID]*idLock
}

type idLock struct {
	mu   sync.Mutex
	refs int
}

// lock locks ids (in increasing order, each once) and returns the unlock.
func (l *idLocks) lock(ids ...DeviceID) (unlock func()) {
	if len(ids) > 1 {
		ids = slices.Clone(ids)
		slices.Sort(ids)
		ids = slices.Compact(ids)
	}
	held := make([]*idLock, len(ids))
	l.mu.Lock()
	if l.m == nil {
		l.m = map[DeviceID]*idLock{}
	}
	for i, id := range ids {
		il := l.m[id]
		if il == nil {
			il = &idLock{}
			l.m[id] = il
		}
		il.refs++
		held[i] = il
	}
	l.mu.Unlock()
	for _, il := range held {
		il.mu.Lock()
	}
	return func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i].mu.Unlock()
		}
		l.mu.Lock()
		for i, id := range ids {
			if held[i].refs--; held[i].refs == 0 {
				delete(l.m, id)
			}
		}
		l.mu.Unlock()
	}
}
