package thin

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
)

// zeroMetadataHeader zeroes the first metadata block of the block device at
// path, which must be device d. It opens the device with O_EXCL, which a
// block device refuses (EBUSY) while it is mounted or claimed by a
// device-mapper table, so metadata in use by a live pool is never touched.
func zeroMetadataHeader(path string, d dm.Dev, force bool) error {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || uint64(st.Rdev) != unix.Mkdev(d.Major, d.Minor) {
		return fmt.Errorf("%s: %w %s", path, errNotBlockDevice, d)
	}
	return zeroHeader(f, force)
}
