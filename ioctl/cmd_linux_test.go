package ioctl

import (
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// cmdTable is the kernel's view of every command: its name, its nr, the
// lowest interface version that has it, whether it writes a payload back,
// and its x/sys/unix request number (0 where x/sys has none).
var cmdTable = []struct {
	cmd     Cmd
	name    string
	nr      uint
	min     Version
	returns bool
	unix    uint
}{
	{CmdVersion, "DM_VERSION", 0, Version{4, 0, 0}, false, unix.DM_VERSION},
	{CmdRemoveAll, "DM_REMOVE_ALL", 1, Version{4, 0, 0}, false, unix.DM_REMOVE_ALL},
	{CmdListDevices, "DM_LIST_DEVICES", 2, Version{4, 0, 0}, true, unix.DM_LIST_DEVICES},
	{CmdDevCreate, "DM_DEV_CREATE", 3, Version{4, 0, 0}, false, unix.DM_DEV_CREATE},
	{CmdDevRemove, "DM_DEV_REMOVE", 4, Version{4, 0, 0}, false, unix.DM_DEV_REMOVE},
	{CmdDevRename, "DM_DEV_RENAME", 5, Version{4, 0, 0}, false, unix.DM_DEV_RENAME},
	{CmdDevSuspend, "DM_DEV_SUSPEND", 6, Version{4, 0, 0}, false, unix.DM_DEV_SUSPEND},
	{CmdDevStatus, "DM_DEV_STATUS", 7, Version{4, 0, 0}, false, unix.DM_DEV_STATUS},
	{CmdDevWait, "DM_DEV_WAIT", 8, Version{4, 0, 0}, true, unix.DM_DEV_WAIT},
	{CmdTableLoad, "DM_TABLE_LOAD", 9, Version{4, 0, 0}, false, unix.DM_TABLE_LOAD},
	{CmdTableClear, "DM_TABLE_CLEAR", 10, Version{4, 0, 0}, false, unix.DM_TABLE_CLEAR},
	{CmdTableDeps, "DM_TABLE_DEPS", 11, Version{4, 0, 0}, true, unix.DM_TABLE_DEPS},
	{CmdTableStatus, "DM_TABLE_STATUS", 12, Version{4, 0, 0}, true, unix.DM_TABLE_STATUS},
	{CmdListVersions, "DM_LIST_VERSIONS", 13, Version{4, 1, 0}, true, unix.DM_LIST_VERSIONS},
	{CmdTargetMsg, "DM_TARGET_MSG", 14, Version{4, 2, 0}, true, unix.DM_TARGET_MSG},
	{CmdDevSetGeometry, "DM_DEV_SET_GEOMETRY", 15, Version{4, 6, 0}, false, unix.DM_DEV_SET_GEOMETRY},
	{CmdDevArmPoll, "DM_DEV_ARM_POLL", 16, Version{4, 36, 0}, false, unix.DM_DEV_ARM_POLL},
	{CmdGetTargetVersion, "DM_GET_TARGET_VERSION", 17, Version{4, 41, 0}, true, unix.DM_GET_TARGET_VERSION},
	{CmdMpathProbePaths, "DM_MPATH_PROBE_PATHS", 18, Version{4, 50, 0}, false, 0},
}

func TestCmdTable(t *testing.T) {
	if len(cmdTable) != NumCmds {
		t.Fatalf("test table has %d commands, package %d", len(cmdTable), NumCmds)
	}
	for _, tt := range cmdTable {
		if uint(tt.cmd) != tt.nr {
			t.Errorf("%s: nr %d, want %d", tt.name, tt.cmd, tt.nr)
		}
		if !tt.cmd.Valid() {
			t.Errorf("%s: not Valid", tt.name)
		}
		if got := tt.cmd.String(); got != tt.name {
			t.Errorf("Cmd(%d).String() = %q, want %q", tt.nr, got, tt.name)
		}
		if got := tt.cmd.MinVersion(); got != tt.min {
			t.Errorf("%s.MinVersion() = %v, want %v", tt.name, got, tt.min)
		}
		if got := tt.cmd.ReturnsData(); got != tt.returns {
			t.Errorf("%s.ReturnsData() = %v, want %v", tt.name, got, tt.returns)
		}
	}
}

func TestCmdRequest(t *testing.T) {
	generic := true
	switch runtime.GOARCH {
	case "mips", "mipsle", "mips64", "mips64le", "ppc", "ppc64", "ppc64le", "sparc", "sparc64", "alpha":
		generic = false
	}
	for _, tt := range cmdTable {
		got := tt.cmd.Request()
		if tt.unix != 0 && got != tt.unix {
			t.Errorf("%s.Request() = %#x, x/sys/unix has %#x", tt.name, got, tt.unix)
		}
		if !generic {
			continue
		}
		// asm-generic: _IOWR(0xfd, nr, struct dm_ioctl) = 0xc138fd00 + nr;
		// _IO(0xfd, 18) = 0xfd12.
		want := 0xc138fd00 + tt.nr
		if tt.cmd == CmdMpathProbePaths {
			want = 0xfd12
		}
		if got != want {
			t.Errorf("%s.Request() = %#x, want %#x", tt.name, got, want)
		}
	}
	// The decoded fields: nr in bits 0-7, type in 8-15, size in 16-29 (16-28
	// on the "other" ABIs), direction above.
	for _, tt := range cmdTable {
		r := tt.cmd.Request()
		if r&0xff != tt.nr || (r>>8)&0xff != DMIoctlType {
			t.Errorf("%s: request %#x does not decode to type 0xfd nr %d", tt.name, r, tt.nr)
		}
		size := (r >> iocSizeShift) & (1<<iocSizeBits - 1)
		dir := r >> iocDirShift
		if tt.cmd == CmdMpathProbePaths {
			if size != 0 || dir != iocNone {
				t.Errorf("%s: size %d dir %d, want _IO", tt.name, size, dir)
			}
		} else if size != SizeofHeader || dir != iocRead|iocWrite {
			t.Errorf("%s: size %d dir %d, want _IOWR of 312 bytes", tt.name, size, dir)
		}
	}
}

func TestCmdInvalid(t *testing.T) {
	for _, c := range []Cmd{NumCmds, 19, 200, 255} {
		if c.Valid() {
			t.Errorf("Cmd(%d).Valid() = true", c)
		}
		if got, want := c.String(), "DM_CMD_"+strconv.Itoa(int(c)); got != want {
			t.Errorf("Cmd(%d).String() = %q, want %q", c, got, want)
		}
		if got := c.MinVersion(); got != (Version{}) {
			t.Errorf("Cmd(%d).MinVersion() = %v, want zero", c, got)
		}
		if c.ReturnsData() {
			t.Errorf("Cmd(%d).ReturnsData() = true", c)
		}
		if c.CarriesEventNr(0) {
			t.Errorf("Cmd(%d).CarriesEventNr = true", c)
		}
		r := Request{Cmd: c}
		if _, err := r.MarshalTo(make([]byte, 4096)); err != ErrMalformed {
			t.Errorf("Cmd(%d): MarshalTo err = %v, want ErrMalformed", c, err)
		}
	}
}

func TestCarriesEventNr(t *testing.T) {
	carries := map[Cmd]bool{CmdDevRemove: true, CmdDevRename: true, CmdDevWait: true}
	for _, tt := range cmdTable {
		for _, f := range []Flags{0, FlagSuspend, FlagNoFlush, FlagSuspend | FlagNoFlush, FlagUUID, FlagDeferredRemove} {
			want := carries[tt.cmd]
			if tt.cmd == CmdDevSuspend {
				want = f&FlagSuspend == 0 // resume carries a cookie, suspend does not
			}
			if got := tt.cmd.CarriesEventNr(f); got != want {
				t.Errorf("%s.CarriesEventNr(%v) = %v, want %v", tt.name, f, got, want)
			}
		}
	}
}

func TestFlagValues(t *testing.T) {
	tests := []struct {
		f       Flags
		unix    uint32
		literal uint32
		name    string
	}{
		{FlagReadOnly, unix.DM_READONLY_FLAG, 1 << 0, "READONLY"},
		{FlagSuspend, unix.DM_SUSPEND_FLAG, 1 << 1, "SUSPEND"},
		{FlagExists, 1 << 2, 1 << 2, "EXISTS"}, // libdm-only, not in x/sys
		{FlagPersistentDev, unix.DM_PERSISTENT_DEV_FLAG, 1 << 3, "PERSISTENT_DEV"},
		{FlagStatusTable, unix.DM_STATUS_TABLE_FLAG, 1 << 4, "STATUS_TABLE"},
		{FlagActivePresent, unix.DM_ACTIVE_PRESENT_FLAG, 1 << 5, "ACTIVE_PRESENT"},
		{FlagInactivePresent, unix.DM_INACTIVE_PRESENT_FLAG, 1 << 6, "INACTIVE_PRESENT"},
		{FlagBufferFull, unix.DM_BUFFER_FULL_FLAG, 1 << 8, "BUFFER_FULL"},
		{FlagSkipBdget, unix.DM_SKIP_BDGET_FLAG, 1 << 9, "SKIP_BDGET"},
		{FlagSkipLockfs, unix.DM_SKIP_LOCKFS_FLAG, 1 << 10, "SKIP_LOCKFS"},
		{FlagNoFlush, unix.DM_NOFLUSH_FLAG, 1 << 11, "NOFLUSH"},
		{FlagQueryInactiveTable, unix.DM_QUERY_INACTIVE_TABLE_FLAG, 1 << 12, "QUERY_INACTIVE_TABLE"},
		{FlagUeventGenerated, unix.DM_UEVENT_GENERATED_FLAG, 1 << 13, "UEVENT_GENERATED"},
		{FlagUUID, unix.DM_UUID_FLAG, 1 << 14, "UUID"},
		{FlagSecureData, unix.DM_SECURE_DATA_FLAG, 1 << 15, "SECURE_DATA"},
		{FlagDataOut, unix.DM_DATA_OUT_FLAG, 1 << 16, "DATA_OUT"},
		{FlagDeferredRemove, unix.DM_DEFERRED_REMOVE, 1 << 17, "DEFERRED_REMOVE"},
		{FlagInternalSuspend, unix.DM_INTERNAL_SUSPEND_FLAG, 1 << 18, "INTERNAL_SUSPEND"},
		{FlagIMAMeasurement, unix.DM_IMA_MEASUREMENT_FLAG, 1 << 19, "IMA_MEASUREMENT"},
	}
	var all Flags
	for _, tt := range tests {
		if uint32(tt.f) != tt.unix || uint32(tt.f) != tt.literal {
			t.Errorf("%s = %#x, x/sys/unix %#x, literal %#x", tt.name, uint32(tt.f), tt.unix, tt.literal)
		}
		if got := tt.f.String(); got != tt.name {
			t.Errorf("Flags(%#x).String() = %q, want %q", uint32(tt.f), got, tt.name)
		}
		if all&tt.f != 0 {
			t.Errorf("%s overlaps another flag", tt.name)
		}
		all |= tt.f
	}
	if all != 0xfff7f {
		t.Errorf("union of flags = %#x, want 0xfff7f (bits 0-19 but 7)", uint32(all))
	}
}

func TestFlagsString(t *testing.T) {
	tests := []struct {
		f    Flags
		want string
	}{
		{0, "0"},
		{FlagSuspend | FlagNoFlush, "SUSPEND|NOFLUSH"},
		{FlagNoFlush | FlagSuspend | FlagReadOnly, "READONLY|SUSPEND|NOFLUSH"},
		{1 << 7, "0x80"},
		{FlagBufferFull | 1<<7, "0x80|BUFFER_FULL"},
		{1 << 20, "0x100000"},
		{1 << 31, "0x80000000"},
		{FlagIMAMeasurement | 1<<31, "IMA_MEASUREMENT|0x80000000"},
		{0xffffffff, "READONLY|SUSPEND|EXISTS|PERSISTENT_DEV|STATUS_TABLE|ACTIVE_PRESENT|INACTIVE_PRESENT|0x80|" +
			"BUFFER_FULL|SKIP_BDGET|SKIP_LOCKFS|NOFLUSH|QUERY_INACTIVE_TABLE|UEVENT_GENERATED|UUID|SECURE_DATA|" +
			"DATA_OUT|DEFERRED_REMOVE|INTERNAL_SUSPEND|IMA_MEASUREMENT|0x100000|0x200000|0x400000|0x800000|" +
			"0x1000000|0x2000000|0x4000000|0x8000000|0x10000000|0x20000000|0x40000000|0x80000000"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("Flags(%#x).String() = %q, want %q", uint32(tt.f), got, tt.want)
		}
	}
}

func TestFlagsMinVersion(t *testing.T) {
	tests := []struct {
		c    Cmd
		f    Flags
		want Version
	}{
		{CmdDevStatus, 0, v4_0},
		{CmdDevSuspend, FlagSuspend | FlagNoFlush | FlagSkipLockfs, v4_0},
		{CmdDevStatus, FlagQueryInactiveTable, v4_16},
		{CmdTableStatus, FlagQueryInactiveTable | FlagStatusTable, v4_16},
		{CmdDevRemove, FlagDeferredRemove, v4_27},
		{CmdRemoveAll, FlagDeferredRemove, v4_27},
		{CmdTableStatus, FlagIMAMeasurement, v4_45},
		{CmdListDevices, FlagUUID, v4_45},
		{CmdListDevices, 0, v4_0},
		{CmdDevRename, FlagUUID, Version{4, 19, 0}}, // set the uuid: libdm refuses below 4.19
		{CmdDevRename, 0, v4_0},
		{CmdTableLoad, FlagSecureData, Version{4, 20, 0}},
		{CmdTargetMsg, FlagSecureData, Version{4, 20, 0}},
		// A command newer than its flags keeps its own minimum.
		{CmdGetTargetVersion, FlagQueryInactiveTable, v4_41},
		{CmdDevArmPoll, FlagDeferredRemove, v4_36},
		{CmdListVersions, 0, v4_1},
		// The highest requirement wins.
		{CmdDevRemove, FlagDeferredRemove | FlagQueryInactiveTable | FlagIMAMeasurement, v4_45},
		// Output-only flags need nothing.
		{CmdDevStatus, FlagBufferFull | FlagDataOut | FlagUeventGenerated | FlagInternalSuspend, v4_0},
	}
	for _, tt := range tests {
		if got := tt.f.MinVersion(tt.c); got != tt.want {
			t.Errorf("Flags(%v).MinVersion(%v) = %v, want %v", tt.f, tt.c, got, tt.want)
		}
	}
}

func TestVersion(t *testing.T) {
	tests := []struct {
		v, w       Version
		less, atl  bool
		vstr, wstr string
	}{
		{Version{4, 0, 0}, Version{4, 0, 0}, false, true, "4.0.0", "4.0.0"},
		{Version{4, 36, 0}, Version{4, 37, 0}, true, false, "4.36.0", "4.37.0"},
		{Version{4, 37, 1}, Version{4, 37, 0}, false, true, "4.37.1", "4.37.0"},
		{Version{4, 47, 0}, Version{4, 45, 0}, false, true, "4.47.0", "4.45.0"},
		{Version{3, 99, 99}, Version{4, 0, 0}, true, false, "3.99.99", "4.0.0"},
		{Version{5, 0, 0}, Version{4, 50, 0}, false, true, "5.0.0", "4.50.0"},
		{Version{4, 5, 9}, Version{4, 10, 0}, true, false, "4.5.9", "4.10.0"},
	}
	for _, tt := range tests {
		if got := tt.v.Less(tt.w); got != tt.less {
			t.Errorf("%v.Less(%v) = %v", tt.v, tt.w, got)
		}
		if got := tt.v.AtLeast(tt.w); got != tt.atl {
			t.Errorf("%v.AtLeast(%v) = %v", tt.v, tt.w, got)
		}
		if tt.v.String() != tt.vstr || tt.w.String() != tt.wstr {
			t.Errorf("String: %q %q, want %q %q", tt.v.String(), tt.w.String(), tt.vstr, tt.wstr)
		}
	}
	// The named versions are in increasing order.
	named := []Version{v4_0, v4_1, v4_2, v4_6, v4_15, v4_16, v4_27, v4_36, v4_37, v4_41, v4_45, v4_50}
	minors := []uint32{0, 1, 2, 6, 15, 16, 27, 36, 37, 41, 45, 50}
	for i, v := range named {
		if v != (Version{4, minors[i], 0}) {
			t.Errorf("named version %d = %v, want 4.%d.0", i, v, minors[i])
		}
		if i > 0 && !named[i-1].Less(v) {
			t.Errorf("%v is not older than %v", named[i-1], v)
		}
	}
}

func TestFeatures(t *testing.T) {
	for _, tt := range []struct {
		f    Feature
		min  Version
		name string
	}{
		{FeatureUdevCookies, Version{4, 15, 0}, "udev cookies"},
		{FeatureDeferredRemove, Version{4, 27, 0}, "deferred remove"},
		{FeatureArmPoll, Version{4, 36, 0}, "DM_DEV_ARM_POLL"},
		{FeatureNameListEventNr, Version{4, 37, 0}, "event numbers in device lists"},
		{FeatureNameListUUID, Version{4, 45, 0}, "uuids and filters in device lists"},
	} {
		if tt.f.MinVersion() != tt.min || tt.f.String() != tt.name {
			t.Errorf("%v: %v %q", tt.f, tt.f.MinVersion(), tt.f.String())
		}
		if !tt.min.Has(tt.f) || (Version{tt.min[0], tt.min[1] - 1, 9}).Has(tt.f) {
			t.Errorf("Has(%v) around %v", tt.f, tt.min)
		}
	}
	if (Version{9, 99, 0}).Has(numFeatures) {
		t.Error("an unknown feature is had")
	}
}
