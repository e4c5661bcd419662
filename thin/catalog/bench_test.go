package catalog_test

import (
	"fmt"
	"testing"

	"github.com/thinp/thinp/thin/catalog"
)

// BenchmarkCreateDelete is one Create and one Delete on the fake kernel
// with n other volumes in the catalog. The catalog's own share (two
// journal writes, one fdatasync, its maps) does not grow with n; the fake
// kernel's metadata space accounting walks every thin on each message and
// does, so a profile, not the total, shows the catalog's part.
func BenchmarkCreateDelete(b *testing.B) {
	for _, n := range []int{0, 1000, 3000} {
		b.Run(fmt.Sprint("volumes=", n), func(b *testing.B) {
			w := newWorld(b, catalog.WithMinFreeSpace(0))
			c := w.open()
			defer c.Close()
			for i := 0; i < n; i++ {
				if _, err := c.Create(w.ctx, fmt.Sprint("v", i), 2048); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Create(w.ctx, "x", 2048); err != nil {
					b.Fatal(err)
				}
				if err := c.Delete(w.ctx, "x"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
