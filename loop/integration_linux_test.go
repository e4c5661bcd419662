package loop

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

// childEnv makes the test binary a worker of TestIntegrationCrossProcess:
// its value is the directory to put backing files in.
const childEnv = "THINP_LOOP_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(childWorkload(dir))
	}
	// Let the runtime create its poller descriptors now, so the
	// descriptor leak check does not mistake them for leaks.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	os.Exit(m.Run())
}

const (
	kib = 1 << 10
	mib = 1 << 20
)

func TestIntegrationProbe(t *testing.T) {
	dir := privileged(t)
	c := testControl(t, false)
	if got := c.probed.Load(); got != probeUnknown {
		t.Fatalf("probe state before first attach = %d, want unknown", got)
	}
	d := attach(t, c, sparseFile(t, dir, "f", mib), nil)
	_ = d
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	want := probeLegacy
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err == nil && (major > 5 || major == 5 && minor >= 8) {
		want = probeConfigure
	}
	if got := c.probed.Load(); got != want {
		t.Errorf("kernel %s: probe state = %d, want %d (1 = LOOP_CONFIGURE, 2 = legacy)", release, got, want)
	}
	t.Logf("kernel %s: LOOP_CONFIGURE %v", release, c.probed.Load() == probeConfigure)
}

func TestIntegrationDataPath(t *testing.T) {
	forEachMode(t, func(t *testing.T, c *Control, dir string) {
		path := sparseFile(t, dir, "data", 8*mib)
		d := attach(t, c, path, &Options{Offset: mib, SizeLimit: 2 * mib})
		if got := blkSize(t, d.Path()); got != 2*mib {
			t.Fatalf("device size = %d, want %d", got, 2*mib)
		}

		// Device to file: a block written at device offset 4 KiB lands
		// at file offset 1 MiB + 4 KiB.
		pattern := bytes.Repeat([]byte("thinp-loop\x00\xff"), 4*kib/12+1)[:4*kib]
		dev, err := os.OpenFile(d.Path(), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		if _, err := dev.WriteAt(pattern, 4*kib); err != nil {
			t.Fatal(err)
		}
		if err := dev.Sync(); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		got := make([]byte, len(pattern))
		if _, err := f.ReadAt(got, mib+4*kib); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pattern) {
			t.Fatalf("file at %d does not hold what was written through %s", mib+4*kib, d.Path())
		}
		// Nothing before the offset was touched.
		if _, err := f.ReadAt(got, 4*kib); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, make([]byte, len(got))) {
			t.Fatal("write through the device landed before its offset")
		}

		// File to device, in a region the device has not cached.
		wf, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer wf.Close()
		if _, err := wf.WriteAt(pattern, mib+64*kib); err != nil {
			t.Fatal(err)
		}
		if err := wf.Sync(); err != nil {
			t.Fatal(err)
		}
		// udevd's blkid reads this region through the device (64 KiB is
		// where btrfs keeps its superblock) whenever it probes, so the
		// device's page cache may hold the old bytes, and a flush does
		// not drop a page blkid is reading at that moment. A direct read
		// goes past the device's cache to the file.
		if direct := readDirect(t, d.Path(), 64*kib, len(pattern)); !bytes.Equal(direct, pattern) {
			t.Fatal("device does not show what was written to the file")
		}
		// Past the size limit the device ends.
		if n, err := dev.ReadAt(got, 2*mib); n != 0 || err == nil {
			t.Fatalf("read past the size limit: n=%d err=%v", n, err)
		}
	})
}

// readDirect reads n bytes at off from the block device at path with
// O_DIRECT, into a buffer aligned as direct I/O requires.
func readDirect(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s O_DIRECT: %v", path, err)
	}
	defer unix.Close(fd)
	const align = 4 * kib
	raw := make([]byte, n+align)
	skip := 0
	if rem := int(uintptr(unsafe.Pointer(&raw[0])) % align); rem != 0 {
		skip = align - rem
	}
	buf := raw[skip : skip+n]
	if got, err := unix.Pread(fd, buf, off); err != nil || got != n {
		t.Fatalf("direct read of %d bytes at %d from %s: n=%d, %v", n, off, path, got, err)
	}
	return buf
}

func TestIntegrationOptionsRoundTrip(t *testing.T) {
	cases := []Options{
		{},
		{ReadOnly: true},
		{Autoclear: true},
		{PartScan: true},
		{BlockSize: 4096},
		{BlockSize: 1024, Offset: 8 * kib, SizeLimit: mib},
		{ReadOnly: true, Autoclear: true, PartScan: true, BlockSize: 2048, Offset: 64 * kib, SizeLimit: 2 * mib},
	}
	forEachMode(t, func(t *testing.T, c *Control, dir string) {
		for i, o := range cases {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				path := sparseFile(t, dir, "rt"+strconv.Itoa(i), 4*mib)
				d := attach(t, c, path, &o)
				st, err := d.Status()
				if err != nil {
					t.Fatal(err)
				}
				want := o
				if want.BlockSize == 0 {
					want.BlockSize = 512
				}
				if diff := cmp.Diff(want, st.Options); diff != "" {
					t.Errorf("Status().Options mismatch (-want +got):\n%s", diff)
				}
				fst := statFile(t, path)
				dst := statFile(t, d.Path())
				size := uint64(4*mib) - o.Offset
				if o.SizeLimit != 0 {
					size = min(size, o.SizeLimit)
				}
				wantSt := Status{
					Number:       d.Number(),
					Path:         "/dev/loop" + strconv.Itoa(d.Number()),
					Dev:          ioctl.DecodeDev(uint64(dst.Rdev)),
					BackingFile:  path,
					BackingDev:   ioctl.DecodeDev(uint64(fst.Dev)),
					BackingInode: fst.Ino,
					Options:      want,
					Size:         size,
					DiskSeq:      st.DiskSeq,
				}
				if diff := cmp.Diff(wantSt, st); diff != "" {
					t.Errorf("Status() mismatch (-want +got):\n%s", diff)
				}
				if d.Dev() != ioctl.DecodeDev(uint64(dst.Rdev)) || d.Dev().Major != unix.Major(dst.Rdev) || d.Dev().Minor != unix.Minor(dst.Rdev) {
					t.Errorf("Dev() = %v, stat says %d:%d", d.Dev(), unix.Major(dst.Rdev), unix.Minor(dst.Rdev))
				}
				if got := blkSize(t, d.Path()); got != size {
					t.Errorf("BLKGETSIZE64 = %d, want %d", got, size)
				}
				// The exclusive claim taken while attaching is gone, so a
				// device-mapper table, mkfs or mount could claim it.
				fd, err := unix.Open(d.Path(), unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Errorf("exclusive open after Attach: %v", err)
				} else {
					unix.Close(fd)
				}
				found, err := Find(path)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff([]Status{st}, found); diff != "" {
					t.Errorf("Find mismatch (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func TestIntegrationReadOnly(t *testing.T) {
	forEachMode(t, func(t *testing.T, c *Control, dir string) {
		path := sparseFile(t, dir, "ro", mib)
		d := attach(t, c, path, &Options{ReadOnly: true})
		fd, err := unix.Open(d.Path(), unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			// Refusing a write open is refusing writes too.
			if !errors.Is(err, unix.EROFS) && !errors.Is(err, unix.EACCES) {
				t.Fatalf("open %s read-write: %v", d.Path(), err)
			}
		} else {
			defer unix.Close(fd)
			_, err = unix.Pwrite(fd, []byte("must not land"), 0)
			if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EROFS) {
				t.Fatalf("write to a read-only loop device: %v, want EPERM or EROFS", err)
			}
			ro, err := unix.IoctlGetInt(fd, unix.BLKROGET)
			if err != nil || ro != 1 {
				t.Errorf("BLKROGET = %d, %v; want 1", ro, err)
			}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, make([]byte, mib)) {
			t.Fatal("backing file changed")
		}
	})
}

func TestIntegrationAutoclear(t *testing.T) {
	forEachMode(t, func(t *testing.T, c *Control, dir string) {
		path := sparseFile(t, dir, "ac", mib)
		d, err := c.Attach(context.Background(), path, &Options{Autoclear: true})
		if err != nil {
			t.Fatal(err)
		}
		n := d.Number()
		if !isBound(n) {
			t.Fatalf("/dev/loop%d not attached after Attach", n)
		}
		// Another opener keeps it alive.
		other, err := Open(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if !isBound(n) {
			t.Fatalf("/dev/loop%d detached while still open", n)
		}
		// The last close frees it.
		if err := other.Close(); err != nil {
			t.Fatal(err)
		}
		waitUnbound(t, n)
		if found, err := Find(path); err != nil || len(found) != 0 {
			t.Fatalf("Find after autoclear = %v, %v; want none", found, err)
		}
	})
}

func TestIntegrationSetCapacity(t *testing.T) {
	forEachMode(t, func(t *testing.T, c *Control, dir string) {
		path := sparseFile(t, dir, "grow", 4*mib)
		d := attach(t, c, path, nil)
		if err := Grow(path, 12*mib); err != nil {
			t.Fatal(err)
		}
		if got := blkSize(t, d.Path()); got != 4*mib {
			t.Fatalf("size before SetCapacity = %d, want %d", got, 4*mib)
		}
		if err := d.SetCapacity(); err != nil {
			t.Fatal(err)
		}
		if got := blkSize(t, d.Path()); got != 12*mib {
			t.Fatalf("BLKGETSIZE64 after SetCapacity = %d, want %d", got, 12*mib)
		}
		st, err := d.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.Size != 12*mib {
			t.Fatalf("Status().Size = %d, want %d", st.Size, 12*mib)
		}
	})
}

// supportsODirect reports whether the file system holding path accepts
// O_DIRECT, which is what the loop driver needs for direct I/O.
func supportsODirect(t *testing.T, path string) bool {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EINVAL) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	return true
}

func fsName(t *testing.T, path string) string {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		t.Fatal(err)
	}
	switch sfs.Type {
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.RAMFS_MAGIC:
		return "ramfs"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	}
	return fmt.Sprintf("fs-%#x", sfs.Type)
}

// TestIntegrationDirectIO checks direct I/O against what each available file
// system says about O_DIRECT: where the file system accepts O_DIRECT the
// device must run with direct I/O; where it does not (tmpfs before Linux
// 6.6, ramfs) Attach must fail with ErrNotSupported and leave nothing
// attached, rather than silently fall back to buffered I/O.
func TestIntegrationDirectIO(t *testing.T) {
	forEachMode(t, func(t *testing.T, c *Control, dir string) {
		dirs := map[string]string{"tempdir": dir}
		// Other file systems where there are some: /dev/shm is tmpfs,
		// and ramfs has no O_DIRECT on any kernel.
		if shm, err := os.MkdirTemp("/dev/shm", "thinp-loop-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(shm) })
			dirs["devshm"] = shm
			t.Cleanup(func() { assertNoneUnder(t, shm) })
		}
		ramfs := filepath.Join(dir, "ramfs")
		if err := os.Mkdir(ramfs, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("thinp-loop-test", ramfs, "ramfs", 0, "mode=0755"); err != nil {
			t.Logf("no ramfs case: mount: %v", err)
		} else {
			t.Cleanup(func() {
				if err := unix.Unmount(ramfs, unix.MNT_DETACH); err != nil {
					t.Error(err)
				}
			})
			dirs["mount"] = ramfs
		}
		for _, where := range []string{"tempdir", "devshm", "mount"} {
			base, ok := dirs[where]
			if !ok {
				continue
			}
			t.Run(where+"-"+fsName(t, base), func(t *testing.T) {
				path := sparseFile(t, base, "dio", 4*mib)
				ok := supportsODirect(t, path)
				d, err := c.Attach(context.Background(), path, &Options{DirectIO: true})
				if !ok {
					if !errors.Is(err, ErrNotSupported) {
						t.Fatalf("no O_DIRECT on %s: Attach = %v, want ErrNotSupported", base, err)
					}
					if !errors.Is(err, unix.EINVAL) {
						t.Errorf("error %v does not carry the kernel's EINVAL", err)
					}
					t.Logf("%s: %v", fsName(t, base), err)
					assertNoneUnder(t, base)
					return
				}
				if err != nil {
					t.Fatalf("O_DIRECT works on %s, but Attach with DirectIO: %v", base, err)
				}
				st, err := d.Status()
				if err != nil {
					t.Fatal(err)
				}
				if !st.DirectIO {
					t.Errorf("Status().DirectIO = false")
				}
				if err := d.Detach(context.Background()); err != nil {
					t.Fatal(err)
				}
				// An offset that is not sector aligned: whether the
				// kernel can still do direct I/O depends on the kernel
				// and the file system (5.10 and 6.1 refuse everywhere;
				// newer kernels take the alignment the file system
				// reports, and tmpfs does not care). Either answer is
				// fine; a silent fall back to buffered I/O is not.
				d, err = c.Attach(context.Background(), path, &Options{DirectIO: true, Offset: 100})
				switch {
				case errors.Is(err, ErrNotSupported):
					t.Logf("offset 100 on %s: %v", fsName(t, base), err)
				case err != nil:
					t.Fatalf("DirectIO with offset 100: %v, want ErrNotSupported or a device with direct I/O", err)
				default:
					st, err := d.Status()
					if err != nil {
						t.Fatal(err)
					}
					if !st.DirectIO {
						t.Errorf("DirectIO with offset 100: attached without direct I/O")
					}
					t.Logf("offset 100 on %s: direct I/O on", fsName(t, base))
					if err := d.Detach(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
				assertNoneUnder(t, base)
			})
		}
	})
}

// mbr returns a master boot record with one Linux partition.
func mbr(startLBA, sectors uint32) []byte {
	b := make([]byte, 512)
	e := b[446:462]
	e[4] = 0x83 // Linux
	binary.LittleEndian.PutUint32(e[8:], startLBA)
	binary.LittleEndian.PutUint32(e[12:], sectors)
	b[510], b[511] = 0x55, 0xaa
	return b
}

// msdosPartitions reports whether the running kernel can read an MBR
// partition table, from /proc/config.gz where the kernel exposes its
// configuration (and assumes it can where it does not).
func msdosPartitions(t *testing.T) bool {
	f, err := os.Open("/proc/config.gz")
	if err != nil {
		return true
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(cfg, []byte("\nCONFIG_MSDOS_PARTITION=y\n"))
}

func TestIntegrationPartScan(t *testing.T) {
	forEachMode(t, func(t *testing.T, c *Control, dir string) {
		path := sparseFile(t, dir, "parts", 4*mib)
		if err := os.WriteFile(path, mbr(2048, 2048), 0); err != nil {
			t.Fatal(err)
		}
		if err := Grow(path, 4*mib); err != nil {
			t.Fatal(err)
		}
		parser := msdosPartitions(t)
		for _, scan := range []bool{false, true} {
			d := attach(t, c, path, &Options{PartScan: scan})
			n := strconv.Itoa(d.Number())
			// The kernel's own view of the flag.
			b, err := os.ReadFile(filepath.Join(sysBlock, "loop"+n, "loop", "partscan"))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(b)) == "1"; got != scan {
				t.Errorf("PartScan %v: sysfs loop/partscan = %q", scan, b)
			}
			part := filepath.Join(sysBlock, "loop"+n, "loop"+n+"p1")
			for i := 0; i < 100; i++ {
				if _, err = os.Stat(part); err == nil || !scan || !parser {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			switch {
			case scan && !parser:
				t.Logf("this kernel has no MBR parser (CONFIG_MSDOS_PARTITION unset): checked the partscan flag only, not the partition")
			case scan && err != nil:
				t.Fatalf("PartScan: no partition: %v", err)
			case !scan && err == nil:
				t.Fatalf("without PartScan the kernel created %s", part)
			case scan:
				b, err := os.ReadFile(filepath.Join(part, "size"))
				if err != nil || strings.TrimSpace(string(b)) != "2048" {
					t.Errorf("partition size = %q, %v; want 2048 sectors", b, err)
				}
			}
			if err := d.Detach(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// roBindMount returns a read-only view of dir, unmounted when the test ends.
func roBindMount(t *testing.T, dir string) string {
	t.Helper()
	ro := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dir, ro, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("skipping the read-only file system case: bind mount: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(ro, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", ro, err)
		}
	})
	if err := unix.Mount("", ro, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Skipf("skipping the read-only file system case: remount read-only: %v", err)
	}
	return ro
}

func TestIntegrationBadInput(t *testing.T) {
	forEachMode(t, func(t *testing.T, c *Control, dir string) {
		file := sparseFile(t, dir, "file", mib)
		if err := os.Mkdir(filepath.Join(dir, "dir"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
			t.Fatal(err)
		}
		roDir := filepath.Join(dir, "rosrc")
		if err := os.Mkdir(roDir, 0o755); err != nil {
			t.Fatal(err)
		}
		sparseFile(t, roDir, "rofile", mib)
		cases := []struct {
			name  string
			path  string
			opts  *Options
			wants []error
		}{
			{"missing file", filepath.Join(dir, "nope"), nil, []error{fs.ErrNotExist, unix.ENOENT}},
			{"directory", filepath.Join(dir, "dir"), nil, []error{ErrInvalid, unix.EISDIR}},
			{"directory read-only", filepath.Join(dir, "dir"), &Options{ReadOnly: true}, []error{ErrInvalid, unix.EISDIR}},
			{"fifo", filepath.Join(dir, "fifo"), nil, []error{ErrInvalid}},
			{"character device", "/dev/null", nil, []error{ErrInvalid}},
			{"offset past end", file, &Options{Offset: 2 * mib}, []error{ErrInvalid}},
			{"offset at end", file, &Options{Offset: mib}, []error{ErrInvalid}},
			{"block size 256", file, &Options{BlockSize: 256}, []error{ErrInvalid}},
			{"block size 1000", file, &Options{BlockSize: 1000}, []error{ErrInvalid}},
			{"block size 8192", file, &Options{BlockSize: 8192}, []error{ErrInvalid}},
			{"block size 513", file, &Options{BlockSize: 513}, []error{ErrInvalid}},
			{"empty path", "", nil, []error{ErrInvalid}},
			{"read-only file system", "RO", nil, []error{ErrReadOnly, unix.EROFS}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				path := tc.path
				if path == "RO" {
					path = filepath.Join(roBindMount(t, roDir), "rofile")
				}
				d, err := c.Attach(context.Background(), path, tc.opts)
				if err == nil {
					d.Detach(context.Background())
					t.Fatal("Attach succeeded")
				}
				var e *Error
				if !errors.As(err, &e) || e.Op != "attach" {
					t.Errorf("error %v (%T) is not a *loop.Error for attach", err, err)
				}
				for _, w := range tc.wants {
					if !errors.Is(err, w) {
						t.Errorf("error %q does not match %v", err, w)
					}
				}
				t.Logf("%v", err)
				assertNoneUnder(t, dir)
			})
		}
		// The same file system read-only, with ReadOnly: fine.
		t.Run("read-only file system with ReadOnly", func(t *testing.T) {
			path := filepath.Join(roBindMount(t, roDir), "rofile")
			d := attach(t, c, path, &Options{ReadOnly: true})
			if st, err := d.Status(); err != nil || !st.ReadOnly {
				t.Fatalf("Status = %+v, %v", st, err)
			}
			if err := d.Detach(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	})
}

func TestIntegrationAttachFile(t *testing.T) {
	forEachMode(t, func(t *testing.T, c *Control, dir string) {
		ctx := context.Background()
		path := sparseFile(t, dir, "f", mib)
		open := func(flag int) *os.File {
			f, err := os.OpenFile(path, flag, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f
		}
		wantErr := func(f *os.File, o *Options, want error) {
			t.Helper()
			d, err := c.AttachFile(ctx, f, o)
			if err == nil {
				d.Detach(ctx)
				t.Fatalf("AttachFile(%v, %+v) succeeded", f.Name(), o)
			}
			if !errors.Is(err, want) {
				t.Fatalf("AttachFile: %v, want %v", err, want)
			}
			assertNoneUnder(t, dir)
		}
		wantErr(open(os.O_RDONLY), nil, ErrReadOnly)
		wantErr(open(os.O_WRONLY), nil, ErrInvalid)
		wantErr(open(os.O_RDWR), &Options{BlockSize: 100}, ErrInvalid)
		wantErr(nil, nil, ErrInvalid)

		for _, tc := range []struct {
			flag int
			ro   bool
		}{{os.O_RDWR, false}, {os.O_RDONLY, true}, {os.O_RDWR, true}} {
			f := open(tc.flag)
			d, err := c.AttachFile(ctx, f, &Options{ReadOnly: tc.ro})
			if err != nil {
				t.Fatal(err)
			}
			// The kernel holds its own reference to the file.
			f.Close()
			st, err := d.Status()
			if err != nil {
				t.Fatal(err)
			}
			if st.ReadOnly != tc.ro || st.BackingFile != path {
				t.Errorf("flag %#x ReadOnly %v: status %+v", tc.flag, tc.ro, st)
			}
			if err := d.Detach(ctx); err != nil {
				t.Fatal(err)
			}
		}

		// An unlinked file stays attached; the kernel marks its name.
		f := open(os.O_RDWR)
		d, err := c.AttachFile(ctx, f, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Detach(ctx)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		st, err := d.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.BackingFile != path+deletedSuffix {
			t.Errorf("BackingFile = %q, want %q", st.BackingFile, path+deletedSuffix)
		}
	})
}

func TestIntegrationFindListOpen(t *testing.T) {
	dir := privileged(t)
	c := testControl(t, false)
	// A path longer than the kernel's 64-byte lo_file_name, reached
	// through a hard link as well.
	long := filepath.Join(dir, strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(long, 0o755); err != nil {
		t.Fatal(err)
	}
	a := sparseFile(t, long, "a", mib)
	b := sparseFile(t, dir, "b", mib)
	link := filepath.Join(dir, "link-to-a")
	if err := os.Link(a, link); err != nil {
		t.Fatal(err)
	}
	da1 := attach(t, c, a, nil)
	da2 := attach(t, c, a, &Options{ReadOnly: true, Offset: 4 * kib})
	db := attach(t, c, b, nil)

	for _, p := range []string{a, link} {
		found, err := Find(p)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(numbers([]Status{{Number: da1.Number()}, {Number: da2.Number()}}), numbers(found)); diff != "" {
			t.Errorf("Find(%s) (-want +got):\n%s", p, diff)
		}
		for _, st := range found {
			if st.BackingFile != a {
				t.Errorf("BackingFile = %q, want the full path %q", st.BackingFile, a)
			}
		}
	}
	if found, err := Find(b); err != nil || len(found) != 1 || found[0].Number != db.Number() {
		t.Errorf("Find(b) = %v, %v", found, err)
	}
	if found, err := Find(filepath.Join(dir, "c")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Find(missing) = %v, %v; want ErrNotExist", found, err)
	}
	unattached := sparseFile(t, dir, "u", mib)
	if found, err := Find(unattached); err != nil || found == nil || len(found) != 0 {
		t.Errorf("Find(unattached) = %#v, %v; want an empty slice", found, err)
	}

	all, err := List()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]Status{}
	for i, st := range all {
		if i > 0 && all[i-1].Number >= st.Number {
			t.Errorf("List not ordered: %d before %d", all[i-1].Number, st.Number)
		}
		seen[st.Number] = st
	}
	for _, d := range []*Device{da1, da2, db} {
		want, err := d.Status()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, seen[d.Number()]); diff != "" {
			t.Errorf("List entry for %s (-Status +List):\n%s", d, diff)
		}
		// Open gives a second owner of the same device.
		o, err := Open(d.Number())
		if err != nil {
			t.Fatal(err)
		}
		ost, err := o.Status()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, ost); diff != "" {
			t.Errorf("Open(%d).Status (-want +got):\n%s", d.Number(), diff)
		}
		if o.Dev() != d.Dev() || o.Path() != d.Path() {
			t.Errorf("Open(%d) = %s %v, want %s %v", d.Number(), o.Path(), o.Dev(), d.Path(), d.Dev())
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// An existing but unattached device, made for the purpose.
	n, err := c.Add(-1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Remove(n); err != nil {
			t.Error(err)
		}
	}()
	if _, err := Open(n); !errors.Is(err, ErrNotAttached) || !errors.Is(err, unix.ENXIO) {
		t.Errorf("Open(unattached %d) = %v, want ErrNotAttached", n, err)
	}
	if _, err := Open(-1); !errors.Is(err, ErrInvalid) {
		t.Errorf("Open(-1) = %v, want ErrInvalid", err)
	}
	if _, err := Open(1<<20 - 1); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(no such device) = %v, want ErrNotExist", err)
	}
}

func TestIntegrationAddRemove(t *testing.T) {
	dir := privileged(t)
	c := testControl(t, false)
	n, err := c.Add(-1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(devicePath(n)); err != nil {
		t.Errorf("after Add: %v", err)
	}
	if _, err := c.Add(n); !errors.Is(err, unix.EEXIST) {
		t.Errorf("Add(existing %d) = %v, want EEXIST", n, err)
	}
	if err := c.Remove(n); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(n); !errors.Is(err, unix.ENODEV) {
		t.Errorf("Remove(removed %d) = %v, want ENODEV", n, err)
	}
	if err := c.Remove(-1); !errors.Is(err, ErrInvalid) {
		t.Errorf("Remove(-1) = %v, want ErrInvalid", err)
	}
	d := attach(t, c, sparseFile(t, dir, "f", mib), nil)
	if err := c.Remove(d.Number()); !errors.Is(err, ErrBusy) {
		t.Errorf("Remove(attached) = %v, want ErrBusy", err)
	}
}

// An unattached device that something holds open for a moment (udevd's
// probe of a new device) is removed once it is let go; one held open for
// good fails with ErrBusy after the wait.
func TestIntegrationRemoveWhileProbed(t *testing.T) {
	privileged(t)
	c := testControl(t, false)
	n, err := c.Add(-1)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(devicePath(n), os.O_RDONLY, 0)
	if err != nil {
		c.Remove(n)
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		time.Sleep(200 * time.Millisecond)
		f.Close()
		close(released)
	}()
	if err := c.Remove(n); err != nil {
		t.Errorf("Remove while briefly open: %v", err)
	}
	<-released
	if _, err := os.Stat(fmt.Sprintf("/sys/block/loop%d", n)); err == nil {
		t.Errorf("loop%d still exists", n)
		c.Remove(n)
	}

	n, err = c.Add(-1)
	if err != nil {
		t.Fatal(err)
	}
	f, err = os.OpenFile(devicePath(n), os.O_RDONLY, 0)
	if err != nil {
		c.Remove(n)
		t.Fatal(err)
	}
	err = c.Remove(n)
	f.Close()
	if !errors.Is(err, ErrBusy) {
		t.Errorf("Remove while held open = %v, want ErrBusy", err)
	}
	if err := c.Remove(n); err != nil {
		t.Errorf("Remove after close: %v", err)
	}
}

func TestIntegrationCloseDetach(t *testing.T) {
	dir := privileged(t)
	ctx := context.Background()
	c := testControl(t, false)
	path := sparseFile(t, dir, "f", mib)

	d := attach(t, c, path, nil)
	n := d.Number()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !isBound(n) {
		t.Fatal("Close without Autoclear detached the device")
	}
	if _, err := d.Status(); !errors.Is(err, ErrClosed) {
		t.Errorf("Status after Close = %v", err)
	}
	if err := d.SetCapacity(); !errors.Is(err, ErrClosed) {
		t.Errorf("SetCapacity after Close = %v", err)
	}
	if err := d.Detach(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Detach after Close = %v", err)
	}
	// Reopen and detach for real.
	d2, err := Open(n)
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.Detach(ctx); err != nil {
		t.Fatal(err)
	}
	if isBound(n) {
		t.Fatal("attached after Detach returned")
	}
	if err := d2.Detach(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("second Detach = %v", err)
	}
	if err := d2.Close(); err != nil {
		t.Errorf("Close after Detach = %v", err)
	}

	// Another opener defers the detach to its last close.
	d3 := attach(t, c, path, nil)
	other, err := os.Open(d3.Path())
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err = d3.Detach(short)
	if !errors.Is(err, ErrBusy) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Detach while open elsewhere = %v, want ErrBusy", err)
	}
	if !isBound(d3.Number()) {
		t.Error("detached while open elsewhere")
	}
	other.Close()
	waitUnbound(t, d3.Number())

	// A closed Control refuses.
	c2, err := OpenControl()
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c2.Close(); err != nil {
		t.Errorf("second Control.Close: %v", err)
	}
	if _, err := c2.Attach(ctx, path, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Attach on closed Control = %v", err)
	}
	if _, err := c2.Add(-1); !errors.Is(err, ErrClosed) {
		t.Errorf("Add on closed Control = %v", err)
	}
}

func TestIntegrationContext(t *testing.T) {
	dir := privileged(t)
	c := testControl(t, false)
	path := sparseFile(t, dir, "f", mib)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Attach(ctx, path, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Attach with a cancelled context = %v", err)
	}
	assertNoneUnder(t, dir)
}

// TestIntegrationStacked backs a loop device with another loop device, the
// block-device case of Attach and Find.
func TestIntegrationStacked(t *testing.T) {
	forEachMode(t, func(t *testing.T, c *Control, dir string) {
		lower := attach(t, c, sparseFile(t, dir, "f", 2*mib), nil)
		upper := attach(t, c, lower.Path(), &Options{Offset: mib})
		if got := blkSize(t, upper.Path()); got != mib {
			t.Errorf("upper size = %d, want %d", got, mib)
		}
		st, err := upper.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.BackingRdev != lower.Dev() || st.BackingFile != lower.Path() {
			t.Errorf("upper status %+v, want backing %s (%v)", st, lower.Path(), lower.Dev())
		}
		found, err := Find(lower.Path())
		if err != nil || len(found) != 1 || found[0].Number != upper.Number() {
			t.Errorf("Find(%s) = %v, %v", lower.Path(), found, err)
		}
		if _, err := c.Attach(context.Background(), lower.Path(), &Options{Offset: 2 * mib}); !errors.Is(err, ErrInvalid) {
			t.Errorf("offset past the end of a block device: %v", err)
		}
		if err := upper.Detach(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// hammer runs workers goroutines that each attach and detach their own file
// cycles times, checking on every cycle that the device they got is theirs
// alone. inUse, shared by all, maps device numbers to the worker holding
// them. It returns the number of completed cycles.
func hammer(c *Control, dir, prefix string, workers, cycles int, inUse *sync.Map, report func(error)) int64 {
	var done atomic.Int64
	var wg sync.WaitGroup
	ctx := context.Background()
	for w := range workers {
		wg.Go(func() {
			path := filepath.Join(dir, fmt.Sprintf("%s-%d", prefix, w))
			if err := CreateSparseFile(path, 256*kib); err != nil {
				report(err)
				return
			}
			var want unix.Stat_t
			if err := unix.Stat(path, &want); err != nil {
				report(err)
				return
			}
			// Half the workers of a LOOP_CONFIGURE run go through the
			// package-level Attach, which opens a Control per call.
			attachFn := c.Attach
			if !c.forceLegacy && w%2 == 1 {
				attachFn = Attach
			}
			for i := range cycles {
				o := &Options{Autoclear: i%2 == 0, ReadOnly: i%3 == 0}
				d, err := attachFn(ctx, path, o)
				if err != nil {
					report(fmt.Errorf("worker %d cycle %d: %w", w, i, err))
					return
				}
				if prev, loaded := inUse.LoadOrStore(d.Number(), w); loaded {
					report(fmt.Errorf("worker %d cycle %d: %s shared with worker %v", w, i, d, prev))
				}
				st, err := d.Status()
				if err != nil {
					report(fmt.Errorf("worker %d cycle %d: %w", w, i, err))
				} else if st.BackingDev != ioctl.DecodeDev(uint64(want.Dev)) || st.BackingInode != want.Ino || st.ReadOnly != o.ReadOnly || st.Autoclear != o.Autoclear {
					report(fmt.Errorf("worker %d cycle %d: %s is not ours: %+v", w, i, d, st))
				}
				inUse.Delete(d.Number())
				if err := d.Detach(ctx); err != nil {
					report(fmt.Errorf("worker %d cycle %d: %w", w, i, err))
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return done.Load()
}

func TestIntegrationConcurrent(t *testing.T) {
	const workers, cycles = 16, 50
	forEachMode(t, func(t *testing.T, c *Control, dir string) {
		var inUse sync.Map
		start := time.Now()
		n := hammer(c, dir, "w", workers, cycles, &inUse, func(err error) { t.Error(err) })
		if n != workers*cycles {
			t.Errorf("%d of %d cycles completed", n, workers*cycles)
		}
		t.Logf("%d goroutines x %d attach/detach cycles = %d in %v; %d lost races retried", workers, cycles, n, time.Since(start), c.lostRaces.Load())
		assertNoneUnder(t, dir)
	})
}

// TestIntegrationCrossProcess races this process against two copies of the
// test binary, all attaching and detaching at once: the exclusive claim must
// keep processes from sharing a device.
func TestIntegrationCrossProcess(t *testing.T) {
	dir := privileged(t)
	c := testControl(t, false)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	type child struct {
		cmd *exec.Cmd
		out bytes.Buffer
	}
	var children []*child
	for i := range 2 {
		ch := &child{cmd: exec.Command(exe)}
		sub := filepath.Join(dir, "child"+strconv.Itoa(i))
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		ch.cmd.Env = append(os.Environ(), childEnv+"="+sub)
		ch.cmd.Stdout, ch.cmd.Stderr = &ch.out, &ch.out
		if err := ch.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children = append(children, ch)
	}
	var inUse sync.Map
	n := hammer(c, dir, "parent", childWorkers, childCycles, &inUse, func(err error) { t.Error(err) })
	total := n
	for i, ch := range children {
		err := ch.cmd.Wait()
		out := ch.out.String()
		if err != nil {
			t.Errorf("child %d: %v\n%s", i, err, out)
		}
		var got int64
		if _, err := fmt.Sscanf(out, "cycles %d", &got); err != nil {
			t.Errorf("child %d output %q: %v", i, out, err)
		}
		total += got
	}
	if want := int64(3 * childWorkers * childCycles); total != want {
		t.Errorf("%d of %d cycles completed", total, want)
	}
	t.Logf("3 processes x %d goroutines x %d cycles = %d attach/detach cycles; %d lost races retried in this process", childWorkers, childCycles, total, c.lostRaces.Load())
}

const childWorkers, childCycles = 8, 25

// childWorkload is the body of a TestIntegrationCrossProcess child.
func childWorkload(dir string) int {
	c, err := OpenControl()
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer c.Close()
	var mu sync.Mutex
	failed := false
	var inUse sync.Map
	n := hammer(c, dir, "child", childWorkers, childCycles, &inUse, func(err error) {
		mu.Lock()
		defer mu.Unlock()
		failed = true
		fmt.Fprintln(os.Stderr, err)
	})
	fmt.Printf("cycles %d\n", n)
	if failed {
		return 1
	}
	return 0
}

// TestIntegrationLostRace holds the device LOOP_CTL_GET_FREE names with
// O_EXCL, as a concurrent attacher would, so that every attempt of Attach
// loses: the attempt budget and the context must both end the retries with
// a typed error, and releasing the device must let Attach win.
func TestIntegrationLostRace(t *testing.T) {
	dir := privileged(t)
	c := testControl(t, false)
	path := sparseFile(t, dir, "f", mib)
	n, err := c.getFree()
	if err != nil {
		t.Fatal(err)
	}
	held, err := unix.Open(devicePath(n), unix.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	release := func() {
		if held >= 0 {
			unix.Close(held)
			held = -1
		}
	}
	defer release()
	// Another process on this machine may bind the held number, after
	// which LOOP_CTL_GET_FREE names another device and Attach wins.
	tookOther := func(d *Device, err error) {
		if err == nil {
			d.Detach(context.Background())
			t.Skipf("another process bound /dev/loop%d meanwhile; got %s", n, d)
		}
	}

	c.attempts = 5
	d, err := c.Attach(context.Background(), path, nil)
	tookOther(d, err)
	if !errors.Is(err, ErrBusy) || !errors.Is(err, unix.EBUSY) {
		t.Errorf("Attach against a held device = %v, want ErrBusy", err)
	}
	if got := c.lostRaces.Load(); got != 5 {
		t.Errorf("lost races = %d, want 5", got)
	}
	t.Log(err)

	c.attempts = 0
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	d, err = c.Attach(ctx, path, nil)
	tookOther(d, err)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, unix.EBUSY) {
		t.Errorf("Attach with a deadline against a held device = %v", err)
	}
	assertNoneUnder(t, dir)

	release()
	d = attach(t, c, path, nil)
	t.Logf("after release: %s (held /dev/loop%d)", d, n)
}
