package metadata

import (
	"errors"
	"io"
)

// readBlock reads metadata block b, refusing blocks past the metadata
// device's size as the superblock records it.
func (m *Metadata) readBlock(b uint64, kind string) ([]byte, error) {
	if m.nrBlocks != 0 && b >= m.nrBlocks {
		return nil, corrupt(b, kind, "beyond the metadata device's %d blocks", m.nrBlocks)
	}
	if b > (1<<63-1)/BlockSize {
		return nil, corrupt(b, kind, "block number out of range")
	}
	buf := make([]byte, BlockSize)
	n, err := m.r.ReadAt(buf, int64(b)*BlockSize)
	if n == BlockSize {
		return buf, nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, &CorruptError{Block: b, Kind: kind, Reason: "beyond the end of the input", Err: ErrTruncated}
	}
	return nil, &ReadError{Block: b, Err: err}
}

// ReadError is an I/O error from the io.ReaderAt.
type ReadError struct {
	// Block is the metadata block being read.
	Block uint64
	// Err is the reader's error.
	Err error
}

// Error implements error.
func (e *ReadError) Error() string {
	return "thin metadata: reading block " + utoa(e.Block) + ": " + e.Err.Error()
}

// Unwrap returns the reader's error.
func (e *ReadError) Unwrap() error { return e.Err }

// readNode reads and validates a btree node.
func (m *Metadata) readNode(b uint64, valueSize int) (node, error) {
	buf, err := m.readBlock(b, "btree node")
	if err != nil {
		return node{}, err
	}
	return decodeNode(buf, b, valueSize)
}

// walk visits, in key order, every leaf entry of the btree rooted at root
// whose leaves hold values of valueSize bytes. visit returns false to
// stop early. Every key must lie in [lo, hi) of its parent's key range, so
// revisited nodes (cycles, nodes shared within one tree) are reported as
// corruption; depth is bounded by maxTreeDepth. walk returns errStop if
// visit stopped it.
func (m *Metadata) walk(root uint64, valueSize int, visit func(key uint64, value []byte) bool) error {
	return m.walkNode(root, valueSize, 0, 0, ^uint64(0), true, visit)
}

var errStop = errors.New("stop")

func (m *Metadata) walkNode(b uint64, valueSize, depth int, lo, hi uint64, hiOpen bool, visit func(uint64, []byte) bool) error {
	if depth >= maxTreeDepth {
		return corrupt(b, "btree node", "btree deeper than %d levels (a cycle?)", maxTreeDepth)
	}
	n, err := m.readNode(b, valueSize)
	if err != nil {
		return err
	}
	if n.nr > 0 {
		first, last := n.key(0), n.key(n.nr-1)
		if first < lo || (!hiOpen && last >= hi) {
			return corrupt(b, "btree node", "keys %d..%d outside the parent's range %d..%d", first, last, lo, hi)
		}
	}
	if n.leaf() {
		for i := 0; i < n.nr; i++ {
			if !visit(n.key(i), n.value(i)) {
				return errStop
			}
		}
		return nil
	}
	if n.nr == 0 {
		return corrupt(b, "btree node", "internal node with no entries")
	}
	for i := 0; i < n.nr; i++ {
		clo, chi, cOpen := n.key(i), hi, hiOpen
		if i+1 < n.nr {
			chi, cOpen = n.key(i+1), false
		}
		if err := m.walkNode(n.value64(i), valueSize, depth+1, clo, chi, cOpen, visit); err != nil {
			return err
		}
	}
	return nil
}

// lookup finds key in the btree rooted at root; ok is false if it is
// absent.
func (m *Metadata) lookup(root uint64, valueSize int, key uint64) (value []byte, ok bool, err error) {
	b := root
	for depth := 0; ; depth++ {
		if depth >= maxTreeDepth {
			return nil, false, corrupt(b, "btree node", "btree deeper than %d levels (a cycle?)", maxTreeDepth)
		}
		n, err := m.readNode(b, valueSize)
		if err != nil {
			return nil, false, err
		}
		// The last entry whose key is <= key.
		lo, hi := 0, n.nr
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if n.key(mid) <= key {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		i := lo - 1
		if n.leaf() {
			if i >= 0 && n.key(i) == key {
				return n.value(i), true, nil
			}
			return nil, false, nil
		}
		if i < 0 {
			return nil, false, nil
		}
		b = n.value64(i)
	}
}
