package thin

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/dm/dmtest"
)

// fakeSysfs mirrors the fake kernel's holders of pool into a directory
// tree laid out as sysfs: dev/block/MAJ:MIN/{dm/name,holders/dm-N}. Each
// call makes the tree match, adding and removing entries as the kernel
// would.
func fakeSysfs(t *testing.T, e *env, root string, pool dm.Dev, name string) func() {
	t.Helper()
	dir := filepath.Join(root, "dev/block", pool.String())
	writeFile(t, filepath.Join(dir, "dm/name"), name+"\n")
	if err := os.MkdirAll(filepath.Join(dir, "holders"), 0o755); err != nil {
		t.Fatal(err)
	}
	links := map[string]uint64{}
	return func() {
		t.Helper()
		want := map[string]uint64{}
		for _, h := range e.k.Holders(pool.Major, pool.Minor) {
			want[h.Name] = h.Link
		}
		for n, l := range links {
			if want[n] != l {
				os.Remove(filepath.Join(dir, "holders", n))
				delete(links, n)
			}
		}
		for n, l := range want {
			if _, ok := links[n]; !ok {
				if err := os.Symlink(fmt.Sprintf("../../%s", n), filepath.Join(dir, "holders", n)); err != nil {
					t.Fatal(err)
				}
				links[n] = l
			}
		}
		// kernfs stamps the directory with the precise time of each
		// change; a disk filesystem may use a coarser clock, so stamp it
		// as kernfs would.
		now := time.Now()
		if err := os.Chtimes(filepath.Join(dir, "holders"), now, now); err != nil {
			t.Fatal(err)
		}
	}
}

// The real sysfs reader (getdents64, stat, utimensat) on a directory
// tree: it finds an origin another tool activated after the holders were
// first listed, because the directory's times move with its entries, as
// kernfs's do once set.
func TestSysfsHolders(t *testing.T) {
	e := newEnv(t)
	root := t.TempDir()
	writeFile(t, root+"/dev/block/7:1/size", fmt.Sprintf("%d\n", dataSectors))
	ctl, err := dmtest.NewControl(e.k, dm.WithRemoveRetry(0), dm.WithSysDir(root))
	ok(t, err)
	defer ctl.Close()
	p, err := CreatePool(e.ctx, ctl, "pool", e.spec())
	ok(t, err)
	sync := fakeSysfs(t, e, root, p.Dev(), "pool")
	ctx := e.ctx
	for id := DeviceID(1); id <= 2; id++ {
		ok(t, p.CreateThin(ctx, id))
	}
	mine, err := p.Activate(ctx, "mine", 1, 4096)
	ok(t, err)
	sync()
	ok(t, p.CreateSnapshot(ctx, 10, 1)) // lists, reads and trusts "mine"
	if !p.holders.watched || !p.holders.haveStamp || len(p.holders.m) != 1 {
		t.Fatalf("holder cache not set up from the tree: watched %v, stamped %v, %d trusted", p.holders.watched, p.holders.haveStamp, len(p.holders.m))
	}
	seen := e.suspendedAtSnap("mine", "other")
	ok(t, p.CreateSnapshot(ctx, 11, 1))
	if got := (*seen)[0]; !got["mine"] {
		t.Errorf("cached origin not suspended: %v", got)
	}
	// Another tool activates thin id 2.
	_, err = e.ctl.Create(ctx, "other", dm.Table{ThinSpec{Pool: p.Dev(), ID: 2}.Target(4096)})
	ok(t, err)
	sync()
	*seen = nil
	ok(t, p.CreateSnapshot(ctx, 12, 2))
	if got := (*seen)[0]; !got["other"] || got["mine"] {
		t.Errorf("suspended during create_snap of id 2: %v, want only other", got)
	}
	ok(t, mine.Deactivate(ctx))
	ok(t, e.ctl.Remove(ctx, dm.Name("other")))
	sync()
	vols, err := p.Volumes(ctx)
	ok(t, err)
	if len(vols) != 0 {
		t.Errorf("volumes %v", vols)
	}
	ok(t, p.Teardown(ctx))
}
