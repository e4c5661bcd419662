package dmtest

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

// devKey is a dev_t: a block device as tables name it, "major:minor".
type devKey struct{ major, minor uint32 }

func (d devKey) String() string { return fmt.Sprintf("%d:%d", d.major, d.minor) }

// blockDev is a block device that is not a dm device (a loop device).
type blockDev struct {
	sectors uint64
}

// Geometry is the disk geometry set with DM_DEV_SET_GEOMETRY.
type Geometry struct {
	Cylinders, Heads, Sectors uint64
	Start                     uint64
}

// device is a mapped_device and its hash_cell.
type device struct {
	name, uuid string
	minor      uint32
	live       *table // md->map
	inactive   *table // hc->new_map
	suspended  bool   // DMF_SUSPENDED
	readOnly   bool   // get_disk_ro()
	openers    int    // Kernel.Open callers
	eventNr    uint32
	deferred   bool // DMF_DEFERRED_REMOVE
	diskAdded  bool // the first table load set up the queue and added the disk
	immutable  *targetType
	geometry   Geometry
	removed    bool
}

func (d *device) key(major uint32) devKey { return devKey{major, d.minor} }

// table is a struct dm_table.
type table struct {
	md        *device
	readOnly  bool
	targets   []*target
	devs      []devKey // t->devices: list_add puts each new device first
	singleton bool
	immutable *targetType
}

func (t *table) size() uint64 {
	if t == nil || len(t.targets) == 0 {
		return 0
	}
	last := t.targets[len(t.targets)-1]
	return last.begin + last.len
}

func (t *table) uses(key devKey) bool {
	if t == nil {
		return false
	}
	for _, d := range t.devs {
		if d == key {
			return true
		}
	}
	return false
}

// findTarget is dm_table_find_target().
func (t *table) findTarget(sector uint64) *target {
	for _, ti := range t.targets {
		if sector >= ti.begin && sector-ti.begin < ti.len {
			return ti
		}
	}
	return nil
}

// target is a struct dm_target.
type target struct {
	begin, len uint64
	tt         *targetType
	params     string // the parameter string as loaded
	state      targetState
	table      *table
}

type statusType int

const (
	statusInfo statusType = iota
	statusTable
	statusIMA
)

// targetState is what a target's constructor returns: its private data and
// the methods of its struct target_type. Optional methods are the small
// interfaces below.
type targetState interface {
	status(k *Kernel, ti *target, typ statusType, noflush bool) string
}

type (
	dtrer      interface{ dtr(k *Kernel, ti *target) }
	preresumer interface {
		preresume(k *Kernel, ti *target) error
	}
	resumer       interface{ resume(k *Kernel, ti *target) }
	presuspender  interface{ presuspend(k *Kernel, ti *target) }
	postsuspender interface{ postsuspend(k *Kernel, ti *target) }
	messager      interface {
		message(k *Kernel, ti *target, argv []string) (out string, dataOut bool, err error)
	}
	// areaIterator is iterate_devices() with device_area_is_invalid(): the
	// regions of underlying devices the target maps.
	areaIterator interface {
		areas(k *Kernel, ti *target) []area
	}
)

type area struct {
	dev        devKey
	start, len uint64
}

// Target type features.
const (
	featSingleton       = 1 << iota // DM_TARGET_SINGLETON
	featAlwaysWriteable             // DM_TARGET_ALWAYS_WRITEABLE
	featImmutable                   // DM_TARGET_IMMUTABLE
	featWildcard                    // DM_TARGET_WILDCARD
)

// targetType is a struct target_type.
type targetType struct {
	name     string
	version  ioctl.Version
	features int
	ctr      func(k *Kernel, ti *target, argv []string) (targetState, error)
}

func (k *Kernel) targetType(name string) *targetType {
	for _, t := range k.types {
		if t.name == name {
			return t
		}
	}
	return nil
}

// getDevice is dm_get_device(): resolve a "major:minor" argument, check the
// device exists, and add it to the table's device list.
func (k *Kernel) getDevice(t *table, path string) (devKey, error) {
	key, err := parseDevT(path)
	if err != nil {
		return devKey{}, err
	}
	if !k.blockExists(key) {
		// blkdev_get_by_dev() of a dev_t without a disk.
		return devKey{}, unix.ENXIO
	}
	if !t.uses(key) {
		t.devs = append([]devKey{key}, t.devs...)
	}
	return key, nil
}

// parseDevT is the sscanf(path, "%u:%u%c") == 2 branch of dm_get_device().
//
// Differs from the kernel: anything else is a path the kernel would look up
// with lookup_bdev(); the fake has no filesystem and says ENODEV, as
// dm_get_dev_t() failing does.
func parseDevT(s string) (devKey, error) {
	maj, rest, ok := scanUint(s)
	if !ok || !strings.HasPrefix(rest, ":") {
		return devKey{}, unix.ENODEV
	}
	min, rest, ok := scanUint(rest[1:])
	if !ok || rest != "" {
		return devKey{}, unix.ENODEV
	}
	// MKDEV(major, minor) must give back both numbers.
	if maj > 0xfff || min > 0xfffff {
		return devKey{}, unix.EOVERFLOW
	}
	return devKey{uint32(maj), uint32(min)}, nil
}

// blockExists reports whether key names a block device that can be opened:
// a known block device, or a dm device whose disk was added by its first
// table load.
func (k *Kernel) blockExists(key devKey) bool {
	if key.major == k.major {
		d := k.byMinor[key.minor]
		return d != nil && d.diskAdded
	}
	return k.blockDevs[key] != nil
}

// devSize is bdev_nr_sectors(): a dm device's capacity is the size of its
// live table.
func (k *Kernel) devSize(key devKey) uint64 {
	if key.major == k.major {
		if d := k.byMinor[key.minor]; d != nil {
			return d.live.size()
		}
		return 0
	}
	if bd := k.blockDevs[key]; bd != nil {
		return bd.sectors
	}
	return 0
}

// dmDevice is dm_get_md(): the dm device behind a dev_t, if any.
func (k *Kernel) dmDevice(key devKey) *device {
	if key.major != k.major {
		return nil
	}
	return k.byMinor[key.minor]
}

// openCount is dm_open_count(): openers, plus one for every dm device whose
// live or inactive table uses d (a mapped device opens each underlying
// device once, however many of its tables use it).
func (k *Kernel) openCount(d *device) int {
	n := d.openers
	key := d.key(k.major)
	for _, e := range k.byName {
		if e.live.uses(key) || e.inactive.uses(key) {
			n++
		}
	}
	return n
}

// destroyTable is dm_table_destroy(): every target's destructor, in order.
func (k *Kernel) destroyTable(t *table) {
	if t == nil {
		return
	}
	for _, ti := range t.targets {
		if d, ok := ti.state.(dtrer); ok {
			d.dtr(k, ti)
		}
	}
}

// hashRemove is __hash_remove() followed by dm_destroy(): wake event
// waiters through the live table, unlink the names, drop both tables.
//
// Differs from the kernel: dm_destroy() waits for every holder of the
// device, so removing a device without a live table while a DM_DEV_WAIT
// sleeps on it blocks the remove; here the remove completes and the waiter
// sleeps on until InterruptWaiters.
func (k *Kernel) hashRemove(d *device) {
	if d.live != nil {
		k.deviceEvent(d)
	}
	delete(k.byName, d.name)
	if d.uuid != "" {
		delete(k.byUUID, d.uuid)
	}
	delete(k.byMinor, d.minor)
	d.removed = true
	in, live := d.inactive, d.live
	d.inactive, d.live = nil, nil
	k.destroyTable(in)
	k.destroyTable(live)
}

// deferredRemove is dm_deferred_remove(), run whenever an open count may
// have dropped: remove every device marked for deferred removal that nobody
// holds open, until no more can go.
//
// Differs from the kernel: the kernel queues this on a work queue from
// dm_blk_close(); the fake runs it synchronously.
func (k *Kernel) deferredRemove() {
	for {
		progress := false
		for _, d := range k.sortedDevices() {
			if d.deferred && k.openCount(d) == 0 {
				k.hashRemove(d)
				progress = true
				break
			}
		}
		if !progress {
			return
		}
	}
}

// internallySuspended is dm_suspended_internally_md(): a thin device is
// internally suspended while its pool is suspended.
func (k *Kernel) internallySuspended(d *device) bool {
	for _, t := range []*table{d.live, d.inactive} {
		if t == nil {
			continue
		}
		for _, ti := range t.targets {
			if tc, ok := ti.state.(*thinTarget); ok && tc.pool.suspended {
				return true
			}
		}
	}
	return false
}

// findCell is __find_device_hash_cell(): look the device up by exactly one
// of uuid, name and dev, then write its name and uuid into the parameters
// and report whether it has an inactive table.
func (k *Kernel) findCell(p *param) *device {
	uuid, name, dev := p.uuid(), p.name(), p.dev()
	var d *device
	switch {
	case uuid != "":
		if name != "" || dev != 0 {
			return nil
		}
		d = k.byUUID[uuid]
	case name != "":
		if dev != 0 {
			return nil
		}
		d = k.byName[name]
	case dev != 0:
		dd := ioctl.DecodeDev(dev)
		major, minor := dd.Major, dd.Minor
		d = k.dmDevice(devKey{major, minor})
	}
	if d == nil {
		return nil
	}
	p.strlcpy(offName, ioctl.NameLen, d.name)
	if d.uuid != "" {
		p.strlcpy(offUUID, ioctl.UUIDLen, d.uuid)
	} else {
		p.b[offUUID] = 0
	}
	if d.inactive != nil {
		p.orFlags(ioctl.FlagInactivePresent)
	} else {
		p.clearFlags(ioctl.FlagInactivePresent)
	}
	return d
}

// devStatus is __dev_status().
func (k *Kernel) devStatus(d *device, p *param) {
	f := p.flags() &^ (ioctl.FlagSuspend | ioctl.FlagReadOnly | ioctl.FlagActivePresent | ioctl.FlagInternalSuspend)
	if d.suspended {
		f |= ioctl.FlagSuspend
	}
	if k.internallySuspended(d) {
		f |= ioctl.FlagInternalSuspend
	}
	if d.deferred {
		f |= ioctl.FlagDeferredRemove
	}
	ne.PutUint64(p.b[offDev:], ioctl.Dev{Major: k.major, Minor: d.minor}.Encode())
	p.setU32(offOpenCount, uint32(int32(k.openCount(d))))
	p.setU32(offEventNr, d.eventNr)
	count := 0
	query := f&ioctl.FlagQueryInactiveTable != 0
	if d.live != nil {
		if !query {
			if d.readOnly {
				f |= ioctl.FlagReadOnly
			}
			count = len(d.live.targets)
		}
		f |= ioctl.FlagActivePresent
	}
	if query && d.inactive != nil {
		if d.inactive.readOnly {
			f |= ioctl.FlagReadOnly
		}
		count = len(d.inactive.targets)
	}
	p.setU32(offTargetCount, uint32(count))
	p.setFlags(f)
}
