package metadata

import "iter"

// RefCountRun is a run of consecutive blocks with the same reference count.
type RefCountRun struct {
	// Begin is the first block of the run.
	Begin uint64
	// Len is the number of blocks, at least 1.
	Len uint64
	// Count is the reference count of each of them, at least 1.
	Count uint32
}

// indexEntry locates one bitmap block of a space map.
type indexEntry struct {
	block uint64
}

// DataRefCounts iterates over the data space map: runs of data blocks with
// the same nonzero reference count, in block order. A data block's count
// is the number of mappings, across all thin devices and the metadata
// snapshot, that point at it. The count is kept in two bits per block in
// bitmap blocks, and in the reference count btree when above 2. Through a
// metadata snapshot (which records no space maps) it yields ErrNoSpaceMap.
func (m *Metadata) DataRefCounts() iter.Seq2[RefCountRun, error] {
	return m.refCounts(false)
}

// MetadataRefCounts iterates over the metadata space map as DataRefCounts
// does over the data space map: runs of metadata blocks in use, with their
// reference counts (btree nodes shared between snapshots count more than
// once).
func (m *Metadata) MetadataRefCounts() iter.Seq2[RefCountRun, error] {
	return m.refCounts(true)
}

// DataRefCount returns the reference count of data block b.
func (m *Metadata) DataRefCount(b uint64) (uint32, error) {
	if m.snap {
		return 0, ErrNoSpaceMap
	}
	root := m.live.DataSpaceMap
	if b >= root.NrBlocks {
		return 0, corrupt(0, "superblock", "data block %d beyond the data space map's %d blocks", b, root.NrBlocks)
	}
	idx := b / entriesPerBitmap
	v, ok, err := m.lookup(root.BitmapRoot, indexEntrySize, idx)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, corrupt(root.BitmapRoot, "space map index", "no bitmap for entry %d", idx)
	}
	bm, err := m.readBitmap(le64(v))
	if err != nil {
		return 0, err
	}
	c := bitmapCount(bm, b%entriesPerBitmap)
	if c == 3 {
		return m.overflowCount(root.RefCountRoot, b)
	}
	return c, nil
}

func (m *Metadata) readBitmap(b uint64) ([]byte, error) {
	buf, err := m.readBlock(b, "bitmap")
	if err != nil {
		return nil, err
	}
	return buf, checkBitmap(buf, b)
}

func (m *Metadata) overflowCount(root, b uint64) (uint32, error) {
	v, ok, err := m.lookup(root, 4, b)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, corrupt(root, "reference count tree", "no count for block %d, whose bitmap says above 2", b)
	}
	c := le32(v)
	if c < 3 {
		return 0, corrupt(root, "reference count tree", "count %d for block %d, whose bitmap says above 2", c, b)
	}
	return c, nil
}

// indexEntries returns the bitmap blocks of a space map, in order.
// Their number is bounded by the space map's size (one per 16,320
// blocks); for the metadata space map, by the 255 entries of its index
// block.
func (m *Metadata) indexEntries(root SpaceMapRoot, meta bool) ([]indexEntry, error) {
	want := (root.NrBlocks + entriesPerBitmap - 1) / entriesPerBitmap
	if meta {
		if want > maxMetadataBitmap {
			return nil, corrupt(0, "superblock", "metadata space map of %d blocks needs more than %d bitmaps", root.NrBlocks, maxMetadataBitmap)
		}
		buf, err := m.readBlock(root.BitmapRoot, "index")
		if err != nil {
			return nil, err
		}
		if err := checkIndex(buf, root.BitmapRoot); err != nil {
			return nil, err
		}
		es := make([]indexEntry, want)
		for i := range es {
			es[i].block = le64(buf[16+indexEntrySize*i:])
		}
		return es, nil
	}
	// The data space map can be big: its index is a btree, checked to have
	// exactly the entries 0..want-1 before any is used.
	if want > m.nrBlocks {
		return nil, corrupt(0, "superblock", "data space map of %d blocks needs more bitmaps than the metadata device has blocks", root.NrBlocks)
	}
	es := make([]indexEntry, 0, min(want, 1024))
	var bad error
	err := m.walk(root.BitmapRoot, indexEntrySize, func(k uint64, v []byte) bool {
		if k != uint64(len(es)) || k >= want {
			bad = corrupt(root.BitmapRoot, "space map index", "unexpected index entry %d", k)
			return false
		}
		es = append(es, indexEntry{block: le64(v)})
		return true
	})
	if bad != nil {
		return nil, bad
	}
	if err != nil {
		return nil, err
	}
	if uint64(len(es)) != want {
		return nil, corrupt(root.BitmapRoot, "space map index", "%d index entries, want %d", len(es), want)
	}
	return es, nil
}

func (m *Metadata) refCounts(meta bool) iter.Seq2[RefCountRun, error] {
	return func(yield func(RefCountRun, error) bool) {
		if m.snap {
			yield(RefCountRun{}, ErrNoSpaceMap)
			return
		}
		root := m.live.DataSpaceMap
		if meta {
			root = m.live.MetadataSpaceMap
		}
		es, err := m.indexEntries(root, meta)
		if err != nil {
			yield(RefCountRun{}, err)
			return
		}
		var cur RefCountRun
		for i, e := range es {
			bm, err := m.readBitmap(e.block)
			if err != nil {
				yield(RefCountRun{}, err)
				return
			}
			base := uint64(i) * entriesPerBitmap
			n := min(uint64(entriesPerBitmap), root.NrBlocks-base)
			for j := uint64(0); j < n; j++ {
				c := bitmapCount(bm, j)
				if c == 3 {
					if c, err = m.overflowCount(root.RefCountRoot, base+j); err != nil {
						yield(RefCountRun{}, err)
						return
					}
				}
				b := base + j
				if cur.Len > 0 && c == cur.Count && b == cur.Begin+cur.Len {
					cur.Len++
					continue
				}
				if cur.Len > 0 && !yield(cur, nil) {
					return
				}
				cur = RefCountRun{}
				if c != 0 {
					cur = RefCountRun{Begin: b, Len: 1, Count: c}
				}
			}
		}
		if cur.Len > 0 {
			yield(cur, nil)
		}
	}
}
