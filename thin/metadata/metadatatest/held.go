package metadatatest

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"testing"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func sealSuperblock(b []byte) {
	binary.LittleEndian.PutUint32(b, ^crc32.Checksum(b[4:4096], castagnoli)^160774)
}

// AddHeldRoot gives the image at path a metadata snapshot as the kernel's
// reserve_metadata_snap makes one: a copy of the superblock, with its space
// map roots wiped, in an unused block (the image's last, which must be all
// zeros), recorded as the held root of block 0. It returns the block.
func AddHeldRoot(t testing.TB, path string) uint64 {
	t.Helper()
	loc, err := AddHeldRootFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// AddHeldRootFile is AddHeldRoot returning its error.
func AddHeldRootFile(path string) (uint64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	loc := uint64(fi.Size()/4096 - 1)
	sb := make([]byte, 4096)
	if _, err := f.ReadAt(sb, 0); err != nil {
		return 0, err
	}
	last := make([]byte, 4096)
	if _, err := f.ReadAt(last, int64(loc)*4096); err != nil {
		return 0, err
	}
	for _, c := range last {
		if c != 0 {
			return 0, fmt.Errorf("AddHeldRoot: block %d of %s is in use", loc, path)
		}
	}
	cp := append([]byte(nil), sb...)
	binary.LittleEndian.PutUint64(cp[8:], loc)
	clear(cp[64:320])
	sealSuperblock(cp)
	binary.LittleEndian.PutUint64(sb[56:], loc)
	sealSuperblock(sb)
	if _, err := f.WriteAt(cp, int64(loc)*4096); err != nil {
		return 0, err
	}
	if _, err := f.WriteAt(sb, 0); err != nil {
		return 0, err
	}
	return loc, nil
}
