package catalog_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/thin"
	"github.com/thinp/thinp/thin/catalog"
	"github.com/thinp/thinp/thin/thintest"
)

// TestIntegrationScale fills a catalog with THINP_CATALOG_SCALE volumes
// (1000 by default; 10000 for the figures in the package's notes), a
// tenth of them active, and logs what users wait for: a create at the
// start and at the end, Open (which checks every active volume's device),
// Check (the pool's metadata read through, and its devices), List, and
// the heap the open catalog holds. Figures only; nothing is timed against
// a limit.
func TestIntegrationScale(t *testing.T) {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("THINP_CATALOG_SCALE")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	ctl := thintest.Control(t)
	tp := thintest.NewPool(t, ctl, &thintest.Options{Name: prefix + "pool", DataSize: 1 << 30, MetaSize: 128 << 20})
	dir := t.TempDir()
	c, err := catalog.Open(ctx, tp.Pool, dir)
	if err != nil {
		t.Fatal(err)
	}
	timeCreate := func(i int) time.Duration {
		t0 := time.Now()
		if _, err := c.Create(ctx, fmt.Sprint("vol-", i), thin.Size(16*thin.MiB)); err != nil {
			t.Fatalf("create %d: %+v", i, err)
		}
		return time.Since(t0)
	}
	var first, last time.Duration
	for i := 0; i < n; i++ {
		d := timeCreate(i)
		if i < 100 {
			first += d
		}
		if i >= n-100 {
			last += d
		}
		if i%10 == 0 {
			if _, err := c.Activate(ctx, fmt.Sprint("vol-", i)); err != nil {
				t.Fatalf("activate %d: %+v", i, err)
			}
		}
	}
	t.Logf("scale: %d volumes (%d active): create %.2f ms each over the first 100, %.2f ms over the last 100",
		n, (n+9)/10, ms(first)/100, ms(last)/100)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	t0 := time.Now()
	c, err = catalog.Open(ctx, tp.Pool, dir)
	if err != nil {
		t.Fatal(err)
	}
	open := time.Since(t0)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	heap := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	t0 = time.Now()
	r, err := c.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check := time.Since(t0)
	if !r.Clean() {
		t.Fatalf("check: %+v", r)
	}
	t0 = time.Now()
	vols := c.List()
	list := time.Since(t0)
	if len(vols) != n {
		t.Fatalf("list: %d volumes, want %d", len(vols), n)
	}
	t.Logf("scale: %d volumes: open %.1f ms, check %.1f ms, list %.2f ms, heap of the open catalog %.1f MiB (%.0f bytes a volume)",
		n, ms(open), ms(check), ms(list), float64(heap)/(1<<20), float64(heap)/float64(n))

	t0 = time.Now()
	for _, v := range vols {
		if err := c.Delete(ctx, v.Key); err != nil {
			t.Fatalf("delete %s: %+v", v.Key, err)
		}
	}
	t.Logf("scale: delete %d volumes: %.2f ms each", n, ms(time.Since(t0))/float64(n))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
