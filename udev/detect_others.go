//go:build !linux

package udev

import "fmt"

// probeControl: udev and device-mapper exist only on Linux.
func probeControl(path string) (int, error) {
	return 0, fmt.Errorf("%s: %w", path, ErrNotSupported)
}
