//go:build !linux

package udev

import (
	"os"

	"github.com/thinp/thinp/ioctl"
)

// MakeNode returns ErrNotSupported: device-mapper nodes exist only on Linux.
func MakeNode(dir, name string, dev ioctl.Dev, mode os.FileMode) error {
	return &Error{Op: "mknod", Path: dir, Err: ErrNotSupported}
}

// RemoveNode returns ErrNotSupported.
func RemoveNode(dir, name string) error {
	return &Error{Op: "remove node", Path: dir, Err: ErrNotSupported}
}

// RenameNode returns ErrNotSupported.
func RenameNode(dir, oldName, newName string) error {
	return &Error{Op: "rename node", Path: dir, Err: ErrNotSupported}
}
