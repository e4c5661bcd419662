//go:build !linux

package thin

import "os"

// dropCache does nothing: dm-thin pools exist only on Linux.
func dropCache(f *os.File) {}
