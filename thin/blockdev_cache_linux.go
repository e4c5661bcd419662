package thin

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache drops f's cached pages, so that reads see what the kernel
// wrote around the page cache (dm-thin writes its metadata that way).
func dropCache(f *os.File) { _ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED) }
