package dmtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

func TestCreate(t *testing.T) {
	f := newFixture(t)
	g0 := f.k.GlobalEvent()
	r := named(ioctl.CmdDevCreate, "vol")
	r.Header.UUID = "uuid-vol"
	r.Header.EventNr = 0x0d4d0001 // not sent: Request zeroes it
	b := rawBuf(t, r, 312)
	if err := f.k.Ioctl(r.Cmd.Request(), b); err != nil {
		t.Fatal(err)
	}
	h := hdr(t, b)
	want := ioctl.Header{Version: DefaultVersion, DataSize: 305, DataStart: 312,
		Dev: ioctl.Dev{Major: 253, Minor: 0}.Encode(), Name: "vol", UUID: "uuid-vol"}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("reply (-want +got):\n%s", diff)
	}
	// Only 305 bytes go back: data[7] keeps the caller's bytes.
	if !bytes.Equal(b[305:312], make([]byte, 7)) {
		t.Errorf("data[7] = %x", b[305:312])
	}
	if f.k.GlobalEvent() != g0+1 {
		t.Error("create raised no global event")
	}

	if h := f.create("second"); h.Dev != (ioctl.Dev{Major: 253, Minor: 1}.Encode()) {
		t.Errorf("second minor: %#x", h.Dev)
	}
	p := named(ioctl.CmdDevCreate, "persistent")
	p.Header.Flags = ioctl.FlagPersistentDev
	p.Header.Dev = ioctl.Dev{Major: 253, Minor: 300}.Encode()
	if h, _ := f.mustDo(p); h.Dev != (ioctl.Dev{Major: 253, Minor: 300}.Encode()) {
		t.Errorf("persistent minor: %#x", h.Dev)
	}
	if h := f.create("third"); h.Dev != (ioctl.Dev{Major: 253, Minor: 2}.Encode()) {
		t.Errorf("third minor: %#x", h.Dev)
	}

	for _, tc := range []struct {
		h    ioctl.Header
		want unix.Errno
	}{
		{ioctl.Header{}, unix.EINVAL},
		{ioctl.Header{UUID: "only-uuid"}, unix.EINVAL},
		{ioctl.Header{Name: "a/b"}, unix.EINVAL},
		{ioctl.Header{Name: "vol"}, unix.EBUSY},
		{ioctl.Header{Name: "other", UUID: "uuid-vol"}, unix.EBUSY},
		// A taken minor fails dm_create() before the name is looked at.
		{ioctl.Header{Name: "vol", Flags: ioctl.FlagPersistentDev, Dev: ioctl.Dev{Major: 253, Minor: 300}.Encode()}, unix.ENXIO},
	} {
		_, _, err := f.do(&ioctl.Request{Cmd: ioctl.CmdDevCreate, Header: tc.h})
		wantErrno(t, fmt.Sprintf("create %+v", tc.h), err, tc.want)
	}
	// 6.1 accepts these names.
	for _, n := range []string{"control", ".", ".."} {
		f.create(n)
	}
}

func TestRemove(t *testing.T) {
	f := newFixture(t)
	f.activate("vol", ioctl.TargetSpec{Length: 8, Type: "zero"})
	wantErrno(t, "missing", f.remove("missing"), unix.ENXIO)

	closeFn, err := f.k.Open("vol")
	if err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "open", f.remove("vol"), unix.EBUSY)
	if di := f.info("vol"); di.OpenCount != 1 {
		t.Errorf("open count %d", di.OpenCount)
	}

	// Deferred: success, no uevent, the flag stays in the reply.
	r := named(ioctl.CmdDevRemove, "vol")
	r.Header.Flags = ioctl.FlagDeferredRemove
	r.Header.EventNr = 0x0d4d1234
	h, _ := f.mustDo(r)
	if h.Flags&ioctl.FlagUeventGenerated != 0 || h.Flags&ioctl.FlagDeferredRemove == 0 || h.EventNr != 0x0d4d1234 {
		t.Errorf("deferred reply %+v", h)
	}
	st, _ := f.mustDo(named(ioctl.CmdDevStatus, "vol"))
	if st.Flags&ioctl.FlagDeferredRemove == 0 || st.OpenCount != 1 {
		t.Errorf("info %+v", st)
	}
	// Cancel it, then defer again: the device goes when the opener closes.
	f.mustMsg("vol", "@cancel_deferred_remove")
	if f.info("vol").DeferredRemove {
		t.Error("cancel did not clear the flag")
	}
	wantErrno(t, "cancel with args", f.msg("vol", "@cancel_deferred_remove now"), unix.EINVAL)
	f.mustDo(r)
	closeFn()
	closeFn()
	if _, ok := f.k.Device("vol"); ok {
		t.Error("deferred remove did not happen on close")
	}

	// Plain remove: UEVENT_GENERATED, DEFERRED_REMOVE cleared, name filled
	// in, the cookie left alone.
	f.create("gone")
	r = &ioctl.Request{Cmd: ioctl.CmdDevRemove, Header: ioctl.Header{Dev: ioctl.Dev{Major: 253, Minor: 0}.Encode(),
		Flags: ioctl.FlagDeferredRemove, EventNr: 0x0d4d0007}}
	h, _ = f.mustDo(r)
	if h.Flags != ioctl.FlagUeventGenerated || h.Name != "gone" || h.EventNr != 0x0d4d0007 {
		t.Errorf("remove reply %+v", h)
	}
	if _, err := f.k.Open("gone"); errnoOf(err) != unix.ENXIO {
		t.Errorf("open removed: %v", err)
	}
}

func TestRemoveWakesWaiters(t *testing.T) {
	f := newFixture(t)
	f.activate("vol", ioctl.TargetSpec{Length: 8, Type: "zero"})
	ev := f.info("vol").EventNr
	done := make(chan error)
	go func() {
		r := named(ioctl.CmdDevWait, "vol")
		r.Header.EventNr = ev
		_, _, err := f.do(r)
		done <- err
	}()
	waitCalls(t, f.k, ioctl.CmdDevWait)
	if err := f.remove("vol"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("wait: %v", err)
	}
}

func TestRename(t *testing.T) {
	f := newFixture(t)
	f.activate("old", ioctl.TargetSpec{Length: 8, Type: "zero"})
	f.create("taken")
	ev, g := f.info("old").EventNr, f.k.GlobalEvent()

	r := &ioctl.Request{Cmd: ioctl.CmdDevRename, Header: ioctl.Header{Name: "old", EventNr: 0x0d4d0001}, String: "new"}
	h, _ := f.mustDo(r)
	// The reply is __dev_status() with the old name still in the header.
	if h.Name != "old" || h.Flags&ioctl.FlagUeventGenerated == 0 || h.EventNr != ev+1 {
		t.Errorf("rename reply %+v", h)
	}
	if f.k.GlobalEvent() != g+2 { // the device event and the global one
		t.Errorf("global event %d -> %d", g, f.k.GlobalEvent())
	}
	if _, ok := f.k.Device("new"); !ok {
		t.Fatal("not renamed")
	}

	rename := func(h ioctl.Header, s string) error {
		_, _, err := f.do(&ioctl.Request{Cmd: ioctl.CmdDevRename, Header: h, String: s})
		return err
	}
	wantErrno(t, "to existing", rename(ioctl.Header{Name: "new"}, "taken"), unix.EBUSY)
	wantErrno(t, "missing", rename(ioctl.Header{Name: "missing"}, "x"), unix.ENXIO)
	// The new name is checked before the old one is looked up.
	wantErrno(t, "missing to existing", rename(ioctl.Header{Name: "missing"}, "taken"), unix.EBUSY)
	wantErrno(t, "slash", rename(ioctl.Header{Name: "new"}, "a/b"), unix.EINVAL)
	wantErrno(t, "empty", rename(ioctl.Header{Name: "new"}, ""), unix.EINVAL)
	wantErrno(t, "too long", rename(ioctl.Header{Name: "new"}, strings.Repeat("n", 128)), unix.EINVAL)

	// Set the uuid once.
	setUUID := func(name, uuid string) error {
		return rename(ioctl.Header{Name: name, Flags: ioctl.FlagUUID}, uuid)
	}
	if err := setUUID("new", "UUID-1"); err != nil {
		t.Fatal(err)
	}
	if di := f.info("new"); di.UUID != "UUID-1" || di.Name != "new" {
		t.Errorf("after set uuid: %+v", di)
	}
	wantErrno(t, "uuid twice", setUUID("new", "UUID-2"), unix.EINVAL)
	wantErrno(t, "uuid taken", setUUID("taken", "UUID-1"), unix.EBUSY)
	if err := setUUID("taken", strings.Repeat("u", 128)); err != nil {
		t.Errorf("128-byte uuid: %v", err)
	}
	// The old device is looked up by name only.
	wantErrno(t, "by uuid", rename(ioctl.Header{UUID: "UUID-1"}, "x"), unix.ENXIO)

	// new_data must be inside the data area.
	b := rawBuf(t, r, 400)
	binary.NativeEndian.PutUint32(b[16:], 300)
	copy(b[48:], "new\x00")
	wantErrno(t, "data_start 300", f.k.Ioctl(r.Cmd.Request(), b), unix.EINVAL)
	binary.NativeEndian.PutUint32(b[16:], 4000)
	wantErrno(t, "data_start past the end", f.k.Ioctl(r.Cmd.Request(), b), unix.EINVAL)
	// Not NUL-terminated before data_size.
	b = rawBuf(t, &ioctl.Request{Cmd: ioctl.CmdDevRename, Header: ioctl.Header{Name: "new"}, String: "abcdefg"}, 320)
	b[319] = 'x'
	wantErrno(t, "unterminated", f.k.Ioctl(r.Cmd.Request(), b), unix.EINVAL)
}

func TestSuspendResume(t *testing.T) {
	f := newFixture(t)
	f.create("vol")

	// A device with no table resumes (it is not suspended) ...
	h, _ := f.mustDo(named(ioctl.CmdDevSuspend, "vol"))
	if h.Flags&(ioctl.FlagSuspend|ioctl.FlagUeventGenerated) != 0 {
		t.Errorf("resume of a fresh device: %v", h.Flags)
	}
	// ... can be suspended, and then not resumed again.
	f.suspend("vol")
	wantErrno(t, "resume without a table", f.resume("vol"), unix.EINVAL)
	if !f.info("vol").Suspended {
		t.Error("not suspended")
	}

	f.mustLoad("vol", linear(0, 100, "7:2 0"))
	st, _ := f.mustDo(named(ioctl.CmdDevStatus, "vol"))
	if st.Flags&ioctl.FlagInactivePresent == 0 || st.Flags&ioctl.FlagActivePresent != 0 || st.TargetCount != 0 {
		t.Errorf("after load: %+v", st)
	}
	r := named(ioctl.CmdDevSuspend, "vol")
	r.Header.EventNr = 0x0d4d0042
	h, _ = f.mustDo(r)
	if h.Flags&(ioctl.FlagSuspend|ioctl.FlagInactivePresent) != 0 ||
		h.Flags&(ioctl.FlagActivePresent|ioctl.FlagUeventGenerated) == 0 || h.TargetCount != 1 || h.EventNr != 1 {
		t.Errorf("resume reply %+v", h)
	}

	// Suspend with NOFLUSH and SKIP_LOCKFS, suspend again (no-op), resume
	// with nothing to swap.
	s := named(ioctl.CmdDevSuspend, "vol")
	s.Header.Flags = ioctl.FlagSuspend | ioctl.FlagNoFlush | ioctl.FlagSkipLockfs
	h, _ = f.mustDo(s)
	if h.Flags&ioctl.FlagSuspend == 0 {
		t.Errorf("suspend reply %v", h.Flags)
	}
	f.mustDo(s)
	f.mustResume("vol")
	if di := f.info("vol"); di.Suspended || di.EventNr != 2 {
		t.Errorf("after resume: %+v", di)
	}

	// A read-only table makes a read-only disk.
	r = named(ioctl.CmdTableLoad, "vol")
	r.Header.Flags = ioctl.FlagReadOnly
	r.Targets = []ioctl.TargetSpec{linear(0, 100, "7:2 100")}
	f.mustDo(r)
	q := named(ioctl.CmdDevStatus, "vol")
	q.Header.Flags = ioctl.FlagQueryInactiveTable
	if h, _ := f.mustDo(q); h.Flags&ioctl.FlagReadOnly == 0 || h.TargetCount != 1 {
		t.Errorf("inactive status: %+v", h)
	}
	f.mustResume("vol")
	if h, _ := f.mustDo(named(ioctl.CmdDevStatus, "vol")); h.Flags&ioctl.FlagReadOnly == 0 {
		t.Errorf("status after read-only resume: %v", h.Flags)
	}

	// A reload whose device is too small fails the swap: still suspended,
	// old table live, new one gone.
	f.mustLoad("vol", linear(0, 100, fmt.Sprintf("7:2 %d", spareSectors-50)))
	wantErrno(t, "resume too small", f.resume("vol"), unix.EINVAL)
	di := f.info("vol")
	if !di.Suspended || di.Inactive != nil || di.Live[0].Params != "7:2 100" {
		t.Errorf("after failed swap: %+v", di)
	}
	f.mustResume("vol")
}

func TestTableClear(t *testing.T) {
	f := newFixture(t)
	f.activate("vol", linear(0, 8, "7:2 0"))
	f.mustLoad("vol", linear(0, 16, "7:2 0"))
	h, _ := f.mustDo(named(ioctl.CmdTableClear, "vol"))
	if h.Flags&ioctl.FlagInactivePresent != 0 || h.Flags&ioctl.FlagActivePresent == 0 {
		t.Errorf("clear reply %v", h.Flags)
	}
	if di := f.info("vol"); di.Inactive != nil || di.Live == nil {
		t.Errorf("after clear %+v", di)
	}
	_, _, err := f.do(named(ioctl.CmdTableClear, "missing"))
	wantErrno(t, "clear missing", err, unix.ENXIO)
}

// tableLoadBuf builds a raw DM_TABLE_LOAD for name with specs, for tests
// that then corrupt its layout.
func tableLoadBuf(t *testing.T, name string, specs ...ioctl.TargetSpec) []byte {
	r := &ioctl.Request{Cmd: ioctl.CmdTableLoad, Header: ioctl.Header{Name: name}, Targets: specs}
	return rawBuf(t, r, r.Size())
}

func TestTableLoadLayout(t *testing.T) {
	f := newFixture(t)
	f.create("vol")
	ne := binary.NativeEndian
	two := []ioctl.TargetSpec{linear(0, 8, "7:2 0"), linear(8, 8, "7:2 8")}
	first := 312
	second := first + 40 + 8 // "7:2 0\0" padded to 8
	for _, tc := range []struct {
		name string
		mod  func(b []byte) []byte
	}{
		{"no targets", func(b []byte) []byte { ne.PutUint32(b[20:], 0); return b }},
		{"data_start in the header", func(b []byte) []byte { ne.PutUint32(b[16:], 304); return b }},
		{"data_start 305", func(b []byte) []byte { ne.PutUint32(b[16:], 305); return b }},
		{"misaligned next", func(b []byte) []byte { ne.PutUint32(b[first+20:], 44); return b }},
		{"next into the params", func(b []byte) []byte { ne.PutUint32(b[first+20:], 40); return b }},
		{"next zero", func(b []byte) []byte { ne.PutUint32(b[first+20:], 0); return b }},
		{"next past the end", func(b []byte) []byte { ne.PutUint32(b[first+20:], 1<<20); return b }},
		{"params not terminated", func(b []byte) []byte {
			n := len(b)
			for i := second + 40; i < n; i++ {
				b[i] = 'x'
			}
			return b
		}},
		{"more targets than specs", func(b []byte) []byte { ne.PutUint32(b[20:], 3); return b }},
		{"data_size cuts the last spec", func(b []byte) []byte { ne.PutUint32(b[12:], uint32(second+40)); return b }},
	} {
		b := tc.mod(tableLoadBuf(t, "vol", two...))
		before := append([]byte(nil), b...)
		wantErrno(t, tc.name, f.k.Ioctl(ioctl.CmdTableLoad.Request(), b), unix.EINVAL)
		onlyVersionChanged(t, before, b, DefaultVersion)
	}
	if di := f.info("vol"); di.Inactive != nil {
		t.Fatalf("a bad load left a table: %+v", di)
	}
	// The unmodified buffer loads.
	if err := f.k.Ioctl(ioctl.CmdTableLoad.Request(), tableLoadBuf(t, "vol", two...)); err != nil {
		t.Fatal(err)
	}
	// A larger, 8-aligned next is fine.
	b := tableLoadBuf(t, "vol", two...)
	b = append(b, make([]byte, 64)...)
	copy(b[second+64:], b[second:second+48])
	ne.PutUint32(b[first+20:], uint32(second+64-first))
	ne.PutUint32(b[12:], uint32(len(b)))
	if err := f.k.Ioctl(ioctl.CmdTableLoad.Request(), b); err != nil {
		t.Errorf("sparse specs: %v", err)
	}
}

func TestTableLoadTargets(t *testing.T) {
	f := newFixture(t)
	f.create("vol")
	for _, tc := range []struct {
		name  string
		specs []ioctl.TargetSpec
		want  unix.Errno
	}{
		{"unknown type", []ioctl.TargetSpec{{Length: 8, Type: "crypt"}}, unix.EINVAL},
		{"zero length", []ioctl.TargetSpec{{Length: 0, Type: "zero"}}, unix.EINVAL},
		{"not at 0", []ioctl.TargetSpec{{Start: 8, Length: 8, Type: "zero"}}, unix.EINVAL},
		{"gap", []ioctl.TargetSpec{{Length: 8, Type: "zero"}, {Start: 16, Length: 8, Type: "zero"}}, unix.EINVAL},
		{"overlap", []ioctl.TargetSpec{{Length: 8, Type: "zero"}, {Start: 4, Length: 8, Type: "zero"}}, unix.EINVAL},
		{"zero with args", []ioctl.TargetSpec{{Length: 8, Type: "zero", Params: "x"}}, unix.EINVAL},
		{"linear one arg", []ioctl.TargetSpec{linear(0, 8, "7:2")}, unix.EINVAL},
		{"linear bad offset", []ioctl.TargetSpec{linear(0, 8, "7:2 -1")}, unix.EINVAL},
		{"linear offset junk", []ioctl.TargetSpec{linear(0, 8, "7:2 1x")}, unix.EINVAL},
		{"no such device", []ioctl.TargetSpec{linear(0, 8, "7:9 0")}, unix.ENXIO},
		{"a path", []ioctl.TargetSpec{linear(0, 8, "/dev/loop2 0")}, unix.ENODEV},
		{"major too big", []ioctl.TargetSpec{linear(0, 8, "4096:0 0")}, unix.EOVERFLOW},
		{"dm device without a table", []ioctl.TargetSpec{linear(0, 8, "253:0 0")}, unix.ENXIO},
		{"past the device", []ioctl.TargetSpec{linear(0, spareSectors+1, "7:2 0")}, unix.EINVAL},
		{"striped length", []ioctl.TargetSpec{{Length: 9, Type: "striped", Params: "2 1 7:1 0 7:2 0"}}, unix.EINVAL},
		{"striped chunk", []ioctl.TargetSpec{{Length: 10, Type: "striped", Params: "2 2 7:1 0 7:2 0"}}, unix.EINVAL},
		{"striped count", []ioctl.TargetSpec{{Length: 8, Type: "striped", Params: "2 2 7:1 0"}}, unix.EINVAL},
		{"flakey zero interval", []ioctl.TargetSpec{{Length: 8, Type: "flakey", Params: "7:2 0 0 0"}}, unix.EINVAL},
		{"thin-pool in a read-only table", nil, unix.EINVAL},
	} {
		r := named(ioctl.CmdTableLoad, "vol")
		r.Targets = tc.specs
		if tc.specs == nil {
			r.Header.Flags = ioctl.FlagReadOnly
			r.Targets = []ioctl.TargetSpec{{Length: 1 << 20, Type: "thin-pool", Params: "7:0 7:1 128 0"}}
		}
		_, _, err := f.do(r)
		wantErrno(t, tc.name, err, tc.want)
	}
	if di := f.info("vol"); di.Inactive != nil || di.Live != nil {
		t.Errorf("bad loads left tables: %+v", di)
	}
	f.mustLoad("vol",
		linear(0, 8, "7:2 0"),
		ioctl.TargetSpec{Start: 8, Length: 8, Type: "striped", Params: "2 4 7:1 0 7:2 8"},
		ioctl.TargetSpec{Start: 16, Length: 8, Type: "flakey", Params: "7:2 0 1 0"},
		ioctl.TargetSpec{Start: 24, Length: 8, Type: "error", Params: "whatever"},
		ioctl.TargetSpec{Start: 32, Length: 8, Type: "zero"},
	)
	f.mustResume("vol")
}

func TestTableStatus(t *testing.T) {
	f := newFixture(t)
	f.activate("vol",
		linear(0, 8, "7:2   16"),
		ioctl.TargetSpec{Start: 8, Length: 8, Type: "striped", Params: "2 4 7:1 0 7:2 8"},
		ioctl.TargetSpec{Start: 16, Length: 8, Type: "flakey", Params: "7:2 0 1 0"},
		ioctl.TargetSpec{Start: 24, Length: 8, Type: "zero"},
		ioctl.TargetSpec{Start: 32, Length: 8, Type: "error", Params: "ignored"},
	)
	table, h, err := f.status("vol", ioctl.FlagStatusTable)
	if err != nil {
		t.Fatal(err)
	}
	want := []ioctl.TargetSpec{
		linear(0, 8, "7:2 16"),
		{Start: 8, Length: 8, Type: "striped", Params: "2 4 7:1 0 7:2 8"},
		{Start: 16, Length: 8, Type: "flakey", Params: "7:2 0 1 0 0"},
		{Start: 24, Length: 8, Type: "zero"},
		{Start: 32, Length: 8, Type: "error"},
	}
	if diff := cmp.Diff(want, table); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
	if h.TargetCount != 5 || h.DataStart != 312 {
		t.Errorf("header %+v", h)
	}
	info, _, _ := f.status("vol", 0)
	if info[0].Params != "" || info[1].Params != "2 7:1 7:2 AA" {
		t.Errorf("info %+v", info)
	}
	ima, _, _ := f.status("vol", ioctl.FlagIMAMeasurement)
	if ima[0].Params != "target_name=linear,target_version=1.4.0,device_name=7:2,start=16;" {
		t.Errorf("ima %q", ima[0].Params)
	}

	// Byte layout: next relative to the data area, 8-aligned; data_size
	// ends at the last NUL; padding and type[15] keep the caller's bytes.
	r := named(ioctl.CmdTableStatus, "vol")
	r.Header.Flags = ioctl.FlagStatusTable
	b := rawBuf(t, r, 1024)
	if err := f.k.Ioctl(r.Cmd.Request(), b); err != nil {
		t.Fatal(err)
	}
	ne := binary.NativeEndian
	hh := hdr(t, b)
	spec := 312
	for i, w := range want {
		if got := ne.Uint64(b[spec:]); got != w.Start {
			t.Errorf("spec %d start %d", i, got)
		}
		if b[spec+39] != 0xa5 {
			t.Errorf("spec %d: type[15] written", i)
		}
		end := spec + 40 + len(w.Params) + 1
		next := int(ne.Uint32(b[spec+20:]))
		if i < len(want)-1 && next != (end+7)&^7-312 {
			t.Errorf("spec %d next %d", i, next)
		}
		if i == len(want)-1 && int(hh.DataSize) != end {
			t.Errorf("data_size %d, want %d", hh.DataSize, end)
		}
		if i < len(want)-1 && end%8 != 0 && b[end] != 0xa5 {
			t.Errorf("spec %d: padding written", i)
		}
		spec = 312 + next
	}

	// QUERY_INACTIVE_TABLE: no inactive table, no specs.
	q, h, _ := f.status("vol", ioctl.FlagQueryInactiveTable)
	if len(q) != 0 || h.TargetCount != 0 || h.Flags&ioctl.FlagActivePresent == 0 {
		t.Errorf("inactive: %+v %+v", q, h)
	}
	f.mustLoad("vol", linear(0, 8, "7:1 0"))
	q, h, _ = f.status("vol", ioctl.FlagQueryInactiveTable|ioctl.FlagStatusTable)
	if len(q) != 1 || q[0].Params != "7:1 0" || h.Flags&ioctl.FlagInactivePresent == 0 {
		t.Errorf("inactive: %+v %+v", q, h)
	}

	_, _, err = f.status("missing", 0)
	wantErrno(t, "missing", err, unix.ENXIO)
}

func TestTableStatusBufferFull(t *testing.T) {
	f := newFixture(t)
	f.activate("vol", linear(0, 8, "7:2 0"), linear(8, 8, "7:2 8"))
	r := named(ioctl.CmdTableStatus, "vol")
	r.Header.Flags = ioctl.FlagStatusTable
	for _, tc := range []struct {
		size     int
		full     bool
		dataSize uint32
	}{
		{312, true, 305},           // no room at all
		{312 + 40, true, 305},      // a spec but not a byte after it
		{312 + 46, true, 305},      // "7:2 0" + NUL needs 6 bytes: l == remaining
		{312 + 47, true, 358},      // first fits, then the align check fails
		{312 + 48 + 40, true, 358}, // second spec: remaining <= 40
		// The last string fits, but the kernel still wants room to align
		// after it: BUFFER_FULL with data_size covering both.
		{312 + 48 + 47, true, 312 + 48 + 46},
		{312 + 48 + 48, false, 312 + 48 + 46},
	} {
		b := rawBuf(t, r, tc.size)
		if err := f.k.Ioctl(r.Cmd.Request(), b); err != nil {
			t.Fatal(err)
		}
		h := hdr(t, b)
		if (h.Flags&ioctl.FlagBufferFull != 0) != tc.full || h.DataSize != tc.dataSize || h.TargetCount != 2 {
			t.Errorf("size %d: flags %v data_size %d count %d", tc.size, h.Flags, h.DataSize, h.TargetCount)
		}
	}

	// ioctl.Conn grows its buffer until everything fits.
	var specs []ioctl.TargetSpec
	for i := uint64(0); i < 600; i++ {
		specs = append(specs, linear(i*8, 8, fmt.Sprintf("7:2 %d", 100000+i*8)))
	}
	f.create("big")
	f.mustLoad("big", specs...)
	f.mustResume("big")
	got, _, err := f.status("big", ioctl.FlagStatusTable)
	if err != nil || len(got) != 600 || got[599].Params != specs[599].Params {
		t.Errorf("big status: %d specs, %v", len(got), err)
	}
}

func TestTableDeps(t *testing.T) {
	f := newFixture(t)
	f.activate("vol", linear(0, 8, "7:2 0"), linear(8, 8, "7:1 0"), linear(16, 8, "7:2 8"))
	_, b := f.mustDo(named(ioctl.CmdTableDeps, "vol"))
	h := hdr(t, b)
	p, _ := h.Payload(b)
	devs, err := ioctl.ParseDeps(p)
	// The kernel's device list is built with list_add: newest first.
	want := []uint64{ioctl.Dev{Major: 7, Minor: 1}.Encode(), ioctl.Dev{Major: 7, Minor: 2}.Encode()}
	if err != nil || !cmp.Equal(devs, want) {
		t.Errorf("deps %v %v", devs, err)
	}
	if h.DataSize != 312+8+16 {
		t.Errorf("data_size %d", h.DataSize)
	}

	r := named(ioctl.CmdTableDeps, "vol")
	b = rawBuf(t, r, 312+8+15)
	if err := f.k.Ioctl(r.Cmd.Request(), b); err != nil {
		t.Fatal(err)
	}
	if h := hdr(t, b); h.Flags&ioctl.FlagBufferFull == 0 || h.DataSize != 305 {
		t.Errorf("small deps: %+v", h)
	}
	b = rawBuf(t, r, 312+8+16)
	f.k.Ioctl(r.Cmd.Request(), b)
	if b[316] != 0xa5 {
		t.Error("deps padding written")
	}

	// Inactive table, and a device with no table.
	f.mustLoad("vol", ioctl.TargetSpec{Length: 8, Type: "zero"})
	r.Header.Flags = ioctl.FlagQueryInactiveTable
	_, b = f.mustDo(r)
	h = hdr(t, b)
	p, _ = h.Payload(b)
	if devs, _ := ioctl.ParseDeps(p); len(devs) != 0 || h.DataSize != 312+8 {
		t.Errorf("inactive deps %v %+v", devs, h)
	}
	f.create("empty")
	if h, _ := f.mustDo(named(ioctl.CmdTableDeps, "empty")); h.DataSize != 305 {
		t.Errorf("no table: %+v", h)
	}

	// Growth: a table over 2100 distinct devices.
	var specs []ioctl.TargetSpec
	for i := uint32(0); i < 2100; i++ {
		f.k.AddBlockDevice(ioctl.Dev{Major: 8, Minor: i}, 8)
		specs = append(specs, linear(uint64(i)*8, 8, fmt.Sprintf("8:%d 0", i)))
	}
	f.create("wide")
	f.mustLoad("wide", specs...)
	f.mustResume("wide")
	_, b = f.mustDo(named(ioctl.CmdTableDeps, "wide"))
	h = hdr(t, b)
	p, _ = h.Payload(b)
	if devs, err := ioctl.ParseDeps(p); err != nil || len(devs) != 2100 {
		t.Errorf("wide deps: %d %v", len(devs), err)
	}
}

func listDevices(t *testing.T, f *fixture, h ioctl.Header) []ioctl.NameEntry {
	t.Helper()
	rh, b := f.mustDo(&ioctl.Request{Cmd: ioctl.CmdListDevices, Header: h})
	p, err := rh.Payload(b)
	if err != nil {
		t.Fatal(err)
	}
	var es []ioctl.NameEntry
	r := ioctl.NewNameListReader(p, rh.Version)
	for r.Next() {
		es = append(es, r.Entry())
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return es
}

func TestListDevices(t *testing.T) {
	f := newFixture(t)
	if es := listDevices(t, f, ioctl.Header{}); len(es) != 0 {
		t.Errorf("empty: %+v", es)
	}
	r := named(ioctl.CmdDevCreate, "b-vol")
	r.Header.UUID = "LVM-b"
	f.mustDo(r)
	f.create("a-vol")
	f.activate("c", ioctl.TargetSpec{Length: 8, Type: "zero"})

	es := listDevices(t, f, ioctl.Header{})
	want := []ioctl.NameEntry{
		{Dev: ioctl.Dev{Major: 253, Minor: 1}.Encode(), Name: "a-vol", HasEventNr: true},
		{Dev: ioctl.Dev{Major: 253, Minor: 0}.Encode(), Name: "b-vol", HasEventNr: true},
		{Dev: ioctl.Dev{Major: 253, Minor: 2}.Encode(), Name: "c", EventNr: 1, HasEventNr: true},
	}
	if diff := cmp.Diff(want, es); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	es = listDevices(t, f, ioctl.Header{Flags: ioctl.FlagUUID})
	want[0].Flags, want[2].Flags = ioctl.NameListNoUUID, ioctl.NameListNoUUID
	want[1].Flags, want[1].UUID = ioctl.NameListHasUUID, "LVM-b"
	if diff := cmp.Diff(want, es); diff != "" {
		t.Errorf("list with uuids (-want +got):\n%s", diff)
	}
	if es := listDevices(t, f, ioctl.Header{Name: "b-"}); len(es) != 1 || es[0].Name != "b-vol" {
		t.Errorf("name prefix: %+v", es)
	}
	if es := listDevices(t, f, ioctl.Header{UUID: "LVM-"}); len(es) != 1 || es[0].Name != "b-vol" {
		t.Errorf("uuid prefix: %+v", es)
	}
	// LIST_DEVICES skips validate_params: name and uuid together are fine.
	if es := listDevices(t, f, ioctl.Header{Name: "b", UUID: "LVM"}); len(es) != 1 {
		t.Errorf("both prefixes: %+v", es)
	}
	if es := listDevices(t, f, ioctl.Header{Name: "zz"}); len(es) != 0 {
		t.Errorf("no match: %+v", es)
	}

	// Byte layout against the ioctl package's encoder, and BUFFER_FULL.
	lr := &ioctl.Request{Cmd: ioctl.CmdListDevices, Header: ioctl.Header{Flags: ioctl.FlagUUID}}
	need := 312 + (24 + 8) + (24 + 8 + 8) + (16 + 8) // a-vol, b-vol + uuid, c
	b := make([]byte, need)
	lr.MarshalTo(b)
	if err := f.k.Ioctl(lr.Cmd.Request(), b); err != nil {
		t.Fatal(err)
	}
	h := hdr(t, b)
	// The size pins the layout (names and uuids 8-byte aligned); the
	// ioctl package's reader, pinned by its golden bytes, reads it back.
	if h.DataSize != uint32(need) {
		t.Errorf("payload %+v: data_size %d, want %d", h, h.DataSize, need)
	}
	var gotEntries []ioctl.NameEntry
	nr := ioctl.NewNameListReader(b[312:], DefaultVersion)
	for nr.Next() {
		gotEntries = append(gotEntries, nr.Entry())
	}
	if err := nr.Err(); err != nil || !reflect.DeepEqual(gotEntries, es2(f, true)) {
		t.Errorf("name list: %v\n got %+v\nwant %+v", err, gotEntries, es2(f, true))
	}
	b = rawBuf(t, lr, need-1)
	f.k.Ioctl(lr.Cmd.Request(), b)
	if h := hdr(t, b); h.Flags&ioctl.FlagBufferFull == 0 || h.DataSize != 305 || h.DataStart != 312 {
		t.Errorf("short list: %+v", h)
	}
	// An empty list needs 8 bytes of room, reports none.
	er := &ioctl.Request{Cmd: ioctl.CmdListDevices, Header: ioctl.Header{Name: "none"}}
	for size, full := range map[int]bool{319: true, 320: false} {
		b = rawBuf(t, er, size)
		f.k.Ioctl(er.Cmd.Request(), b)
		h := hdr(t, b)
		if (h.Flags&ioctl.FlagBufferFull != 0) != full || !full && h.DataSize != 312 {
			t.Errorf("empty list in %d: %+v", size, h)
		}
	}

	// Growth through ioctl.Conn: 600 devices with long names.
	for i := 0; i < 600; i++ {
		f.create(fmt.Sprintf("%s-%04d", strings.Repeat("x", 40), i))
	}
	if es := listDevices(t, f, ioctl.Header{Flags: ioctl.FlagUUID}); len(es) != 603 {
		t.Errorf("big list: %d", len(es))
	}
}

// es2 is the list f's kernel should return for the first three devices.
func es2(f *fixture, uuids bool) []ioctl.NameEntry {
	var es []ioctl.NameEntry
	for _, d := range f.k.Devices() {
		e := ioctl.NameEntry{Dev: ioctl.Dev{Major: d.Major, Minor: d.Minor}.Encode(), Name: d.Name, EventNr: d.EventNr, HasEventNr: true}
		if uuids {
			e.Flags = ioctl.NameListNoUUID
			if d.UUID != "" {
				e.Flags, e.UUID = ioctl.NameListHasUUID, d.UUID
			}
		}
		es = append(es, e)
	}
	return es
}

func TestListDevicesOldLayout(t *testing.T) {
	f := newFixture(t, WithVersion(ioctl.Version{4, 36, 0}))
	f.create("b")
	f.create("a")
	// No event_nr, no filters before 4.37/4.45.
	es := listDevices(t, f, ioctl.Header{Name: "zzz"})
	want := []ioctl.NameEntry{{Dev: ioctl.Dev{Major: 253, Minor: 1}.Encode(), Name: "a"}, {Dev: ioctl.Dev{Major: 253, Minor: 0}.Encode(), Name: "b"}}
	if diff := cmp.Diff(want, es); diff != "" {
		t.Errorf("old list (-want +got):\n%s", diff)
	}
}

func TestListVersions(t *testing.T) {
	f := newFixture(t)
	h, b := f.mustDo(&ioctl.Request{Cmd: ioctl.CmdListVersions})
	p, _ := h.Payload(b)
	var got []ioctl.TargetVersion
	r := ioctl.NewVersionReader(p)
	for r.Next() {
		got = append(got, r.Entry())
	}
	if r.Err() != nil || !cmp.Equal(got, DefaultTargets) {
		t.Errorf("versions %+v %v", got, r.Err())
	}
	// data_size includes the kernel's 7 bytes of slack per entry.
	want := 312
	for _, tv := range DefaultTargets {
		want += 16 + len(tv.Name) + 1 + 7
	}
	if int(h.DataSize) != want {
		t.Errorf("data_size %d, want %d", h.DataSize, want)
	}
	lr := &ioctl.Request{Cmd: ioctl.CmdListVersions}
	b = rawBuf(t, lr, want-1)
	f.k.Ioctl(lr.Cmd.Request(), b)
	if h := hdr(t, b); h.Flags&ioctl.FlagBufferFull == 0 || h.DataSize != 305 {
		t.Errorf("short: %+v", h)
	}
	// Bytes the kernel does not write keep the caller's.
	b = rawBuf(t, lr, want)
	f.k.Ioctl(lr.Cmd.Request(), b)
	var gotVersions []ioctl.TargetVersion
	vr := ioctl.NewVersionReader(maskA5(b[312:h.DataSize]))
	for vr.Next() {
		gotVersions = append(gotVersions, vr.Entry())
	}
	if err := vr.Err(); err != nil || !reflect.DeepEqual(gotVersions, DefaultTargets) {
		t.Errorf("versions: %v\n got %+v\nwant %+v", err, gotVersions, DefaultTargets)
	}

	h, b = f.mustDo(named(ioctl.CmdGetTargetVersion, "thin-pool"))
	p, _ = h.Payload(b)
	r = ioctl.NewVersionReader(p)
	if !r.Next() || r.Entry() != DefaultTargets[0] || r.Next() {
		t.Errorf("thin-pool version: %+v", r.Entry())
	}
	_, _, err := f.do(named(ioctl.CmdGetTargetVersion, "crypt"))
	wantErrno(t, "unknown target", err, unix.EINVAL)

	// Growth through ioctl.Conn.
	var many []ioctl.TargetVersion
	for i := 0; i < 300; i++ {
		many = append(many, ioctl.TargetVersion{Name: fmt.Sprintf("target-%060d", i), Version: ioctl.Version{1, uint32(i), 0}})
	}
	g := newFixture(t, WithTargets(many...))
	h, b = g.mustDo(&ioctl.Request{Cmd: ioctl.CmdListVersions})
	p, _ = h.Payload(b)
	n := 0
	for r := ioctl.NewVersionReader(p); r.Next(); n++ {
	}
	if n != 300 {
		t.Errorf("grown list: %d", n)
	}
}

// maskA5 replaces the test pattern with zeros, for comparing against
// encoders that zero the padding.
func maskA5(b []byte) []byte {
	c := append([]byte(nil), b...)
	for i := range c {
		if c[i] == 0xa5 {
			c[i] = 0
		}
	}
	return c
}

func TestTargetMessage(t *testing.T) {
	f := newFixture(t)
	f.activate("vol", linear(0, 8, "7:2 0"))

	wantErrno(t, "empty", f.msg("vol", "   "), unix.EINVAL)
	wantErrno(t, "linear has no messages", f.msg("vol", "hello"), unix.EINVAL)
	wantErrno(t, "unknown @", f.msg("vol", "@nope"), unix.EINVAL)
	wantErrno(t, "missing", f.msg("missing", "x"), unix.ENXIO)
	r := &ioctl.Request{Cmd: ioctl.CmdTargetMsg, Header: ioctl.Header{Name: "vol"}, Sector: 8, Message: "hello"}
	_, _, err := f.do(r)
	wantErrno(t, "sector past the end", err, unix.EINVAL)

	// @stats_list returns a (here empty) string: DATA_OUT.
	r = &ioctl.Request{Cmd: ioctl.CmdTargetMsg, Header: ioctl.Header{Name: "vol"}, Message: "@stats_list"}
	h, b := f.mustDo(r)
	p, _ := h.Payload(b)
	if s, err := ioctl.ParseString(p); h.Flags&ioctl.FlagDataOut == 0 || err != nil || s != "" || h.DataSize != 313 {
		t.Errorf("@stats_list: %+v %q %v", h, s, err)
	}

	// A target that returns text, through the hook.
	long := strings.Repeat("z", 20000)
	f.k.SetMessageHook(func(dev string, ts ioctl.TargetSpec, argv []string) (string, bool, bool, error) {
		switch argv[0] {
		case "echo":
			return strings.Join(argv[1:], " "), true, true, nil
		case "long":
			return long, true, true, nil
		case "silent":
			return "", false, true, nil
		case "fail":
			return "", false, true, unix.EIO
		}
		return "", false, false, nil
	})
	r.Message = `echo a\ b   c`
	h, b = f.mustDo(r)
	p, _ = h.Payload(b)
	if s, _ := ioctl.ParseString(p); h.Flags&ioctl.FlagDataOut == 0 || s != "a b c" {
		t.Errorf("echo: %+v %q", h, s)
	}
	r.Message = "silent"
	if h, _ := f.mustDo(r); h.Flags&ioctl.FlagDataOut != 0 || h.DataSize != 305 {
		t.Errorf("silent: %+v", h)
	}
	r.Message = "fail"
	_, _, err = f.do(r)
	wantErrno(t, "hook error", err, unix.EIO)
	r.Message = "long"
	h, b = f.mustDo(r) // grown by ioctl.Conn
	p, _ = h.Payload(b)
	if s, _ := ioctl.ParseString(p); s != long {
		t.Errorf("long: %d bytes", len(s))
	}
	// A result that exactly fills the buffer counts as overflow.
	// The result overwrites the request; one that exactly fills the
	// buffer counts as overflow.
	b = rawBuf(t, r, 312+len(long)+1)
	f.k.Ioctl(r.Cmd.Request(), b)
	if h := hdr(t, b); h.Flags&(ioctl.FlagBufferFull|ioctl.FlagDataOut) != ioctl.FlagBufferFull|ioctl.FlagDataOut || h.DataSize != 305 {
		t.Errorf("exact fit: %+v", h)
	}
	b = rawBuf(t, r, 312+len(long)+2)
	f.k.Ioctl(r.Cmd.Request(), b)
	if h := hdr(t, b); h.Flags&ioctl.FlagBufferFull != 0 || int(h.DataSize) != 312+len(long)+1 {
		t.Errorf("one spare byte: %+v", h)
	}

	// dm_target_msg must start in the data area.
	b = rawBuf(t, r, 400)
	binary.NativeEndian.PutUint32(b[16:], 300)
	wantErrno(t, "data_start 300", f.k.Ioctl(r.Cmd.Request(), b), unix.EINVAL)

	// A message to a device without a live table: the kernel returns 2,
	// which ioctl(2) passes on as a positive result, and copies nothing
	// back; the Transport reports ErrNoReply.
	f.create("empty")
	r = &ioctl.Request{Cmd: ioctl.CmdTargetMsg, Header: ioctl.Header{Name: "empty"}, Message: "create_thin 0"}
	before := rawBuf(t, r, 1024)
	b = append([]byte(nil), before...)
	if err := f.k.Ioctl(r.Cmd.Request(), b); !errors.Is(err, ioctl.ErrNoReply) {
		t.Fatalf("message to a table-less device: %v, want ErrNoReply", err)
	}
	onlyVersionChanged(t, before, b, DefaultVersion)
}

func TestSetGeometry(t *testing.T) {
	f := newFixture(t)
	f.activate("vol", linear(0, 1000, "7:2 0"))
	geo := func(s string) error {
		_, _, err := f.do(&ioctl.Request{Cmd: ioctl.CmdDevSetGeometry, Header: ioctl.Header{Name: "vol"}, String: s})
		return err
	}
	r := &ioctl.Request{Cmd: ioctl.CmdDevSetGeometry, Header: ioctl.Header{Name: "vol"}, String: "10 4 25 8"}
	before := rawBuf(t, r, r.Size())
	b := append([]byte(nil), before...)
	if err := f.k.Ioctl(r.Cmd.Request(), b); err != nil {
		t.Fatal(err)
	}
	onlyVersionChanged(t, before, b, DefaultVersion) // data_size 0: nothing goes back
	if g := f.info("vol").Geometry; g != (Geometry{10, 4, 25, 8}) {
		t.Errorf("geometry %+v", g)
	}
	for _, s := range []string{"1 2 3", "1 2 3 4 ", "1 2 3 4 5", "a 2 3 4", "65536 1 1 0", "1 256 1 0", "1 1 256 0",
		"1 2 3 7", "-1 2 3 4", ""} {
		wantErrno(t, s, geo(s), unix.EINVAL)
	}
	for _, s := range []string{"  1   2 3 6", "65535 255 255 0"} {
		if err := geo(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	_, _, err := f.do(&ioctl.Request{Cmd: ioctl.CmdDevSetGeometry, Header: ioctl.Header{Name: "missing"}, String: "1 1 1 0"})
	wantErrno(t, "missing", err, unix.ENXIO)

	// A resume that changes the size wipes the geometry.
	f.mustLoad("vol", linear(0, 2000, "7:2 0"))
	f.mustResume("vol")
	if g := f.info("vol").Geometry; g != (Geometry{}) {
		t.Errorf("geometry after resize %+v", g)
	}
}

func TestArmPoll(t *testing.T) {
	f := newFixture(t)
	if f.k.PollReady() {
		t.Error("ready before any event")
	}
	f.create("a")
	if !f.k.PollReady() {
		t.Error("not ready after create")
	}
	f.mustDo(&ioctl.Request{Cmd: ioctl.CmdDevArmPoll})
	if f.k.PollReady() {
		t.Error("ready after arm")
	}
	f.activate("b", ioctl.TargetSpec{Length: 8, Type: "zero"})
	if err := f.k.TriggerEvent("b"); err != nil {
		t.Fatal(err)
	}
	if !f.k.PollReady() {
		t.Error("not ready after event")
	}
	wantErrno(t, "trigger missing", f.k.TriggerEvent("missing"), unix.ENXIO)
	_, _, err := f.do(&ioctl.Request{Cmd: ioctl.CmdDevArmPoll, Header: ioctl.Header{Name: "a", UUID: "u"}})
	wantErrno(t, "arm with name and uuid", err, unix.EINVAL)
}

func TestRemoveAll(t *testing.T) {
	f := newFixture(t)
	f.activate("base", linear(0, 8, "7:2 0"))
	f.activate("top", linear(0, 8, "253:0 0")) // holds base open
	f.activate("held", ioctl.TargetSpec{Length: 8, Type: "zero"})
	f.create("bare")
	closeFn, _ := f.k.Open("held")

	r := &ioctl.Request{Cmd: ioctl.CmdRemoveAll, Header: ioctl.Header{Flags: ioctl.FlagDeferredRemove}}
	before := rawBuf(t, r, 312)
	b := append([]byte(nil), before...)
	if err := f.k.Ioctl(r.Cmd.Request(), b); err != nil {
		t.Fatal(err)
	}
	onlyVersionChanged(t, before, b, DefaultVersion) // data_size 0
	ds := f.k.Devices()
	if len(ds) != 1 || ds[0].Name != "held" || !ds[0].DeferredRemove {
		t.Fatalf("left %+v", ds)
	}
	closeFn()
	if len(f.k.Devices()) != 0 {
		t.Error("deferred device not removed on close")
	}
}
