package metadata

import (
	"io"
	"iter"
)

// Options select what Open reads.
type Options struct {
	// MetadataSnap reads the device details and mappings through the
	// metadata snapshot (the held root of reserve_metadata_snap) instead
	// of the live roots, as thin_dump -m and thin_ls -m do: the consistent
	// way to read a running pool's metadata.
	MetadataSnap bool
	// SnapBlock, with MetadataSnap, is the block the caller expects the
	// snapshot at (thin_dump -m BLOCK); Open fails with ErrNoMetadataSnap
	// if the superblock holds a different one. 0 accepts any.
	SnapBlock uint64
}

// Metadata reads one thin-pool metadata image. It never writes. Its
// methods may be called from several goroutines at once if the
// io.ReaderAt allows concurrent reads (os.File does).
type Metadata struct {
	r        io.ReaderAt
	nrBlocks uint64

	live Superblock // block 0
	sb   Superblock // the superblock whose roots are read: live or the snapshot
	snap bool
}

// Open reads and validates the superblock (and, with opts.MetadataSnap,
// the metadata snapshot's) from r, which holds a whole metadata device:
// an inactive pool's metadata device, a file written by thin_restore, or
// a running pool's metadata device read through its metadata snapshot.
// Trees are read, and checked, when methods walk them.
func Open(r io.ReaderAt, opts Options) (*Metadata, error) {
	m := &Metadata{r: r}
	buf, err := m.readBlock(0, "superblock")
	if err != nil {
		return nil, err
	}
	m.live, err = DecodeSuperblock(buf, 0)
	if err != nil {
		return nil, err
	}
	m.nrBlocks = m.live.MetadataNrBlocks
	m.sb = m.live
	if opts.MetadataSnap {
		held := m.live.HeldRoot
		if held == 0 || (opts.SnapBlock != 0 && opts.SnapBlock != held) {
			return nil, ErrNoMetadataSnap
		}
		buf, err := m.readBlock(held, "metadata snapshot superblock")
		if err != nil {
			return nil, err
		}
		m.sb, err = DecodeSuperblock(buf, held)
		if err != nil {
			return nil, err
		}
		m.snap = true
	}
	if m.sb.DataMappingRoot == 0 || m.sb.DeviceDetailsRoot == 0 {
		return nil, corrupt(m.sb.Block, "superblock", "no mapping or device details root")
	}
	return m, nil
}

// Superblock returns the superblock whose trees the methods read: the
// metadata snapshot's copy when Options.MetadataSnap was set, block 0's
// otherwise.
func (m *Metadata) Superblock() Superblock { return m.sb }

// Live returns the superblock of block 0, the pool's current state.
func (m *Metadata) Live() Superblock { return m.live }

// Snapshot reports whether m reads through the metadata snapshot.
func (m *Metadata) Snapshot() bool { return m.snap }

// DataBlockSize returns the pool's data block size in 512-byte sectors.
func (m *Metadata) DataBlockSize() uint32 { return m.sb.DataBlockSize }

// NrDataBlocks returns the size of the pool's data device in data blocks,
// from the live data space map.
func (m *Metadata) NrDataBlocks() uint64 { return m.live.DataSpaceMap.NrBlocks }

// Device holds a thin device's details, as the device details tree keeps
// them.
type Device struct {
	// ID is the thin device id.
	ID uint32
	// MappedBlocks is the number of data blocks the device maps.
	MappedBlocks uint64
	// TransactionID is the pool's transaction id when the device last
	// changed.
	TransactionID uint64
	// CreationTime is the pool's time when the device was created.
	CreationTime uint32
	// SnapshottedTime is the pool's time when the device last had a
	// snapshot taken of it (or was created as one).
	SnapshottedTime uint32
}

func decodeDevice(key uint64, v []byte) Device {
	return Device{
		ID:              uint32(key),
		MappedBlocks:    le64(v[0:]),
		TransactionID:   le64(v[8:]),
		CreationTime:    le32(v[16:]),
		SnapshottedTime: le32(v[20:]),
	}
}

// Devices iterates over the thin devices, in id order. A non-nil error
// ends the iteration.
func (m *Metadata) Devices() iter.Seq2[Device, error] {
	return func(yield func(Device, error) bool) {
		var bad error
		err := m.walk(m.sb.DeviceDetailsRoot, detailsSize, func(k uint64, v []byte) bool {
			if k > maxThinID {
				bad = corrupt(m.sb.DeviceDetailsRoot, "device details tree", "thin id %d out of range", k)
				return false
			}
			return yield(decodeDevice(k, v), nil)
		})
		if bad != nil {
			err = bad
		}
		if err != nil && err != errStop {
			yield(Device{}, err)
		}
	}
}

// DeviceList returns all thin devices, in id order.
func (m *Metadata) DeviceList() ([]Device, error) {
	var ds []Device
	for d, err := range m.Devices() {
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// Device returns the details of thin device id, or a *DeviceError
// (ErrNoDevice) when there is none.
func (m *Metadata) Device(id uint32) (Device, error) {
	v, ok, err := m.lookup(m.sb.DeviceDetailsRoot, detailsSize, uint64(id))
	if err != nil {
		return Device{}, err
	}
	if !ok {
		return Device{}, &DeviceError{ID: id}
	}
	return decodeDevice(uint64(id), v), nil
}

// Mapping is a run of consecutive virtual blocks of a thin device mapped
// to consecutive data blocks, all with the same time stamp.
type Mapping struct {
	// VBegin is the first virtual block (in data-block units).
	VBegin uint64
	// DBegin is the data block VBegin maps to.
	DBegin uint64
	// Len is the number of blocks in the run, at least 1.
	Len uint64
	// Time is the pool time at which the blocks were written.
	Time uint32
}

// mappingRoot returns the root of thin device id's mapping tree.
func (m *Metadata) mappingRoot(id uint32) (uint64, error) {
	v, ok, err := m.lookup(m.sb.DataMappingRoot, 8, uint64(id))
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, &DeviceError{ID: id}
	}
	return le64(v), nil
}

// rawMappings visits every single-block mapping of the tree at root.
func (m *Metadata) rawMappings(root uint64, visit func(vblock, dblock uint64, time uint32) bool) error {
	nrData := m.NrDataBlocks()
	var bad error
	err := m.walk(root, 8, func(k uint64, v []byte) bool {
		d, t := unpackBlockTime(le64(v))
		if nrData != 0 && d >= nrData {
			bad = corrupt(root, "mapping tree", "virtual block %d maps data block %d beyond the data device's %d blocks", k, d, nrData)
			return false
		}
		return visit(k, d, t)
	})
	if bad != nil {
		return bad
	}
	return err
}

// Mappings iterates over thin device id's mappings in virtual block order,
// joining consecutive blocks with consecutive data blocks and equal times
// into one Mapping (the ranges thin_dump prints). Memory use does not
// depend on the number of mappings. A device without an entry in the
// mapping tree yields a *DeviceError (ErrNoDevice); any error ends the
// iteration.
func (m *Metadata) Mappings(id uint32) iter.Seq2[Mapping, error] {
	return m.mappings(id, true)
}

func (m *Metadata) mappings(id uint32, sameTime bool) iter.Seq2[Mapping, error] {
	return func(yield func(Mapping, error) bool) {
		root, err := m.mappingRoot(id)
		if err != nil {
			yield(Mapping{}, err)
			return
		}
		var cur Mapping
		err = m.rawMappings(root, func(vb, db uint64, t uint32) bool {
			if cur.Len > 0 && vb == cur.VBegin+cur.Len && db == cur.DBegin+cur.Len && (!sameTime || t == cur.Time) {
				cur.Len++
				return true
			}
			if cur.Len > 0 && !yield(cur, nil) {
				return false
			}
			cur = Mapping{VBegin: vb, DBegin: db, Len: 1, Time: t}
			return true
		})
		if err == errStop {
			return
		}
		if err != nil {
			yield(Mapping{}, err)
			return
		}
		if cur.Len > 0 {
			yield(cur, nil)
		}
	}
}

// MappedDevices iterates over the ids that have a mapping tree, in id
// order: the same ids as Devices in intact metadata.
func (m *Metadata) MappedDevices() iter.Seq2[uint32, error] {
	return func(yield func(uint32, error) bool) {
		var bad error
		err := m.walk(m.sb.DataMappingRoot, 8, func(k uint64, v []byte) bool {
			if k > maxThinID {
				bad = corrupt(m.sb.DataMappingRoot, "mapping tree", "thin id %d out of range", k)
				return false
			}
			return yield(uint32(k), nil)
		})
		if bad != nil {
			err = bad
		}
		if err != nil && err != errStop {
			yield(0, err)
		}
	}
}
