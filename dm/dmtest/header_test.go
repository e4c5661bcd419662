package dmtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

func TestVersionWritesOnlyTheVersion(t *testing.T) {
	f := newFixture(t)
	r := &ioctl.Request{Cmd: ioctl.CmdVersion}
	before := rawBuf(t, r, 400)
	b := append([]byte(nil), before...)
	if err := f.k.Ioctl(ioctl.CmdVersion.Request(), b); err != nil {
		t.Fatal(err)
	}
	onlyVersionChanged(t, before, b, DefaultVersion)

	h, _ := f.mustDo(r)
	if h.Version != (ioctl.Version{4, 47, 0}) {
		t.Errorf("version %v", h.Version)
	}
}

func TestVersionCheck(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		v    ioctl.Version
		want unix.Errno
	}{
		{ioctl.Version{4, 0, 0}, 0},
		{ioctl.Version{4, 47, 99}, 0},
		{ioctl.Version{4, 48, 0}, unix.EINVAL},
		{ioctl.Version{3, 0, 0}, unix.EINVAL},
		{ioctl.Version{5, 0, 0}, unix.EINVAL},
	} {
		r := named(ioctl.CmdDevStatus, "nonexistent")
		r.Header.Version = tc.v
		before := rawBuf(t, r, 312)
		b := append([]byte(nil), before...)
		err := f.k.Ioctl(r.Cmd.Request(), b)
		if tc.want == 0 {
			wantErrno(t, tc.v.String(), err, unix.ENXIO) // got past the check
		} else {
			wantErrno(t, tc.v.String(), err, tc.want)
		}
		onlyVersionChanged(t, before, b, DefaultVersion)

		// ioctl.Conn reports the kernel's version with the error.
		_, _, err = f.do(r)
		var ie *ioctl.Error
		if tc.want != 0 && (!errors.As(err, &ie) || ie.Kernel != DefaultVersion) {
			t.Errorf("%v: Conn error %#v", tc.v, err)
		}
	}
}

func TestNotTTY(t *testing.T) {
	f := newFixture(t)
	r := named(ioctl.CmdDevStatus, "x")
	before := rawBuf(t, r, 312)

	// Wrong ioctl type: nothing at all is written.
	b := append([]byte(nil), before...)
	err := f.k.Ioctl(ioctl.CmdDevStatus.Request()&^0xff00|0x12<<8, b)
	wantErrno(t, "type 0x12", err, unix.ENOTTY)
	if !bytes.Equal(b, before) {
		t.Error("wrong type changed the buffer")
	}

	// Unknown command numbers: the version check comes first.
	for _, nr := range []uint{18, 19, 255} {
		b := append([]byte(nil), before...)
		err := f.k.Ioctl(ioctl.CmdDevStatus.Request()&^0xff|nr, b)
		wantErrno(t, "nr", err, unix.ENOTTY)
		onlyVersionChanged(t, before, b, DefaultVersion)
	}

	// Commands newer than the kernel: their minimum version fails the
	// version check; an older version gets past it to ENOTTY.
	old := newFixture(t, WithVersion(ioctl.Version{4, 35, 0}))
	_, _, err = old.do(&ioctl.Request{Cmd: ioctl.CmdDevArmPoll})
	wantErrno(t, "ARM_POLL on 4.35", err, unix.EINVAL)
	_, _, err = old.do(&ioctl.Request{Cmd: ioctl.CmdDevArmPoll, Header: ioctl.Header{Version: ioctl.Version{4, 0, 0}}})
	wantErrno(t, "ARM_POLL 4.0.0 on 4.35", err, unix.ENOTTY)
	_, _, err = old.do(&ioctl.Request{Cmd: ioctl.CmdGetTargetVersion, Header: ioctl.Header{Name: "linear", Version: ioctl.Version{4, 0, 0}}})
	wantErrno(t, "GET_TARGET_VERSION 4.0.0 on 4.35", err, unix.ENOTTY)
}

func TestUnprivileged(t *testing.T) {
	k := New(WithoutPrivilege())
	b := rawBuf(t, &ioctl.Request{Cmd: ioctl.CmdVersion}, 312)
	wantErrno(t, "version", k.Ioctl(ioctl.CmdVersion.Request(), b), unix.EACCES)
}

func TestDataSize(t *testing.T) {
	f := newFixture(t)
	f.create("d")
	r := named(ioctl.CmdDevStatus, "d")
	before := rawBuf(t, r, 312)
	for _, tc := range []struct {
		size uint32
		want unix.Errno
	}{
		{304, unix.EINVAL},
		{0, unix.EINVAL},
		{1<<30 + 1, unix.EINVAL},
		{305, 0},
		{312, 0},
	} {
		b := append([]byte(nil), before...)
		binary.NativeEndian.PutUint32(b[12:], tc.size)
		err := f.k.Ioctl(r.Cmd.Request(), b)
		if errnoOf(err) != tc.want {
			t.Errorf("data_size %d: %v, want %v", tc.size, err, tc.want)
		}
		if tc.want != 0 {
			c := append([]byte(nil), before...)
			binary.NativeEndian.PutUint32(c[12:], tc.size)
			onlyVersionChanged(t, c, b, DefaultVersion)
		} else if h := hdr(t, b); h.DataSize != 305 {
			// DEV_STATUS has no parameters: the kernel forces 305.
			t.Errorf("data_size %d: reply data_size %d", tc.size, h.DataSize)
		}
	}

	// A data_size past the end of the buffer faults.
	ls := &ioctl.Request{Cmd: ioctl.CmdListDevices}
	b := rawBuf(t, ls, 400)
	binary.NativeEndian.PutUint32(b[12:], 401)
	wantErrno(t, "data_size past the buffer", f.k.Ioctl(ls.Cmd.Request(), b), unix.EFAULT)
	wantErrno(t, "short buffer", f.k.Ioctl(ls.Cmd.Request(), b[:300]), unix.EFAULT)
	wantErrno(t, "tiny buffer", f.k.Ioctl(ls.Cmd.Request(), b[:8]), unix.EFAULT)
}

// A failed ioctl copies nothing back but the version, whatever the command.
func TestFailureCopiesOnlyVersion(t *testing.T) {
	f := newFixture(t)
	f.create("exists")
	for _, tc := range []struct {
		r    *ioctl.Request
		want unix.Errno
	}{
		{named(ioctl.CmdDevCreate, "exists"), unix.EBUSY},
		{named(ioctl.CmdDevCreate, "a/b"), unix.EINVAL},
		{named(ioctl.CmdDevRemove, "missing"), unix.ENXIO},
		{named(ioctl.CmdDevStatus, "missing"), unix.ENXIO},
		{named(ioctl.CmdDevSuspend, "exists"), unix.EINVAL}, // resume, no table
		{&ioctl.Request{Cmd: ioctl.CmdTableLoad, Header: ioctl.Header{Name: "exists"},
			Targets: []ioctl.TargetSpec{{Length: 8, Type: "nosuch"}}}, unix.EINVAL},
		{&ioctl.Request{Cmd: ioctl.CmdTargetMsg, Header: ioctl.Header{Name: "exists"}, Message: "@nope"}, unix.EINVAL},
		{named(ioctl.CmdGetTargetVersion, "nosuch"), unix.EINVAL},
		{&ioctl.Request{Cmd: ioctl.CmdDevRename, Header: ioctl.Header{Name: "missing"}, String: "new"}, unix.ENXIO},
		{&ioctl.Request{Cmd: ioctl.CmdDevSetGeometry, Header: ioctl.Header{Name: "exists"}, String: "1 2 3"}, unix.EINVAL},
	} {
		// Suspend "exists" for the resume case.
		if tc.r.Cmd == ioctl.CmdDevSuspend {
			f.suspend("exists")
		}
		before := rawBuf(t, tc.r, 1024)
		b := append([]byte(nil), before...)
		err := f.k.Ioctl(tc.r.Cmd.Request(), b)
		wantErrno(t, tc.r.Cmd.String(), err, tc.want)
		onlyVersionChanged(t, before, b, DefaultVersion)
	}
}

func TestSecureData(t *testing.T) {
	f := newFixture(t)
	// On failure the kernel has wiped the buffer, version and all.
	r := named(ioctl.CmdDevStatus, "missing")
	r.Header.Flags = ioctl.FlagSecureData
	b := rawBuf(t, r, 312)
	wantErrno(t, "status", f.k.Ioctl(r.Cmd.Request(), b), unix.ENXIO)
	if !bytes.Equal(b[:305], make([]byte, 305)) {
		t.Error("SECURE_DATA failure: buffer not wiped")
	}

	// On success the reply is written over the wiped buffer, without the
	// flag; the bytes after data_size stay wiped.
	f.create("d")
	r = &ioctl.Request{Cmd: ioctl.CmdTableLoad, Header: ioctl.Header{Name: "d", Flags: ioctl.FlagSecureData},
		Targets: []ioctl.TargetSpec{{Length: 8, Type: "zero"}}}
	b = rawBuf(t, r, 1024)
	if err := f.k.Ioctl(r.Cmd.Request(), b); err != nil {
		t.Fatal(err)
	}
	h := hdr(t, b)
	if h.Flags&ioctl.FlagSecureData != 0 || h.Flags&ioctl.FlagInactivePresent == 0 {
		t.Errorf("flags %v", h.Flags)
	}
	if !bytes.Equal(b[305:], make([]byte, 1024-305)) {
		t.Error("SECURE_DATA: table parameters left in the buffer")
	}
}

func TestFlagsClearedOnEntry(t *testing.T) {
	f := newFixture(t)
	f.create("d")
	r := named(ioctl.CmdDevStatus, "d")
	r.Header.Flags = ioctl.FlagBufferFull | ioctl.FlagUeventGenerated | ioctl.FlagDataOut |
		ioctl.FlagSuspend | ioctl.FlagReadOnly | ioctl.FlagActivePresent | ioctl.FlagInactivePresent |
		ioctl.FlagNoFlush
	h, _ := f.mustDo(r)
	// Cleared on entry, recomputed by __dev_status or the lookup, and the
	// input flags the kernel does not touch are echoed.
	if h.Flags != ioctl.FlagNoFlush {
		t.Errorf("flags %v, want NOFLUSH", h.Flags)
	}
}

func TestLookup(t *testing.T) {
	f := newFixture(t)
	h := f.create("byname")
	r := named(ioctl.CmdDevCreate, "withuuid")
	r.Header.UUID = "LVM-1234"
	hu, _ := f.mustDo(r)

	// By uuid: the reply carries the name.
	got, _ := f.mustDo(&ioctl.Request{Cmd: ioctl.CmdDevStatus, Header: ioctl.Header{UUID: "LVM-1234"}})
	if got.Name != "withuuid" || got.Dev != hu.Dev {
		t.Errorf("by uuid: %+v", got)
	}
	// By dev: name and uuid are filled in.
	got, _ = f.mustDo(&ioctl.Request{Cmd: ioctl.CmdDevStatus, Header: ioctl.Header{Dev: hu.Dev}})
	if got.Name != "withuuid" || got.UUID != "LVM-1234" {
		t.Errorf("by dev: %+v", got)
	}
	got, _ = f.mustDo(&ioctl.Request{Cmd: ioctl.CmdDevStatus, Header: ioctl.Header{Dev: h.Dev}})
	if got.Name != "byname" || got.UUID != "" {
		t.Errorf("by dev: %+v", got)
	}

	for _, tc := range []struct {
		h    ioctl.Header
		want unix.Errno
	}{
		{ioctl.Header{Name: "byname", UUID: "LVM-1234"}, unix.EINVAL}, // validate_params
		{ioctl.Header{UUID: "LVM-1234", Dev: hu.Dev}, unix.ENXIO},     // __find_device_hash_cell
		{ioctl.Header{Name: "byname", Dev: h.Dev}, unix.ENXIO},
		{ioctl.Header{}, unix.ENXIO},
		{ioctl.Header{Dev: ioctl.Dev{Major: 253, Minor: 99}.Encode()}, unix.ENXIO},
		{ioctl.Header{Dev: ioctl.Dev{Major: 7, Minor: 0}.Encode()}, unix.ENXIO},
	} {
		_, _, err := f.do(&ioctl.Request{Cmd: ioctl.CmdDevStatus, Header: tc.h})
		wantErrno(t, "lookup", err, tc.want)
	}
}

func TestNamesForciblyTerminated(t *testing.T) {
	f := newFixture(t)
	r := named(ioctl.CmdDevCreate, "x")
	b := rawBuf(t, r, 312)
	long := bytes.Repeat([]byte{'n'}, 128) // no NUL in name[128]
	copy(b[48:], long)
	if err := f.k.Ioctl(r.Cmd.Request(), b); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.k.Device(string(long[:127])); !ok {
		t.Errorf("devices: %+v", f.k.Devices())
	}
}

func TestFaultInjection(t *testing.T) {
	f := newFixture(t)
	f.k.FailNext(ioctl.CmdDevCreate, unix.ENOMEM)
	before := rawBuf(t, named(ioctl.CmdDevCreate, "d"), 312)
	b := append([]byte(nil), before...)
	wantErrno(t, "FailNext", f.k.Ioctl(ioctl.CmdDevCreate.Request(), b), unix.ENOMEM)
	onlyVersionChanged(t, before, b, DefaultVersion)
	if len(f.k.Devices()) != 0 {
		t.Error("failed create made a device")
	}
	f.create("d") // one shot

	var seen []ioctl.Cmd
	f.k.SetBeforeIoctl(func(cmd ioctl.Cmd, h *ioctl.Header) error {
		seen = append(seen, cmd)
		if cmd == ioctl.CmdDevRemove && h.Name == "d" {
			return unix.EBUSY
		}
		return nil
	})
	wantErrno(t, "hook", f.remove("d"), unix.EBUSY)
	f.k.SetBeforeIoctl(nil)
	if err := f.remove("d"); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != ioctl.CmdDevRemove {
		t.Errorf("hook saw %v", seen)
	}

	calls := f.k.Calls()
	if len(calls) != 4 || calls[0].Cmd != ioctl.CmdDevCreate || errnoOf(calls[0].Err) != unix.ENOMEM ||
		calls[3].Cmd != ioctl.CmdDevRemove || calls[3].Err != nil || calls[3].Header.Name != "d" {
		t.Errorf("calls %+v", calls)
	}
	f.k.ResetCalls()
	if len(f.k.Calls()) != 0 {
		t.Error("ResetCalls")
	}
}
