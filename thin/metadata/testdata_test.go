package metadata_test

import (
	"os"
	"testing"

	gen "github.com/thinp/thinp/thin/metadata/metadatatest"
)

// TestWriteTestdata rebuilds testdata/pool.img, the small image the
// examples and fuzz targets use, when THINP_WRITE_TESTDATA=1: a pool
// restored with thin_restore, cut after its last block in use, plus one
// zero block that then holds a metadata snapshot.
func TestWriteTestdata(t *testing.T) {
	if os.Getenv("THINP_WRITE_TESTDATA") != "1" {
		t.Skip("set THINP_WRITE_TESTDATA=1 to rebuild testdata/pool.img")
	}
	p := &gen.Pool{Time: 2, TID: 7, Version: 2, BlockSize: 128, NrData: 1024, MetaSize: 16 << 20, Devs: []gen.Dev{
		{ID: 1, TID: 3, CTime: 0, STime: 1, Mapped: 12, Maps: []gen.Map{{V: 0, D: 0, Len: 8, T: 0}, {V: 8, D: 20, Len: 4, T: 1}}},
		{ID: 2, TID: 4, CTime: 1, STime: 1, Mapped: 10, Maps: []gen.Map{{V: 0, D: 0, Len: 8, T: 0}, {V: 9, D: 30, Len: 2, T: 1}}},
		{ID: 3, TID: 6, CTime: 2, STime: 2, Mapped: 0},
		{ID: 7, TID: 7, CTime: 2, STime: 2, Mapped: 300, Maps: []gen.Map{{V: 1000, D: 100, Len: 300, T: 2}}},
	}}
	img := p.Restore(t, t.TempDir(), "pool")
	md := openImage(t, img, false)
	var last uint64
	for r, err := range md.MetadataRefCounts() {
		if err != nil {
			t.Fatal(err)
		}
		last = r.Begin + r.Len - 1
	}
	if err := os.Truncate(img, int64(last+2)*4096); err != nil {
		t.Fatal(err)
	}
	gen.AddHeldRoot(t, img)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("testdata/pool.img", b, 0o644); err != nil {
		t.Fatal(err)
	}
}
