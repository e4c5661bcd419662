package thin

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
)

// direntBufs are getdents64 buffers: 8 KiB holds some 300 holder entries
// per call.
var direntBufs = sync.Pool{New: func() any { b := make([]byte, 8192); return &b }}

// holders reads /sys/dev/block/<maj>:<min>/holders with getdents64 and
// returns its dm-N entries with their inode numbers. Four system calls
// (open, two getdents64, close) for a pool with a few hundred holders;
// os.ReadDir would add an lstat per entry to get the inode.
func (h sysHost) holders(d dm.Dev) ([]holderLink, error) {
	dir := h.holdersDir(d)
	fd, err := openDir(dir)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	bp := direntBufs.Get().(*[]byte)
	defer direntBufs.Put(bp)
	buf := *bp
	var out []holderLink
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "getdents64", Path: dir, Err: err}
		}
		if n <= 0 {
			return out, nil
		}
		out = parseHolderDirents(buf[:n], out)
	}
}

// dmName reads /sys/dev/block/<maj>:<min>/dm/name.
func (h sysHost) dmName(d dm.Dev) (string, error) {
	b, err := os.ReadFile(filepath.Join(h.ctl.SysDir(), "dev/block", d.String(), "dm/name"))
	return strings.TrimSuffix(string(b), "\n"), err
}

func (h sysHost) holdersDir(d dm.Dev) string {
	return filepath.Join(h.ctl.SysDir(), "dev/block", d.String(), "holders")
}

// watchHolders sets the holders directory's times (utimensat, as touch
// does). sysfs (kernfs) keeps times for a node only once they have been
// set; from then on it stamps the directory with the time of every entry
// added or removed, so a stat tells whether the holders changed.
func (h sysHost) watchHolders(d dm.Dev) error {
	ts := []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}
	return unix.UtimesNanoAt(unix.AT_FDCWD, h.holdersDir(d), ts, 0)
}

// holdersStamp is the holders directory's mtime and ctime: one stat.
func (h sysHost) holdersStamp(d dm.Dev) (holderStamp, error) {
	var st unix.Stat_t
	for {
		err := unix.Stat(h.holdersDir(d), &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return holderStamp{}, err
		}
		return holderStamp{st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec}, nil
	}
}

func openDir(dir string) (int, error) {
	for {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// parseHolderDirents appends the dm-N entries of a getdents64 reply (struct
// linux_dirent64: d_ino u64, d_off s64, d_reclen u16, d_type u8, d_name)
// to out. Other holders (md, bcache) are not dm devices and are skipped.
func parseHolderDirents(b []byte, out []holderLink) []holderLink {
	const nameOff = 19
	for len(b) >= nameOff {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < nameOff || reclen > len(b) {
			break
		}
		ino := binary.NativeEndian.Uint64(b[0:8])
		name := b[nameOff:reclen]
		if i := strings.IndexByte(string(name), 0); i >= 0 {
			name = name[:i]
		}
		if m, ok := strings.CutPrefix(string(name), "dm-"); ok {
			if minor, err := strconv.ParseUint(m, 10, 32); err == nil {
				out = append(out, holderLink{minor: uint32(minor), link: ino})
			}
		}
		b = b[reclen:]
	}
	return out
}
