package ioctl

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

// Every decoder has a Fuzz target. Each takes raw bytes, which the decoder
// must survive (no panic, no read out of bounds, an end to every chain),
// and, where an encoder exists, structured values that must round-trip.
// Interesting inputs live in testdata/fuzz/FuzzX.

// seedReply is a realistic reply: the golden bytes used by the tests.
func seedReply(f *testing.F, golden string) []byte {
	if !littleEndian {
		return nil
	}
	return unhex(f, golden)
}

func validName(s string, max int) bool {
	return len(s) <= max && strings.IndexByte(s, 0) < 0
}

func FuzzHeader(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, SizeofHeader))
	f.Add(seedReply(f, goldenHeader))
	f.Add(seedReply(f, goldenThinPoolStatus))
	f.Add(seedReply(f, goldenLinearTable))
	full := bytes.Repeat([]byte{0xff}, SizeofHeader+16)
	f.Add(full)
	f.Fuzz(func(t *testing.T, data []byte) {
		var h Header
		err := h.UnmarshalBinary(data)
		if len(data) < SizeofHeader {
			if err != ErrShortBuffer {
				t.Fatalf("%d bytes: %v", len(data), err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Name) > NameLen || len(h.UUID) > UUIDLen || strings.IndexByte(h.Name, 0) >= 0 || strings.IndexByte(h.UUID, 0) >= 0 {
			t.Fatalf("bad strings %q %q", h.Name, h.UUID)
		}
		// Payload stays inside data and inside [data_start, data_size).
		p, err := h.Payload(data)
		if err == nil && len(p) > 0 {
			if uint64(h.DataStart) < DataOffset || uint64(h.DataSize) > uint64(len(data)) ||
				len(p) != int(h.DataSize-h.DataStart) || &p[0] != &data[h.DataStart] {
				t.Fatalf("payload %d bytes for start %d size %d len %d", len(p), h.DataStart, h.DataSize, len(data))
			}
		}
		// Round trip: what decodes encodes to the same header, unless a
		// string filled its array without a NUL.
		buf := make([]byte, SizeofHeader)
		if err := h.MarshalTo(buf); err != nil {
			if err != ErrNameTooLong && err != ErrUUIDTooLong {
				t.Fatalf("MarshalTo: %v", err)
			}
			if len(h.Name) < NameLen && len(h.UUID) < UUIDLen {
				t.Fatalf("MarshalTo refused %q %q: %v", h.Name, h.UUID, err)
			}
			return
		}
		var h2 Header
		if err := h2.UnmarshalBinary(buf); err != nil || h2 != h {
			t.Fatalf("round trip:\n%+v\n%+v (%v)", h, h2, err)
		}
		// The fixed fields are the same bytes.
		if !bytes.Equal(buf[:offPadding], data[:offPadding]) || !bytes.Equal(buf[offDev:offName], data[offDev:offName]) {
			t.Fatalf("fixed fields differ")
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	if littleEndian {
		for _, g := range goldenRequests {
			f.Add(uint8(g.req.Cmd), unhex(f, g.want))
		}
	}
	f.Add(uint8(CmdTableLoad), make([]byte, SizeofHeader))
	f.Fuzz(func(t *testing.T, cmd uint8, data []byte) {
		c := Cmd(cmd % NumCmds)
		r, err := parseRequest(c, data)
		if err != nil {
			if r != nil {
				t.Fatal("request with an error")
			}
			return
		}
		if uint64(len(r.Targets)) > uint64(len(data))/SizeofTargetSpec || len(r.Message) > len(data) || len(r.String) > len(data) {
			t.Fatalf("decoded more than the input holds")
		}
		// Re-encode what was decoded; it decodes to the same request.
		buf := make([]byte, r.Size())
		if _, err := r.MarshalTo(buf); err != nil {
			// Only strings that filled their arrays without a NUL.
			switch err {
			case ErrNameTooLong, ErrUUIDTooLong, ErrTypeTooLong:
				return
			}
			t.Fatalf("MarshalTo: %v", err)
		}
		r2, err := parseRequest(c, buf)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		checkSameRequest(t, r, r2, len(buf))
	})
}

// checkSameRequest compares a request with its re-encoded, re-parsed copy.
func checkSameRequest(t *testing.T, r, r2 *Request, size int) {
	t.Helper()
	want := r.Header
	if want.Version == (Version{}) {
		want.Version = r.Cmd.MinVersion()
	}
	want.DataSize = uint32(size)
	want.DataStart = DataStart
	want.TargetCount = 0
	if r.Cmd == CmdTableLoad {
		want.TargetCount = uint32(len(r.Targets))
	}
	if !r.Cmd.CarriesEventNr(want.Flags) {
		want.EventNr = 0
	}
	if r2.Header != want {
		t.Fatalf("header:\n got %+v\nwant %+v", r2.Header, want)
	}
	wantTargets := r.Targets
	if len(wantTargets) == 0 {
		wantTargets = nil
	}
	switch r.Cmd {
	case CmdTableLoad:
		if !reflect.DeepEqual(r2.Targets, wantTargets) {
			t.Fatalf("targets:\n got %+v\nwant %+v", r2.Targets, wantTargets)
		}
	case CmdTargetMsg:
		if r2.Sector != r.Sector || r2.Message != r.Message {
			t.Fatalf("message %d %q, want %d %q", r2.Sector, r2.Message, r.Sector, r.Message)
		}
	case CmdDevRename, CmdDevSetGeometry:
		if r2.String != r.String {
			t.Fatalf("string %q, want %q", r2.String, r.String)
		}
	}
}

// FuzzRequestRoundTrip builds requests of every payload kind from fuzzed
// values: Request -> MarshalTo -> parseRequest gives the request back, or
// MarshalTo refuses it for a reason the values show.
func FuzzRequestRoundTrip(f *testing.F) {
	f.Add(uint8(CmdTableLoad), "pool", "", uint32(0), uint32(0), uint64(0), uint64(0), "",
		"thin-pool", "253:1 253:2 128 1024 1 skip_block_zeroing", "", "", uint16(0))
	f.Add(uint8(CmdTableLoad), "thin", "THINP-1", uint32(FlagReadOnly), uint32(5), uint64(0), uint64(0), "",
		"thin", "253:0 1", "linear", "7:0 0", uint16(64))
	f.Add(uint8(CmdTargetMsg), "pool", "", uint32(0), uint32(0), uint64(0), uint64(0), "create_snap 2 1",
		"", "", "", "", uint16(0))
	f.Add(uint8(CmdDevRename), "old", "", uint32(FlagUUID), uint32(0x0d4d0001), uint64(0), uint64(0), "new",
		"", "", "", "", uint16(7))
	f.Add(uint8(CmdDevSetGeometry), "pool", "", uint32(0), uint32(0), uint64(0), uint64(0), "1024 255 63 0",
		"", "", "", "", uint16(0))
	f.Add(uint8(CmdDevSuspend), strings.Repeat("n", 127), strings.Repeat("u", 128), uint32(FlagSuspend), uint32(9),
		uint64(0xfd00), uint64(0), "", "", "", "", "", uint16(0))
	f.Fuzz(func(t *testing.T, cmd uint8, name, uuid string, flags, event uint32, dev, sector uint64, str,
		t1, p1, t2, p2 string, extra uint16) {
		c := Cmd(cmd % NumCmds)
		r := &Request{Cmd: c, Header: Header{Name: name, UUID: uuid, Flags: Flags(flags), EventNr: event, Dev: dev}}
		switch c {
		case CmdTableLoad:
			r.Targets = []TargetSpec{{Start: sector, Length: dev, Type: t1, Params: p1}}
			if t2 != "" || p2 != "" {
				r.Targets = append(r.Targets, TargetSpec{Start: dev, Length: sector, Type: t2, Params: p2})
			}
		case CmdTargetMsg:
			r.Sector, r.Message = sector, str
		default:
			r.String = str
		}
		buf := make([]byte, r.Size()+int(extra))
		n, err := r.MarshalTo(buf)
		var wantErr error
		switch {
		case len(name) >= NameLen:
			wantErr = ErrNameTooLong
		case strings.IndexByte(name, 0) >= 0:
			wantErr = ErrNUL
		case len(uuid) >= UUIDLen:
			wantErr = ErrUUIDTooLong
		case strings.IndexByte(uuid, 0) >= 0:
			wantErr = ErrNUL
		}
		if wantErr == nil {
			switch c {
			case CmdTableLoad:
				for _, s := range r.Targets {
					if len(s.Type) >= MaxTypeName {
						wantErr = ErrTypeTooLong
						break
					}
					if strings.IndexByte(s.Type, 0) >= 0 || strings.IndexByte(s.Params, 0) >= 0 {
						wantErr = ErrNUL
						break
					}
				}
			case CmdTargetMsg:
				if strings.IndexByte(str, 0) >= 0 {
					wantErr = ErrNUL
				}
			case CmdDevRename, CmdDevSetGeometry:
				if strings.IndexByte(str, 0) >= 0 {
					wantErr = ErrNUL
				}
			}
		}
		if err != wantErr {
			t.Fatalf("MarshalTo: %v, want %v", err, wantErr)
		}
		if err != nil {
			return
		}
		if n != r.Size() || n%8 != 0 {
			t.Fatalf("used %d, Size %d", n, r.Size())
		}
		r2, err := parseRequest(c, buf)
		if err != nil {
			t.Fatalf("parseRequest: %v", err)
		}
		checkSameRequest(t, r, r2, len(buf))
	})
}

func statusSeeds(f *testing.F) {
	f.Add(seedReply(f, goldenThinPoolStatus), "thin-pool", "0 10/4096 0/16384 - rw discard_passdown queue_if_no_space - 1024 ", uint8(1))
	f.Add(seedReply(f, goldenLinearTable), "linear", "7:0 0", uint8(2))
	f.Add([]byte{}, "thin-pool", "Fail", uint8(1))
	f.Add([]byte{}, "thin-pool", "Error", uint8(1))
	f.Add([]byte{}, "thin", "2048 2047", uint8(3))
	f.Add([]byte{}, "thin", "-", uint8(1))
	f.Add([]byte{}, "thin-pool", "5 280/4096 1024/16384 7 ro ignore_discard error_if_no_space needs_check 1024 ", uint8(1))
	f.Add([]byte{}, "thin-pool", "0 10/4096 0/16384 - out_of_data_space no_discard_passdown queue_if_no_space - 1024 ", uint8(1))
	f.Add([]byte{}, "error", "", uint8(0))
}

func FuzzTargetReader(f *testing.F) {
	statusSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte, typ, params string, n uint8) {
		// Raw: whatever the reply says.
		var h Header
		if h.UnmarshalBinary(data) == nil {
			r := NewTargetReader(&h, data)
			var ar TargetReader
			ar.ResetAliased(&h, data)
			count := 0
			for r.Next() {
				count++
				s := r.Spec()
				if !ar.Next() || ar.Spec() != s {
					t.Fatalf("aliased reader disagrees at spec %d: %+v", count, s)
				}
				if len(s.Type) > MaxTypeName || strings.IndexByte(s.Params, 0) >= 0 || len(s.Params) > len(data) {
					t.Fatalf("bad spec %+v", s)
				}
			}
			if uint32(count) > h.TargetCount || count > len(data)/(SizeofTargetSpec+1) {
				t.Fatalf("%d specs from %d bytes, target_count %d", count, len(data), h.TargetCount)
			}
			if r.Next() {
				t.Fatal("Next after the end")
			}
			if ar.Next() || (ar.Err() == nil) != (r.Err() == nil) {
				t.Fatalf("aliased reader: more specs or a different error: %v vs %v", ar.Err(), r.Err())
			}
		}

		// Round trip through the encoder, as a fake kernel replies.
		if !validName(typ, MaxTypeName-1) || strings.IndexByte(params, 0) >= 0 {
			return
		}
		specs := make([]TargetSpec, int(n%8))
		var start uint64
		for i := range specs {
			p := params
			if i%2 == 1 {
				p = strings.ToUpper(params) + " " + typ
			}
			specs[i] = TargetSpec{Start: start, Length: uint64(i+1) * 8, Status: int32(i), Type: typ, Params: p}
			start += specs[i].Length
		}
		b := appendStatusTargets(make([]byte, DataStart), DataStart, specs)
		rh := Header{DataStart: DataStart, DataSize: uint32(len(b)), TargetCount: uint32(len(specs))}
		var got []TargetSpec
		r := NewTargetReader(&rh, b)
		for r.Next() {
			got = append(got, r.Spec())
		}
		if r.Err() != nil {
			t.Fatalf("reading back: %v", r.Err())
		}
		if len(specs) == 0 {
			specs = nil
		}
		if !reflect.DeepEqual(got, specs) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, specs)
		}
		// Every next is a multiple of 8, relative to the data area.
		ne := binary.NativeEndian
		off := DataStart
		for i := range specs {
			next := int(ne.Uint32(b[off+specOffNext:]))
			if next%8 != 0 || DataStart+next <= off {
				t.Fatalf("spec %d: next %d", i, next)
			}
			off = DataStart + next
		}
	})
}

// readRawNames checks what a NameListReader may hand out for any input.
func readRawNames(t *testing.T, data []byte, v Version) {
	r := NewNameListReader(data, v)
	count := 0
	for r.Next() {
		count++
		e := r.Entry()
		if strings.IndexByte(e.Name, 0) >= 0 || strings.IndexByte(e.UUID, 0) >= 0 || len(e.Name)+len(e.UUID) > len(data) {
			t.Fatalf("bad entry %+v", e)
		}
		if e.HasEventNr != v.AtLeast(v4_37) || (e.Flags != 0 && !v.AtLeast(v4_45)) || (e.UUID != "" && e.Flags&NameListHasUUID == 0) {
			t.Fatalf("entry %+v for version %v", e, v)
		}
	}
	if count > len(data)/(nlOffName+1) {
		t.Fatalf("%d entries from %d bytes", count, len(data))
	}
	if r.Next() {
		t.Fatal("Next after the end")
	}
}

func roundTripNames(t *testing.T, v Version, entries []NameEntry) {
	if len(entries) > 0 && entries[0].Dev == 0 {
		entries[0].Dev = 1 // dev 0 first is the empty list
	}
	want := make([]NameEntry, len(entries))
	for i, e := range entries {
		if strings.IndexByte(e.Name, 0) >= 0 || strings.IndexByte(e.UUID, 0) >= 0 {
			return
		}
		// What the reader can know at this version.
		e.HasEventNr = v.AtLeast(v4_37)
		if !e.HasEventNr {
			e.EventNr = 0
		}
		if !v.AtLeast(v4_45) {
			e.Flags = 0
		}
		if e.Flags&NameListHasUUID == 0 {
			e.UUID = ""
		}
		want[i] = e
	}
	b := appendNameList(nil, v, entries)
	if len(b)%8 != 0 {
		t.Fatalf("%d bytes", len(b))
	}
	got, err := readNames(b, v)
	if err != nil {
		t.Fatalf("reading back: %v", err)
	}
	if len(want) == 0 {
		want = nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip at %v:\n got %+v\nwant %+v", v, got, want)
	}
}

func FuzzNameListOld(f *testing.F) {
	f.Add(seedReply(f, goldenNamesOld), uint8(35), "pool", "thin-1", uint64(0xfd00), uint64(0xfd01))
	f.Add([]byte{}, uint8(0), "", "", uint64(0), uint64(0))
	f.Add(make([]byte, 8), uint8(36), "a", strings.Repeat("n", 127), uint64(1), uint64(0x10010300))
	f.Fuzz(func(t *testing.T, data []byte, minor uint8, name1, name2 string, dev1, dev2 uint64) {
		v := Version{4, uint32(minor % 37), 0} // 4.0 to 4.36
		readRawNames(t, data, v)
		roundTripNames(t, v, []NameEntry{{Dev: dev1, Name: name1}, {Dev: dev2, Name: name2}})
		roundTripNames(t, v, []NameEntry{{Dev: dev2, Name: name2}})
	})
}

func FuzzNameListNew(f *testing.F) {
	f.Add(seedReply(f, goldenNames441), uint8(41), "pool", "", uint32(0), "thin-1", uint64(0xfd00), uint32(3))
	f.Add(seedReply(f, goldenNames447), uint8(47), "pool", "THINP-POOL-1", uint32(NameListHasUUID), "thin-1", uint64(0xfd00), uint32(5))
	f.Add([]byte{}, uint8(45), "", "", uint32(NameListNoUUID), "", uint64(0), uint32(0))
	f.Add(make([]byte, 8), uint8(50), "x", strings.Repeat("u", 128), uint32(3), strings.Repeat("n", 127), uint64(1), uint32(1<<31))
	f.Fuzz(func(t *testing.T, data []byte, minor uint8, name1, uuid1 string, flags1 uint32, name2 string, dev uint64, ev uint32) {
		v := Version{4, 37 + uint32(minor%30), 0} // 4.37 to 4.66
		readRawNames(t, data, v)
		roundTripNames(t, v, []NameEntry{
			{Dev: dev, Name: name1, UUID: uuid1, Flags: flags1, EventNr: ev},
			{Dev: dev + 1, Name: name2, UUID: name1, Flags: flags1 ^ NameListHasUUID, EventNr: ^ev},
			{Dev: dev + 2, Name: uuid1, Flags: NameListNoUUID},
		})
	})
}

func FuzzVersionReader(f *testing.F) {
	f.Add(seedReply(f, goldenVersions), "thin-pool", uint32(1), uint32(23), "linear")
	f.Add([]byte{}, "", uint32(0), uint32(0), "")
	f.Add(make([]byte, 16), "x", uint32(0xffffffff), uint32(0), strings.Repeat("t", 100))
	f.Fuzz(func(t *testing.T, data []byte, name1 string, major, minor uint32, name2 string) {
		r := NewVersionReader(data)
		count := 0
		for r.Next() {
			count++
			if e := r.Entry(); strings.IndexByte(e.Name, 0) >= 0 || len(e.Name) > len(data) {
				t.Fatalf("bad entry %+v", e)
			}
		}
		if count > len(data)/(tvOffName+1) {
			t.Fatalf("%d entries from %d bytes", count, len(data))
		}
		if strings.IndexByte(name1, 0) >= 0 || strings.IndexByte(name2, 0) >= 0 {
			return
		}
		want := []TargetVersion{
			{Name: name1, Version: Version{major, minor, major ^ minor}},
			{Name: name2, Version: Version{minor, major, 0}},
			{Name: name1 + name2, Version: Version{1, 23, 0}},
		}
		b := appendVersions(nil, want)
		var got []TargetVersion
		r = NewVersionReader(b)
		for r.Next() {
			got = append(got, r.Entry())
		}
		if r.Err() != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip: %+v, %v", got, r.Err())
		}
	})
}

func FuzzParseDeps(f *testing.F) {
	f.Add(appendDeps(nil, []uint64{0x700, 0xfd01, 0x10010300}), []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, make([]byte, 64))
	f.Fuzz(func(t *testing.T, data, devBytes []byte) {
		devs, err := ParseDeps(data)
		if err == nil {
			if len(devs)*8+sizeofTargetDeps > len(data) && len(data) > 0 {
				t.Fatalf("%d devices from %d bytes", len(devs), len(data))
			}
			if len(data) > 0 && uint32(len(devs)) != binary.NativeEndian.Uint32(data) {
				t.Fatalf("%d devices, count %d", len(devs), binary.NativeEndian.Uint32(data))
			}
		} else if devs != nil {
			t.Fatal("devices with an error")
		}
		want := make([]uint64, len(devBytes)/8)
		for i := range want {
			want[i] = binary.NativeEndian.Uint64(devBytes[8*i:])
		}
		got, err := ParseDeps(appendDeps(nil, want))
		if err != nil || len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
			t.Fatalf("round trip: %x, %v; want %x", got, err, want)
		}
	})
}

func FuzzParseString(f *testing.F) {
	f.Add([]byte("0: 0+2097152 2097152 dmstats -\n\x00"), "1")
	f.Add([]byte{}, "")
	f.Add([]byte("no nul"), "a\x00b")
	f.Fuzz(func(t *testing.T, data []byte, s string) {
		got, err := ParseString(data)
		i := bytes.IndexByte(data, 0)
		switch {
		case len(data) == 0:
			if got != "" || err != nil {
				t.Fatalf("empty: %q, %v", got, err)
			}
		case i < 0:
			if err != ErrMalformed {
				t.Fatalf("no NUL: %q, %v", got, err)
			}
		default:
			if err != nil || got != string(data[:i]) {
				t.Fatalf("%q, %v; want %q", got, err, data[:i])
			}
		}
		if strings.IndexByte(s, 0) >= 0 {
			return
		}
		if got, err := ParseString(append([]byte(s), 0, 'x')); got != s || err != nil {
			t.Fatalf("round trip %q: %q, %v", s, got, err)
		}
	})
}
