package thin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/thinp/thinp/dm"
)

// hostDevs is how a pool reaches the block devices under it, outside
// device-mapper: their sizes and, to format fresh metadata, their contents.
// Tests replace it; the real one uses sysfs and /dev.
type hostDevs interface {
	// size is the device's size, or an error if it cannot be known.
	size(d dm.Dev) (dm.Sectors, error)
	// format zeroes the first 4 KiB of the metadata device d (at path,
	// if not empty), refusing one that holds a thin-pool superblock
	// unless force.
	format(d dm.Dev, path string, force bool) error
}

// sysHost finds block devices through sysfs and /dev.
type sysHost struct {
	sysDir string // "/sys"
	devDir string // "/dev"
}

// size reads /sys/dev/block/<maj>:<min>/size, which counts 512-byte
// sectors whatever the device's logical block size.
func (h sysHost) size(d dm.Dev) (dm.Sectors, error) {
	b, err := os.ReadFile(filepath.Join(h.sysDir, "dev/block", d.String(), "size"))
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", d, err)
	}
	return dm.Sectors(n), nil
}

// path finds a node for d: /dev/block/<maj>:<min> (made by udev), else
// /dev/<DEVNAME> from the sysfs uevent file (devtmpfs names).
func (h sysHost) path(d dm.Dev) (string, error) {
	p := filepath.Join(h.devDir, "block", d.String())
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	b, err := os.ReadFile(filepath.Join(h.sysDir, "dev/block", d.String(), "uevent"))
	if err != nil {
		return "", fmt.Errorf("no device node for %s: %w", d, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "DEVNAME="); ok && name != "" && !strings.Contains(name, "..") {
			return filepath.Join(h.devDir, name), nil
		}
	}
	return "", fmt.Errorf("no device node for %s: no DEVNAME in its uevent", d)
}

func (h sysHost) format(d dm.Dev, path string, force bool) error {
	if path == "" {
		var err error
		if path, err = h.path(d); err != nil {
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
