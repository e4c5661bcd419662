package main

import "golang.org/x/sys/unix"

// fsFree is the space an unprivileged writer may still use on the file
// system holding dir (statfs f_bavail).
func fsFree(dir string) (uint64, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return st.Bavail * uint64(st.Bsize), true
}
