//go:build linux

package ioctl

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// DevOf returns the device number of the block device at path, following
// symbolic links: "/dev/sdb1", "/dev/loop0", "/dev/mapper/vol",
// "/dev/disk/by-id/...". A path that is not a block device is an error
// wrapping ErrBadDev.
func DevOf(path string) (Dev, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Dev{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return Dev{}, fmt.Errorf("%w: %s is not a block device", ErrBadDev, path)
	}
	return DecodeDev(uint64(st.Rdev)), nil
}
