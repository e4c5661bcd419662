package metadata

import (
	"bytes"
	"encoding/binary"
	"errors"
	"iter"
	"os"
	"testing"
)

// seal sets a block's checksum for the given xor, so fuzzed blocks get
// past the checksum to the checks behind it.
func seal(b []byte, xor uint32) {
	binary.LittleEndian.PutUint32(b, checksum(b, xor))
}

func fuzzBlock(data []byte) []byte {
	b := make([]byte, BlockSize)
	copy(b, data)
	return b
}

// FuzzSuperblock: DecodeSuperblock never panics, and what it accepts is
// self-consistent.
func FuzzSuperblock(f *testing.F) {
	img, err := os.ReadFile("testdata/pool.img")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(img[:BlockSize], true)
	f.Add(img[len(img)-BlockSize:], false)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, data []byte, reseal bool) {
		b := fuzzBlock(data)
		loc := le64(b[8:])
		if reseal {
			seal(b, superblockCsumXor)
		}
		sb, err := DecodeSuperblock(b, loc)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
			return
		}
		if sb.Magic != SuperblockMagic || sb.Block != loc || sb.Version < 1 || sb.Version > 2 || sb.MetadataNrBlocks == 0 {
			t.Fatalf("accepted %+v", sb)
		}
		if !reseal && sb.Checksum != checksum(b, superblockCsumXor) {
			t.Fatal("accepted a bad checksum")
		}
		// Open must cope with anything DecodeSuperblock accepts at block 0.
		if loc == 0 {
			md, err := Open(bytes.NewReader(b), Options{})
			if err == nil {
				exercise(md, 1000)
			}
		}
	})
}

// FuzzNode: node decoding never panics nor reads outside the block, and
// what it accepts has its entries inside the block in key order.
func FuzzNode(f *testing.F) {
	img, err := os.ReadFile("testdata/pool.img")
	if err != nil {
		f.Fatal(err)
	}
	for b := 1; b*BlockSize < len(img); b++ {
		f.Add(img[b*BlockSize:(b+1)*BlockSize], true, uint8(8))
	}
	f.Fuzz(func(t *testing.T, data []byte, reseal bool, vs uint8) {
		b := fuzzBlock(data)
		loc := le64(b[8:])
		if reseal {
			seal(b, btreeCsumXor)
		}
		leaf, nr, err := DecodeNodeHeader(b, loc)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
		} else if nr < 0 || nr > (BlockSize-nodeHeaderSize)/8 {
			t.Fatalf("accepted %d entries (leaf %v)", nr, leaf)
		}
		n, err := decodeNode(b, loc, int(vs))
		if err != nil {
			return
		}
		var prev uint64
		for i := 0; i < n.nr; i++ {
			k := n.key(i)
			if i > 0 && k <= prev {
				t.Fatal("accepted keys out of order")
			}
			prev = k
			if v := n.value(i); len(v) != n.valueSize {
				t.Fatal("short value")
			}
		}
		// Bitmaps and index blocks share the fuzzed bytes.
		if checkBitmap(b, loc) == nil {
			for i := uint64(0); i < entriesPerBitmap; i += 97 {
				if c := bitmapCount(b, i); c > 3 {
					t.Fatal("count above 3")
				}
			}
		}
		_ = checkIndex(b, loc)
	})
}

// mutate applies a mutation program to an image: each 8-byte step flips
// bits, writes a 32-bit value, points a 64-bit field at another block
// (cycles, shared nodes, wrong kinds) or truncates the image; the block's
// checksum is then recomputed for its kind unless the step's top bit says
// not to, so most mutations reach the checks behind the checksums.
func mutate(img, prog []byte) []byte {
	img = append([]byte(nil), img...)
	for len(prog) >= 8 && len(img) >= BlockSize {
		st := prog[:8]
		prog = prog[8:]
		nb := len(img) / BlockSize
		blk := int(st[1]) % nb
		off := int(binary.LittleEndian.Uint16(st[2:])) % BlockSize
		b := img[blk*BlockSize : (blk+1)*BlockSize]
		xor, known := kindOf(b)
		switch st[0] & 3 {
		case 0:
			b[off] ^= st[4] | 1
		case 1:
			off &^= 3
			copy(b[off:], st[4:8])
		case 2:
			off &^= 7
			if off+8 <= BlockSize {
				v := uint64(st[4]) % uint64(nb+2)
				if st[5]&1 == 1 {
					v = binary.LittleEndian.Uint64(append(st[4:8:8], 0, 0, 0, 0)) << (st[5] >> 2 & 31)
				}
				binary.LittleEndian.PutUint64(b[off:], v)
			}
		case 3:
			n := blk*BlockSize + off
			if n < BlockSize {
				n = BlockSize
			}
			img = img[:n]
			continue
		}
		if known && st[0]&0x80 == 0 {
			seal(b, xor)
		}
	}
	return img
}

// kindOf finds which checksum xor a block's checksum was made with.
func kindOf(b []byte) (uint32, bool) {
	for _, x := range []uint32{superblockCsumXor, btreeCsumXor, bitmapCsumXor, indexCsumXor} {
		if checksum(b, x) == le32(b) {
			return x, true
		}
	}
	return 0, false
}

// exercise calls every reading method, stopping each iteration after max
// items, and checks that errors are typed.
func exercise(md *Metadata, max int) error {
	var first error
	note := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	var ids []uint32
	n := 0
	for d, err := range md.Devices() {
		if note(err); err != nil || n >= max {
			break
		}
		ids = append(ids, d.ID)
		n++
	}
	for id, err := range md.MappedDevices() {
		if note(err); err != nil {
			break
		}
		_ = id
	}
	for _, id := range ids {
		_, err := md.Device(id)
		note(err)
		n := 0
		for _, err := range md.Mappings(id) {
			if note(err); err != nil || n >= max {
				break
			}
			n++
		}
	}
	if len(ids) > 0 {
		n := 0
		for _, err := range md.Diff(ids[0], ids[len(ids)-1]) {
			if note(err); err != nil || n >= max {
				break
			}
			n++
		}
	}
	_, err := md.Usage()
	note(err)
	for _, f := range []func() iter.Seq2[RefCountRun, error]{md.DataRefCounts, md.MetadataRefCounts} {
		n := 0
		for _, err := range f() {
			if note(err); err != nil || n >= max {
				break
			}
			n++
		}
	}
	_, err = md.DataRefCount(5)
	note(err)
	return first
}

func checkErr(t *testing.T, err error) {
	t.Helper()
	var re *ReadError
	if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNoDevice) && !errors.Is(err, ErrNoSpaceMap) && !errors.Is(err, ErrNoMetadataSnap) && !errors.As(err, &re) {
		t.Fatalf("untyped error %T: %v", err, err)
	}
}

// FuzzImage mutates a whole metadata image (testdata/pool.img) and reads
// everything from it, live and through its metadata snapshot: no panic,
// no endless loop, only typed errors.
func FuzzImage(f *testing.F) {
	img, err := os.ReadFile("testdata/pool.img")
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{})
	f.Add([]byte{2, 7, 40, 0, 7, 0, 0, 0})                            // a mapping tree pointer to itself
	f.Add([]byte{1, 0, 88, 1, 255, 255, 255, 255})                    // absurd data block size
	f.Add([]byte{3, 9, 0, 0, 0, 0, 0, 0})                             // truncated
	f.Add([]byte{0x80, 6, 100, 0, 1, 0, 0, 0})                        // bad checksum
	f.Add([]byte{1, 7, 16, 0, 255, 0, 0, 0})                          // nr_entries 255
	f.Add([]byte{2, 0, 64, 0, 1, 1, 0, 0, 2, 0, 80, 0, 200, 0, 0, 0}) // space map roots elsewhere
	f.Fuzz(func(t *testing.T, prog []byte) {
		m := mutate(img, prog)
		for _, snap := range []bool{false, true} {
			md, err := Open(bytes.NewReader(m), Options{MetadataSnap: snap})
			if err != nil {
				checkErr(t, err)
				continue
			}
			checkErr(t, exercise(md, 100000))
		}
	})
}

// TestFuzzSeedsCatchDamage: the hand-written mutations of FuzzImage are
// detected, as the right kind of error.
func TestFuzzSeedsCatchDamage(t *testing.T) {
	img, err := os.ReadFile("testdata/pool.img")
	if err != nil {
		t.Fatal(err)
	}
	md, err := Open(bytes.NewReader(img), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := exercise(md, 1<<30); err != nil {
		t.Fatalf("intact image: %v", err)
	}
	root := md.Superblock().DataMappingRoot
	cases := []struct {
		name string
		prog []byte
		want error
	}{
		{"bad checksum", []byte{0x80, byte(root), 100, 0, 1, 0, 0, 0}, ErrChecksum},
		{"truncated", []byte{3, byte(root), 0, 0, 0, 0, 0, 0}, ErrTruncated},
		{"not metadata", []byte{1, 0, 32, 0, 1, 2, 3, 4}, ErrNotMetadata},
		{"nr_entries too big", []byte{1, byte(root), 16, 0, 255, 1, 0, 0}, ErrCorrupt},
		{"cycle", []byte{2, byte(root), 40, 0, byte(root), 0, 0, 0, 1, byte(root), 4, 0, 1, 0, 0, 0}, ErrCorrupt},
	}
	for _, c := range cases {
		m := mutate(img, c.prog)
		md, err := Open(bytes.NewReader(m), Options{})
		if err == nil {
			err = exercise(md, 1<<30)
		}
		if !errors.Is(err, c.want) || !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
			continue
		}
		var ce *CorruptError
		if !errors.As(err, &ce) {
			t.Errorf("%s: %T is not a *CorruptError", c.name, err)
		}
		t.Logf("%s: %v", c.name, err)
	}
}
