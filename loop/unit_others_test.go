//go:build !linux

package loop

import "os"

func osSupported() bool { return false }

func allocatedBytes(os.FileInfo) (int64, bool) { return 0, false }
