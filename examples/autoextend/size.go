package main

import (
	"fmt"
	"math"
	"math/bits"
	"strings"

	"github.com/thinp/thinp/examples/internal/size"
)

// threshold is the -threshold flag: free data space at or below which the
// pool grows, as a percentage of its size, a number of blocks, or a size.
type threshold struct {
	set     bool
	percent uint64 // when kind == "%"
	blocks  uint64 // when kind == "blocks"
	bytes   uint64 // when kind == "bytes"
	kind    string // "%", "blocks" or "bytes"
	text    string
}

func (t *threshold) String() string {
	if t == nil || !t.set {
		return ""
	}
	return t.text
}

func (t *threshold) Set(s string) error {
	n, unit, err := size.SplitNumber(s)
	if err != nil {
		return fmt.Errorf("%w (want a percentage such as 20%%, a number of blocks, or a size such as 64MiB)", err)
	}
	nt := threshold{set: true, text: strings.TrimSpace(s)}
	switch unit {
	case "%":
		if n >= 100 {
			return fmt.Errorf("%q: a percentage below 100 is needed", s)
		}
		nt.kind, nt.percent = "%", n
	case "", "blocks", "block":
		nt.kind, nt.blocks = "blocks", n
	default:
		b, err := size.Parse(s)
		if err != nil {
			return err
		}
		nt.kind, nt.bytes = "bytes", b
	}
	*t = nt
	return nil
}

// inBlocks is the threshold in blocks of blockBytes for a pool of total
// blocks, rounded up.
func (t threshold) inBlocks(total, blockBytes uint64) uint64 {
	switch t.kind {
	case "%":
		hi, lo := bits.Mul64(total, t.percent)
		if hi != 0 {
			return math.MaxUint64
		}
		return (lo + 99) / 100
	case "blocks":
		return t.blocks
	case "bytes":
		return (t.bytes + blockBytes - 1) / blockBytes
	}
	return 0
}
