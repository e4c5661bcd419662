// Package thintest gives tests of programs built on package thin what they
// need on a real kernel: a thin pool on sparse files and loop devices,
// volumes in it, and the assurance that everything is removed when the test
// ends, with thin_check run on the pool's metadata and a check that no
// device was left behind.
//
// Its functions need root and a kernel with device-mapper and loop devices;
// elsewhere they skip the test, or fail it when THINP_REQUIRE_PRIVILEGED=1
// (so a CI job that must run them cannot pass by skipping). For unit tests
// without root, use the fake kernel of package dm/dmtest.
//
//	func TestMyStore(t *testing.T) {
//		ctl := thintest.Control(t)
//		pool := thintest.NewPool(t, ctl, nil)
//		vol := pool.NewVolume(t, "", 1, thin.Size(64*thin.MiB))
//		// ... use vol.DevPath() ...
//	}
package thintest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/loop"
	"github.com/thinp/thinp/thin"
)

// Require skips t unless it runs as root with device-mapper and loop
// devices; under THINP_REQUIRE_PRIVILEGED=1 it fails t instead.
func Require(t testing.TB) {
	t.Helper()
	testenv.Privileged(t)
	testenv.Loop(t)
}

// Control calls Require and opens a dm.Control, closed at cleanup after
// everything the test made with it is gone.
func Control(t testing.TB, opts ...dm.Option) *dm.Control {
	t.Helper()
	Require(t)
	ctl, err := dm.Open(opts...)
	if err != nil {
		t.Fatalf("thintest: %+v", err)
	}
	t.Cleanup(func() { ctl.Close() })
	return ctl
}

// Options describes a test pool. The zero value (or nil) gives a pool of
// 64 MiB of data and 8 MiB of metadata in 64 KiB blocks, on fresh metadata.
type Options struct {
	// Name is the pool device's name; by default a unique
	// "thintest-<random>-pool", so that tests can run side by side.
	Name      string
	DataSize  int64      // bytes of the data file; default 64 MiB
	MetaSize  int64      // bytes of the metadata file; default 8 MiB
	BlockSize dm.Sectors // default 128 (64 KiB)
	// Edit adjusts the spec before the pool is created: features, the
	// low water mark, a shorter Length.
	Edit func(*thin.PoolSpec)
	// PoolOptions are passed to thin.CreatePool after FormatMetadata.
	PoolOptions []thin.PoolOption
}

// Pool is a test pool: the thin.Pool, its spec, and the loop devices and
// files under it.
type Pool struct {
	*thin.Pool
	Spec               thin.PoolSpec
	Meta, Data         *loop.Device
	MetaFile, DataFile string

	mu   sync.Mutex
	vols int
}

// NewPool makes two sparse files in t.TempDir, attaches loop devices to
// them and creates a pool on fresh metadata. At cleanup it deactivates the
// pool's volumes and removes the pool, runs thin_check on the metadata,
// detaches the loop devices, and fails t if any step fails or if a dm
// device whose name starts with the pool's name, or a loop device over its
// files, is left.
func NewPool(t testing.TB, ctl *dm.Control, o *Options) *Pool {
	t.Helper()
	var opts Options
	if o != nil {
		opts = *o
	}
	if opts.Name == "" {
		opts.Name = uniqueName() + "pool"
	}
	if opts.DataSize == 0 {
		opts.DataSize = 64 << 20
	}
	if opts.MetaSize == 0 {
		opts.MetaSize = 8 << 20
	}
	if opts.BlockSize == 0 {
		opts.BlockSize = 128
	}
	ctx := context.Background()
	dir := t.TempDir()
	p := &Pool{MetaFile: filepath.Join(dir, "meta"), DataFile: filepath.Join(dir, "data")}
	var err error
	if p.Meta, err = attach(t, p.MetaFile, opts.MetaSize); err != nil {
		t.Fatalf("thintest: %+v", err)
	}
	if p.Data, err = attach(t, p.DataFile, opts.DataSize); err != nil {
		t.Fatalf("thintest: %+v", err)
	}
	p.Spec = thin.PoolSpec{Metadata: p.Meta.Dev(), Data: p.Data.Dev(), BlockSize: opts.BlockSize}
	if opts.Edit != nil {
		opts.Edit(&p.Spec)
	}
	popts := append([]thin.PoolOption{thin.FormatMetadata()}, opts.PoolOptions...)
	if p.Pool, err = thin.CreatePool(ctx, ctl, opts.Name, p.Spec, popts...); err != nil {
		t.Fatalf("thintest: %+v", err)
	}
	// Cleanups run last-registered first: this runs before the loop
	// devices are detached.
	t.Cleanup(func() {
		if err := p.Teardown(ctx); err != nil && !errors.Is(err, dm.ErrNotFound) {
			t.Errorf("thintest: tear down pool %s: %+v", opts.Name, err)
		}
		testenv.ThinCheck(t, p.Meta.Path())
		devs, err := ctl.List(ctx)
		if err != nil {
			t.Errorf("thintest: list devices: %v", err)
		}
		for _, d := range devs {
			if strings.HasPrefix(d.Name, opts.Name) {
				t.Errorf("thintest: dm device %s left behind", d.Name)
			}
		}
	})
	return p
}

// attach makes a sparse file and a loop device over it, detached at
// cleanup (with a check that it is gone).
func attach(t testing.TB, path string, size int64) (*loop.Device, error) {
	if err := loop.CreateSparseFile(path, size); err != nil {
		return nil, err
	}
	d, err := loop.Attach(context.Background(), path, nil)
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	t.Cleanup(func() {
		if err := d.Detach(context.Background()); err != nil {
			t.Errorf("thintest: detach %s: %v", d.Path(), err)
		}
		d.Close()
		if sts, err := loop.Find(path); err == nil && len(sts) > 0 {
			t.Errorf("thintest: loop device %s over %s left behind", sts[0].Path, path)
		}
	})
	return d, nil
}

// NewVolume creates thin device id in the pool and activates it as a
// volume of size sectors; see Activate. An empty name gives the pool's name
// followed by "-vol" and a number.
func (p *Pool) NewVolume(t testing.TB, name string, id thin.DeviceID, size dm.Sectors, opts ...thin.ActivateOption) *thin.Volume {
	t.Helper()
	if err := p.CreateThin(context.Background(), id); err != nil {
		t.Fatalf("thintest: %+v", err)
	}
	return p.Activate(t, name, id, size, opts...)
}

// Activate activates thin device id as a volume of size sectors and
// deactivates it at cleanup (a volume already gone is fine). An empty
// name gives the pool's name followed by "-vol" and a number.
func (p *Pool) Activate(t testing.TB, name string, id thin.DeviceID, size dm.Sectors, opts ...thin.ActivateOption) *thin.Volume {
	t.Helper()
	if name == "" {
		p.mu.Lock()
		p.vols++
		name = p.Name() + "-vol" + strconv.Itoa(p.vols)
		p.mu.Unlock()
	}
	v, err := p.Pool.Activate(context.Background(), name, id, size, opts...)
	if err != nil {
		t.Fatalf("thintest: %+v", err)
	}
	t.Cleanup(func() {
		if err := v.Deactivate(context.Background()); err != nil && !errors.Is(err, dm.ErrNotFound) {
			t.Errorf("thintest: deactivate %s: %+v", name, err)
		}
	})
	return v
}

// uniqueName is "thintest-<12 random hex digits>-".
func uniqueName() string {
	var b [6]byte
	rand.Read(b[:])
	return "thintest-" + hex.EncodeToString(b[:]) + "-"
}
