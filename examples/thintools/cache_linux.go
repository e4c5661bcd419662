package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache drops f's clean cached pages. The kernel writes a live pool's
// metadata with bios that bypass the block device's page cache, so pages
// cached by an earlier reader (or left by formatting) can be stale; the
// tools avoid that with O_DIRECT.
func dropCache(f *os.File) {
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
