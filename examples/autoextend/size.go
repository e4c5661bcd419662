package main

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// sizeUnits are the suffixes parseSize accepts. The binary ones (K, KiB,
// M, MiB, ...) count powers of 1024, as lvm and losetup do; the SI ones
// (kB, MB, GB, TB) count powers of 1000.
var sizeUnits = map[string]uint64{
	"": 1, "b": 1, "B": 1,
	"k": 1 << 10, "K": 1 << 10, "Ki": 1 << 10, "KiB": 1 << 10,
	"m": 1 << 20, "M": 1 << 20, "Mi": 1 << 20, "MiB": 1 << 20,
	"g": 1 << 30, "G": 1 << 30, "Gi": 1 << 30, "GiB": 1 << 30,
	"t": 1 << 40, "T": 1 << 40, "Ti": 1 << 40, "TiB": 1 << 40,
	"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
}

// splitNumber splits s into its leading whole number and the rest.
func splitNumber(s string) (uint64, string, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, "", fmt.Errorf("%q does not start with a whole number", s)
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("%q: %w", s, err)
	}
	return n, strings.TrimSpace(s[i:]), nil
}

// parseSize reads a byte count: a whole number with an optional unit,
// "64MiB", "1G", "512k", "2GB", "1048576".
func parseSize(s string) (uint64, error) {
	n, unit, err := splitNumber(s)
	if err != nil {
		return 0, fmt.Errorf("%w (want a size such as 64MiB, 1G, 2GB)", err)
	}
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q (want B, K/KiB, M/MiB, G/GiB, T/TiB, or kB/MB/GB/TB)", s, unit)
	}
	hi, lo := bits.Mul64(n, mult)
	if hi != 0 || lo > math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return lo, nil
}

// sizeFlag is a flag.Value holding a byte count written with parseSize's
// units.
type sizeFlag struct{ n uint64 }

func (f *sizeFlag) String() string {
	if f == nil {
		return ""
	}
	return iecSize(f.n)
}

func (f *sizeFlag) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	f.n = n
	return nil
}

// iecSize formats a byte count in binary units, exactly: in the largest
// unit with up to two decimals ("64MiB", "1.5GiB"), or else as a whole
// number of the largest unit that divides it ("1025KiB").
func iecSize(n uint64) string {
	units := [...]string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if dot := strings.IndexByte(s, '.'); dot < 0 || len(s)-dot-1 <= 2 {
		return s + units[i]
	}
	v, i := n, 0
	for v != 0 && v%1024 == 0 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return strconv.FormatUint(v, 10) + units[i]
}

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
	n, unit, err := splitNumber(s)
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
		b, err := parseSize(s)
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
