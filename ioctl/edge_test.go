package ioctl

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestStringLimits(t *testing.T) {
	n := strings.Repeat
	tests := []struct {
		name string
		r    Request
		want error
	}{
		{"name 127", Request{Cmd: CmdDevCreate, Header: Header{Name: n("a", 127)}}, nil},
		{"name 128", Request{Cmd: CmdDevCreate, Header: Header{Name: n("a", 128)}}, ErrNameTooLong},
		{"name 1000", Request{Cmd: CmdDevCreate, Header: Header{Name: n("a", 1000)}}, ErrNameTooLong},
		{"uuid 128", Request{Cmd: CmdDevCreate, Header: Header{Name: "a", UUID: n("u", 128)}}, nil},
		{"uuid 129", Request{Cmd: CmdDevCreate, Header: Header{Name: "a", UUID: n("u", 129)}}, ErrUUIDTooLong},
		{"type 15", Request{Cmd: CmdTableLoad, Targets: []TargetSpec{{Type: n("t", 15)}}}, nil},
		{"type 16", Request{Cmd: CmdTableLoad, Targets: []TargetSpec{{Type: n("t", 16)}}}, ErrTypeTooLong},
		{"type 16 second", Request{Cmd: CmdTableLoad, Targets: []TargetSpec{{Type: "zero"}, {Type: n("t", 16)}}}, ErrTypeTooLong},
		{"NUL in name", Request{Cmd: CmdDevCreate, Header: Header{Name: "a\x00b"}}, ErrNUL},
		{"NUL at end of name", Request{Cmd: CmdDevCreate, Header: Header{Name: "ab\x00"}}, ErrNUL},
		{"NUL in uuid", Request{Cmd: CmdDevCreate, Header: Header{Name: "a", UUID: "\x00"}}, ErrNUL},
		{"NUL in type", Request{Cmd: CmdTableLoad, Targets: []TargetSpec{{Type: "li\x00near"}}}, ErrNUL},
		{"NUL in params", Request{Cmd: CmdTableLoad, Targets: []TargetSpec{{Type: "linear", Params: "7:0\x000"}}}, ErrNUL},
		{"NUL in message", Request{Cmd: CmdTargetMsg, Message: "delete\x001"}, ErrNUL},
		{"NUL in new name", Request{Cmd: CmdDevRename, String: "x\x00"}, ErrNUL},
		{"NUL in geometry", Request{Cmd: CmdDevSetGeometry, String: "1 2\x00 3 4"}, ErrNUL},
		{"long message", Request{Cmd: CmdTargetMsg, Message: n("m", 100000)}, nil},
		{"empty strings", Request{Cmd: CmdDevRename}, nil},
		// A field that the command does not carry is not looked at.
		{"NUL in unused message", Request{Cmd: CmdDevStatus, Message: "\x00", String: "\x00"}, nil},
	}
	for _, tt := range tests {
		buf := make([]byte, tt.r.Size())
		_, err := tt.r.MarshalTo(buf)
		if err != tt.want {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.want)
		}
		if tt.want != nil {
			continue
		}
		p, err := parseRequest(tt.r.Cmd, buf)
		if err != nil {
			t.Errorf("%s: parseRequest: %v", tt.name, err)
			continue
		}
		if p.Header.Name != tt.r.Header.Name || p.Header.UUID != tt.r.Header.UUID {
			t.Errorf("%s: round trip name %q uuid %q", tt.name, p.Header.Name, p.Header.UUID)
		}
		if tt.r.Cmd == CmdTableLoad && p.Targets[len(p.Targets)-1].Type != tt.r.Targets[len(tt.r.Targets)-1].Type {
			t.Errorf("%s: round trip type %q", tt.name, p.Targets[0].Type)
		}
		if tt.r.Cmd == CmdTargetMsg && p.Message != tt.r.Message {
			t.Errorf("%s: round trip message of %d bytes", tt.name, len(p.Message))
		}
	}
	// Header.MarshalTo applies the same limits.
	for _, h := range []Header{{Name: n("a", 128)}, {UUID: n("a", 129)}, {Name: "\x00"}} {
		if err := h.MarshalTo(make([]byte, SizeofHeader)); err == nil {
			t.Errorf("Header %q/%q encoded", h.Name, h.UUID)
		}
	}
}

func TestShortBuffers(t *testing.T) {
	var h Header
	if err := h.MarshalTo(make([]byte, SizeofHeader-1)); err != ErrShortBuffer {
		t.Errorf("Header.MarshalTo(311): %v", err)
	}
	if err := h.UnmarshalBinary(make([]byte, SizeofHeader-1)); err != ErrShortBuffer {
		t.Errorf("Header.UnmarshalBinary(311): %v", err)
	}
	if err := h.UnmarshalBinary(nil); err != ErrShortBuffer {
		t.Errorf("Header.UnmarshalBinary(nil): %v", err)
	}
	for _, r := range []Request{
		{Cmd: CmdVersion},
		{Cmd: CmdTableLoad, Targets: []TargetSpec{{Type: "linear", Params: "7:0 0"}, {Type: "zero"}}},
		{Cmd: CmdTargetMsg, Message: "create_thin 1"},
		{Cmd: CmdDevRename, String: "new"},
	} {
		if _, err := r.MarshalTo(make([]byte, r.Size()-1)); err != ErrShortBuffer {
			t.Errorf("%v: MarshalTo(Size-1): %v", r.Cmd, err)
		}
		if n, err := r.MarshalTo(make([]byte, r.Size())); err != nil || n != r.Size() {
			t.Errorf("%v: MarshalTo(Size): %d, %v", r.Cmd, n, err)
		}
	}
	specs := []TargetSpec{{Type: "linear", Params: "7:0 0"}, {Type: "error"}}
	if targetsSize(specs) != 96 {
		t.Errorf("targetsSize = %d, want 96", targetsSize(specs))
	}
	for n := 0; n < 96; n++ {
		if _, err := putTargets(make([]byte, n), specs); err != ErrShortBuffer {
			t.Errorf("putTargets(%d bytes): %v", n, err)
		}
	}
	if n, err := putTargets(make([]byte, 96), specs); n != 96 || err != nil {
		t.Errorf("putTargets(96): %d, %v", n, err)
	}
	if n, err := putTargets(nil, nil); n != 0 || err != nil {
		t.Errorf("putTargets(nil, nil): %d, %v", n, err)
	}
	if targetsSize(nil) != 0 {
		t.Error("targetsSize(nil) != 0")
	}
}

func TestPayloadBounds(t *testing.T) {
	b := make([]byte, 1024)
	for i := range b {
		b[i] = byte(i)
	}
	tests := []struct {
		start, size uint32
		blen        int
		lo, hi      int // want b[lo:hi]; lo == -1: want nil
		err         error
	}{
		{312, 305, 1024, -1, 0, nil},          // no payload: data_size 305
		{312, 312, 1024, -1, 0, nil},          // no payload: data_size 312
		{312, 0, 1024, -1, 0, nil},            // nothing copied back
		{312, 313, 1024, 312, 313, nil},       // one byte
		{312, 1024, 1024, 312, 1024, nil},     // the whole buffer
		{312, 1025, 1024, 0, 0, ErrMalformed}, // data_size past the buffer
		{312, 0xffffffff, 1024, 0, 0, ErrMalformed},
		{305, 400, 1024, 305, 400, nil},      // data_start at offsetof(data)
		{304, 400, 1024, 0, 0, ErrMalformed}, // data_start inside the header
		{0, 400, 1024, 0, 0, ErrMalformed},
		{500, 400, 1024, 0, 0, ErrMalformed}, // data_start past data_size
		{400, 400, 1024, -1, 0, nil},         // empty
		{0xffffffff, 400, 1024, 0, 0, ErrMalformed},
		{312, 400, 312, 0, 0, ErrMalformed}, // buffer cut short
		{312, 305, 10, -1, 0, nil},          // no payload, whatever the buffer
	}
	for _, tt := range tests {
		h := Header{DataStart: tt.start, DataSize: tt.size}
		p, err := h.Payload(b[:tt.blen])
		if err != tt.err {
			t.Errorf("start %d size %d len %d: err %v, want %v", tt.start, tt.size, tt.blen, err, tt.err)
			continue
		}
		if tt.err != nil {
			if p != nil {
				t.Errorf("start %d size %d: payload with an error", tt.start, tt.size)
			}
			continue
		}
		if tt.lo < 0 {
			if len(p) != 0 {
				t.Errorf("start %d size %d: %d bytes, want none", tt.start, tt.size, len(p))
			}
			continue
		}
		if len(p) != tt.hi-tt.lo || (len(p) > 0 && &p[0] != &b[tt.lo]) {
			t.Errorf("start %d size %d: got %d bytes, want b[%d:%d]", tt.start, tt.size, len(p), tt.lo, tt.hi)
		}
	}
}

func TestParseTargetsMalformed(t *testing.T) {
	good := Request{Cmd: CmdTableLoad, Targets: []TargetSpec{
		{Length: 8, Type: "linear", Params: "7:0 0"},
		{Start: 8, Length: 8, Type: "zero"},
	}}
	buf := make([]byte, good.Size())
	if _, err := good.MarshalTo(buf); err != nil {
		t.Fatal(err)
	}
	if specs, err := parseTargets(buf, DataStart, 2); err != nil || len(specs) != 2 {
		t.Fatalf("good: %v, %v", specs, err)
	}
	ne := binary.NativeEndian
	mutate := func(f func(b []byte)) []byte {
		b := append([]byte(nil), buf...)
		f(b)
		return b
	}
	next0 := DataStart + specOffNext
	tests := []struct {
		name  string
		b     []byte
		start uint32
		count uint32
	}{
		{"start inside the header", buf, 304, 2},
		{"start at 305, before sizeof(dm_ioctl)", buf, 305, 1},
		{"start not aligned", append(make([]byte, 4), buf...), DataStart + 4, 1},
		{"start past the end", buf, uint32(len(buf)), 1},
		{"start huge", buf, 0xfffffff8, 1},
		{"more specs than fit", buf, DataStart, 3},
		{"count absurd", buf, DataStart, 0xffffffff},
		{"next not aligned", mutate(func(b []byte) { ne.PutUint32(b[next0:], 52) }), DataStart, 2},
		{"next overlaps params", mutate(func(b []byte) { ne.PutUint32(b[next0:], 40) }), DataStart, 2},
		{"next zero", mutate(func(b []byte) { ne.PutUint32(b[next0:], 0) }), DataStart, 2},
		{"next past the end", mutate(func(b []byte) { ne.PutUint32(b[next0:], 0xfffffff8) }), DataStart, 2},
		{"params without NUL", mutate(func(b []byte) {
			for i := DataStart + SizeofTargetSpec; i < len(b); i++ {
				b[i] = 'p'
			}
		}), DataStart, 1},
		{"cut in the spec", buf[:DataStart+20], DataStart, 1},
		{"cut before the NUL", buf[:DataStart+SizeofTargetSpec+5], DataStart, 1},
	}
	for _, tt := range tests {
		if specs, err := parseTargets(tt.b, tt.start, tt.count); err != ErrMalformed {
			t.Errorf("%s: %+v, %v; want ErrMalformed", tt.name, specs, err)
		}
	}
	// The last spec's next is never followed, so it may be anything.
	last := DataStart + 48 + specOffNext
	b := mutate(func(b []byte) { ne.PutUint32(b[last:], 3) })
	if specs, err := parseTargets(b, DataStart, 2); err != nil || len(specs) != 2 {
		t.Errorf("odd last next: %v, %v", specs, err)
	}
	// count 0: nothing to read (the kernel says EINVAL; this is its reader).
	if specs, err := parseTargets(buf, 0, 0); specs != nil || err != nil {
		t.Errorf("count 0: %v, %v", specs, err)
	}
}

func TestParseRequestMalformed(t *testing.T) {
	mk := func(r Request) []byte {
		b := make([]byte, r.Size())
		if _, err := r.MarshalTo(b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	ne := binary.NativeEndian
	with := func(b []byte, off int, v uint32) []byte {
		b = append([]byte(nil), b...)
		ne.PutUint32(b[off:], v)
		return b
	}
	msg := mk(Request{Cmd: CmdTargetMsg, Message: "x"})
	ren := mk(Request{Cmd: CmdDevRename, String: "new"})
	load := mk(Request{Cmd: CmdTableLoad, Targets: []TargetSpec{{Type: "zero"}}})
	tests := []struct {
		name string
		c    Cmd
		b    []byte
		err  error
	}{
		{"short", CmdDevStatus, make([]byte, 311), ErrShortBuffer},
		{"data_size past buffer", CmdDevStatus, with(mk(Request{Cmd: CmdDevStatus}), offDataSize, 313), ErrMalformed},
		{"data_size below 305", CmdDevStatus, with(mk(Request{Cmd: CmdDevStatus}), offDataSize, 304), ErrMalformed},
		{"message start inside the header", CmdTargetMsg, with(msg, offDataStart, 300), ErrMalformed},
		{"message start past the end", CmdTargetMsg, with(msg, offDataStart, 0xfffffff0), ErrMalformed},
		{"message without room for sector", CmdTargetMsg, with(msg, offDataSize, DataStart+4), ErrMalformed},
		{"message without NUL", CmdTargetMsg, with(msg, offDataSize, DataStart+9), ErrMalformed},
		{"message at data_size", CmdTargetMsg, with(msg, offDataSize, DataStart+8), ErrMalformed},
		{"string start inside the header", CmdDevRename, with(ren, offDataStart, 300), ErrMalformed},
		{"string start past the end", CmdDevRename, with(ren, offDataStart, 4096), ErrMalformed},
		{"string without NUL", CmdDevRename, with(ren, offDataSize, DataStart+3), ErrMalformed},
		{"geometry without payload", CmdDevSetGeometry, with(ren, offDataSize, DataStart), ErrMalformed},
		{"load with bad start", CmdTableLoad, with(load, offDataStart, 8), ErrMalformed},
		{"load with too many targets", CmdTableLoad, with(load, offTargetCount, 2), ErrMalformed},
	}
	for _, tt := range tests {
		r, err := parseRequest(tt.c, tt.b)
		if err != tt.err || r != nil {
			t.Errorf("%s: %+v, %v; want %v", tt.name, r, err, tt.err)
		}
	}
	// The data_start the kernel accepts for strings begins at 305.
	b := with(ren, offDataStart, 305)
	copy(b[305:], "abc\x00")
	if r, err := parseRequest(CmdDevRename, b); err != nil || r.String != "abc" {
		t.Errorf("data_start 305: %+v, %v", r, err)
	}
}

func TestTargetReaderMalformed(t *testing.T) {
	specs := []TargetSpec{{Length: 8, Type: "linear", Params: "7:0 0"}, {Start: 8, Length: 8, Type: "zero"}}
	hdr := make([]byte, DataStart)
	b := appendStatusTargets(hdr, DataStart, specs)
	good := Header{DataStart: DataStart, DataSize: uint32(len(b)), TargetCount: 2}
	ne := binary.NativeEndian
	read := func(h Header, b []byte) (int, error) {
		r := NewTargetReader(&h, b)
		n := 0
		for r.Next() {
			n++
			if n > 1000 {
				return n, errors.New("no end")
			}
		}
		if r.Next() {
			return n, errors.New("Next true after the end")
		}
		return n, r.Err()
	}
	if n, err := read(good, b); n != 2 || err != nil {
		t.Fatalf("good: %d, %v", n, err)
	}
	mutate := func(f func(b []byte)) []byte {
		c := append([]byte(nil), b...)
		f(c)
		return c
	}
	next0 := DataStart + specOffNext
	tests := []struct {
		name string
		h    Header
		b    []byte
	}{
		{"data_size past the buffer", Header{DataStart: DataStart, DataSize: uint32(len(b) + 1), TargetCount: 2}, b},
		{"data_start inside the header", Header{DataStart: 300, DataSize: uint32(len(b)), TargetCount: 2}, b},
		{"more targets than specs", Header{DataStart: DataStart, DataSize: uint32(len(b)), TargetCount: 3}, b},
		{"no payload", Header{DataStart: DataStart, DataSize: DataOffset, TargetCount: 1}, b},
		{"next back to itself", good, mutate(func(b []byte) { ne.PutUint32(b[next0:], 0) })},
		{"next into params", good, mutate(func(b []byte) { ne.PutUint32(b[next0:], 44) })},
		{"next past the end", good, mutate(func(b []byte) { ne.PutUint32(b[next0:], 0xffffffff) })},
		{"params without NUL", good, mutate(func(b []byte) {
			for i := DataStart + SizeofTargetSpec; i < len(b); i++ {
				b[i] = 'p'
			}
		})},
	}
	for _, tt := range tests {
		if n, err := read(tt.h, tt.b); err != ErrMalformed {
			t.Errorf("%s: %d specs, err %v; want ErrMalformed", tt.name, n, err)
		}
	}
	// A loop through next pointers is caught: specs 0 -> 1 -> 0.
	loop := mutate(func(b []byte) { ne.PutUint32(b[DataStart+48+specOffNext:], 0) })
	if n, err := read(Header{DataStart: DataStart, DataSize: uint32(len(b)), TargetCount: 1000}, loop); err != ErrMalformed || n != 2 {
		t.Errorf("loop: %d specs, %v", n, err)
	}
	// Zero targets needs no payload at all, even with a silly data_start.
	if n, err := read(Header{DataStart: 0, DataSize: DataOffset}, hdr); n != 0 || err != nil {
		t.Errorf("no targets: %d, %v", n, err)
	}
	// Reset reuses a reader and clears its error.
	r := NewTargetReader(&Header{DataSize: 1 << 20, TargetCount: 1}, b)
	if r.Next() || r.Err() == nil {
		t.Fatal("bad header accepted")
	}
	r.Reset(&good, b)
	var got []TargetSpec
	for r.Next() {
		got = append(got, r.Spec())
	}
	if r.Err() != nil || !reflect.DeepEqual(got, specs) {
		t.Errorf("after Reset: %+v, %v", got, r.Err())
	}
}

func TestNameListMalformed(t *testing.T) {
	v := Version{4, 47, 0}
	entries := []NameEntry{
		{Dev: 0xfd00, Name: "pool", EventNr: 1, Flags: NameListHasUUID, UUID: "U", HasEventNr: true},
		{Dev: 0xfd01, Name: "thin", EventNr: 2, Flags: NameListNoUUID, HasEventNr: true},
	}
	good := appendNameList(nil, v, entries)
	if got, err := readNames(good, v); err != nil || !reflect.DeepEqual(got, entries) {
		t.Fatalf("good: %+v, %v", got, err)
	}
	ne := binary.NativeEndian
	mutate := func(f func(b []byte)) []byte {
		c := append([]byte(nil), good...)
		f(c)
		return c
	}
	tests := []struct {
		name string
		v    Version
		b    []byte
	}{
		{"1 byte", v, []byte{1}},
		{"7 bytes", v, []byte{1, 0, 0, 0, 0, 0, 0}},
		{"dev only", v, good[:8]},
		{"no name NUL", v, good[:14]},
		{"no room for event_nr", v, good[:20]},
		{"no room for event_nr, 4.37", Version{4, 37, 0}, good[:20]},
		{"uuid without NUL", v, good[:33]},
		{"next into the entry", v, mutate(func(b []byte) { ne.PutUint32(b[nlOffNext:], 8) })},
		{"next past the end", v, mutate(func(b []byte) { ne.PutUint32(b[nlOffNext:], 4096) })},
		{"next cuts the last entry", v, good[:len(good)-8]},
		{"old layout, next inside the name", Version{4, 0, 0}, mutate(func(b []byte) { ne.PutUint32(b[nlOffNext:], 16) })},
	}
	for _, tt := range tests {
		if got, err := readNames(tt.b, tt.v); err != ErrMalformed {
			t.Errorf("%s: %+v, %v; want ErrMalformed", tt.name, got, err)
		}
	}
	// A name list cannot loop: every next moves forward past the entry.
	if got, err := readNames(mutate(func(b []byte) { ne.PutUint32(b[nlOffNext:], 0xfffffff8) }), v); err != ErrMalformed || len(got) != 1 {
		t.Errorf("huge next: %d entries, %v", len(got), err)
	}
}

func TestVersionReaderMalformed(t *testing.T) {
	good := appendVersions(nil, []TargetVersion{{"thin-pool", Version{1, 23, 0}}, {"zero", Version{1, 2, 0}}})
	ne := binary.NativeEndian
	mutate := func(f func(b []byte)) []byte {
		c := append([]byte(nil), good...)
		f(c)
		return c
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"short", good[:15]},
		{"no NUL", good[:16+9]},
		{"next inside the entry", mutate(func(b []byte) { ne.PutUint32(b, 20) })},
		{"next past the end", mutate(func(b []byte) { ne.PutUint32(b, 1024) })},
		{"last entry cut", good[:len(good)-4]},
	}
	for _, tt := range tests {
		r := NewVersionReader(tt.b)
		n := 0
		for r.Next() {
			n++
		}
		if r.Err() != ErrMalformed {
			t.Errorf("%s: %d entries, %v", tt.name, n, r.Err())
		}
	}
}

func TestParseDepsMalformed(t *testing.T) {
	ne := binary.NativeEndian
	b := appendDeps(nil, []uint64{1, 2})
	for _, p := range [][]byte{
		b[:7],
		b[:len(b)-1],
		func() []byte { c := append([]byte(nil), b...); ne.PutUint32(c, 3); return c }(),
		func() []byte { c := append([]byte(nil), b...); ne.PutUint32(c, 0xffffffff); return c }(),
	} {
		if devs, err := ParseDeps(p); err != ErrMalformed || devs != nil {
			t.Errorf("%d bytes: %v, %v", len(p), devs, err)
		}
	}
	if devs, err := ParseDeps(nil); devs != nil || err != nil {
		t.Errorf("empty: %v, %v", devs, err)
	}
	// Extra bytes after the devices are allowed (count says how many).
	if devs, err := ParseDeps(append(b, 0, 0, 0)); err != nil || len(devs) != 2 {
		t.Errorf("trailing bytes: %v, %v", devs, err)
	}
}

func TestParseString(t *testing.T) {
	tests := []struct {
		p    string
		want string
		err  error
	}{
		{"", "", nil},
		{"\x00", "", nil},
		{"ok\x00", "ok", nil},
		{"a\x00b\x00", "a", nil},
		{"no nul", "", ErrMalformed},
	}
	for _, tt := range tests {
		s, err := ParseString([]byte(tt.p))
		if s != tt.want || err != tt.err {
			t.Errorf("ParseString(%q) = %q, %v", tt.p, s, err)
		}
	}
}
