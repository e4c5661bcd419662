package thin

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/dm/dmtest"
	"github.com/thinp/thinp/loop"
)

// hostControl is a Control on the fake kernel whose sysfs and /dev are
// dir/sys and dir/dev.
func hostControl(t *testing.T, dir string) *dm.Control {
	t.Helper()
	ctl, err := dmtest.NewControl(dmtest.New(), dm.WithSysDir(filepath.Join(dir, "sys")), dm.WithDevDir(filepath.Join(dir, "dev")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	return ctl
}

func TestSysHost(t *testing.T) {
	dir := t.TempDir()
	h := sysHost{ctl: hostControl(t, dir)}
	writeFile(t, filepath.Join(dir, "sys/dev/block/7:0/size"), "8192\n")
	writeFile(t, filepath.Join(dir, "sys/dev/block/7:1/size"), "lots\n")
	writeFile(t, filepath.Join(dir, "sys/dev/block/7:0/uevent"), "MAJOR=7\nMINOR=0\nDEVNAME=loop0\nDEVTYPE=disk\n")
	writeFile(t, filepath.Join(dir, "dev/loop0"), "") // not a block device

	if s, err := h.size(dm.Dev{Major: 7}); err != nil || s != 8192 {
		t.Errorf("size = %d, %v", s, err)
	}
	if _, err := h.size(dm.Dev{Major: 7, Minor: 1}); err == nil {
		t.Error("garbage size accepted")
	}
	if _, err := h.size(dm.Dev{Major: 7, Minor: 9}); err == nil {
		t.Error("missing device has a size")
	}
	// format and superblock refuse a node that is not the device, and a
	// device without a node.
	for _, d := range []dm.Dev{{Major: 7}, {Major: 7, Minor: 9}} {
		if err := h.format(d, "", false); err == nil {
			t.Errorf("format of %s without its node", d)
		}
		if _, err := h.superblock(d); err == nil {
			t.Errorf("superblock of %s without its node", d)
		}
	}
	if err := h.format(dm.Dev{Major: 7}, filepath.Join(dir, "dev/loop0"), false); !errors.Is(err, errNotBlockDevice) {
		t.Errorf("format of a regular file: %v", err)
	}
}

func superblock() []byte {
	b := make([]byte, 2*MetaBlockSize)
	for i := range b {
		b[i] = 0xa5
	}
	v := uint64(thinSuperblockMagic)
	for i := 0; i < 8; i++ {
		b[thinSuperblockMagicOff+i] = byte(v >> (8 * i))
	}
	return b
}

func TestZeroHeader(t *testing.T) {
	if !hasThinSuperblock(superblock()) || hasThinSuperblock(make([]byte, 4096)) || hasThinSuperblock(nil) {
		t.Fatal("hasThinSuperblock")
	}
	path := filepath.Join(t.TempDir(), "meta")
	if err := os.WriteFile(path, superblock(), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := zeroHeader(f, false); !errors.Is(err, ErrHasMetadata) {
		t.Fatalf("zeroHeader over a superblock: %v", err)
	}
	if err := zeroHeader(f, true); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !bytes.Equal(b[:MetaBlockSize], make([]byte, MetaBlockSize)) || b[MetaBlockSize] != 0xa5 {
		t.Error("zeroHeader did not zero exactly the first 4 KiB")
	}
	// A zeroed device is fresh: no force needed.
	if err := zeroHeader(f, false); err != nil {
		t.Fatal(err)
	}
	// Too small to hold a metadata block.
	small := filepath.Join(t.TempDir(), "small")
	os.WriteFile(small, []byte("x"), 0o600)
	g, _ := os.OpenFile(small, os.O_RDWR, 0)
	defer g.Close()
	if err := zeroHeader(g, true); err == nil {
		t.Error("zeroHeader of a 1-byte file")
	}
	if err := zeroMetadataHeader(filepath.Join(t.TempDir(), "none"), dm.Dev{Major: 7}, false); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing node: %v", err)
	}
}

// TestIntegrationFormatMetadataLoop formats a real loop device, on hosts
// where this runs as root with loop devices (the host root tier).
func TestIntegrationFormatMetadataLoop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no loop devices")
	}
	path := filepath.Join(t.TempDir(), "meta.img")
	if err := os.WriteFile(path, superblock(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 4<<20); err != nil {
		t.Fatal(err)
	}
	d, err := loop.Attach(context.Background(), path, nil)
	if err != nil {
		t.Skipf("loop attach: %v", err)
	}
	t.Cleanup(func() {
		d.Detach(context.Background())
		d.Close()
	})
	dev := d.Dev()
	// The host's own sysfs and /dev, with the fake kernel behind them.
	ctl, err := dmtest.NewControl(dmtest.New(), dm.WithSysDir("/sys"), dm.WithDevDir("/dev"), dm.WithProcDir("/proc"))
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	h := sysHost{ctl: ctl}
	if s, err := h.size(dev); err != nil || s != 8192 {
		t.Errorf("size of the loop device = %d, %v", s, err)
	}
	if err := h.format(dev, "", false); !errors.Is(err, ErrHasMetadata) {
		t.Fatalf("format over a superblock: %v", err)
	}
	// Another exclusive holder (a mount, a dm table) makes it EBUSY.
	fd, err := unix.Open(d.Path(), unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.format(dev, d.Path(), true); !errors.Is(err, unix.EBUSY) {
		t.Errorf("format of a claimed device: %v", err)
	}
	unix.Close(fd)
	// The wrong node for the device is refused.
	if err := h.format(dm.Dev{Major: dev.Major, Minor: dev.Minor + 1}, d.Path(), true); !errors.Is(err, errNotBlockDevice) {
		t.Errorf("format through another device's node: %v", err)
	}
	if err := h.format(dev, "", true); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, MetaBlockSize+1)
	f, err := os.Open(d.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[:MetaBlockSize], make([]byte, MetaBlockSize)) || b[MetaBlockSize] != 0xa5 {
		t.Error("the first 4 KiB of the loop device are not zero, or more was zeroed")
	}
}

func TestPoolOptions(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	writeFile(t, dir+"/sys/dev/block/7:1/size", "262144\n")
	writeFile(t, dir+"/meta.img", "")
	// The real sysfs reader, pointed at a fake sysfs; device nodes are
	// where the Control puts them.
	ctl, err := dmtest.NewControl(e.k, dm.WithRemoveRetry(0), dm.WithDevDir(dir+"/dev"), dm.WithSysDir(dir+"/sys"))
	ok(t, err)
	defer ctl.Close()
	p, err := CreatePool(e.ctx, ctl, "pool", e.spec())
	ok(t, err)
	if spec, _ := p.Spec(e.ctx); spec.Length != 262144 {
		t.Errorf("length from sysfs %d", spec.Length)
	}
	ok(t, p.CreateThin(e.ctx, 1))
	v, err := p.Activate(e.ctx, "vol", 1, 8)
	ok(t, err)
	if v.MapperPath() != dir+"/dev/mapper/vol" {
		t.Errorf("MapperPath %q", v.MapperPath())
	}
	ok(t, p.Teardown(e.ctx))
	// A metadata path that is not the metadata device is refused before
	// anything is sent.
	e.reset()
	_, err = CreatePool(e.ctx, ctl, "pool", e.spec(), FormatMetadata(), WithMetadataPath(dir+"/meta.img"))
	if !errors.Is(err, errNotBlockDevice) {
		t.Errorf("format through a regular file: %v", err)
	}
	e.noCalls("bad metadata path")
}
