package thin

import (
	"reflect"
	"testing"

	"github.com/thinp/thinp/dm"
)

// Seeds are the lines of the table tests (real kernel output) plus the
// inputs kept in testdata/fuzz.

func FuzzParsePoolStatus(f *testing.F) {
	for _, tc := range poolStatusCases {
		f.Add(tc.line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		st, err := ParsePoolStatus(line)
		if err != nil {
			return
		}
		s := st.String()
		st2, err := ParsePoolStatus(s)
		if err != nil {
			t.Fatalf("ParsePoolStatus(%q) ok, but its String %q does not parse: %v", line, s, err)
		}
		if !reflect.DeepEqual(st, st2) {
			t.Fatalf("round trip of %q through %q:\n%#v\n%#v", line, s, st, st2)
		}
		if s2 := st2.String(); s2 != s {
			t.Fatalf("String not stable: %q then %q", s, s2)
		}
		if !st.Mode.Working() && (st.TotalData != 0 || st.Extra != nil) {
			t.Fatalf("%q: Fail/Error carry figures: %#v", line, st)
		}
		_ = st.DataPercent() + st.MetaPercent()
		_ = st.BelowLowWaterMark(PoolSpec{LowWaterMark: 10}) || st.MetadataLow()
	})
}

func FuzzParseThinStatus(f *testing.F) {
	for _, s := range []string{"0 -", "128 127", "-", "Fail", "Error", "2048 1048575 ", "1 2 3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		st, err := ParseThinStatus(line)
		if err != nil {
			return
		}
		if st.State == ThinUnknown {
			t.Fatalf("%q parsed to the unknown state", line)
		}
		s := st.String()
		st2, err := ParseThinStatus(s)
		if err != nil || !reflect.DeepEqual(st, st2) {
			t.Fatalf("round trip of %q through %q: %#v, %#v, %v", line, s, st, st2, err)
		}
	})
}

func FuzzParsePoolSpec(f *testing.F) {
	for _, tc := range poolSpecCases {
		f.Add(tc.line)
	}
	f.Add("7:0 7:1 128 0 2 ERROR_IF_NO_SPACE Skip_Block_Zeroing")
	f.Add("7:0 7:1 128 0")
	f.Fuzz(func(t *testing.T, line string) {
		s, err := ParsePoolSpec(line)
		if err != nil {
			return
		}
		p := s.Params()
		s2, err := ParsePoolSpec(p)
		if err != nil || s2 != s {
			t.Fatalf("round trip of %q through %q: %+v, %+v, %v", line, p, s, s2, err)
		}
		if p2 := s2.Params(); p2 != p {
			t.Fatalf("Params not stable: %q then %q", p, p2)
		}
		_ = s.Validate()
	})
}

func FuzzParseThinSpec(f *testing.F) {
	for _, s := range []string{"253:2 1", "253:2 16777215 7:3", "253:0 0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		s, err := ParseThinSpec(line)
		if err != nil {
			return
		}
		p := s.Params()
		s2, err := ParseThinSpec(p)
		if err != nil || s2 != s {
			t.Fatalf("round trip of %q through %q: %+v, %+v, %v", line, p, s, s2, err)
		}
		_ = s.Validate()
	})
}

// FuzzPoolSpecRoundTrip builds specs from their fields: every spec whose
// devices fit dev_t prints a line that parses back to it, and every spec
// that validates is one of those.
func FuzzPoolSpecRoundTrip(f *testing.F) {
	f.Add(uint32(7), uint32(0), uint32(7), uint32(1), uint64(128), uint64(0), uint8(0))
	f.Add(uint32(253), uint32(1048575), uint32(8), uint32(16), uint64(2097152), uint64(32768), uint8(0x1f))
	f.Add(uint32(4096), uint32(0), uint32(7), uint32(1), uint64(192), uint64(1<<63), uint8(0x15))
	f.Fuzz(func(t *testing.T, mmaj, mmin, dmaj, dmin uint32, bs, lwm uint64, feat uint8) {
		s := PoolSpec{
			Metadata:          dm.Dev{Major: mmaj, Minor: mmin},
			Data:              dm.Dev{Major: dmaj, Minor: dmin},
			BlockSize:         dm.Sectors(bs),
			LowWaterMark:      DataBlocks(lwm),
			SkipBlockZeroing:  feat&1 != 0,
			IgnoreDiscard:     feat&2 != 0,
			NoDiscardPassdown: feat&4 != 0,
			ReadOnly:          feat&8 != 0,
			ErrorIfNoSpace:    feat&16 != 0,
		}
		fits := mmaj <= 0xfff && mmin <= 0xfffff && dmaj <= 0xfff && dmin <= 0xfffff
		got, err := ParsePoolSpec(s.Params())
		if fits && (err != nil || got != s) {
			t.Fatalf("%+v: Params %q parses to %+v, %v", s, s.Params(), got, err)
		}
		if s.Validate() == nil && !fits {
			t.Fatalf("%+v validates but its devices do not fit dev_t", s)
		}
		s.Length = dm.Sectors(lwm) * 3
		tg, err := PoolSpecFromTable(s.Table())
		if fits && (err != nil || tg != s) {
			t.Fatalf("%+v: table round trip gives %+v, %v", s, tg, err)
		}
	})
}

func FuzzThinSpecRoundTrip(f *testing.F) {
	f.Add(uint32(253), uint32(2), uint32(1), uint32(0), uint32(0))
	f.Add(uint32(253), uint32(2), uint32(1<<24), uint32(7), uint32(3))
	f.Fuzz(func(t *testing.T, pmaj, pmin, id, omaj, omin uint32) {
		s := ThinSpec{Pool: dm.Dev{Major: pmaj, Minor: pmin}, ID: DeviceID(id), ExternalOrigin: dm.Dev{Major: omaj, Minor: omin}}
		fits := pmaj <= 0xfff && pmin <= 0xfffff && omaj <= 0xfff && omin <= 0xfffff && s.ID.Valid()
		got, err := ParseThinSpec(s.Params())
		if fits && (err != nil || got != s) {
			t.Fatalf("%+v: Params %q parses to %+v, %v", s, s.Params(), got, err)
		}
		if s.Validate() == nil && !fits {
			t.Fatalf("%+v validates but does not fit", s)
		}
	})
}
