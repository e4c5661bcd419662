package thinsnap_test

// The crash test of the snapshotter, on the catalog's crash harness
// (internal/crashtest): a child process serves as the snapshotter, doing
// random Prepares, Views, Commits and Removes and writing files through
// the mounts of its active snapshots, and is SIGKILLed at random instants.
// Run it alone with
//
//	go run ./internal/vm/cmd/vmrun test -run TestIntegrationCrash ./examples/snapshotter/...

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/examples/snapshotter/thinsnap"
	"github.com/thinp/thinp/internal/crashtest"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/thin/catalog"
	"github.com/thinp/thinp/thin/thintest"
)

func TestMain(m *testing.M) {
	crashtest.Child(snapChild)
	os.Exit(m.Run())
}

// crashConfig is the snapshotter's configuration in the crash test.
func crashConfig(pool, dir string) thinsnap.Config {
	return thinsnap.Config{PoolName: pool, RootPath: dir, BaseImageSize: "64MiB"}
}

// mountRoot is where the child mounts its active snapshots to write to
// them; the test unmounts what a killed child left there.
func mountRoot(pool string) string { return filepath.Join(os.TempDir(), pool+"-mnt") }

// snapModel is the snapshotter's state as Walk reports it: name to kind.
func snapModel(t *testing.T, sn *thinsnap.Snapshotter) crashtest.Model {
	m := crashtest.Model{}
	if err := sn.Walk(context.Background(), func(_ context.Context, in snapshots.Info) error {
		m[in.Name] = strings.ToLower(in.Kind.String())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

// applySnap is the model after a logged operation that took effect.
func applySnap(m crashtest.Model, typ, a, b string) crashtest.Model {
	n := m.Clone()
	switch typ {
	case "prepare":
		n[a] = "active"
	case "view":
		n[a] = "view"
	case "commit":
		n[a] = "committed"
		delete(n, b)
	case "remove":
		delete(n, a)
	}
	return n
}

// snapChild is the workload the crash test kills.
func snapChild(e *crashtest.ChildEnv) int {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(e.Seed, 11))
	sn, err := thinsnap.Open(ctx, crashConfig(e.Pool, e.Dir))
	if err != nil {
		e.Say("fatal %v", err)
		return 2
	}
	mnt := mountRoot(e.Pool)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		e.Say("fatal %v", err)
		return 2
	}
	e.Say("ready")
	for seq := 0; ; seq++ {
		byKind := map[string][]string{}
		n := 0
		sn.Walk(ctx, func(_ context.Context, in snapshots.Info) error {
			k := strings.ToLower(in.Kind.String())
			byKind[k] = append(byKind[k], in.Name)
			n++
			return nil
		})
		pick := func(k string) string { return byKind[k][rng.IntN(len(byKind[k]))] }
		parent := func() string {
			if len(byKind["committed"]) == 0 || rng.IntN(4) == 0 {
				return ""
			}
			return pick("committed")
		}
		key := fmt.Sprintf("s%d-%d", e.Seed, seq)
		r := rng.IntN(100)
		switch {
		case n < 3 || r < 25 && n < 20:
			p := parent()
			e.Op(seq, "prepare", key, p, func() error { _, err := sn.Prepare(ctx, key, p); return err })
		case r < 35:
			p := parent()
			e.Op(seq, "view", key, p, func() error { _, err := sn.View(ctx, key, p); return err })
		case r < 42 && n < 18:
			// Containers starting at once: prepares of one parent from
			// several goroutines, overlapping in the kernel.
			p := parent()
			var wg sync.WaitGroup
			for j := 0; j < 3; j++ {
				k := fmt.Sprintf("s%d-%d", e.Seed, seq+j)
				wg.Add(1)
				go func(seq int) {
					defer wg.Done()
					e.Op(seq, "prepare", k, p, func() error { _, err := sn.Prepare(ctx, k, p); return err })
				}(seq + j)
			}
			wg.Wait()
			seq += 2
		case r < 55 && len(byKind["active"]) > 0:
			k := pick("active")
			e.Op(seq, "commit", key, k, func() error { return sn.Commit(ctx, key, k) })
		case r < 80:
			var all []string
			for _, ks := range byKind {
				all = append(all, ks...)
			}
			k := all[rng.IntN(len(all))]
			e.Op(seq, "remove", k, "", func() error { return sn.Remove(ctx, k) })
		case len(byKind["active"]) > 0:
			// Not an operation: what containerd does with an active
			// snapshot, mount it and write a layer's files.
			ms, err := sn.Mounts(ctx, pick("active"))
			if err != nil {
				continue
			}
			if err := mount.All(ms, mnt); err != nil {
				continue
			}
			os.WriteFile(filepath.Join(mnt, key), make([]byte, 256<<10), 0o644)
			unix.Sync()
			mount.UnmountAll(mnt, 0)
		}
	}
}

// TestIntegrationCrash kills the snapshotter 100 times during Prepare,
// View, Commit and Remove (and while a snapshot is mounted); the first ten
// kills mostly interrupt the making of the base volume. After each
// kill the snapshotter is opened again: Walk shows the state before or
// after the interrupted operation, the interrupted snapshot (if it exists
// and is not committed) mounts, every committed snapshot is inactive, and
// the catalog, the pool's metadata (catalog.Check, thin_ls) and the
// kernel's devices agree.
func TestIntegrationCrash(t *testing.T) {
	testenv.Privileged(t)
	testenv.Tool(t, "mkfs.ext4")
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	ctl := thintest.Control(t)
	tp := thintest.NewPool(t, ctl, &thintest.Options{Name: prefix + "pool", DataSize: 512 << 20, MetaSize: 16 << 20})
	r := crashtest.NewRig(t, ctl, tp)
	mnt := mountRoot(tp.Name())
	t.Cleanup(func() { os.Remove(mnt) })
	ctx := context.Background()
	m := crashtest.Model{}
	tally := map[string]int{}
	n := crashtest.Kills(100)
	for i := 0; i < n; i++ {
		if i == n/10 {
			// The first kills land mostly in the making of the base volume
			// (mkfs and its root readied), slower under TCG and udev than
			// the kill window: make it now, so that the rest land in the
			// snapshot calls.
			sn, err := thinsnap.Open(ctx, crashConfig(tp.Name(), r.Dir))
			if err != nil {
				t.Fatalf("open: %+v", err)
			}
			if _, err := sn.View(ctx, "warm", ""); err != nil {
				t.Fatalf("view of the base: %+v", err)
			}
			if err := sn.Remove(ctx, "warm"); err != nil {
				t.Fatal(err)
			}
			if err := sn.Close(); err != nil {
				t.Fatal(err)
			}
		}
		lines := r.RunChild(i, 1500*time.Millisecond, nil)
		// containerd unmounts what it mounted; the killed child cannot.
		if err := mount.UnmountAll(mnt, 0); err != nil {
			t.Fatalf("unmount %s: %v", mnt, err)
		}
		before, open := r.Interrupted(m, lines, applySnap)
		sn, err := thinsnap.Open(ctx, crashConfig(tp.Name(), r.Dir))
		if err != nil {
			t.Fatalf("open after kill %d: %+v", i+1, err)
		}
		got := snapModel(t, sn)
		tally["interrupted "+r.Settled(got, before, open, applySnap)]++
		for _, op := range open {
			if got[op[1]] != "active" && got[op[1]] != "view" {
				continue
			}
			ms, err := sn.Mounts(ctx, op[1])
			if err != nil || len(ms) != 1 {
				t.Fatalf("kill %d during %v: mounts of %s: %v, %+v", i+1, open, op[1], ms, err)
			}
			if _, err := os.Stat(ms[0].Source); err != nil {
				t.Fatalf("kill %d during %v: mount source: %v", i+1, open, err)
			}
		}
		for _, v := range sn.Catalog().List() {
			if strings.HasPrefix(v.Key, "committed/") && v.State != catalog.Inactive {
				t.Fatalf("kill %d during %v: committed snapshot %s is still active", i+1, open, v.Key)
			}
		}
		r.Verify(sn.Catalog())
		m = got
		if err := sn.Close(); err != nil {
			t.Fatal(err)
		}
	}
	r.Log(tally)
	sn, err := thinsnap.Open(ctx, crashConfig(tp.Name(), r.Dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := removeAll(ctx, sn); err != nil {
		t.Fatalf("remove every snapshot: %+v", err)
	}
	// What is left is the base volume, unless the last kill came after
	// an unformatted base was deleted and before it was made again.
	cat := sn.Catalog()
	vs := cat.List()
	if len(vs) > 1 || len(vs) == 1 && vs[0].Key != "base" {
		t.Errorf("after removing every snapshot the catalog holds %+v, want the base volume at most", vs)
	}
	r.Verify(cat)
	for _, v := range vs {
		if err := cat.Delete(ctx, v.Key); err != nil {
			t.Fatal(err)
		}
	}
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
}
