package thinsnap_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/proxy"
	"github.com/containerd/containerd/v2/core/snapshots/testsuite"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/thinp/thinp/examples/snapshotter/thinsnap"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/thin/catalog"
	"github.com/thinp/thinp/thin/thintest"
)

// suiteRuns is how many snapshotters containerd's SnapshotterSuite (v2.4.2)
// asks for: one per subtest. A pool is made for each before the suite
// starts, because the suite's factory runs in parallel subtests that do not
// give it their testing.T.
const suiteRuns = 21

// TestIntegrationContainerdSuite runs containerd's snapshotter test suite
// (core/snapshots/testsuite) against the snapshotter, each subtest on a
// fresh thin pool on loop devices, with mkfs.ext4 and real mounts. After
// each subtest every snapshot is removed, which also checks that Remove
// works in child-first order on whatever the subtest left.
func TestIntegrationContainerdSuite(t *testing.T) {
	testenv.Privileged(t)
	testenv.Tool(t, "mkfs.ext4")
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	ctl := thintest.Control(t)
	pools := make(chan *thintest.Pool, suiteRuns)
	for i := range suiteRuns {
		pools <- thintest.NewPool(t, ctl, &thintest.Options{
			Name: fmt.Sprintf("%sp%d", prefix, i), DataSize: 1 << 30, MetaSize: 32 << 20,
		})
	}
	testsuite.SnapshotterSuite(t, "thinp", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		var tp *thintest.Pool
		select {
		case tp = <-pools:
		default:
			return nil, nil, errors.New("no pool left: the suite has more subtests than suiteRuns")
		}
		cat, err := catalog.Open(ctx, tp.Pool, root)
		if err != nil {
			return nil, nil, err
		}
		sn, err := thinsnap.New(cat, thinsnap.Config{BaseImageSize: "64MiB"})
		if err != nil {
			cat.Close()
			return nil, nil, err
		}
		return sn, func() error {
			err := removeAll(context.Background(), sn)
			return errors.Join(err, sn.Close(), cat.Close())
		}, nil
	})
}

// removeAll removes every snapshot, children first.
func removeAll(ctx context.Context, sn *thinsnap.Snapshotter) error {
	for {
		var keys []string
		parents := map[string]bool{}
		if err := sn.Walk(ctx, func(ctx context.Context, in snapshots.Info) error {
			keys = append(keys, in.Name)
			parents[in.Parent] = true
			return nil
		}); err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		removed := 0
		for _, k := range keys {
			if parents[k] {
				continue
			}
			if err := sn.Remove(ctx, k); err != nil {
				return err
			}
			removed++
		}
		if removed == 0 {
			return fmt.Errorf("snapshots %q all have children", keys)
		}
	}
}

// TestIntegrationProxyUsage serves the snapshotter over containerd's
// snapshots gRPC API on a unix socket, as cmd/thinp-snapshotter does, and
// drives it through containerd's proxy client: a layer is written through
// its mount, committed, and its Usage read from the pool's metadata; a
// view of it is mounted read-only; a busy Remove is refused; Cleanup
// answers. It runs on an ext4 base and on an xfs one.
func TestIntegrationProxyUsage(t *testing.T) {
	testenv.Privileged(t)
	for _, fs := range []string{thinsnap.FSExt4, thinsnap.FSXFS} {
		t.Run(fs, func(t *testing.T) { proxyUsage(t, fs) })
	}
}

func proxyUsage(t *testing.T, fs string) {
	testenv.Tool(t, "mkfs."+fs)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	ctx := context.Background()
	ctl := thintest.Control(t)
	tp := thintest.NewPool(t, ctl, &thintest.Options{Name: prefix + "pool", DataSize: 512 << 20, MetaSize: 16 << 20})
	cat, err := catalog.Open(ctx, tp.Pool, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	// mkfs.xfs refuses file systems under 300 MB; the base is thin, so
	// its size costs nothing until written.
	sn, err := thinsnap.New(cat, thinsnap.Config{BaseImageSize: "512MiB", FSType: fs})
	if err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(t.TempDir(), "snap.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(sn))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); rpc.Serve(l) }()
	t.Cleanup(func() { rpc.Stop(); wg.Wait() })
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "thinp")

	ms, err := c.Prepare(ctx, "extract/layer-1", "")
	if err != nil {
		t.Fatalf("prepare: %+v", err)
	}
	mnt := t.TempDir()
	if err := mount.All(ms, mnt); err != nil {
		t.Fatal(err)
	}
	const written = 4 << 20
	werr := os.WriteFile(filepath.Join(mnt, "blob"), make([]byte, written), 0o644)
	if werr == nil {
		// Data reaches the thin device at sync; the pool maps it then.
		if f, err := os.Open(mnt); err == nil {
			werr = f.Sync()
			f.Close()
		}
	}
	// Remove of a mounted snapshot is refused (no AsyncRemove).
	if err := c.Remove(ctx, "extract/layer-1"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("remove of a mounted snapshot: %v, want failed precondition", err)
	}
	if err := mount.UnmountAll(mnt, 0); err != nil {
		t.Fatal(err)
	}
	if werr != nil {
		t.Fatal(werr)
	}
	u, err := c.Usage(ctx, "extract/layer-1")
	if err != nil {
		t.Fatalf("usage: %+v", err)
	}
	if u.Size < written || u.Size > written+16<<20 {
		t.Errorf("usage of a layer with %d bytes written: %d bytes", written, u.Size)
	}
	if err := c.Commit(ctx, "layer-1", "extract/layer-1"); err != nil {
		t.Fatalf("commit: %+v", err)
	}
	if v, err := cat.Get("committed/layer-1"); err != nil || v.State != catalog.Inactive {
		t.Fatalf("committed volume %+v, %v: want inactive", v, err)
	}
	if cu, err := c.Usage(ctx, "layer-1"); err != nil || cu != u {
		t.Errorf("usage after commit = %+v, %v; want %+v", cu, err, u)
	}
	ms, err = c.View(ctx, "view", "layer-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := mount.All(ms, mnt); err != nil {
		t.Fatal(err)
	}
	fi, serr := os.Stat(filepath.Join(mnt, "blob"))
	werr = os.WriteFile(filepath.Join(mnt, "other"), nil, 0o644)
	if err := mount.UnmountAll(mnt, 0); err != nil {
		t.Fatal(err)
	}
	if serr != nil || fi.Size() != written {
		t.Errorf("the view shows %v, %v; want the layer's %d-byte blob", fi, serr, written)
	}
	if werr == nil {
		t.Error("a write to the read-only view succeeded")
	}
	if vu, err := c.Usage(ctx, "view"); err != nil || vu.Size != 0 {
		t.Errorf("usage of an unwritten view = %+v, %v; want 0", vu, err)
	}
	if err := c.Remove(ctx, "layer-1"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("remove of a parent: %v, want failed precondition", err)
	}
	if err := c.(snapshots.Cleaner).Cleanup(ctx); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	for _, k := range []string{"view", "layer-1"} {
		if err := c.Remove(ctx, k); err != nil {
			t.Fatalf("remove %s: %+v", k, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if vs := cat.List(); len(vs) != 1 {
		t.Errorf("catalog holds %+v, want the base volume only", vs)
	}
}
