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
// (kB, MB, GB, TB) count powers of 1000, as the report prints them.
var sizeUnits = map[string]uint64{
	"": 1, "b": 1, "B": 1,
	"k": 1 << 10, "K": 1 << 10, "Ki": 1 << 10, "KiB": 1 << 10,
	"m": 1 << 20, "M": 1 << 20, "Mi": 1 << 20, "MiB": 1 << 20,
	"g": 1 << 30, "G": 1 << 30, "Gi": 1 << 30, "GiB": 1 << 30,
	"t": 1 << 40, "T": 1 << 40, "Ti": 1 << 40, "TiB": 1 << 40,
	"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
}

// parseSize reads a byte count: a whole number with an optional unit,
// "64MiB", "1G", "512k", "2GB", "1048576".
func parseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q is not a size (want a whole number with an optional unit: 64MiB, 1G, 2GB)", s)
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	unit := strings.TrimSpace(s[i:])
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

// humanSize formats a byte count as docker info did (go-units HumanSize):
// four significant digits and SI units, "65.54 kB", "1.074 GB".
func humanSize(n uint64) string {
	units := [...]string{"B", "kB", "MB", "GB", "TB", "PB", "EB"}
	v := float64(n)
	i := 0
	for v >= 1000 && i < len(units)-1 {
		v /= 1000
		i++
	}
	return strconv.FormatFloat(v, 'g', 4, 64) + " " + units[i]
}

// iecSize formats a byte count exactly, in the largest binary unit that
// divides it: "64MiB", "1GiB", "1000B". Flags print their defaults so.
func iecSize(n uint64) string {
	units := [...]string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := 0
	for n != 0 && n%1024 == 0 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return strconv.FormatUint(n, 10) + units[i]
}
