package thin

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Pool status lines in every form the kernel prints. The 6.1 line ends in
// a space, as pool_status() emits it.
var poolStatusCases = []struct {
	name string
	line string
	want PoolStatus
}{
	{"fresh 6.1", "0 10/1024 0/16384 - rw discard_passdown queue_if_no_space - 256 ",
		PoolStatus{Mode: ModeReadWrite, UsedMeta: 10, TotalMeta: 1024, TotalData: 16384, Discard: DiscardPassdown, NoSpace: QueueIfNoSpace, HasNeedsCheck: true, MetadataLowWatermark: 256, HasMetadataLowWatermark: true}},
	{"held root, ro, needs_check", "5 200/4096 100/32768 1234 ro ignore_discard error_if_no_space needs_check 1024 ",
		PoolStatus{Mode: ModeReadOnly, TransactionID: 5, UsedMeta: 200, TotalMeta: 4096, UsedData: 100, TotalData: 32768, HeldRoot: 1234, Discard: DiscardIgnore, NoSpace: ErrorIfNoSpace, NeedsCheck: true, HasNeedsCheck: true, MetadataLowWatermark: 1024, HasMetadataLowWatermark: true}},
	{"out of data space", "18446744073709551615 11/1024 16384/16384 - out_of_data_space no_discard_passdown error_if_no_space - 256 ",
		PoolStatus{Mode: ModeOutOfDataSpace, TransactionID: 1<<64 - 1, UsedMeta: 11, TotalMeta: 1024, UsedData: 16384, TotalData: 16384, Discard: DiscardNoPassdown, NoSpace: ErrorIfNoSpace, HasNeedsCheck: true, MetadataLowWatermark: 256, HasMetadataLowWatermark: true}},
	{"Fail", "Fail", PoolStatus{Mode: ModeFail}},
	{"Error", "Error", PoolStatus{Mode: ModeError}},
	{"older: no metadata watermark", "0 9/4096 0/163840 - rw discard_passdown queue_if_no_space - ",
		PoolStatus{Mode: ModeReadWrite, UsedMeta: 9, TotalMeta: 4096, TotalData: 163840, Discard: DiscardPassdown, NoSpace: QueueIfNoSpace, HasNeedsCheck: true}},
	{"older: no needs_check", "0 9/4096 0/163840 - rw discard_passdown queue_if_no_space ",
		PoolStatus{Mode: ModeReadWrite, UsedMeta: 9, TotalMeta: 4096, TotalData: 163840, Discard: DiscardPassdown, NoSpace: QueueIfNoSpace}},
	{"older: mode and discard only", "0 9/4096 0/163840 - rw no_discard_passdown ",
		PoolStatus{Mode: ModeReadWrite, UsedMeta: 9, TotalMeta: 4096, TotalData: 163840, Discard: DiscardNoPassdown}},
	{"older: mode only", "0 9/4096 0/163840 - ro ",
		PoolStatus{Mode: ModeReadOnly, UsedMeta: 9, TotalMeta: 4096, TotalData: 163840}},
	{"oldest: figures only", "0 9/4096 0/163840 - ",
		PoolStatus{UsedMeta: 9, TotalMeta: 4096, TotalData: 163840}},
	{"future tokens", "7 9/4096 3/163840 - rw discard_passdown queue_if_no_space - 1024 frobnicate 42 ",
		PoolStatus{Mode: ModeReadWrite, TransactionID: 7, UsedMeta: 9, TotalMeta: 4096, UsedData: 3, TotalData: 163840, Discard: DiscardPassdown, NoSpace: QueueIfNoSpace, HasNeedsCheck: true, MetadataLowWatermark: 1024, HasMetadataLowWatermark: true, Extra: []string{"frobnicate", "42"}}},
	{"unknown token where the mode goes", "7 9/4096 3/163840 - degraded ",
		PoolStatus{TransactionID: 7, UsedMeta: 9, TotalMeta: 4096, UsedData: 3, TotalData: 163840, Extra: []string{"degraded"}}},
	{"unknown token where the watermark goes", "7 9/4096 3/163840 - rw discard_passdown queue_if_no_space - new ",
		PoolStatus{Mode: ModeReadWrite, TransactionID: 7, UsedMeta: 9, TotalMeta: 4096, UsedData: 3, TotalData: 163840, Discard: DiscardPassdown, NoSpace: QueueIfNoSpace, HasNeedsCheck: true, Extra: []string{"new"}}},
}

func TestParsePoolStatus(t *testing.T) {
	for _, tc := range poolStatusCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePoolStatus(tc.line)
			if err != nil {
				t.Fatalf("ParsePoolStatus(%q): %v", tc.line, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if s := got.String(); s != tc.line {
				t.Errorf("String() = %q, want the kernel's %q", s, tc.line)
			}
		})
	}
}

func TestParsePoolStatusErrors(t *testing.T) {
	for _, bad := range []string{
		"", "   ", "x", "0", "0 1/2", "0 1/2 3/4", "0 1-2 3/4 -", "0 1/2 3/x -", "0 1/2 3/4 x",
		"Fail now", "Error 1", "-1 1/2 3/4 -", "0 /2 3/4 -", "0 1/ 3/4 -",
	} {
		_, err := ParsePoolStatus(bad)
		var se *SyntaxError
		if !errors.Is(err, ErrSyntax) || !errors.As(err, &se) || se.Line != bad {
			t.Errorf("ParsePoolStatus(%q) = %v, want a SyntaxError", bad, err)
		}
	}
}

func TestPoolStatusHelpers(t *testing.T) {
	st, _ := ParsePoolStatus("0 256/1024 12288/16384 - rw discard_passdown queue_if_no_space - 256 ")
	if st.FreeData() != 4096 || st.FreeMeta() != 768 {
		t.Errorf("free %d data, %d meta", st.FreeData(), st.FreeMeta())
	}
	if st.DataPercent() != 75 || st.MetaPercent() != 25 {
		t.Errorf("percent %v data, %v meta", st.DataPercent(), st.MetaPercent())
	}
	if st.FreeDataSectors(128) != 4096*128 {
		t.Errorf("FreeDataSectors = %d", st.FreeDataSectors(128))
	}
	if st.BelowLowWaterMark(PoolSpec{LowWaterMark: 4095}) || !st.BelowLowWaterMark(PoolSpec{LowWaterMark: 4096}) {
		t.Error("BelowLowWaterMark is not free <= lwm")
	}
	if st.MetadataLow() {
		t.Error("MetadataLow with 768 free blocks and a watermark of 256")
	}
	low, _ := ParsePoolStatus("0 768/1024 0/16384 - rw discard_passdown queue_if_no_space - 256 ")
	if !low.MetadataLow() {
		t.Error("MetadataLow false at the watermark")
	}
	old, _ := ParsePoolStatus("0 1023/1024 0/16384 - ")
	if old.MetadataLow() {
		t.Error("MetadataLow without a reported watermark")
	}
	var fail PoolStatus
	fail.Mode = ModeFail
	if fail.BelowLowWaterMark(PoolSpec{LowWaterMark: 1}) || fail.DataPercent() != 0 || fail.FreeData() != 0 {
		t.Error("a failed pool reports figures")
	}
	odd := PoolStatus{UsedData: 5, TotalData: 3, UsedMeta: 5, TotalMeta: 3}
	if odd.FreeData() != 0 || odd.FreeMeta() != 0 {
		t.Error("free space wrapped")
	}
}

func TestModeNames(t *testing.T) {
	for m, want := range map[PoolMode]string{ModeUnknown: "unknown", ModeReadWrite: "rw", ModeReadOnly: "ro", ModeOutOfDataSpace: "out_of_data_space", ModeFail: "Fail", ModeError: "Error", 99: "PoolMode(99)"} {
		if m.String() != want {
			t.Errorf("%d.String() = %q", m, m.String())
		}
	}
	for m, want := range map[PoolMode]bool{ModeReadWrite: true, ModeOutOfDataSpace: true, ModeUnknown: true, ModeReadOnly: false, ModeFail: false, ModeError: false} {
		if m.AcceptsMessages() != want {
			t.Errorf("%v.AcceptsMessages() = %v", m, !want)
		}
	}
	if DiscardMode(9).String() != "DiscardMode(9)" || NoSpacePolicy(9).String() != "NoSpacePolicy(9)" || ThinState(9).String() != "ThinState(9)" {
		t.Error("out-of-range names")
	}
	if DiscardIgnore.String() != "ignore_discard" || ErrorIfNoSpace.String() != "error_if_no_space" || ThinNotOpen.String() != "-" {
		t.Error("names")
	}
}

func TestParseThinStatus(t *testing.T) {
	for _, tc := range []struct {
		line string
		want ThinStatus
	}{
		{"0 -", ThinStatus{State: ThinActive}},
		{"128 127", ThinStatus{State: ThinActive, MappedSectors: 128, HasHighest: true, HighestMapped: 127}},
		{"2048 1048575", ThinStatus{State: ThinActive, MappedSectors: 2048, HasHighest: true, HighestMapped: 1048575}},
		{"-", ThinStatus{State: ThinNotOpen}},
		{"Fail", ThinStatus{State: ThinFail}},
		{"Error", ThinStatus{State: ThinError}},
		{"128 127 more", ThinStatus{State: ThinActive, MappedSectors: 128, HasHighest: true, HighestMapped: 127, Extra: []string{"more"}}},
	} {
		got, err := ParseThinStatus(tc.line)
		if err != nil {
			t.Fatalf("ParseThinStatus(%q): %v", tc.line, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseThinStatus(%q) (-want +got):\n%s", tc.line, diff)
		}
		if s := got.String(); s != tc.line {
			t.Errorf("String() = %q, want %q", s, tc.line)
		}
	}
	// The kernel's own spacing variants.
	if got, err := ParseThinStatus("128 127 "); err != nil || got.MappedSectors != 128 {
		t.Errorf("trailing space: %+v, %v", got, err)
	}
	if got, _ := ParseThinStatus("256 255"); got.MappedBlocks(128) != 2 {
		t.Errorf("MappedBlocks = %d", got.MappedBlocks(128))
	}
	for _, bad := range []string{"", "x", "128", "128 x", "- 1", "Fail 1", "Error x", "-1 -"} {
		if _, err := ParseThinStatus(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseThinStatus(%q) = %v, want ErrSyntax", bad, err)
		}
	}
}

// A status parse allocates at most once, and not at all for the lines the
// kernel prints today.
func TestParsePoolStatusAllocs(t *testing.T) {
	for _, tc := range poolStatusCases {
		want := 0.0
		if len(tc.want.Extra) > 0 {
			want = 1
		}
		n := testing.AllocsPerRun(100, func() {
			if _, err := ParsePoolStatus(tc.line); err != nil {
				t.Fatal(err)
			}
		})
		if n > want {
			t.Errorf("%s: %v allocations, want at most %v", tc.name, n, want)
		}
	}
	n := testing.AllocsPerRun(100, func() { ParseThinStatus("2048 1048575") })
	if n != 0 {
		t.Errorf("ParseThinStatus: %v allocations", n)
	}
}

func BenchmarkParsePoolStatus(b *testing.B) {
	line := "5 200/4096 100/32768 1234 rw discard_passdown queue_if_no_space - 1024 "
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePoolStatus(line); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseThinStatus(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseThinStatus("2048 1048575"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePoolSpec(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePoolSpec("7:0 7:1 128 32768 1 skip_block_zeroing "); err != nil {
			b.Fatal(err)
		}
	}
}
