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
}

// holderCache remembers what the pool's holders map, for the holders that
// are volumes this package activated (volumeUUID): those are trusted not
// to change their thin id while their link lives. Other holders are read
// again each time.
type holderCache struct {
	mu sync.Mutex
	m  map[uint32]cachedHolder // by minor
	// checked: sysfs was asked once whether it shows this pool; usable:
	// it does (not a sysfs of another host or container).
	checked, usable bool
}

// usable reports whether src shows the pool itself at its device number,
// asking once per Pool.
func (c *holderCache) usableFor(src holderSource, dev dm.Dev, name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.checked {
		n, err := src.dmName(dev)
		c.checked, c.usable = true, err == nil && n == name
	}
	return c.usable
}

type cachedHolder struct {
	link uint64
	td   thinDevice
}

func (c *holderCache) get(l holderLink) (thinDevice, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[l.minor]
	if !ok || h.link != l.link {
		return thinDevice{}, false
	}
	return h.td, true
}

func (c *holderCache) put(l holderLink, td thinDevice) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[uint32]cachedHolder{}
	}
	c.m[l.minor] = cachedHolder{link: l.link, td: td}
}

// prune forgets the holders that are not in links (any more, or with
// another link: another device with the same minor).
func (c *holderCache) prune(links []holderLink) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) == 0 {
		return
	}
	live := make(map[uint32]uint64, len(links))
	for _, l := range links {
		live[l.minor] = l.link
	}
	for minor, h := range c.m {
		if link, ok := live[minor]; !ok || link != h.link {
			delete(c.m, minor)
		}
	}
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

// activeThins lists the dm devices whose live tables map thin devices of
// this pool. With cached, volumes this package activated are taken from
// the holder cache when their sysfs link is the one seen before; every
// other holder is read (DM_DEV_STATUS, DM_TABLE_DEPS, DM_TABLE_STATUS).
// Without sysfs it falls back to hostThins.
func (p *Pool) holderThins(ctx context.Context, op string, cached bool) (thinDevices, error) {
	src, ok := p.cfg.host.(holderSource)
	if !ok || !p.holders.usableFor(src, p.dev, p.name) {
		return p.hostThins(ctx, op)
	}
	links, err := src.holders(p.dev)
	if err != nil {
		return p.hostThins(ctx, op)
	}
	var out thinDevices
	for _, l := range links {
		if cached {
			if td, ok := p.holders.get(l); ok {
				out = append(out, td)
				continue
			}
		}
		td, ok, trusted, err := p.readHolder(ctx, l.minor)
		if err != nil {
			if errors.Is(err, dm.ErrNotFound) { // gone meanwhile
				continue
			}
			return nil, newError(op, p.name, nil, err)
		}
		if trusted {
			p.holders.put(l, td)
		}
		if ok {
			out = append(out, td)
		}
	}
	p.holders.prune(links)
	if len(out) > 1 {
		slices.SortFunc(out, func(a, b thinDevice) int { return strings.Compare(a.name, b.name) })
	}
	return out, nil
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
func (p *Pool) hostThins(ctx context.Context, op string) (thinDevices, error) {
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
		if ok {
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
	if len(ids) == 2 && ids[0] > ids[1] {
		ids = []DeviceID{ids[1], ids[0]}
	}
	if len(ids) == 2 && ids[0] == ids[1] {
		ids = ids[:1]
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
