// Package tool finds the system programs the example programs run
// (dmsetup, udevadm, mkfs): in PATH, or in the sbin and bin directories,
// which a user's PATH may lack.
package tool

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// dirs are searched, in order, after PATH.
var dirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"}

// Look returns the path of the program name: found in PATH, or an
// executable regular file of that name in /usr/local/sbin, /usr/sbin,
// /sbin, /usr/bin or /bin.
func Look(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or the sbin directories", name)
}
