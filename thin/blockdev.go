package thin

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/thinp/thinp/dm"
)

// hostDevs is how a pool reaches the block devices under it, outside
// device-mapper: their sizes, what uses them, the metadata they hold and,
// to format fresh metadata, their contents. Tests replace it; the real one
// uses sysfs, procfs and /dev through the pool's dm.Control.
type hostDevs interface {
	// size is the device's size, or an error if it cannot be known.
	size(d dm.Dev) (dm.Sectors, error)
	// users says what uses the device.
	users(ctx context.Context, d dm.Dev) (dm.Users, error)
	// superblock reads the first metadata block of d, or fails.
	superblock(d dm.Dev) ([]byte, error)
	// format zeroes the first 4 KiB of the metadata device d (at path,
	// if not empty), refusing one that holds a thin-pool superblock
	// unless force.
	format(d dm.Dev, path string, force bool) error
}

// sysHost finds block devices through the Control's sysfs and /dev.
type sysHost struct{ ctl *dm.Control }

// size reads /sys/dev/block/<maj>:<min>/size, which counts 512-byte
// sectors whatever the device's logical block size.
func (h sysHost) size(d dm.Dev) (dm.Sectors, error) {
	b, err := os.ReadFile(filepath.Join(h.ctl.SysDir(), "dev/block", d.String(), "size"))
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", d, err)
	}
	return dm.Sectors(n), nil
}

func (h sysHost) users(ctx context.Context, d dm.Dev) (dm.Users, error) {
	return h.ctl.Users(ctx, d)
}

func (h sysHost) superblock(d dm.Dev) ([]byte, error) {
	path, err := h.ctl.DevNode(d)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	block := make([]byte, MetaBlockSize)
	if _, err := f.ReadAt(block, 0); err != nil {
		return nil, err
	}
	return block, nil
}

func (h sysHost) format(d dm.Dev, path string, force bool) error {
	if path == "" {
		var err error
		if path, err = h.ctl.DevNode(d); err != nil {
			return err
		}
	}
	return zeroMetadataHeader(path, d, force)
}

// thinSuperblockMagic is THIN_SUPERBLOCK_MAGIC, a little-endian u64 at
// byte 32 of struct thin_disk_superblock (after csum, flags, blocknr and
// the 16-byte uuid).
const (
	thinSuperblockMagic    = 27022010
	thinSuperblockMagicOff = 32
)

// The superblock fields CreatePool checks before reusing metadata: the
// data space map root (struct disk_sm_root) starts at byte 64 with its
// nr_blocks, and data_block_size is a u32 at byte 336 (after the two space
// map roots, the mapping root and the device details root).
const (
	sbDataBlocksOff    = 64
	sbDataBlockSizeOff = 336
)

// superblockDataBlocks returns the data size and block size recorded in a
// thin-pool superblock block; ok is false if block holds none.
func superblockDataBlocks(block []byte) (blocks uint64, blockSize dm.Sectors, ok bool) {
	if !hasThinSuperblock(block) || len(block) < sbDataBlockSizeOff+4 {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint64(block[sbDataBlocksOff:]), dm.Sectors(binary.LittleEndian.Uint32(block[sbDataBlockSizeOff:])), true
}

// hasThinSuperblock reports whether the first metadata block holds a
// thin-pool superblock.
func hasThinSuperblock(block []byte) bool {
	if len(block) < thinSuperblockMagicOff+8 {
		return false
	}
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(block[thinSuperblockMagicOff+i])
	}
	return v == thinSuperblockMagic
}

var errNotBlockDevice = errors.New("not the expected block device")

// zeroHeader checks and zeroes the first 4 KiB of f.
func zeroHeader(f *os.File, force bool) error {
	block := make([]byte, MetaBlockSize)
	if _, err := f.ReadAt(block, 0); err != nil {
		return err
	}
	if !force && hasThinSuperblock(block) {
		return ErrHasMetadata
	}
	clear(block)
	if _, err := f.WriteAt(block, 0); err != nil {
		return err
	}
	return f.Sync()
}
