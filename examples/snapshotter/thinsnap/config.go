package thinsnap

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// File system types Config.FSType accepts.
const (
	FSExt4 = "ext4"
	FSXFS  = "xfs"
)

// DefaultExt4Options are the extended options (mkfs.ext4 -E) of the base
// volume's file system when Config.FSOptions is empty: no discard of the
// fresh thin device (it maps nothing yet), and inode tables and journal
// written at once, so that the first container does not pay for them and
// every snapshot shares them with the base.
const DefaultExt4Options = "nodiscard,lazy_itable_init=0,lazy_journal_init=0"

// DefaultBaseImageSize is the virtual size of the base volume when
// Config.BaseImageSize is empty.
const DefaultBaseImageSize = "10GiB"

// Config configures a Snapshotter. Its keys are those of containerd's
// devmapper snapshotter (root_path, pool_name, base_image_size, async_remove,
// discard_blocks, fs_type, fs_options), so that its section of
// containerd's config.toml works here unchanged; the pool device keys are
// this snapshotter's own.
type Config struct {
	// RootPath is the directory of the volume catalog (package
	// thin/catalog): its journal, state file and lock.
	RootPath string `toml:"root_path"`
	// PoolName is the thin-pool dm device. If it does not exist and
	// MetadataDevice and DataDevice are set, Open creates it on them.
	PoolName string `toml:"pool_name"`
	// MetadataDevice and DataDevice are the block devices (paths) of a
	// pool Open creates. The kernel formats metadata whose first 4 KiB are
	// zero and reuses metadata that is there; Open never zeroes it.
	MetadataDevice string `toml:"metadata_device"`
	DataDevice     string `toml:"data_device"`
	// DataBlockSize is the data block size of a pool Open creates, in bytes
	// with an optional unit ("64KiB", the default): a multiple of 64 KiB.
	DataBlockSize string `toml:"data_block_size"`
	// BaseImageSize is the virtual size of the base volume, and so of every
	// snapshot: bytes with an optional unit ("10GB" and "10GiB" are both
	// 10 GiB, as devmapper reads them). DefaultBaseImageSize when empty.
	BaseImageSize string `toml:"base_image_size"`
	// FSType is the file system of the base volume: "ext4" (the default) or
	// "xfs".
	FSType string `toml:"fs_type"`
	// FSOptions are mkfs options: for ext4 the extended options, passed as
	// mkfs.ext4 -E FSOptions (DefaultExt4Options when empty); for xfs
	// arguments of mkfs.xfs, separated by spaces.
	FSOptions string `toml:"fs_options"`
	// DiscardBlocks discards a snapshot's blocks (BLKDISCARD on its
	// device) before its thin device is deleted, so that a pool that passes
	// discards down frees them on the data device too.
	DiscardBlocks bool `toml:"discard_blocks"`
	// AsyncRemove makes Remove of a snapshot whose device is still open
	// (mounted) succeed: the kernel removes the device at its last close,
	// and Cleanup deletes its thin device later (catalog.WithDeferredDeletion).
	// Without it, such a Remove fails with errdefs.ErrFailedPrecondition.
	AsyncRemove bool `toml:"async_remove"`
}

// ConfigError is a Config value that cannot be used.
type ConfigError struct {
	Key   string // the TOML key, "pool_name"
	Value string
	Err   error
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("thinsnap: config %s=%q: %v", e.Key, e.Value, e.Err)
}

// Unwrap returns the cause.
func (e *ConfigError) Unwrap() error { return e.Err }

// ErrInvalidConfig is the cause of a ConfigError that names no other.
var ErrInvalidConfig = errors.New("invalid value")

// Validate checks c and returns a *ConfigError for the first key it
// cannot use.
func (c Config) Validate() error {
	if c.RootPath == "" {
		return &ConfigError{Key: "root_path", Err: errors.New("required")}
	}
	if c.PoolName == "" {
		return &ConfigError{Key: "pool_name", Err: errors.New("required")}
	}
	if (c.MetadataDevice == "") != (c.DataDevice == "") {
		return &ConfigError{Key: "metadata_device", Value: c.MetadataDevice, Err: errors.New("metadata_device and data_device go together")}
	}
	if _, err := c.baseImageBytes(); err != nil {
		return err
	}
	if _, err := c.blockSizeBytes(); err != nil {
		return err
	}
	switch c.fsType() {
	case FSExt4, FSXFS:
	default:
		return &ConfigError{Key: "fs_type", Value: c.FSType, Err: errors.New("want ext4 or xfs")}
	}
	return nil
}

func (c Config) fsType() string {
	if c.FSType == "" {
		return FSExt4
	}
	return c.FSType
}

func (c Config) baseImageBytes() (uint64, error) {
	s := c.BaseImageSize
	if s == "" {
		s = DefaultBaseImageSize
	}
	n, err := ParseSize(s)
	if err == nil && n < 16<<20 {
		err = errors.New("smaller than 16 MiB")
	}
	if err != nil {
		return 0, &ConfigError{Key: "base_image_size", Value: c.BaseImageSize, Err: err}
	}
	return n, nil
}

func (c Config) blockSizeBytes() (uint64, error) {
	if c.DataBlockSize == "" {
		return 64 << 10, nil
	}
	n, err := ParseSize(c.DataBlockSize)
	if err == nil && (n == 0 || n%(64<<10) != 0 || n > 1<<30) {
		err = errors.New("want a multiple of 64 KiB up to 1 GiB")
	}
	if err != nil {
		return 0, &ConfigError{Key: "data_block_size", Value: c.DataBlockSize, Err: err}
	}
	return n, nil
}

// ParseSize reads a byte count with an optional unit: "4096", "512KiB",
// "10GiB", "10GB", "10G". As in devmapper's base_image_size (which uses
// docker's RAMInBytes), every unit is binary: "10GB" is 10 GiB.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9') {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q: %w", s, ErrInvalidConfig)
	}
	n, err := strconv.ParseUint(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, ErrInvalidConfig)
	}
	unit := strings.ToLower(strings.TrimSpace(t[i:]))
	unit = strings.TrimSuffix(strings.TrimSuffix(unit, "b"), "i")
	shift := map[string]uint{"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50}
	sh, ok := shift[unit]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit: %w", s, ErrInvalidConfig)
	}
	if n > (^uint64(0))>>sh {
		return 0, fmt.Errorf("size %q: too large: %w", s, ErrInvalidConfig)
	}
	return n << sh, nil
}
