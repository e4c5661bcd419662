package metadata

import (
	"errors"
	"fmt"
)

// Sentinel errors. A *CorruptError matches ErrCorrupt with errors.Is, and
// also the more specific sentinel it carries, if any (ErrChecksum,
// ErrNotMetadata, ErrTruncated).
var (
	// ErrCorrupt: the metadata is damaged or not what dm-thin writes. Every
	// *CorruptError matches it.
	ErrCorrupt = errors.New("thin metadata is corrupt")
	// ErrNotMetadata: block 0 does not hold a thin superblock (wrong magic
	// number): the input is not thin-pool metadata at all.
	ErrNotMetadata = errors.New("not thin-pool metadata")
	// ErrChecksum: a block's crc32c does not match its contents.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrTruncated: a block lies beyond the end of the input.
	ErrTruncated = errors.New("block beyond end of input")
	// ErrUnsupported: the superblock asks for a metadata version or
	// incompatible feature this package does not know.
	ErrUnsupported = errors.New("unsupported thin metadata")
	// ErrNoMetadataSnap: Options.MetadataSnap was set but the superblock
	// holds no metadata snapshot (no reserve_metadata_snap is in effect),
	// or it is not the one Options.SnapBlock named.
	ErrNoMetadataSnap = errors.New("no current metadata snap")
	// ErrNoDevice: the thin device id is not in the metadata.
	ErrNoDevice = errors.New("no such thin device")
	// ErrNoSpaceMap: a metadata snapshot records no space maps (the kernel
	// wipes them in the copy), so reference counts cannot be read through it.
	ErrNoSpaceMap = errors.New("metadata snapshot has no space maps")
)

// CorruptError describes damage found in one metadata block: which block,
// what was being read there and what is wrong with it. It matches
// ErrCorrupt, and Err when that is set, with errors.Is.
type CorruptError struct {
	// Block is the metadata block number (4 KiB units) of the damaged block.
	Block uint64
	// Kind names what the block was read as: "superblock", "btree node",
	// "bitmap", "index", or a description of the tree ("mapping tree").
	Kind string
	// Reason says what is wrong, in a few words.
	Reason string
	// Err is a more specific sentinel (ErrChecksum, ErrNotMetadata,
	// ErrTruncated, ErrUnsupported) or nil.
	Err error
}

// Error implements error.
func (e *CorruptError) Error() string {
	kind := e.Kind
	if kind == "" {
		kind = "block"
	}
	return fmt.Sprintf("thin metadata: %s at block %d: %s", kind, e.Block, e.Reason)
}

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Unwrap returns the specific sentinel, if any.
func (e *CorruptError) Unwrap() error { return e.Err }

func corrupt(b uint64, kind, format string, args ...any) *CorruptError {
	return &CorruptError{Block: b, Kind: kind, Reason: fmt.Sprintf(format, args...)}
}

// DeviceError is returned for an operation on a thin device id the metadata
// does not hold; it matches ErrNoDevice.
type DeviceError struct {
	// ID is the thin device id asked for.
	ID uint32
}

// Error implements error.
func (e *DeviceError) Error() string {
	return fmt.Sprintf("thin metadata: no thin device %d", e.ID)
}

// Is reports whether target is ErrNoDevice.
func (e *DeviceError) Is(target error) bool { return target == ErrNoDevice }
