package dmtest

import (
	"sort"

	"github.com/thinp/thinp/ioctl"
)

// DeviceInfo is a snapshot of one dm device, for tests to inspect.
type DeviceInfo struct {
	Name  string
	UUID  string
	Major uint32
	Minor uint32
	// Live and Inactive are the tables as loaded (Params as given, Status
	// zero); nil when there is no such table.
	Live     []ioctl.TargetSpec
	Inactive []ioctl.TargetSpec
	// LiveReadOnly is the disk's read-only state, set from the live table
	// when it was swapped in.
	LiveReadOnly        bool
	InactiveReadOnly    bool
	Suspended           bool
	InternallySuspended bool
	// OpenCount is what the kernel reports: openers (Kernel.Open) plus
	// every dm device whose tables use this one.
	OpenCount      int
	EventNr        uint32
	DeferredRemove bool
	Geometry       Geometry
	// Deps are the devices the live table uses, as "major:minor", in the
	// order DM_TABLE_DEPS returns them.
	Deps []string
}

// ThinInfo describes one thin device in a pool's metadata.
type ThinInfo struct {
	ID           uint32
	MappedBlocks uint64
	// HighestBlock is the highest mapped virtual block; meaningless when
	// MappedBlocks is 0.
	HighestBlock uint64
	// Open is how many thin targets (live or inactive) use the device.
	Open int
}

// PoolInfo is a snapshot of a thin pool: its metadata and, for an active
// pool object, its in-core state.
type PoolInfo struct {
	Name          string // the pool device; empty from Kernel.Metadata
	TransactionID uint64
	Thins         []ThinInfo // by id
	HeldRoot      uint64     // 0 when no metadata snapshot is held
	NeedsCheck    bool
	BlockSize     uint64 // sectors
	// DataBlocks and MetadataBlocks are the sizes recorded in the
	// superblock, which a resume grows; the used counts are what the
	// status line reports (metadata includes the kernel's reserve).
	DataBlocks         uint64
	UsedDataBlocks     uint64
	MetadataBlocks     uint64
	UsedMetadataBlocks uint64
	// Commits counts metadata commits, so a test can see that a status
	// with DM_NOFLUSH_FLAG did not commit.
	Commits uint64

	Mode              PoolMode
	LowWaterMark      uint64
	LowWaterTriggered bool
	ErrorIfNoSpace    bool
	Suspended         bool // the pool object's flag: set from load until the first resume
	Bound             bool // a live pool target is bound to it
}

func tableSpecs(t *table) []ioctl.TargetSpec {
	if t == nil {
		return nil
	}
	specs := make([]ioctl.TargetSpec, 0, len(t.targets))
	for _, ti := range t.targets {
		specs = append(specs, ioctl.TargetSpec{Start: ti.begin, Length: ti.len, Type: ti.tt.name, Params: ti.params})
	}
	return specs
}

func (k *Kernel) deviceInfo(d *device) DeviceInfo {
	di := DeviceInfo{
		Name: d.name, UUID: d.uuid, Major: k.major, Minor: d.minor,
		Live: tableSpecs(d.live), Inactive: tableSpecs(d.inactive),
		LiveReadOnly: d.readOnly, Suspended: d.suspended,
		InternallySuspended: k.internallySuspended(d),
		OpenCount:           k.openCount(d), EventNr: d.eventNr,
		DeferredRemove: d.deferred, Geometry: d.geometry,
	}
	if d.inactive != nil {
		di.InactiveReadOnly = d.inactive.readOnly
	}
	if d.live != nil {
		for _, dv := range d.live.devs {
			di.Deps = append(di.Deps, dv.String())
		}
	}
	return di
}

// Devices returns every dm device, in name order.
func (k *Kernel) Devices() []DeviceInfo {
	k.mu.Lock()
	defer k.mu.Unlock()
	var ds []DeviceInfo
	for _, d := range k.sortedDevices() {
		ds = append(ds, k.deviceInfo(d))
	}
	return ds
}

// Device returns the named dm device.
func (k *Kernel) Device(name string) (DeviceInfo, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	d := k.byName[name]
	if d == nil {
		return DeviceInfo{}, false
	}
	return k.deviceInfo(d), true
}

func metadataInfo(m *poolMetadata) PoolInfo {
	pi := PoolInfo{
		TransactionID: m.tid, HeldRoot: m.heldRoot, NeedsCheck: m.needsCheck,
		BlockSize: m.blockSize, DataBlocks: m.dataBlocks, UsedDataBlocks: m.usedData(),
		MetadataBlocks: m.metaBlocks, UsedMetadataBlocks: m.metaBlocks - m.reportedFreeMeta(),
		Commits: m.commits,
	}
	for _, td := range m.thins {
		ti := ThinInfo{ID: td.id, MappedBlocks: uint64(len(td.maps)), Open: td.openCount}
		if len(td.maps) > 0 {
			ti.HighestBlock = td.highest()
		}
		pi.Thins = append(pi.Thins, ti)
	}
	sort.Slice(pi.Thins, func(i, j int) bool { return pi.Thins[i].ID < pi.Thins[j].ID })
	return pi
}

// Pool returns the thin pool whose pool device is named name. There is a
// pool as soon as a thin-pool table is loaded on the device (even inactive)
// and until the last table using it is gone.
func (k *Kernel) Pool(name string) (PoolInfo, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	d := k.byName[name]
	if d == nil {
		return PoolInfo{}, false
	}
	pl := k.poolByMD(d)
	if pl == nil {
		return PoolInfo{}, false
	}
	pi := metadataInfo(pl.meta)
	pi.Name = name
	pi.BlockSize = pl.spb
	pi.Mode = pl.pf.mode
	pi.LowWaterMark = pl.lowWater
	pi.LowWaterTriggered = pl.lowWaterTriggered
	pi.ErrorIfNoSpace = pl.pf.errorIfNoSpace
	pi.Suspended = pl.suspended
	pi.Bound = pl.ti != nil
	return pi, true
}

// Metadata returns the pool metadata kept on the device dev (seen
// through linear dm devices), whether or not a pool uses it now; false if
// the device holds none (never formatted, or wiped). The in-core fields
// (Mode and after) are zero.
func (k *Kernel) Metadata(dev ioctl.Dev) (PoolInfo, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	m := k.metadata[k.resolveStore(devKey{dev.Major, dev.Minor})]
	if m == nil {
		return PoolInfo{}, false
	}
	return metadataInfo(m), true
}
