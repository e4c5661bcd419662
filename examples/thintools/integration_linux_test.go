package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/loop"
	"github.com/thinp/thinp/thin"
)

// TestIntegrationKernelPools runs a random workload on a pool the kernel
// writes (creates, snapshots of active origins and of snapshots, writes,
// discards, deletes), then compares thintools with thin_dump, thin_ls and
// thin_delta byte for byte: live through reserve_metadata_snap's held
// root, and offline after the pool is torn down.
func TestIntegrationKernelPools(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	ctx := context.Background()
	ctl, err := dm.Open(dm.WithUdevTimeout(2 * time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	attach := func(size int64) *loop.Device {
		d, err := loop.Attach(ctx, testenv.SparseFile(t, size), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Detach(ctx); d.Close() })
		return d
	}
	meta, data := attach(8<<20), attach(64<<20)
	pool, err := thin.CreatePool(ctx, ctl, prefix+"pool", thin.PoolSpec{Metadata: meta.Dev(), Data: data.Dev(), BlockSize: 128},
		thin.FormatMetadata(), thin.WithMetadataPath(meta.Path()))
	if err != nil {
		t.Fatalf("%+v", err)
	}
	torn := false
	t.Cleanup(func() {
		if !torn {
			pool.Teardown(ctx)
		}
	})

	const bs = 64 << 10
	rng := rand.New(rand.NewPCG(16, 16))
	vols := map[thin.DeviceID]*thin.Volume{}
	var ids []thin.DeviceID
	next := thin.DeviceID(1)
	buf := bytes.Repeat([]byte{0x5a}, 8*bs)
	for op := 0; op < 40; op++ {
		switch r := rng.IntN(10); {
		case len(ids) == 0 || r == 0:
			if err := pool.CreateThin(ctx, next); err != nil {
				t.Fatalf("create_thin: %+v", err)
			}
			v, err := pool.Activate(ctx, prefix+"v"+strconv.Itoa(int(next)), next, 32<<20>>9)
			if err != nil {
				t.Fatalf("activate: %+v", err)
			}
			vols[next], ids = v, append(ids, next)
			next++
		case r <= 2:
			origin := ids[rng.IntN(len(ids))]
			if err := pool.CreateSnapshot(ctx, next, origin); err != nil {
				t.Fatalf("create_snap: %+v", err)
			}
			v, err := pool.Activate(ctx, prefix+"v"+strconv.Itoa(int(next)), next, 32<<20>>9)
			if err != nil {
				t.Fatalf("activate: %+v", err)
			}
			vols[next], ids = v, append(ids, next)
			next++
		case r <= 7:
			v := vols[ids[rng.IntN(len(ids))]]
			f, err := os.OpenFile(v.DevPath(), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			n := 1 + rng.IntN(8)
			if _, err := f.WriteAt(buf[:n*bs], int64(rng.IntN(500))*bs); err != nil {
				t.Fatal(err)
			}
			f.Sync()
			if r == 7 { // discard a range
				rg := [2]uint64{uint64(rng.IntN(500)) * bs, uint64(1+rng.IntN(16)) * bs}
				discard(t, f, rg)
			}
			f.Close()
		case len(ids) > 1:
			k := rng.IntN(len(ids))
			id := ids[k]
			if err := vols[id].Deactivate(ctx); err != nil {
				t.Fatalf("deactivate: %+v", err)
			}
			if err := pool.Delete(ctx, id); err != nil {
				t.Fatalf("delete: %+v", err)
			}
			delete(vols, id)
			ids = append(ids[:k], ids[k+1:]...)
		}
	}
	cmds := func(snap bool) [][]string {
		m := []string{}
		if snap {
			m = []string{"-m"}
		}
		cs := [][]string{
			append([]string{"thin_dump"}, m...),
			append([]string{"thin_ls", "-o", allFields}, m...),
		}
		for k := 0; k+1 < len(ids) && k < 4; k++ {
			cs = append(cs, append([]string{"thin_delta", "--verbose", "--snap1", strconv.Itoa(int(ids[k])), "--snap2", strconv.Itoa(int(ids[k+1]))}, m...))
		}
		return cs
	}
	compare := func(snap bool) {
		t.Helper()
		for _, c := range cmds(snap) {
			args := append(append([]string(nil), c[1:]...), meta.Path())
			want, err := exec.Command(testenv.Tool(t, c[0]), args...).Output()
			if err != nil {
				t.Fatalf("%s %v: %v", c[0], args, err)
			}
			got, stderr, code := runTool(append([]string{c[0]}, args...)...)
			if code != 0 || got != string(want) {
				t.Fatalf("%s %v: exit %d %s\n%s", c[0], args, code, stderr, cmp.Diff(string(want), got))
			}
			t.Logf("%s %v: %d bytes identical", c[0], args, len(want))
		}
	}
	if err := pool.ReserveMetadataSnap(ctx); err != nil {
		t.Fatalf("%+v", err)
	}
	compare(true)
	if err := pool.ReleaseMetadataSnap(ctx); err != nil {
		t.Fatalf("%+v", err)
	}
	for _, v := range vols {
		if err := v.Deactivate(ctx); err != nil {
			t.Fatalf("%+v", err)
		}
	}
	if err := pool.Teardown(ctx); err != nil {
		t.Fatalf("%+v", err)
	}
	torn = true
	compare(false)
	testenv.ThinCheck(t, meta.Path())
}

// discard issues BLKDISCARD for the byte range rg (offset, length).
func discard(t *testing.T, f *os.File, rg [2]uint64) {
	t.Helper()
	if err := ioctlPtr(f, unix.BLKDISCARD, &rg); err != nil {
		t.Logf("BLKDISCARD: %v", err)
	}
}
