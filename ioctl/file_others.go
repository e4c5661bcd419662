//go:build !linux

package ioctl

import "errors"

// ControlPath is where the device-mapper control node lives on Linux.
const ControlPath = "/dev/mapper/control"

// ErrUnsupported is returned on systems without device-mapper.
var ErrUnsupported = errors.New("ioctl: device-mapper is only available on Linux")

// File is the Linux control node; on other systems Open always fails.
type File struct{}

// Open fails: device-mapper is Linux-only.
func Open(path string) (*File, error) { return nil, ErrUnsupported }

// Ioctl fails: device-mapper is Linux-only.
func (f *File) Ioctl(req uint, b []byte) error { return ErrUnsupported }

// Close does nothing.
func (f *File) Close() error { return nil }

// DevOf fails: block device numbers are read the Linux way.
func DevOf(path string) (Dev, error) { return Dev{}, ErrUnsupported }
