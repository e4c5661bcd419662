package thin

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/thinp/thinp/dm"
)

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		bytes uint64
		want  dm.Sectors
	}{
		{0, 0}, {1, 1}, {511, 1}, {512, 1}, {513, 2},
		{10 * GiB, 20971520}, {64 * KiB, 128}, {^uint64(0), 1 << 55},
	} {
		if got := Size(tc.bytes); got != tc.want {
			t.Errorf("Size(%d) = %d, want %d", tc.bytes, got, tc.want)
		}
	}
}

func TestUnits(t *testing.T) {
	if got := DataBlocks(10).Sectors(128); got != 1280 {
		t.Errorf("DataBlocks(10).Sectors(128) = %d", got)
	}
	if got := DataBlocks(1 << 60).Sectors(1 << 10); got != ^dm.Sectors(0) {
		t.Errorf("overflow did not saturate: %d", got)
	}
	if got := DataBlocksIn(1279, 128); got != 9 {
		t.Errorf("DataBlocksIn(1279, 128) = %d", got)
	}
	if got := DataBlocksIn(1279, 0); got != 0 {
		t.Errorf("DataBlocksIn(_, 0) = %d", got)
	}
	if got := MetaBlocks(3).Sectors(); got != 24 {
		t.Errorf("MetaBlocks(3).Sectors() = %d", got)
	}
	if got := MetaBlocks(3).Bytes(); got != 12288 {
		t.Errorf("MetaBlocks(3).Bytes() = %d", got)
	}
	if got := MetaBlocks(^uint64(0)).Sectors(); got != ^dm.Sectors(0) {
		t.Errorf("MetaBlocks overflow: %d", got)
	}
	if got := MetaBlocks(^uint64(0)).Bytes(); got != ^uint64(0) {
		t.Errorf("MetaBlocks bytes overflow: %d", got)
	}
	if got := MetaBlocksIn(4097 * 8); got != 4097 {
		t.Errorf("MetaBlocksIn = %d", got)
	}
	if MaxMetaBlocks != 4161600 || MaxMetadataSize != 33292800 {
		t.Errorf("metadata limits %d blocks, %d sectors", MaxMetaBlocks, MaxMetadataSize)
	}
	if !MaxDeviceID.Valid() || (MaxDeviceID + 1).Valid() {
		t.Error("MaxDeviceID is not the 24-bit limit")
	}
}

func TestSuggestMetadataSize(t *testing.T) {
	for _, tc := range []struct {
		data, bs, want dm.Sectors
	}{
		{Size(1 * GiB), 128, MinMetadataSize},       // 16384 blocks * 48 B = 768 KiB -> 2 MiB
		{Size(100 * GiB), 128, Size(75 * MiB)},      // 1638400 blocks * 48 B = 75 MiB
		{Size(100 * GiB), 0, Size(75 * MiB)},        // zero block size counts as 128
		{Size(100*GiB) + 1, 128, Size(75*MiB) + 8},  // a partial block counts, rounded to 4 KiB
		{Size(1 * TiB), 2097152, MinMetadataSize},   // 1024 blocks
		{^dm.Sectors(0), 128, MaxMetadataSize},      // clamped
		{dm.Sectors(1) << 50, 128, MaxMetadataSize}, // clamped
		{Size(10 * TiB), 128, Size(7680 * MiB)},     // 48 * 167772160
		{0, 128, MinMetadataSize},
	} {
		got := SuggestMetadataSize(tc.data, tc.bs)
		if got != tc.want {
			t.Errorf("SuggestMetadataSize(%d, %d) = %d, want %d", tc.data, tc.bs, got, tc.want)
		}
		if got%MetaBlockSectors != 0 {
			t.Errorf("SuggestMetadataSize(%d, %d) = %d: not whole metadata blocks", tc.data, tc.bs, got)
		}
	}
}

var poolSpecCases = []struct {
	line string
	spec PoolSpec
}{
	{"253:0 253:1 128 0 0 ", PoolSpec{Metadata: dm.Dev{Major: 253}, Data: dm.Dev{Major: 253, Minor: 1}, BlockSize: 128}},
	{"7:0 7:1 128 32768 1 skip_block_zeroing ", PoolSpec{Metadata: dm.Dev{Major: 7}, Data: dm.Dev{Major: 7, Minor: 1}, BlockSize: 128, LowWaterMark: 32768, SkipBlockZeroing: true}},
	{"7:0 7:1 2097152 10 4 skip_block_zeroing ignore_discard read_only error_if_no_space ",
		PoolSpec{Metadata: dm.Dev{Major: 7}, Data: dm.Dev{Major: 7, Minor: 1}, BlockSize: 2097152, LowWaterMark: 10, SkipBlockZeroing: true, IgnoreDiscard: true, ReadOnly: true, ErrorIfNoSpace: true}},
	{"8:16 8:32 256 5 2 no_discard_passdown error_if_no_space ",
		PoolSpec{Metadata: dm.Dev{Major: 8, Minor: 16}, Data: dm.Dev{Major: 8, Minor: 32}, BlockSize: 256, LowWaterMark: 5, NoDiscardPassdown: true, ErrorIfNoSpace: true}},
	{"259:1048575 4095:0 1024 0 1 ignore_discard ", PoolSpec{Metadata: dm.Dev{Major: 259, Minor: 1048575}, Data: dm.Dev{Major: 4095}, BlockSize: 1024, IgnoreDiscard: true}},
}

func TestPoolSpecRoundTrip(t *testing.T) {
	for _, tc := range poolSpecCases {
		got, err := ParsePoolSpec(tc.line)
		if err != nil {
			t.Fatalf("ParsePoolSpec(%q): %v", tc.line, err)
		}
		if diff := cmp.Diff(tc.spec, got); diff != "" {
			t.Errorf("ParsePoolSpec(%q) (-want +got):\n%s", tc.line, diff)
		}
		if p := got.Params(); p != tc.line {
			t.Errorf("Params() = %q, want the kernel's %q", p, tc.line)
		}
		if s := got.String(); s != tc.line {
			t.Errorf("String() = %q", s)
		}
	}
}

func TestParsePoolSpecForms(t *testing.T) {
	base := PoolSpec{Metadata: dm.Dev{Major: 7}, Data: dm.Dev{Major: 7, Minor: 1}, BlockSize: 128}
	for _, tc := range []struct {
		in   string
		want PoolSpec
	}{
		// As a table is loaded: no feature count, extra blanks, any case,
		// any order, duplicates (the kernel accepts all of these).
		{"7:0 7:1 128 0", base},
		{"  7:0\t7:1 128 0  ", base},
		{"7:0 7:1 128 0 2 ERROR_IF_NO_SPACE Skip_Block_Zeroing", func() PoolSpec { s := base; s.ErrorIfNoSpace, s.SkipBlockZeroing = true, true; return s }()},
		{"7:0 7:1 128 0 2 read_only read_only", func() PoolSpec { s := base; s.ReadOnly = true; return s }()},
	} {
		got, err := ParsePoolSpec(tc.in)
		if err != nil {
			t.Fatalf("ParsePoolSpec(%q): %v", tc.in, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParsePoolSpec(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
	for _, bad := range []string{
		"", "7:0", "7:0 7:1 128", "x 7:1 128 0", "7:0 x 128 0", "7:0 7:1 x 0", "7:0 7:1 128 -1",
		"7:0 7:1 128 0 1", "7:0 7:1 128 0 1 frobnicate", "7:0 7:1 128 0 6 a b c d e f",
		"7:0 7:1 128 0 0 extra", "7:0 7:1 128 0 x", "/dev/loop0 7:1 128 0", "7:0 7:1 +128 0",
		"7:0 7:1 99999999999999999999999 0",
	} {
		if _, err := ParsePoolSpec(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParsePoolSpec(%q) = %v, want ErrSyntax", bad, err)
		}
	}
}

func TestPoolSpecTable(t *testing.T) {
	s := poolSpecCases[1].spec
	s.Length = 1 << 20
	tg := s.Target()
	if tg.Start != 0 || tg.Length != 1<<20 || tg.Type != "thin-pool" || tg.Params != s.Params() {
		t.Errorf("Target() = %+v", tg)
	}
	got, err := PoolSpecFromTable(s.Table())
	if err != nil || got != s {
		t.Errorf("PoolSpecFromTable(Table()) = %+v, %v; want %+v", got, err, s)
	}
	if s.DataBlocks() != 8192 {
		t.Errorf("DataBlocks() = %d", s.DataBlocks())
	}
	for _, bad := range []dm.Table{
		nil,
		{{Length: 8, Type: "linear", Params: "7:0 0"}},
		{tg, tg},
		{{Start: 8, Length: 8, Type: "thin-pool", Params: tg.Params}},
	} {
		if _, err := PoolSpecFromTable(bad); !errors.Is(err, ErrNotPool) {
			t.Errorf("PoolSpecFromTable(%v) = %v, want ErrNotPool", bad, err)
		}
	}
	if _, err := PoolSpecFromTable(dm.Table{{Length: 8, Type: "thin-pool", Params: "garbage"}}); !errors.Is(err, ErrSyntax) {
		t.Errorf("bad params: %v", err)
	}
}

func TestPoolSpecValidate(t *testing.T) {
	good := PoolSpec{Metadata: dm.Dev{Major: 7}, Data: dm.Dev{Major: 7, Minor: 1}, BlockSize: 128, Length: 128 * 100, LowWaterMark: 99}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	noLen := good
	noLen.Length, noLen.LowWaterMark = 0, 1<<40
	if err := noLen.Validate(); err != nil {
		t.Errorf("without a length the low water mark cannot be checked: %v", err)
	}
	for name, mod := range map[string]func(*PoolSpec){
		"block size 192":      func(s *PoolSpec) { s.BlockSize = 192 },
		"block size 64":       func(s *PoolSpec) { s.BlockSize = 64 },
		"block size 185":      func(s *PoolSpec) { s.BlockSize = 185 },
		"block size 0":        func(s *PoolSpec) { s.BlockSize = 0 },
		"block size 2^21+128": func(s *PoolSpec) { s.BlockSize = MaxBlockSize + 128 },
		"lwm at the size":     func(s *PoolSpec) { s.LowWaterMark = 100 },
		"lwm past the size":   func(s *PoolSpec) { s.LowWaterMark = 1000 },
		"less than a block":   func(s *PoolSpec) { s.Length = 127; s.LowWaterMark = 0 },
		"negative length":     func(s *PoolSpec) { s.Length = dm.Sectors(1 << 63) },
		"no metadata":         func(s *PoolSpec) { s.Metadata = dm.Dev{} },
		"no data":             func(s *PoolSpec) { s.Data = dm.Dev{} },
		"same devices":        func(s *PoolSpec) { s.Data = s.Metadata },
		"major too big":       func(s *PoolSpec) { s.Data = dm.Dev{Major: 4096} },
		"minor too big":       func(s *PoolSpec) { s.Metadata = dm.Dev{Major: 1, Minor: 1 << 20} },
		"five features": func(s *PoolSpec) {
			s.SkipBlockZeroing, s.IgnoreDiscard, s.NoDiscardPassdown, s.ReadOnly, s.ErrorIfNoSpace = true, true, true, true, true
		},
	} {
		s := good
		mod(&s)
		if err := s.Validate(); !errors.Is(err, dm.ErrInvalid) {
			t.Errorf("%s: Validate() = %v, want dm.ErrInvalid", name, err)
		}
	}
	for _, bs := range []dm.Sectors{128, 256, 384, 2097152} {
		if err := ValidateBlockSize(bs); err != nil {
			t.Errorf("ValidateBlockSize(%d) = %v", bs, err)
		}
	}
}

func TestThinSpec(t *testing.T) {
	for _, tc := range []struct {
		line string
		spec ThinSpec
	}{
		{"253:2 1", ThinSpec{Pool: dm.Dev{Major: 253, Minor: 2}, ID: 1}},
		{"253:2 16777215 7:3", ThinSpec{Pool: dm.Dev{Major: 253, Minor: 2}, ID: MaxDeviceID, ExternalOrigin: dm.Dev{Major: 7, Minor: 3}}},
		{"253:0 0", ThinSpec{Pool: dm.Dev{Major: 253}}},
	} {
		got, err := ParseThinSpec(tc.line)
		if err != nil || got != tc.spec {
			t.Errorf("ParseThinSpec(%q) = %+v, %v; want %+v", tc.line, got, err, tc.spec)
		}
		if p := tc.spec.Params(); p != tc.line {
			t.Errorf("Params() = %q, want %q", p, tc.line)
		}
		if err := tc.spec.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", tc.spec, err)
		}
		tg := tc.spec.Target(2048)
		if tg.Type != "thin" || tg.Length != 2048 || tg.Params != tc.line || tc.spec.String() != tc.line {
			t.Errorf("Target = %+v", tg)
		}
	}
	for _, bad := range []string{"", "253:2", "253:2 x", "253:2 16777216", "253:2 1 2 3", "253:2 1 x", "253:2 1 0:0", "x 1"} {
		if _, err := ParseThinSpec(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseThinSpec(%q) = %v, want ErrSyntax", bad, err)
		}
	}
	pool := dm.Dev{Major: 253, Minor: 2}
	for name, s := range map[string]ThinSpec{
		"id 2^24":        {Pool: pool, ID: MaxDeviceID + 1},
		"no pool":        {ID: 1},
		"origin is pool": {Pool: pool, ID: 1, ExternalOrigin: pool},
		"bad origin":     {Pool: pool, ID: 1, ExternalOrigin: dm.Dev{Major: 5000}},
	} {
		if err := s.Validate(); !errors.Is(err, dm.ErrInvalid) {
			t.Errorf("%s: Validate() = %v, want dm.ErrInvalid", name, err)
		}
	}
}

func TestParseUint(t *testing.T) {
	for s, want := range map[string]uint64{"0": 0, "18446744073709551615": 1<<64 - 1, "007": 7} {
		if got, ok := parseUint(s); !ok || got != want {
			t.Errorf("parseUint(%q) = %d, %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "18446744073709551616", "-1", "+1", "1a", "123456789012345678901"} {
		if _, ok := parseUint(s); ok {
			t.Errorf("parseUint(%q) accepted", s)
		}
	}
}
