package thin_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/loop"
	"github.com/thinp/thinp/thin"
	"github.com/thinp/thinp/thin/thintest"
)

// Shared helpers of the privileged thin scenarios, which run
// in the VM tier. Every helper registers its own cleanup, so a scenario that
// fails half way still leaves nothing behind, and every pool teardown is
// followed by thin_check on its metadata.

// vmSetup checks privileges, registers the leak check and opens a Control
// that is closed, after everything made with it is removed, at cleanup.
func vmSetup(t *testing.T, opts ...dm.Option) (*dm.Control, string) {
	t.Helper()
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	// Under TCG udevd can take tens of seconds for a pool's events when
	// it is busy; a longer udev deadline keeps that from failing tests
	// (callers may still pass their own).
	opts = append([]dm.Option{dm.WithUdevTimeout(2 * time.Minute)}, opts...)
	ctl, err := dm.Open(opts...)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	t.Cleanup(func() {
		// Last resort: remove whatever is left with our prefix, thins
		// before pools (names sort so; retry a few passes for stacking).
		ctx := context.Background()
		for pass := 0; pass < 3; pass++ {
			devs, _ := ctl.List(ctx, dm.WithNamePrefix(prefix))
			if len(devs) == 0 {
				break
			}
			for i := len(devs) - 1; i >= 0; i-- {
				ctl.Remove(ctx, dm.Name(devs[i].Name), dm.NoRetry)
			}
		}
		ctl.Close()
	})
	return ctl, prefix
}

// backing is a loop device over a sparse file in the test's temp dir.
type backing struct {
	Path string // the backing file
	Loop *loop.Device
	Dev  dm.Dev
}

// newBacking attaches a sparse file of size bytes; detached at cleanup.
func newBacking(t *testing.T, size int64) *backing {
	t.Helper()
	path := testenv.SparseFile(t, size)
	d, err := loop.Attach(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Detach(context.Background())
		d.Close()
	})
	return &backing{Path: path, Loop: d, Dev: d.Dev()}
}

// poolOpts describes a test pool; zero values give dmtest's defaults:
// 64 MiB of data, 8 MiB of metadata, 128-sector blocks, low water mark 0.
type poolOpts struct {
	DataSize  int64
	MetaSize  int64
	BlockSize dm.Sectors
	// Edit adjusts the spec before the pool is created (features, low
	// water mark, a shorter Length).
	Edit func(*thin.PoolSpec)
}

// testPool is a pool on two loop devices.
type testPool struct {
	*thin.Pool
	Ctl  *dm.Control
	Name string
	Meta *backing
	Data *backing
	Spec thin.PoolSpec
}

// newPool formats fresh metadata and creates a pool named prefix+"pool",
// with package thintest: at cleanup it tears the pool down (thins first)
// and runs thin_check on the metadata device, failing the test if either
// fails.
func newPool(t *testing.T, ctl *dm.Control, prefix string, o poolOpts) *testPool {
	t.Helper()
	p := thintest.NewPool(t, ctl, &thintest.Options{
		Name: prefix + "pool", DataSize: o.DataSize, MetaSize: o.MetaSize, BlockSize: o.BlockSize, Edit: o.Edit,
	})
	return &testPool{
		Pool: p.Pool, Ctl: ctl, Name: p.Name(), Spec: p.Spec,
		Meta: &backing{Path: p.MetaFile, Loop: p.Meta, Dev: p.Meta.Dev()},
		Data: &backing{Path: p.DataFile, Loop: p.Data, Dev: p.Data.Dev()},
	}
}

// activate creates (if create) and activates thin id as prefix+name.
func (tp *testPool) activate(t *testing.T, name string, id thin.DeviceID, size dm.Sectors, create bool) *thin.Volume {
	t.Helper()
	ctx := context.Background()
	if create {
		if err := tp.CreateThin(ctx, id); err != nil {
			t.Fatalf("create_thin %d: %+v", id, err)
		}
	}
	v, err := tp.Activate(ctx, name, id, size)
	if err != nil {
		t.Fatalf("activate %d: %+v", id, err)
	}
	t.Cleanup(func() { v.Deactivate(context.Background()) })
	return v
}

// writeVolume writes n bytes of pattern b at byte offset off and syncs.
func writeVolume(t *testing.T, v *thin.Volume, off int64, n int, b byte) {
	t.Helper()
	f, err := os.OpenFile(v.DevPath(), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte{b}, n), off); err != nil {
		t.Fatalf("write %s at %d: %v", v.Name(), off, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("sync %s: %v", v.Name(), err)
	}
}

// readVolume reads n bytes at off.
func readVolume(t *testing.T, v *thin.Volume, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(v.DevPath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatalf("read %s at %d: %v", v.Name(), off, err)
	}
	return buf
}

// status reads the pool status, committing metadata first so that used
// block counts are current.
func (tp *testPool) status(t *testing.T) thin.PoolStatus {
	t.Helper()
	st, err := tp.Status(context.Background(), thin.CommitMetadata())
	if err != nil {
		t.Fatalf("pool status: %+v", err)
	}
	return st
}

// thinTool runs a thin-provisioning-tools program (a cross-check, never the
// library's own path) and returns its standard output.
func thinTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(testenv.Tool(t, name), args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// thinLsLive lists the pool's devices from a metadata snapshot of the live
// pool (thin_ls -m): device id to mapped blocks. It reserves and releases
// the metadata snapshot itself.
func (tp *testPool) thinLsLive(t *testing.T) map[thin.DeviceID]uint64 {
	t.Helper()
	ctx := context.Background()
	if err := tp.ReserveMetadataSnap(ctx); err != nil {
		t.Fatalf("reserve_metadata_snap: %+v", err)
	}
	defer func() {
		if err := tp.ReleaseMetadataSnap(ctx); err != nil {
			t.Errorf("release_metadata_snap: %+v", err)
		}
	}()
	out := thinTool(t, "thin_ls", "-m", "--no-headers", "-o", "DEV,MAPPED_BLOCKS", tp.Meta.Loop.Path())
	got := map[thin.DeviceID]uint64{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var id, blocks uint64
		if line == "" {
			continue
		}
		if _, err := fmt.Sscan(line, &id, &blocks); err != nil {
			t.Fatalf("thin_ls line %q: %v", line, err)
		}
		got[thin.DeviceID(id)] = blocks
	}
	return got
}
