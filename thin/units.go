package thin

import (
	"math/bits"

	"github.com/thinp/thinp/dm"
)

// Byte multiples, for sizes written the way people think of them:
// thin.Size(10*thin.GiB).
const (
	KiB = 1 << 10
	MiB = 1 << 20
	GiB = 1 << 30
	TiB = 1 << 40
)

// Size converts a byte count to sectors, rounding up, so that a device of
// Size(n) sectors holds at least n bytes.
func Size(bytes uint64) dm.Sectors {
	return dm.Sectors(bytes/dm.SectorSize + min(bytes%dm.SectorSize, 1))
}

// DataBlocks counts blocks of a pool's data device. Their size is the
// pool's block size (PoolSpec.BlockSize), fixed when the pool is created.
type DataBlocks uint64

// Sectors is b in sectors for a pool whose blocks are blockSize sectors. It
// saturates at the largest dm.Sectors instead of wrapping.
func (b DataBlocks) Sectors(blockSize dm.Sectors) dm.Sectors {
	hi, lo := bits.Mul64(uint64(b), uint64(blockSize))
	if hi != 0 {
		return ^dm.Sectors(0)
	}
	return dm.Sectors(lo)
}

// DataBlocksIn is how many whole blocks of blockSize sectors fit in s, as
// the kernel counts a pool's data size: a partial block at the end is not
// used. A zero blockSize gives zero.
func DataBlocksIn(s, blockSize dm.Sectors) DataBlocks {
	if blockSize == 0 {
		return 0
	}
	return DataBlocks(s / blockSize)
}

// MetaBlockSize is the size of a thin-pool metadata block: 4 KiB, 8 sectors.
const MetaBlockSize = 4096

// MetaBlockSectors is MetaBlockSize in sectors.
const MetaBlockSectors dm.Sectors = MetaBlockSize / dm.SectorSize

// MetaBlocks counts 4 KiB blocks of a pool's metadata device.
type MetaBlocks uint64

// Sectors is b in sectors, saturating instead of wrapping.
func (b MetaBlocks) Sectors() dm.Sectors {
	if uint64(b) > uint64(^dm.Sectors(0)/MetaBlockSectors) {
		return ^dm.Sectors(0)
	}
	return dm.Sectors(b) * MetaBlockSectors
}

// Bytes is b in bytes, saturating instead of wrapping.
func (b MetaBlocks) Bytes() uint64 {
	if uint64(b) > ^uint64(0)/MetaBlockSize {
		return ^uint64(0)
	}
	return uint64(b) * MetaBlockSize
}

// MetaBlocksIn is how many whole metadata blocks fit in s.
func MetaBlocksIn(s dm.Sectors) MetaBlocks { return MetaBlocks(s / MetaBlockSectors) }

// Limits of the thin-provisioning target (dm-thin.c, dm-space-map-metadata.h).
const (
	// MinBlockSize and MaxBlockSize bound a pool's data block size: 64 KiB
	// to 1 GiB. It must also be a multiple of MinBlockSize.
	MinBlockSize dm.Sectors = 128
	MaxBlockSize dm.Sectors = 2097152

	// MaxMetaBlocks is the most metadata a pool can use (about 15.9 GiB):
	// the metadata space map has one index block of 255 entries, each
	// covering 16320 blocks. The kernel ignores the rest of a larger
	// metadata device, with a warning.
	MaxMetaBlocks MetaBlocks = 255 * ((1 << 14) - 64)

	// MaxMetadataSize is MaxMetaBlocks in sectors.
	MaxMetadataSize dm.Sectors = dm.Sectors(MaxMetaBlocks) * MetaBlockSectors

	// MinMetadataSize is the smallest metadata device SuggestMetadataSize
	// proposes, 2 MiB, as the kernel documentation advises.
	MinMetadataSize dm.Sectors = 2 * MiB / dm.SectorSize

	// metadataBytesPerBlock is the kernel documentation's sizing rule:
	// 48 bytes of metadata per data block.
	metadataBytesPerBlock = 48
)

// SuggestMetadataSize proposes a metadata device size for a pool of
// dataSize sectors in blocks of blockSize sectors, following the kernel
// documentation: 48 bytes per data block, at least 2 MiB, at most what a
// pool can use (MaxMetadataSize), rounded up to whole metadata blocks.
// Snapshot-heavy pools share blocks between devices and may need more;
// watch PoolStatus.MetadataLow. A blockSize of zero counts as MinBlockSize.
func SuggestMetadataSize(dataSize, blockSize dm.Sectors) dm.Sectors {
	if blockSize == 0 {
		blockSize = MinBlockSize
	}
	blocks := uint64(dataSize / blockSize)
	if dataSize%blockSize != 0 {
		blocks++
	}
	if blocks > uint64(MaxMetadataSize)*dm.SectorSize/metadataBytesPerBlock {
		return MaxMetadataSize
	}
	s := Size(blocks * metadataBytesPerBlock)
	s = (s + MetaBlockSectors - 1) / MetaBlockSectors * MetaBlockSectors
	return min(max(s, MinMetadataSize), MaxMetadataSize)
}

// DeviceID is a thin device's id inside its pool: 24 bits, chosen by the
// caller when the device is created.
type DeviceID uint32

// MaxDeviceID is the largest device id a pool accepts, 2^24-1.
const MaxDeviceID DeviceID = 1<<24 - 1

// Valid reports whether id fits in the pool's 24 bits.
func (id DeviceID) Valid() bool { return id <= MaxDeviceID }

// maxSize bounds every size this package sends: a dm.Sectors at or above
// 2^63 is almost certainly a negative number converted, and no device is
// that large.
const maxSize dm.Sectors = 1<<63 - 1
