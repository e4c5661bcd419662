package thin

import (
	"strconv"
	"strings"

	"github.com/thinp/thinp/dm"
)

// Target type names.
const (
	PoolTargetType = "thin-pool"
	ThinTargetType = "thin"
)

// PoolSpec is a thin-pool table:
//
//	thin-pool <metadata dev> <data dev> <block size> <low water mark> [<#features> <feature>...]
//
// Params formats it exactly as the kernel prints the loaded table
// (DM_TABLE_STATUS with DM_STATUS_TABLE_FLAG, `dmsetup table`): devices
// as major:minor, the feature count always present, the features in the
// kernel's order, each followed by a space. ParsePoolSpec reads that text
// back, so ParsePoolSpec(s.Params()) == s for any s with a zero Length.
type PoolSpec struct {
	Metadata dm.Dev // the metadata device
	Data     dm.Dev // the data device

	// BlockSize is the data block size: a multiple of 128 sectors from
	// 128 (64 KiB) to 2097152 (1 GiB), fixed for the pool's lifetime.
	BlockSize dm.Sectors

	// LowWaterMark: when free data space falls to this many blocks, the
	// kernel raises a device-mapper event (once until the next resume).
	// It must be below the pool's size in blocks.
	LowWaterMark DataBlocks

	// Length is the pool target's length: how much of the data device
	// the pool uses. It is not part of the parameters; it is the table
	// line's length. Zero in CreatePool means the whole data device,
	// rounded down to whole blocks.
	Length dm.Sectors

	// Features. The kernel takes at most four of them at once.
	SkipBlockZeroing  bool // do not zero newly provisioned blocks
	IgnoreDiscard     bool // disable discard support (fixed once the pool is loaded)
	NoDiscardPassdown bool // process discards but do not pass them to the data device
	ReadOnly          bool // allow no metadata changes (only on a pool used read-write before)
	ErrorIfNoSpace    bool // fail I/O at once when out of data space instead of queueing
}

// maxPoolFeatures is how many feature arguments the kernel accepts
// (parse_pool_features: {0, 4, "Invalid number of pool feature arguments"}).
const maxPoolFeatures = 4

// Feature names, in the order the kernel prints them.
var poolFeatureNames = [...]string{"skip_block_zeroing", "ignore_discard", "no_discard_passdown", "read_only", "error_if_no_space"}

func (s *PoolSpec) featureFlags() [5]*bool {
	return [5]*bool{&s.SkipBlockZeroing, &s.IgnoreDiscard, &s.NoDiscardPassdown, &s.ReadOnly, &s.ErrorIfNoSpace}
}

// features counts the feature arguments s sets.
func (s PoolSpec) features() int {
	n := 0
	for _, f := range s.featureFlags() {
		if *f {
			n++
		}
	}
	return n
}

// Params formats the thin-pool parameters exactly as the kernel prints the
// loaded table, trailing space included: "253:0 253:1 128 0 1 skip_block_zeroing ".
func (s PoolSpec) Params() string {
	b := make([]byte, 0, 96)
	b = appendDev(b, s.Metadata)
	b = append(b, ' ')
	b = appendDev(b, s.Data)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(s.BlockSize), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(s.LowWaterMark), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(s.features()), 10)
	b = append(b, ' ')
	for i, f := range s.featureFlags() {
		if *f {
			b = append(b, poolFeatureNames[i]...)
			b = append(b, ' ')
		}
	}
	return string(b)
}

func appendDev(b []byte, d dm.Dev) []byte {
	b = strconv.AppendUint(b, uint64(d.Major), 10)
	b = append(b, ':')
	return strconv.AppendUint(b, uint64(d.Minor), 10)
}

// String is Params.
func (s PoolSpec) String() string { return s.Params() }

// Target is the pool's table line: one thin-pool target of s.Length sectors.
func (s PoolSpec) Target() dm.Target {
	return dm.Target{Start: 0, Length: s.Length, Type: PoolTargetType, Params: s.Params()}
}

// Table is the pool's table: the pool is a singleton target.
func (s PoolSpec) Table() dm.Table { return dm.Table{s.Target()} }

// DataBlocks is the pool's size in data blocks, as the kernel counts it
// from Length (whole blocks only).
func (s PoolSpec) DataBlocks() DataBlocks { return DataBlocksIn(s.Length, s.BlockSize) }

// Validate checks s as the kernel would, and a little more: both devices
// given, distinct and representable; the block size a multiple of 128 in
// [128, 2097152]; at most four features; and, when Length is set, at
// least one whole block with the low water mark below the number of blocks.
func (s PoolSpec) Validate() error {
	if err := validateDev("metadata device", s.Metadata); err != nil {
		return err
	}
	if err := validateDev("data device", s.Data); err != nil {
		return err
	}
	if s.Metadata == s.Data {
		return dm.Invalid("data device", "the metadata and data devices must differ")
	}
	if err := ValidateBlockSize(s.BlockSize); err != nil {
		return err
	}
	if n := s.features(); n > maxPoolFeatures {
		return dm.Invalid("features", "the kernel takes at most 4 feature arguments, not %d", n)
	}
	if s.Length != 0 {
		if s.Length > maxSize {
			return dm.Invalid("length", "too large (a negative size?)")
		}
		blocks := s.DataBlocks()
		if blocks == 0 {
			return dm.Invalid("length", "%d sectors is less than one block of %d", s.Length, s.BlockSize)
		}
		if s.LowWaterMark >= blocks {
			return dm.Invalid("low water mark", "%d blocks is not below the pool's %d blocks", s.LowWaterMark, blocks)
		}
	}
	return nil
}

// ValidateBlockSize checks a data block size as the kernel does: a
// multiple of 128 sectors from 128 to 2097152.
func ValidateBlockSize(bs dm.Sectors) error {
	if bs < MinBlockSize || bs > MaxBlockSize || bs%MinBlockSize != 0 {
		return dm.Invalid("block size", "%d sectors is not a multiple of 128 from 128 to 2097152", bs)
	}
	return nil
}

func validateDev(field string, d dm.Dev) error {
	if d.IsZero() {
		return dm.Invalid(field, "not set")
	}
	if d.Valid() != nil {
		return dm.Invalid(field, "%s is not a device the kernel can have", d)
	}
	return nil
}

// ParsePoolSpec parses thin-pool parameters as the kernel prints them (or
// as a table being loaded gives them): devices as major:minor, block size,
// low water mark, then optionally the feature count and features, in any
// order and case. The result's Length is zero: use PoolSpecFromTable to
// keep the table line's length.
func ParsePoolSpec(params string) (PoolSpec, error) {
	const what = "pool table"
	var s PoolSpec
	f := fields{s: params}
	var tok [4]string
	for i := range tok {
		t, ok := f.next()
		if !ok {
			return PoolSpec{}, syntaxErr(what, params, "want <metadata dev> <data dev> <block size> <low water mark>")
		}
		tok[i] = t
	}
	var err error
	if s.Metadata, err = dm.ParseDev(tok[0]); err != nil {
		return PoolSpec{}, syntaxErr(what, params, "metadata device is not major:minor")
	}
	if s.Data, err = dm.ParseDev(tok[1]); err != nil {
		return PoolSpec{}, syntaxErr(what, params, "data device is not major:minor")
	}
	bs, ok := parseUint(tok[2])
	if !ok {
		return PoolSpec{}, syntaxErr(what, params, "block size is not a number")
	}
	s.BlockSize = dm.Sectors(bs)
	lwm, ok := parseUint(tok[3])
	if !ok {
		return PoolSpec{}, syntaxErr(what, params, "low water mark is not a number")
	}
	s.LowWaterMark = DataBlocks(lwm)
	t, ok := f.next()
	if !ok {
		return s, nil
	}
	n, ok := parseUint(t)
	if !ok || n > uint64(len(poolFeatureNames)) {
		return PoolSpec{}, syntaxErr(what, params, "bad feature count")
	}
	flags := s.featureFlags()
	for i := uint64(0); i < n; i++ {
		t, ok := f.next()
		if !ok {
			return PoolSpec{}, syntaxErr(what, params, "fewer features than counted")
		}
		known := false
		for j, name := range poolFeatureNames {
			if strings.EqualFold(t, name) {
				*flags[j], known = true, true
				break
			}
		}
		if !known {
			return PoolSpec{}, syntaxErr(what, params, "unknown feature "+strconv.Quote(t))
		}
	}
	if _, ok := f.next(); ok {
		return PoolSpec{}, syntaxErr(what, params, "more arguments than counted")
	}
	return s, nil
}

// PoolSpecFromTable reads a pool's spec, Length included, from its table,
// which must be a single thin-pool target starting at sector 0 (otherwise
// the error matches ErrNotPool).
func PoolSpecFromTable(t dm.Table) (PoolSpec, error) {
	if len(t) != 1 || t[0].Type != PoolTargetType || t[0].Start != 0 {
		return PoolSpec{}, &notPoolError{table: t}
	}
	s, err := ParsePoolSpec(t[0].Params)
	if err != nil {
		return PoolSpec{}, err
	}
	s.Length = t[0].Length
	return s, nil
}

type notPoolError struct{ table dm.Table }

func (e *notPoolError) Error() string {
	switch {
	case len(e.table) == 0:
		return "no live table"
	case len(e.table) > 1:
		return strconv.Itoa(len(e.table)) + " targets, a thin-pool has one"
	}
	return "target type " + strconv.Quote(e.table[0].Type) + ", not thin-pool"
}

func (e *notPoolError) Is(target error) bool { return target == ErrNotPool }

// ThinSpec is a thin target's parameters:
//
//	thin <pool dev> <dev id> [<external origin dev>]
//
// Params formats them exactly as the kernel prints the loaded table, and
// ParseThinSpec(s.Params()) == s. The pool stores no size for thin
// devices: the size is the table line's length, chosen at each activation.
type ThinSpec struct {
	Pool dm.Dev   // the pool device
	ID   DeviceID // the thin device's id in the pool
	// ExternalOrigin, if not zero, is a read-only device supplying the
	// contents of blocks the thin device has not written. Every snapshot
	// of such a device must be activated with the same origin.
	ExternalOrigin dm.Dev
}

// Params formats s as the kernel prints it: "253:2 1" or "253:2 1 8:16".
func (s ThinSpec) Params() string {
	b := make([]byte, 0, 40)
	b = appendDev(b, s.Pool)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(s.ID), 10)
	if !s.ExternalOrigin.IsZero() {
		b = append(b, ' ')
		b = appendDev(b, s.ExternalOrigin)
	}
	return string(b)
}

// String is Params.
func (s ThinSpec) String() string { return s.Params() }

// Target is a thin table line of size sectors.
func (s ThinSpec) Target(size dm.Sectors) dm.Target {
	return dm.Target{Start: 0, Length: size, Type: ThinTargetType, Params: s.Params()}
}

// Validate checks s: a pool device, an id below 2^24, and an external
// origin, if any, that is not the pool.
func (s ThinSpec) Validate() error {
	if err := validateDev("pool device", s.Pool); err != nil {
		return err
	}
	if err := validateID("device id", s.ID); err != nil {
		return err
	}
	if !s.ExternalOrigin.IsZero() {
		if err := validateDev("external origin", s.ExternalOrigin); err != nil {
			return err
		}
		if s.ExternalOrigin == s.Pool {
			return dm.Invalid("external origin", "the origin cannot be the pool")
		}
	}
	return nil
}

func validateID(field string, id DeviceID) error {
	if !id.Valid() {
		return dm.Invalid(field, "%d does not fit 24 bits (at most 16777215)", id)
	}
	return nil
}

// ParseThinSpec parses thin parameters, "<pool dev> <dev id> [<origin dev>]".
func ParseThinSpec(params string) (ThinSpec, error) {
	const what = "thin table"
	f := fields{s: params}
	var tok [4]string
	n := 0
	for n < len(tok) {
		t, ok := f.next()
		if !ok {
			break
		}
		tok[n] = t
		n++
	}
	if n < 2 || n > 3 {
		return ThinSpec{}, syntaxErr(what, params, "want <pool dev> <dev id> [<external origin dev>]")
	}
	var s ThinSpec
	var err error
	if s.Pool, err = dm.ParseDev(tok[0]); err != nil {
		return ThinSpec{}, syntaxErr(what, params, "pool device is not major:minor")
	}
	id, ok := parseUint(tok[1])
	if !ok || id > uint64(MaxDeviceID) {
		return ThinSpec{}, syntaxErr(what, params, "device id is not a number below 2^24")
	}
	s.ID = DeviceID(id)
	if n == 3 {
		if s.ExternalOrigin, err = dm.ParseDev(tok[2]); err != nil || s.ExternalOrigin.IsZero() {
			return ThinSpec{}, syntaxErr(what, params, "external origin is not major:minor")
		}
	}
	return s, nil
}

// fields walks the space-separated fields of a line without allocating.
type fields struct{ s string }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (f *fields) next() (string, bool) {
	i := 0
	for i < len(f.s) && isSpace(f.s[i]) {
		i++
	}
	if i == len(f.s) {
		f.s = ""
		return "", false
	}
	j := i
	for j < len(f.s) && !isSpace(f.s[j]) {
		j++
	}
	t := f.s[i:j]
	f.s = f.s[j:]
	return t, true
}

// count is how many fields are left.
func (f fields) count() int {
	n := 0
	for {
		if _, ok := f.next(); !ok {
			return n
		}
		n++
	}
}

// parseUint parses a decimal number of digits only, as the kernel prints
// %llu, without allocating.
func parseUint(s string) (uint64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (^uint64(0)-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
