// Package size parses and prints byte counts for the example programs'
// flags and reports.
package size

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// units are the suffixes Parse accepts. The binary ones (K, KiB, M, MiB,
// ...) count powers of 1024, as lvm and losetup do; the SI ones (kB, MB, GB,
// TB) count powers of 1000, as docker info prints them.
var units = map[string]uint64{
	"": 1, "b": 1, "B": 1,
	"k": 1 << 10, "K": 1 << 10, "Ki": 1 << 10, "KiB": 1 << 10,
	"m": 1 << 20, "M": 1 << 20, "Mi": 1 << 20, "MiB": 1 << 20,
	"g": 1 << 30, "G": 1 << 30, "Gi": 1 << 30, "GiB": 1 << 30,
	"t": 1 << 40, "T": 1 << 40, "Ti": 1 << 40, "TiB": 1 << 40,
	"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
}

// SplitNumber splits s into its leading whole number and the rest, trimmed.
func SplitNumber(s string) (uint64, string, error) {
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

// Parse reads a byte count: a whole number with an optional unit, "64MiB",
// "1G", "512k", "2GB", "1048576".
func Parse(s string) (uint64, error) {
	n, unit, err := SplitNumber(s)
	if err != nil {
		return 0, fmt.Errorf("%w (want a size such as 64MiB, 1G, 2GB)", err)
	}
	mult, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q (want B, K/KiB, M/MiB, G/GiB, T/TiB, or kB/MB/GB/TB)", s, unit)
	}
	hi, lo := bits.Mul64(n, mult)
	if hi != 0 || lo > math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return lo, nil
}

// Flag is a flag.Value holding a byte count written with Parse's units.
type Flag struct{ N uint64 }

// String prints the value with IEC.
func (f *Flag) String() string {
	if f == nil {
		return ""
	}
	return IEC(f.N)
}

// Set parses s with Parse.
func (f *Flag) Set(s string) error {
	n, err := Parse(s)
	if err != nil {
		return err
	}
	f.N = n
	return nil
}

// IEC formats a byte count in binary units, exactly: in the largest unit
// with up to two decimals ("64MiB", "1.5GiB"), or else as a whole number of
// the largest unit that divides it ("1025KiB").
func IEC(n uint64) string {
	names := [...]string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(names)-1 {
		f /= 1024
		i++
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if dot := strings.IndexByte(s, '.'); dot < 0 || len(s)-dot-1 <= 2 {
		return s + names[i]
	}
	v, i := n, 0
	for v != 0 && v%1024 == 0 && i < len(names)-1 {
		v /= 1024
		i++
	}
	return strconv.FormatUint(v, 10) + names[i]
}

// Human formats a byte count as docker info did (go-units HumanSize): four
// significant digits and SI units, "65.54 kB", "1.074 GB".
func Human(n uint64) string {
	names := [...]string{"B", "kB", "MB", "GB", "TB", "PB", "EB"}
	v := float64(n)
	i := 0
	for v >= 1000 && i < len(names)-1 {
		v /= 1000
		i++
	}
	return strconv.FormatFloat(v, 'g', 4, 64) + " " + names[i]
}
