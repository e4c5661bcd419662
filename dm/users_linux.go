package dm

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/thinp/thinp/ioctl"
	"golang.org/x/sys/unix"
)

// holders lists the devices stacked on dev from sysfs.
func (c *Control) holders(dev Dev) ([]string, error) {
	dir := filepath.Join(c.cfg.sysDir, "dev/block", dev.String(), "holders")
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		name := e.Name()
		// A dm device's holder entry is its kernel name, dm-N; its dm
		// name is what users know.
		if b, err := os.ReadFile(filepath.Join(c.cfg.sysDir, "block", name, "dm/name")); err == nil {
			if n := strings.TrimSpace(string(b)); n != "" {
				name = n
			}
		}
		out = append(out, name)
	}
	return out, nil
}

// isDM reports whether dev is a device-mapper device.
func (c *Control) isDM(dev Dev) bool {
	_, err := os.Stat(filepath.Join(c.cfg.sysDir, "dev/block", dev.String(), "dm"))
	return err == nil
}

// mounts finds dev in the mountinfo of every mount namespace: one process
// per namespace is read.
func (c *Control) mounts(dev Dev) []Mount {
	ents, err := os.ReadDir(c.cfg.procDir)
	if err != nil {
		return nil
	}
	want := dev.String()
	seenNS := map[string]bool{}
	seen := map[string]bool{}
	var out []Mount
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		pdir := filepath.Join(c.cfg.procDir, e.Name())
		ns, err := os.Readlink(filepath.Join(pdir, "ns/mnt"))
		if err == nil {
			if seenNS[ns] {
				continue
			}
			seenNS[ns] = true
		}
		for _, m := range readMountinfo(filepath.Join(pdir, "mountinfo"), want) {
			key := ns + "\x00" + m.Point
			if seen[key] {
				continue
			}
			seen[key] = true
			m.PID = pid
			out = append(out, m)
		}
	}
	return out
}

// readMountinfo returns the mounts of the device "major:minor" in a
// mountinfo file: "id parent major:minor root point options ...".
func readMountinfo(path, dev string) []Mount {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[2] != dev {
			continue
		}
		rw := false
		for _, o := range strings.Split(fs[5], ",") {
			if o == "rw" {
				rw = true
			}
		}
		out = append(out, Mount{Point: unescapeMountinfo(fs[4]), ReadWrite: rw})
	}
	return out
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// claimed reports whether an exclusive open of dev fails with EBUSY. A
// device without a node, or one this process may not open, is not
// reported as claimed.
func (c *Control) claimed(dev Dev) bool {
	path, err := c.DevNode(dev)
	if err != nil {
		return false
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err == unix.EBUSY {
		return true
	}
	if err == nil {
		unix.Close(fd)
	}
	return false
}

// DevNode finds a device node for the block device dev under the
// Control's device directory (WithDevDir): /dev/block/<major>:<minor>,
// which udev makes, else /dev/<DEVNAME> from its sysfs uevent file, the
// name devtmpfs gives it. The node's device number is checked.
func (c *Control) DevNode(dev Dev) (string, error) {
	try := func(p string) bool {
		var st unix.Stat_t
		return unix.Stat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK && ioctl.DecodeDev(uint64(st.Rdev)) == dev
	}
	if p := filepath.Join(c.cfg.devDir, "block", dev.String()); try(p) {
		return p, nil
	}
	b, err := os.ReadFile(filepath.Join(c.cfg.sysDir, "dev/block", dev.String(), "uevent"))
	if err != nil {
		return "", &os.PathError{Op: "find node of", Path: dev.String(), Err: os.ErrNotExist}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "DEVNAME="); ok && name != "" && !strings.Contains(name, "..") {
			if p := filepath.Join(c.cfg.devDir, name); try(p) {
				return p, nil
			}
		}
	}
	return "", &os.PathError{Op: "find node of", Path: dev.String(), Err: os.ErrNotExist}
}
