package metadata

import (
	"encoding/binary"
	"hash/crc32"
)

// BlockSize is the size in bytes of every metadata block.
const BlockSize = 4096

// SuperblockMagic is the magic number of a thin-pool superblock.
const SuperblockMagic = 27022010

// Checksum xors: each block kind's crc32c is xor'ed with its own constant,
// so that a block of one kind never validates as another.
const (
	superblockCsumXor = 160774
	btreeCsumXor      = 121107
	bitmapCsumXor     = 240779
	indexCsumXor      = 160478
)

// Superblock flags.
const (
	// FlagNeedsCheck is set by the kernel when it found the metadata
	// damaged; the pool then refuses to run read-write until thin_check.
	FlagNeedsCheck = 1 << 0
)

// Btree node flags.
const (
	nodeInternal = 1
	nodeLeaf     = 2
)

const (
	nodeHeaderSize    = 32
	bitmapHeaderSize  = 16
	entriesPerBitmap  = (BlockSize - bitmapHeaderSize) * 4 // 2 bits per block
	maxMetadataBitmap = 255                                // entries in the metadata space map's index block
	indexEntrySize    = 16
	detailsSize       = 24
	smRootSize        = 128
	maxTreeDepth      = 16 // far more than any tree of 2^64 keys with nodes of >= 84 entries needs
	maxThinID         = 1<<24 - 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum computes a block's checksum as the kernel does: crc32c seeded
// with all ones and not finally inverted, over everything after the
// checksum field, xor'ed with the block kind's constant.
func checksum(block []byte, xor uint32) uint32 {
	return ^crc32.Checksum(block[4:], castagnoli) ^ xor
}

// SpaceMapRoot is the root of a space map as the superblock records it.
type SpaceMapRoot struct {
	// NrBlocks is the number of blocks the space map tracks.
	NrBlocks uint64
	// NrAllocated is the number of those with a nonzero reference count.
	NrAllocated uint64
	// BitmapRoot is the root of the index of bitmap blocks: a btree for the
	// data space map, a single index block for the metadata space map.
	BitmapRoot uint64
	// RefCountRoot is the root of the btree of counts above 2.
	RefCountRoot uint64
}

func decodeSMRoot(b []byte) SpaceMapRoot {
	return SpaceMapRoot{
		NrBlocks:     le64(b[0:]),
		NrAllocated:  le64(b[8:]),
		BitmapRoot:   le64(b[16:]),
		RefCountRoot: le64(b[24:]),
	}
}

// Superblock is the decoded superblock of block 0, or of a metadata
// snapshot (the copy the kernel writes on reserve_metadata_snap).
type Superblock struct {
	// Checksum is the stored crc32c (verified when read).
	Checksum uint32
	// Flags holds FlagNeedsCheck and any other flags.
	Flags uint32
	// Block is the block the superblock says it lives in.
	Block uint64
	// UUID is unused by dm-thin (all zeros).
	UUID [16]byte
	// Magic is SuperblockMagic.
	Magic uint64
	// Version is the metadata format version, 1 or 2.
	Version uint32
	// Time is the pool's snapshot time counter, bumped by every snapshot.
	Time uint32
	// TransactionID is the pool's transaction id (set_transaction_id).
	TransactionID uint64
	// HeldRoot is the block of the metadata snapshot (the held root of
	// reserve_metadata_snap), or 0 when there is none.
	HeldRoot uint64
	// DataSpaceMap is the data space map's root; all zeros in a metadata
	// snapshot.
	DataSpaceMap SpaceMapRoot
	// MetadataSpaceMap is the metadata space map's root; all zeros in a
	// metadata snapshot.
	MetadataSpaceMap SpaceMapRoot
	// DataMappingRoot is the root of the two-level mapping tree.
	DataMappingRoot uint64
	// DeviceDetailsRoot is the root of the device details tree.
	DeviceDetailsRoot uint64
	// DataBlockSize is the pool's data block size in 512-byte sectors.
	DataBlockSize uint32
	// MetadataBlockSize is the metadata block size in sectors (always 8).
	MetadataBlockSize uint32
	// MetadataNrBlocks is the size of the metadata device in blocks.
	MetadataNrBlocks uint64
	// CompatFlags, CompatROFlags and IncompatFlags are feature flags; dm-thin
	// defines none.
	CompatFlags, CompatROFlags, IncompatFlags uint32
}

// NeedsCheck reports whether the needs_check flag is set.
func (s Superblock) NeedsCheck() bool { return s.Flags&FlagNeedsCheck != 0 }

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// DecodeSuperblock decodes and validates a superblock read from block loc:
// checksum, magic number, the block number it records, version, block
// size and incompatible features. block must be BlockSize bytes.
func DecodeSuperblock(block []byte, loc uint64) (Superblock, error) {
	const kind = "superblock"
	if len(block) != BlockSize {
		return Superblock{}, &CorruptError{Block: loc, Kind: kind, Reason: "short block", Err: ErrTruncated}
	}
	var s Superblock
	s.Checksum = le32(block[0:])
	s.Flags = le32(block[4:])
	s.Block = le64(block[8:])
	copy(s.UUID[:], block[16:32])
	s.Magic = le64(block[32:])
	s.Version = le32(block[40:])
	s.Time = le32(block[44:])
	s.TransactionID = le64(block[48:])
	s.HeldRoot = le64(block[56:])
	s.DataSpaceMap = decodeSMRoot(block[64:])
	s.MetadataSpaceMap = decodeSMRoot(block[64+smRootSize:])
	s.DataMappingRoot = le64(block[320:])
	s.DeviceDetailsRoot = le64(block[328:])
	s.DataBlockSize = le32(block[336:])
	s.MetadataBlockSize = le32(block[340:])
	s.MetadataNrBlocks = le64(block[344:])
	s.CompatFlags = le32(block[352:])
	s.CompatROFlags = le32(block[356:])
	s.IncompatFlags = le32(block[360:])

	if s.Magic != SuperblockMagic {
		return s, &CorruptError{Block: loc, Kind: kind, Reason: "bad magic number", Err: ErrNotMetadata}
	}
	if sum := checksum(block, superblockCsumXor); sum != s.Checksum {
		return s, &CorruptError{Block: loc, Kind: kind, Reason: "bad checksum", Err: ErrChecksum}
	}
	if s.Block != loc {
		return s, corrupt(loc, kind, "records block %d", s.Block)
	}
	if s.Version < 1 || s.Version > 2 {
		return s, &CorruptError{Block: loc, Kind: kind, Reason: "unknown metadata version " + utoa(uint64(s.Version)), Err: ErrUnsupported}
	}
	if s.IncompatFlags != 0 {
		return s, &CorruptError{Block: loc, Kind: kind, Reason: "unknown incompatible features " + utoa(uint64(s.IncompatFlags)), Err: ErrUnsupported}
	}
	if s.MetadataBlockSize != BlockSize/512 {
		return s, corrupt(loc, kind, "metadata block size %d sectors, not 8", s.MetadataBlockSize)
	}
	if s.MetadataNrBlocks == 0 {
		return s, corrupt(loc, kind, "metadata device of 0 blocks")
	}
	return s, nil
}

func utoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

// node is a decoded btree node header over its block.
type node struct {
	block     []byte
	loc       uint64
	flags     uint32
	nr        int
	max       int
	valueSize int
}

func (n *node) leaf() bool       { return n.flags&nodeLeaf != 0 }
func (n *node) key(i int) uint64 { return le64(n.block[nodeHeaderSize+8*i:]) }
func (n *node) value(i int) []byte {
	off := nodeHeaderSize + 8*n.max + n.valueSize*i
	return n.block[off : off+n.valueSize]
}
func (n *node) value64(i int) uint64 { return le64(n.value(i)) }

// decodeNode validates a btree node read from block loc: checksum, the
// block number it records, its flags, entry counts and that its keys
// increase strictly. valueSize is the value size leaves must have (internal
// nodes always hold 8-byte block numbers).
func decodeNode(block []byte, loc uint64, valueSize int) (node, error) {
	const kind = "btree node"
	if len(block) != BlockSize {
		return node{}, &CorruptError{Block: loc, Kind: kind, Reason: "short block", Err: ErrTruncated}
	}
	n := node{
		block:     block,
		loc:       loc,
		flags:     le32(block[4:]),
		nr:        int(le32(block[16:])),
		max:       int(le32(block[20:])),
		valueSize: int(le32(block[24:])),
	}
	if sum := checksum(block, btreeCsumXor); sum != le32(block) {
		return n, &CorruptError{Block: loc, Kind: kind, Reason: "bad checksum", Err: ErrChecksum}
	}
	if b := le64(block[8:]); b != loc {
		return n, corrupt(loc, kind, "records block %d", b)
	}
	switch n.flags {
	case nodeInternal:
		if n.valueSize != 8 {
			return n, corrupt(loc, kind, "internal node with value size %d", n.valueSize)
		}
	case nodeLeaf:
		if n.valueSize != valueSize {
			return n, corrupt(loc, kind, "leaf value size %d, want %d", n.valueSize, valueSize)
		}
	default:
		return n, corrupt(loc, kind, "bad flags %#x", n.flags)
	}
	if uint64(n.max)*uint64(8+n.valueSize) > BlockSize-nodeHeaderSize || n.max == 0 {
		return n, corrupt(loc, kind, "max_entries %d does not fit a block", n.max)
	}
	if n.nr > n.max {
		return n, corrupt(loc, kind, "nr_entries %d > max_entries %d", n.nr, n.max)
	}
	for i := 1; i < n.nr; i++ {
		if n.key(i) <= n.key(i-1) {
			return n, corrupt(loc, kind, "keys out of order at entry %d", i)
		}
	}
	return n, nil
}

// DecodeNodeHeader validates a btree node as decodeNode does, for any value
// size, and returns whether it is a leaf and its number of entries. It lets
// tools and fuzzers check single blocks.
func DecodeNodeHeader(block []byte, loc uint64) (leaf bool, entries int, err error) {
	if len(block) < 28 {
		return false, 0, &CorruptError{Block: loc, Kind: "btree node", Reason: "short block", Err: ErrTruncated}
	}
	n, err := decodeNode(block, loc, int(le32(block[24:])))
	if err != nil {
		return false, 0, err
	}
	return n.leaf(), n.nr, nil
}

// Mapping value: the data block in the high 40 bits, the time in the low 24.
func unpackBlockTime(v uint64) (block uint64, time uint32) { return v >> 24, uint32(v & 0xffffff) }

// checkBitmap validates a space map bitmap block.
func checkBitmap(block []byte, loc uint64) error {
	const kind = "bitmap"
	if sum := checksum(block, bitmapCsumXor); sum != le32(block) {
		return &CorruptError{Block: loc, Kind: kind, Reason: "bad checksum", Err: ErrChecksum}
	}
	if b := le64(block[8:]); b != loc {
		return corrupt(loc, kind, "records block %d", b)
	}
	return nil
}

// bitmapCount returns the 2-bit count of entry i of a bitmap block: the
// first bit of each pair is the high bit.
func bitmapCount(block []byte, i uint64) uint32 {
	byt := block[bitmapHeaderSize+i/4]
	shift := (i % 4) * 2
	hi := uint32(byt>>shift) & 1
	lo := uint32(byt>>(shift+1)) & 1
	return hi<<1 | lo
}

// checkIndex validates the metadata space map's index block.
func checkIndex(block []byte, loc uint64) error {
	const kind = "index"
	if sum := checksum(block, indexCsumXor); sum != le32(block) {
		return &CorruptError{Block: loc, Kind: kind, Reason: "bad checksum", Err: ErrChecksum}
	}
	if b := le64(block[8:]); b != loc {
		return corrupt(loc, kind, "records block %d", b)
	}
	return nil
}
