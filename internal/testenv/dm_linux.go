//go:build linux

package testenv

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// controlPath is the device-mapper control node.
const controlPath = "/dev/mapper/control"

// checkPrivileged returns why this process cannot run device-mapper tests,
// or "" when it can.
func checkPrivileged() string {
	if os.Geteuid() != 0 {
		return "needs root and a kernel with device-mapper"
	}
	if _, err := os.Stat("/sys/class/misc/device-mapper/dev"); err != nil {
		return "needs a kernel with device-mapper (no /sys/class/misc/device-mapper; modprobe dm-mod, or use the VM)"
	}
	if err := ensureControl(); err != nil {
		return fmt.Sprintf("needs %s: %v", controlPath, err)
	}
	major, minor, patch, err := dmVersion()
	if err != nil {
		return fmt.Sprintf("%s is not usable: %v", controlPath, err)
	}
	if major != 4 {
		return fmt.Sprintf("%s speaks device-mapper interface %d.%d.%d, want 4.x", controlPath, major, minor, patch)
	}
	return ""
}

// ensureControl creates /dev/mapper/control from sysfs when the kernel has
// device-mapper but /dev lacks the node (a static /dev, a container).
func ensureControl() error {
	if fi, err := os.Stat(controlPath); err == nil {
		if fi.Mode()&os.ModeCharDevice == 0 {
			return fmt.Errorf("not a character device")
		}
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	b, err := os.ReadFile("/sys/class/misc/device-mapper/dev")
	if err != nil {
		return err
	}
	maj, min, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("/sys/class/misc/device-mapper/dev: malformed %q", b)
	}
	if err := os.MkdirAll("/dev/mapper", 0o755); err != nil {
		return err
	}
	err = unix.Mknod(controlPath, unix.S_IFCHR|0o600, int(unix.Mkdev(uint32(ma), uint32(mi))))
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// dmVersion asks the kernel for its device-mapper interface version with
// DM_VERSION, straight through x/sys/unix so that testenv depends on no
// package under test.
func dmVersion() (major, minor, patch uint32, err error) {
	fd, err := unix.Open(controlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, 0, err
	}
	defer unix.Close(fd)
	// struct dm_ioctl, with no payload: data_size = data_start = its size.
	var dmi unix.DmIoctl
	dmi.Version = [3]uint32{4, 0, 0}
	dmi.Data_size = uint32(unsafe.Sizeof(dmi))
	dmi.Data_start = uint32(unsafe.Sizeof(dmi))
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.DM_VERSION), uintptr(unsafe.Pointer(&dmi)))
	if errno != 0 {
		return 0, 0, 0, fmt.Errorf("DM_VERSION: %w", errno)
	}
	return dmi.Version[0], dmi.Version[1], dmi.Version[2], nil
}
