package metadata_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/thinp/thinp/thin/metadata"
	gen "github.com/thinp/thinp/thin/metadata/metadatatest"
)

// corpusImages is how many random pools TestCorpus restores and reads back.
const corpusImages = 200

// TestCorpus generates random pools as thin_dump XML, restores them with
// thin_restore and reads them back: the superblock, devices, mappings,
// reference counts, usage and diffs must equal the model, thin_dump's
// output must equal the XML the model produced, and thin_ls's counts must
// equal Usage.
func TestCorpus(t *testing.T) {
	start := time.Now()
	dir := t.TempDir()
	tools := map[string]string{}
	for _, n := range []string{"thin_restore", "thin_dump", "thin_ls"} {
		tools[n] = gen.Tool(t, n)
	}
	n := corpusImages
	if testing.Short() {
		n = 40
	}
	dumpCmd := []string{"thin_dump", "IMG"}
	lsCmd := []string{"thin_ls", "--no-headers", "-o", "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS", "IMG"}
	var stats struct{ devs, maps, v1, v2, held int }
	for im := range gen.Corpus(tools, dir, n, func(int, *gen.Pool) [][]string { return [][]string{dumpCmd, lsCmd} }, nil) {
		i, p, img := im.Index, im.Pool, im.Path
		if im.Err != nil {
			t.Fatal(im.Err)
		}
		var want bytes.Buffer
		p.WriteXML(&want)
		if out := im.Out[gen.Key(dumpCmd)]; !bytes.Equal(out, want.Bytes()) {
			t.Fatalf("pool %d: thin_dump differs from the model's XML:\n%s", i, cmp.Diff(want.String(), string(out)))
		}
		if im.Held != 0 {
			checkPool(t, i, img, p, true)
			stats.held++
		}
		checkPool(t, i, img, p, false)
		checkLs(t, i, img, string(im.Out[gen.Key(lsCmd)]))
		os.Remove(img)
		stats.devs += len(p.Devs)
		for _, d := range p.Devs {
			stats.maps += int(d.Mapped)
		}
		if p.Version == 1 {
			stats.v1++
		} else {
			stats.v2++
		}
	}
	t.Logf("%d images (%d version 1, %d version 2, %d with a metadata snapshot), %d devices, %d mappings, in %v",
		n, stats.v1, stats.v2, stats.held, stats.devs, stats.maps, time.Since(start).Round(time.Millisecond))
}

func openImage(t *testing.T, img string, snap bool) *metadata.Metadata {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	md, err := metadata.Open(f, metadata.Options{MetadataSnap: snap})
	if err != nil {
		t.Fatalf("%s: %v", img, err)
	}
	return md
}

func checkPool(t *testing.T, i int, img string, p *gen.Pool, snap bool) {
	t.Helper()
	md := openImage(t, img, snap)
	sb := md.Superblock()
	got := [6]uint64{uint64(sb.Time), sb.TransactionID, uint64(sb.Flags), uint64(sb.Version), uint64(sb.DataBlockSize), md.NrDataBlocks()}
	want := [6]uint64{uint64(p.Time), p.TID, uint64(p.Flags), uint64(p.Version), uint64(p.BlockSize), p.NrData}
	if got != want {
		t.Fatalf("pool %d (snap %v): superblock time, tid, flags, version, block size, data blocks = %v, want %v", i, snap, got, want)
	}
	if sb.NeedsCheck() != (p.Flags&1 != 0) {
		t.Fatalf("pool %d: NeedsCheck() = %v with flags %d", i, sb.NeedsCheck(), p.Flags)
	}
	if md.Snapshot() != snap || (snap && sb.Block != md.Live().HeldRoot) {
		t.Fatalf("pool %d: Snapshot() = %v, block %d, held root %d", i, md.Snapshot(), sb.Block, md.Live().HeldRoot)
	}
	devs, err := md.DeviceList()
	if err != nil {
		t.Fatalf("pool %d: %v", i, err)
	}
	if len(devs) != len(p.Devs) {
		t.Fatalf("pool %d: %d devices, want %d", i, len(devs), len(p.Devs))
	}
	var ids []uint32
	for id, err := range md.MappedDevices() {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if len(ids) != len(devs) {
		t.Fatalf("pool %d: %d mapped devices, %d devices", i, len(ids), len(devs))
	}
	for j, d := range devs {
		w := p.Devs[j]
		if d != (metadata.Device{ID: w.ID, MappedBlocks: w.Mapped, TransactionID: w.TID, CreationTime: w.CTime, SnapshottedTime: w.STime}) {
			t.Fatalf("pool %d: device %+v, want %+v", i, d, w)
		}
		if one, err := md.Device(d.ID); err != nil || one != d {
			t.Fatalf("pool %d: Device(%d) = %+v, %v", i, d.ID, one, err)
		}
		k := 0
		for m, err := range md.Mappings(d.ID) {
			if err != nil {
				t.Fatalf("pool %d dev %d: %v", i, d.ID, err)
			}
			if k >= len(w.Maps) || (m != metadata.Mapping{VBegin: w.Maps[k].V, DBegin: w.Maps[k].D, Len: w.Maps[k].Len, Time: w.Maps[k].T}) {
				t.Fatalf("pool %d dev %d: mapping %d = %+v, want %+v", i, d.ID, k, m, w.Maps[min(k, len(w.Maps)-1)])
			}
			k++
		}
		if k != len(w.Maps) {
			t.Fatalf("pool %d dev %d: %d mappings, want %d", i, d.ID, k, len(w.Maps))
		}
	}
	if _, err := md.Device(1<<24 + 5); !errors.Is(err, metadata.ErrNoDevice) {
		t.Fatalf("pool %d: Device of a missing id: %v", i, err)
	}
	for _, err := range md.Mappings(1<<24 + 5) {
		if !errors.Is(err, metadata.ErrNoDevice) {
			t.Fatalf("pool %d: Mappings of a missing id: %v", i, err)
		}
	}

	// Reference counts.
	counts := p.RefCounts()
	if snap {
		for _, err := range md.DataRefCounts() {
			if !errors.Is(err, metadata.ErrNoSpaceMap) {
				t.Fatalf("pool %d: DataRefCounts through a snapshot: %v", i, err)
			}
		}
	} else {
		got := make([]uint32, len(counts))
		var allocated uint64
		for r, err := range md.DataRefCounts() {
			if err != nil {
				t.Fatalf("pool %d: %v", i, err)
			}
			for b := r.Begin; b < r.Begin+r.Len; b++ {
				got[b] = r.Count
			}
			allocated += r.Len
		}
		if !slices.Equal(counts, got) {
			t.Fatalf("pool %d: data reference counts differ (-want +got):\n%s", i, cmp.Diff(counts, got))
		}
		if allocated != md.Live().DataSpaceMap.NrAllocated {
			t.Fatalf("pool %d: %d data blocks in use, space map says %d", i, allocated, md.Live().DataSpaceMap.NrAllocated)
		}
		for _, b := range []uint64{0, p.NrData / 2, p.NrData - 1} {
			if c, err := md.DataRefCount(b); err != nil || c != counts[b] {
				t.Fatalf("pool %d: DataRefCount(%d) = %d, %v; want %d", i, b, c, err, counts[b])
			}
		}
		// thin_restore's metadata space map root may count a block it freed
		// at the end (thin_check accepts that), so check what must be in
		// use instead: the superblock and every tree root.
		live := md.Live()
		inUse := map[uint64]bool{}
		for r, err := range md.MetadataRefCounts() {
			if err != nil {
				t.Fatalf("pool %d: %v", i, err)
			}
			for b := r.Begin; b < r.Begin+r.Len; b++ {
				inUse[b] = true
			}
		}
		for _, b := range []uint64{0, live.DataMappingRoot, live.DeviceDetailsRoot, live.DataSpaceMap.BitmapRoot, live.DataSpaceMap.RefCountRoot, live.MetadataSpaceMap.BitmapRoot, live.MetadataSpaceMap.RefCountRoot} {
			if !inUse[b] {
				t.Fatalf("pool %d: metadata block %d is in use but has count 0", i, b)
			}
		}
		if n := uint64(len(inUse)); n > live.MetadataSpaceMap.NrAllocated || n+2 < live.MetadataSpaceMap.NrAllocated {
			t.Fatalf("pool %d: %d metadata blocks in use, space map says %d", i, n, live.MetadataSpaceMap.NrAllocated)
		}
	}

	// Usage: exclusive blocks are those only one mapping points at.
	us, err := md.Usage()
	if err != nil {
		t.Fatalf("pool %d: %v", i, err)
	}
	for j, u := range us {
		w := p.Devs[j]
		var excl uint64
		for _, m := range w.Maps {
			for b := m.D; b < m.D+m.Len; b++ {
				if counts[b] == 1 {
					excl++
				}
			}
		}
		if u != (metadata.Usage{ID: w.ID, Mapped: w.Mapped, Exclusive: excl, Shared: w.Mapped - excl}) {
			t.Fatalf("pool %d: usage %+v, want exclusive %d", i, u, excl)
		}
	}

	// Diffs: every block's classification must match the model's.
	if len(p.Devs) > 0 {
		for k := 0; k < 3; k++ {
			a, b := p.Devs[(i+k)%len(p.Devs)], p.Devs[(i*7+k*3)%len(p.Devs)]
			checkDiff(t, i, md, a, b)
		}
	}
}

func expand(d gen.Dev) map[uint64]uint64 {
	m := map[uint64]uint64{}
	for _, r := range d.Maps {
		for k := uint64(0); k < r.Len; k++ {
			m[r.V+k] = r.D + k
		}
	}
	return m
}

func checkDiff(t *testing.T, i int, md *metadata.Metadata, a, b gen.Dev) {
	t.Helper()
	la, lb := expand(a), expand(b)
	seen := 0
	var last uint64
	first := true
	for d, err := range md.Diff(a.ID, b.ID) {
		if err != nil {
			t.Fatalf("pool %d: Diff(%d, %d): %v", i, a.ID, b.ID, err)
		}
		if d.Len == 0 || (!first && d.VBegin < last) {
			t.Fatalf("pool %d: Diff(%d, %d): bad range %+v after %d", i, a.ID, b.ID, d, last)
		}
		first, last = false, d.VBegin+d.Len
		for k := uint64(0); k < d.Len; k++ {
			v := d.VBegin + k
			x, okx := la[v]
			y, oky := lb[v]
			var kind metadata.DeltaKind
			switch {
			case okx && oky && x == y:
				kind = metadata.Same
			case okx && oky:
				kind = metadata.Different
			case okx:
				kind = metadata.LeftOnly
			case oky:
				kind = metadata.RightOnly
			default:
				t.Fatalf("pool %d: Diff(%d, %d) reports unmapped block %d", i, a.ID, b.ID, v)
			}
			if kind != d.Kind || (okx && x != d.LeftData+k) || (oky && kind != metadata.Same && y != d.RightData+k) {
				t.Fatalf("pool %d: Diff(%d, %d): block %d in %+v, model %v %d %d", i, a.ID, b.ID, v, d, kind, x, y)
			}
			seen++
		}
	}
	union := len(la)
	for v := range lb {
		if _, ok := la[v]; !ok {
			union++
		}
	}
	if seen != union {
		t.Fatalf("pool %d: Diff(%d, %d) covers %d blocks, the devices map %d", i, a.ID, b.ID, seen, union)
	}
}

func checkLs(t *testing.T, i int, img string, out string) {
	t.Helper()
	md := openImage(t, img, false)
	us, err := md.Usage()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, u := range us {
		fmt.Fprintf(&b, "%d %d %d %d\n", u.ID, u.Mapped, u.Exclusive, u.Shared)
	}
	var norm strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		for k := range f {
			if _, err := strconv.ParseUint(f[k], 10, 64); err != nil {
				t.Fatalf("pool %d: thin_ls line %q", i, line)
			}
		}
		norm.WriteString(strings.Join(f, " ") + "\n")
	}
	if b.String() != norm.String() {
		t.Fatalf("pool %d: Usage differs from thin_ls:\n%s", i, cmp.Diff(norm.String(), b.String()))
	}
}
