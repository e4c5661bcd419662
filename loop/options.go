package loop

import (
	"fmt"
	"math"

	"github.com/thinp/thinp/ioctl"
)

// Options configures a loop device. A nil *Options means the zero value: a
// read-write device over the whole file with the kernel's defaults.
type Options struct {
	// ReadOnly attaches the device read-only (LO_FLAGS_READ_ONLY): the
	// backing file is opened read-only and writes to the device fail with
	// EPERM. Without it, a backing file that cannot be opened for writing
	// is an error matching ErrReadOnly, never a silent downgrade.
	ReadOnly bool

	// Autoclear (LO_FLAGS_AUTOCLEAR) makes the kernel detach the device
	// when its last opener closes it, so a crashed process cannot leak it.
	// The returned Device is an opener: closing it may detach the device.
	Autoclear bool

	// PartScan (LO_FLAGS_PARTSCAN) makes the kernel scan the backing file
	// for a partition table and create /dev/loopNpM nodes.
	PartScan bool

	// DirectIO (LO_FLAGS_DIRECT_IO) makes the loop driver bypass the page
	// cache of the backing file. The backing file system must support
	// O_DIRECT and the offset must be aligned to its direct I/O
	// alignment; otherwise Attach fails with an error matching
	// ErrNotSupported.
	DirectIO bool

	// BlockSize is the device's logical block size in bytes: 0 for the
	// kernel's default (512, or the backing file system's direct I/O
	// alignment when DirectIO is set), or a power of two in 512..4096.
	BlockSize uint32

	// Offset is where the device starts in the backing file, in bytes. It
	// must lie before the end of the file.
	Offset uint64

	// SizeLimit caps the device's size in bytes; 0 means up to the end of
	// the file. The kernel rounds the size down to 512-byte sectors.
	SizeLimit uint64
}

// Block size bounds accepted by Options.BlockSize.
const (
	MinBlockSize = 512
	MaxBlockSize = 4096
)

// validate checks what can be checked without the backing file.
func (o *Options) validate() error {
	if o.BlockSize != 0 && (o.BlockSize < MinBlockSize || o.BlockSize > MaxBlockSize || o.BlockSize&(o.BlockSize-1) != 0) {
		return newKinded(ErrInvalid, nil, fmt.Sprintf("block size %d is not a power of two in %d..%d", o.BlockSize, MinBlockSize, MaxBlockSize))
	}
	// The kernel keeps both as loff_t and answers EOVERFLOW above this.
	if o.Offset > math.MaxInt64 {
		return newKinded(ErrInvalid, nil, fmt.Sprintf("offset %d overflows a file offset", o.Offset))
	}
	if o.SizeLimit > math.MaxInt64 {
		return newKinded(ErrInvalid, nil, fmt.Sprintf("size limit %d overflows a file offset", o.SizeLimit))
	}
	return nil
}

// checkSize checks the options against the backing file's size in bytes.
func (o *Options) checkSize(size int64) error {
	if o.Offset > 0 && (size < 0 || o.Offset >= uint64(size)) {
		return newKinded(ErrInvalid, nil, fmt.Sprintf("offset %d is not before the end of the file (size %d)", o.Offset, size))
	}
	return nil
}

// Status is what the kernel reports about an attached loop device.
type Status struct {
	// Number is N in /dev/loopN.
	Number int
	// Path is the device node, /dev/loopN.
	Path string
	// Dev is the device's number.
	Dev ioctl.Dev

	// BackingFile is the backing file's path as the kernel resolved it
	// when the device was attached (from sysfs, so not truncated). The
	// kernel appends " (deleted)" when the file has been unlinked.
	BackingFile string
	// BackingDev and BackingInode identify the backing file: the device
	// of its file system and its inode number (lo_device, lo_inode).
	BackingDev   ioctl.Dev
	BackingInode uint64
	// BackingRdev is the backing file's own device number when it is a
	// block device (lo_rdevice), and the zero Dev for a regular file.
	BackingRdev ioctl.Dev

	// Options holds the options in effect. DirectIO is the effective
	// state, which the kernel may have turned off; BlockSize is the
	// device's logical block size, never 0.
	Options

	// Size is the device's size in bytes (BLKGETSIZE64).
	Size uint64
	// DiskSeq is the kernel's disk sequence number, which changes every
	// time the device is attached (0 on kernels before 5.15).
	DiskSeq uint64
}
