package main

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

func ioctlPtr(f *os.File, req uint, rg *[2]uint64) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), uintptr(req), uintptr(unsafe.Pointer(rg)))
	if e != 0 {
		return e
	}
	return nil
}
