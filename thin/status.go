package thin

import (
	"context"
	"strconv"
	"strings"

	"github.com/thinp/thinp/dm"
)

// PoolMode is the state a pool reports in its status: a working mode (rw,
// ro, out_of_data_space) with the usage figures, or one of the whole-line
// forms Fail and Error, which carry nothing else.
type PoolMode uint8

// Pool modes.
const (
	// ModeUnknown: the kernel printed no mode (old kernels).
	ModeUnknown PoolMode = iota
	// ModeReadWrite ("rw"): the pool works normally.
	ModeReadWrite
	// ModeReadOnly ("ro"): no metadata changes: the read_only feature, a
	// metadata error, needs_check, or metadata space exhausted. Messages
	// fail with EOPNOTSUPP.
	ModeReadOnly
	// ModeOutOfDataSpace ("out_of_data_space"): writes needing new blocks
	// are queued (or fail, with error_if_no_space). Messages still work,
	// so deleting devices can free space.
	ModeOutOfDataSpace
	// ModeFail ("Fail"): the pool fails all I/O; only a repair helps.
	ModeFail
	// ModeError ("Error"): the kernel could not read the pool's metadata
	// to build the status line.
	ModeError
)

var modeNames = [...]string{"unknown", "rw", "ro", "out_of_data_space", "Fail", "Error"}

// String is the mode as the kernel prints it.
func (m PoolMode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "PoolMode(" + strconv.Itoa(int(m)) + ")"
}

// Working reports whether the status line carries usage figures: every
// mode but Fail and Error.
func (m PoolMode) Working() bool { return m != ModeFail && m != ModeError }

// AcceptsMessages reports whether the kernel services pool messages in
// mode m; it refuses them (EOPNOTSUPP) when read-only or failed.
func (m PoolMode) AcceptsMessages() bool {
	return m == ModeReadWrite || m == ModeOutOfDataSpace || m == ModeUnknown
}

// DiscardMode is how the pool handles discards, as its status reports it.
type DiscardMode uint8

// Discard modes.
const (
	// DiscardUnknown: not reported (older kernels).
	DiscardUnknown DiscardMode = iota
	// DiscardIgnore ("ignore_discard"): discards are not supported.
	DiscardIgnore
	// DiscardPassdown ("discard_passdown"): discards unmap blocks and are
	// passed down to the data device.
	DiscardPassdown
	// DiscardNoPassdown ("no_discard_passdown"): discards unmap blocks but
	// are not passed down, because the feature asks so or the data device
	// cannot discard.
	DiscardNoPassdown
)

var discardNames = [...]string{"unknown", "ignore_discard", "discard_passdown", "no_discard_passdown"}

// String is the mode as the kernel prints it.
func (d DiscardMode) String() string {
	if int(d) < len(discardNames) {
		return discardNames[d]
	}
	return "DiscardMode(" + strconv.Itoa(int(d)) + ")"
}

// NoSpacePolicy is what the pool does with writes when out of data space.
type NoSpacePolicy uint8

// No-space policies.
const (
	// NoSpaceUnknown: not reported (older kernels).
	NoSpaceUnknown NoSpacePolicy = iota
	// QueueIfNoSpace ("queue_if_no_space"): hold writes until space is
	// added or the no_space_timeout module parameter (60 s by default)
	// expires.
	QueueIfNoSpace
	// ErrorIfNoSpace ("error_if_no_space"): fail such writes at once.
	ErrorIfNoSpace
)

var noSpaceNames = [...]string{"unknown", "queue_if_no_space", "error_if_no_space"}

// String is the policy as the kernel prints it.
func (p NoSpacePolicy) String() string {
	if int(p) < len(noSpaceNames) {
		return noSpaceNames[p]
	}
	return "NoSpacePolicy(" + strconv.Itoa(int(p)) + ")"
}

// PoolStatus is a thin-pool's status line (DM_TABLE_STATUS):
//
//	<transaction id> <used meta>/<total meta> <used data>/<total data> <held root|->
//	<rw|ro|out_of_data_space> <ignore_discard|discard_passdown|no_discard_passdown>
//	<error_if_no_space|queue_if_no_space> <needs_check|-> <metadata low watermark>
//
// or the whole line "Fail" or "Error". Older kernels stop earlier in the
// line; the fields they do not print keep their Unknown zero values.
// Tokens after the known fields, from kernels newer than this package, are
// kept in Extra.
type PoolStatus struct {
	// Mode is the pool's mode. With ModeFail and ModeError, nothing else
	// is set.
	Mode PoolMode

	// TransactionID is the pool's 64-bit transaction id, set by
	// set_transaction_id; 0 for a fresh pool.
	TransactionID uint64

	UsedMeta, TotalMeta MetaBlocks // metadata space, in 4 KiB blocks
	UsedData, TotalData DataBlocks // data space, in pool blocks

	// HeldRoot is the block of the metadata snapshot held by
	// reserve_metadata_snap, or 0 ("-") if none is held.
	HeldRoot uint64

	Discard DiscardMode   // how the pool handles discards
	NoSpace NoSpacePolicy // what happens to writes when data space runs out

	NeedsCheck    bool // the metadata needs thin_check before the pool can be written again
	HasNeedsCheck bool // the kernel printed the needs_check field

	// MetadataLowWatermark is the number of free metadata blocks at which
	// the kernel raises an event (min(1024, a quarter of the metadata
	// device)); HasMetadataLowWatermark says whether the kernel printed it.
	MetadataLowWatermark    MetaBlocks
	HasMetadataLowWatermark bool

	// Extra holds any tokens after the fields above, unparsed.
	Extra []string
}

// ParsePoolStatus parses a thin-pool status line in every form the kernel
// prints. It allocates only when the line has tokens it does not know.
func ParsePoolStatus(line string) (PoolStatus, error) {
	const what = "pool status"
	var st PoolStatus
	f := fields{s: line}
	t, ok := f.next()
	if !ok {
		return PoolStatus{}, syntaxErr(what, line, "empty")
	}
	if t == "Fail" || t == "Error" {
		if f.count() != 0 {
			return PoolStatus{}, syntaxErr(what, line, "text after "+t)
		}
		st.Mode = ModeFail
		if t == "Error" {
			st.Mode = ModeError
		}
		return st, nil
	}
	if st.TransactionID, ok = parseUint(t); !ok {
		return PoolStatus{}, syntaxErr(what, line, "transaction id is not a number")
	}
	var used, total uint64
	if t, ok = f.next(); ok {
		used, total, ok = parseRatio(t)
	}
	if !ok {
		return PoolStatus{}, syntaxErr(what, line, "want <used>/<total> metadata blocks")
	}
	st.UsedMeta, st.TotalMeta = MetaBlocks(used), MetaBlocks(total)
	if t, ok = f.next(); ok {
		used, total, ok = parseRatio(t)
	}
	if !ok {
		return PoolStatus{}, syntaxErr(what, line, "want <used>/<total> data blocks")
	}
	st.UsedData, st.TotalData = DataBlocks(used), DataBlocks(total)
	if t, ok = f.next(); !ok {
		return PoolStatus{}, syntaxErr(what, line, "no held metadata root")
	}
	if t != "-" {
		if st.HeldRoot, ok = parseUint(t); !ok {
			return PoolStatus{}, syntaxErr(what, line, "held metadata root is neither a number nor -")
		}
	}
	// The rest is positional and optional: each field is recognised by
	// its value, and the first token that is not the expected field
	// starts Extra.
	rest := f
	t, ok = f.next()
	if ok {
		switch t {
		case "rw":
			st.Mode = ModeReadWrite
		case "ro":
			st.Mode = ModeReadOnly
		case "out_of_data_space":
			st.Mode = ModeOutOfDataSpace
		default:
			ok = false
		}
	}
	if ok {
		rest = f
		t, ok = f.next()
		if ok {
			switch t {
			case "ignore_discard":
				st.Discard = DiscardIgnore
			case "discard_passdown":
				st.Discard = DiscardPassdown
			case "no_discard_passdown":
				st.Discard = DiscardNoPassdown
			default:
				ok = false
			}
		}
	}
	if ok {
		rest = f
		t, ok = f.next()
		if ok {
			switch t {
			case "queue_if_no_space":
				st.NoSpace = QueueIfNoSpace
			case "error_if_no_space":
				st.NoSpace = ErrorIfNoSpace
			default:
				ok = false
			}
		}
	}
	if ok {
		rest = f
		t, ok = f.next()
		if ok {
			switch t {
			case "needs_check":
				st.NeedsCheck, st.HasNeedsCheck = true, true
			case "-":
				st.HasNeedsCheck = true
			default:
				ok = false
			}
		}
	}
	if ok {
		rest = f
		t, ok = f.next()
		if ok {
			var v uint64
			if v, ok = parseUint(t); ok {
				st.MetadataLowWatermark, st.HasMetadataLowWatermark = MetaBlocks(v), true
				rest = f
			}
		}
	}
	if n := rest.count(); n > 0 {
		st.Extra = make([]string, 0, n)
		for {
			t, ok := rest.next()
			if !ok {
				break
			}
			st.Extra = append(st.Extra, t)
		}
	}
	return st, nil
}

func parseRatio(t string) (a, b uint64, ok bool) {
	for i := 0; i < len(t); i++ {
		if t[i] == '/' {
			a, ok1 := parseUint(t[:i])
			b, ok2 := parseUint(t[i+1:])
			return a, b, ok1 && ok2
		}
	}
	return 0, 0, false
}

// String formats st as the kernel prints it, trailing space included, up to
// the last field st has.
func (st PoolStatus) String() string {
	switch st.Mode {
	case ModeFail, ModeError:
		return st.Mode.String()
	}
	b := make([]byte, 0, 128)
	b = strconv.AppendUint(b, st.TransactionID, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(st.UsedMeta), 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(st.TotalMeta), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(st.UsedData), 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(st.TotalData), 10)
	b = append(b, ' ')
	if st.HeldRoot == 0 {
		b = append(b, '-')
	} else {
		b = strconv.AppendUint(b, st.HeldRoot, 10)
	}
	b = append(b, ' ')
	// Print the optional fields up to the last one present.
	n := 0
	switch {
	case st.HasMetadataLowWatermark:
		n = 5
	case st.HasNeedsCheck || st.NeedsCheck:
		n = 4
	case st.NoSpace != NoSpaceUnknown:
		n = 3
	case st.Discard != DiscardUnknown:
		n = 2
	case st.Mode != ModeUnknown:
		n = 1
	}
	if n >= 1 {
		b = append(b, st.Mode.String()...)
		b = append(b, ' ')
	}
	if n >= 2 {
		b = append(b, st.Discard.String()...)
		b = append(b, ' ')
	}
	if n >= 3 {
		b = append(b, st.NoSpace.String()...)
		b = append(b, ' ')
	}
	if n >= 4 {
		if st.NeedsCheck {
			b = append(b, "needs_check "...)
		} else {
			b = append(b, "- "...)
		}
	}
	if n >= 5 {
		b = strconv.AppendUint(b, uint64(st.MetadataLowWatermark), 10)
		b = append(b, ' ')
	}
	for _, x := range st.Extra {
		b = append(b, x...)
		b = append(b, ' ')
	}
	return string(b)
}

// FreeData is the number of unused data blocks.
func (st PoolStatus) FreeData() DataBlocks {
	if st.UsedData > st.TotalData {
		return 0
	}
	return st.TotalData - st.UsedData
}

// FreeMeta is the number of unused metadata blocks.
func (st PoolStatus) FreeMeta() MetaBlocks {
	if st.UsedMeta > st.TotalMeta {
		return 0
	}
	return st.TotalMeta - st.UsedMeta
}

// DataPercent is the share of data blocks in use, 0 to 100 (0 for an
// empty or failed pool).
func (st PoolStatus) DataPercent() float64 { return percent(uint64(st.UsedData), uint64(st.TotalData)) }

// MetaPercent is the share of metadata blocks in use, 0 to 100.
func (st PoolStatus) MetaPercent() float64 { return percent(uint64(st.UsedMeta), uint64(st.TotalMeta)) }

func percent(used, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return 100 * float64(used) / float64(total)
}

// FreeDataSectors is FreeData in sectors for a pool of blockSize sectors.
func (st PoolStatus) FreeDataSectors(blockSize dm.Sectors) dm.Sectors {
	return st.FreeData().Sectors(blockSize)
}

// BelowLowWaterMark reports whether free data space is at or below the low
// water mark of spec, the condition on which the kernel raises its event.
// A failed pool reports false: it has no figures.
func (st PoolStatus) BelowLowWaterMark(spec PoolSpec) bool {
	return st.Mode.Working() && st.TotalData > 0 && st.FreeData() <= spec.LowWaterMark
}

// MetadataLow reports whether free metadata space is at or below the
// kernel's metadata low watermark, the condition on which it raises an
// event. False if the kernel does not report the watermark.
func (st PoolStatus) MetadataLow() bool {
	return st.Mode.Working() && st.HasMetadataLowWatermark && st.TotalMeta > 0 && st.FreeMeta() <= st.MetadataLowWatermark
}

// ThinState is the form of a thin device's status line.
type ThinState uint8

// Thin device states.
const (
	// ThinUnknown is the zero value; the parser never returns it.
	ThinUnknown ThinState = iota
	// ThinActive: the line carries the mapped sectors and highest mapped
	// sector.
	ThinActive
	// ThinNotOpen ("-"): the thin device is not open in the pool.
	ThinNotOpen
	// ThinFail ("Fail"): the pool is in Fail mode.
	ThinFail
	// ThinError ("Error"): the kernel could not read the device's metadata.
	ThinError
)

var thinStateNames = [...]string{"unknown", "active", "-", "Fail", "Error"}

// String names the state as the kernel prints it, "active" for a line with
// figures.
func (s ThinState) String() string {
	if int(s) < len(thinStateNames) {
		return thinStateNames[s]
	}
	return "ThinState(" + strconv.Itoa(int(s)) + ")"
}

// ThinStatus is a thin device's status line: "<mapped sectors> <highest
// mapped sector|->", or the whole line "-", "Fail" or "Error".
type ThinStatus struct {
	State ThinState

	// MappedSectors is how much of the device is provisioned, in sectors
	// (a multiple of the pool's block size).
	MappedSectors dm.Sectors
	// HighestMapped is the last sector of the highest provisioned block,
	// if HasHighest; nothing is mapped otherwise ("-").
	HighestMapped dm.Sectors
	HasHighest    bool

	// Extra holds tokens after the known fields, unparsed.
	Extra []string
}

// ParseThinStatus parses a thin device's status line in every form the
// kernel prints.
func ParseThinStatus(line string) (ThinStatus, error) {
	const what = "thin status"
	f := fields{s: line}
	t, ok := f.next()
	if !ok {
		return ThinStatus{}, syntaxErr(what, line, "empty")
	}
	var st ThinStatus
	switch t {
	case "-", "Fail", "Error":
		if f.count() != 0 {
			return ThinStatus{}, syntaxErr(what, line, "text after "+t)
		}
		switch t {
		case "-":
			st.State = ThinNotOpen
		case "Fail":
			st.State = ThinFail
		default:
			st.State = ThinError
		}
		return st, nil
	}
	mapped, ok := parseUint(t)
	if !ok {
		return ThinStatus{}, syntaxErr(what, line, "mapped sectors is not a number")
	}
	st.State, st.MappedSectors = ThinActive, dm.Sectors(mapped)
	if t, ok = f.next(); !ok {
		return ThinStatus{}, syntaxErr(what, line, "no highest mapped sector")
	}
	if t != "-" {
		h, ok := parseUint(t)
		if !ok {
			return ThinStatus{}, syntaxErr(what, line, "highest mapped sector is neither a number nor -")
		}
		st.HighestMapped, st.HasHighest = dm.Sectors(h), true
	}
	if n := f.count(); n > 0 {
		st.Extra = make([]string, 0, n)
		for {
			t, ok := f.next()
			if !ok {
				break
			}
			st.Extra = append(st.Extra, t)
		}
	}
	return st, nil
}

// String formats st as the kernel prints it.
func (st ThinStatus) String() string {
	switch st.State {
	case ThinNotOpen, ThinFail, ThinError:
		return st.State.String()
	}
	b := make([]byte, 0, 48)
	b = strconv.AppendUint(b, uint64(st.MappedSectors), 10)
	b = append(b, ' ')
	if st.HasHighest {
		b = strconv.AppendUint(b, uint64(st.HighestMapped), 10)
	} else {
		b = append(b, '-')
	}
	for _, x := range st.Extra {
		b = append(b, ' ')
		b = append(b, x...)
	}
	return string(b)
}

// MappedBlocks is MappedSectors in data blocks of blockSize sectors.
func (st ThinStatus) MappedBlocks(blockSize dm.Sectors) DataBlocks {
	return DataBlocksIn(st.MappedSectors, blockSize)
}

// oneStatus is what readOneStatus found.
type oneStatus[T any] struct {
	st       T      // the first target's status, parsed
	targets  int    // how many targets the device has
	first    string // the first target's type
	parseErr error  // from parsing the first target's status
}

// readOneStatus reads the status of a device meant to have one target and
// parses the first target's line where the kernel wrote it
// (dm.Control.StatusFunc), so that polling a pool or a volume allocates
// nothing. What the result keeps of the line (extra, the tokens the parser
// did not know) is cloned, and a parse error comes from a parse of a copy,
// since the line does not outlive the call. The caller checks the count
// and the type.
func readOneStatus[T any](ctx context.Context, ctl *dm.Control, ref dm.Ref, parse func(string) (T, error), extra func(*T) []string, flags ...dm.Flag) (oneStatus[T], error) {
	var r oneStatus[T]
	err := ctl.StatusFunc(ctx, ref, func(ts dm.TargetStatus) error {
		if r.targets++; r.targets > 1 {
			return nil
		}
		r.first = ts.Type // a constant for the kernel's targets
		if ts.Type != PoolTargetType && ts.Type != ThinTargetType {
			r.first = strings.Clone(ts.Type)
			return nil
		}
		if r.st, r.parseErr = parse(ts.Status); r.parseErr != nil {
			_, r.parseErr = parse(strings.Clone(ts.Status))
		}
		for x, s := 0, extra(&r.st); x < len(s); x++ {
			s[x] = strings.Clone(s[x])
		}
		return nil
	}, flags...)
	return r, err
}
