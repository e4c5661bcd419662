package ioctl

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestSizes pins every size and offset this package encodes at against the
// kernel structs as x/sys/unix mirrors them, and against the literal values
// of include/uapi/linux/dm-ioctl.h on 64-bit ABIs.
func TestSizes(t *testing.T) {
	var io unix.DmIoctl
	var ts unix.DmTargetSpec
	var td unix.DmTargetDeps
	var tv unix.DmTargetVersions
	var tm unix.DmTargetMsg
	tests := []struct {
		name       string
		ours, unix uintptr
		literal    uintptr
	}{
		// struct dm_ioctl
		{"sizeof(dm_ioctl)", SizeofHeader, unsafe.Sizeof(io), 312},
		{"SizeofDmIoctl", SizeofHeader, unix.SizeofDmIoctl, 312},
		{"dm_ioctl.version", offVersion, unsafe.Offsetof(io.Version), 0},
		{"dm_ioctl.data_size", offDataSize, unsafe.Offsetof(io.Data_size), 12},
		{"dm_ioctl.data_start", offDataStart, unsafe.Offsetof(io.Data_start), 16},
		{"dm_ioctl.target_count", offTargetCount, unsafe.Offsetof(io.Target_count), 20},
		{"dm_ioctl.open_count", offOpenCount, unsafe.Offsetof(io.Open_count), 24},
		{"dm_ioctl.flags", offFlags, unsafe.Offsetof(io.Flags), 28},
		{"dm_ioctl.event_nr", offEventNr, unsafe.Offsetof(io.Event_nr), 32},
		// padding is unnamed in x/sys: it is what lies between event_nr and dev.
		{"dm_ioctl.padding", offPadding, unsafe.Offsetof(io.Event_nr) + 4, 36},
		{"dm_ioctl.dev", offDev, unsafe.Offsetof(io.Dev), 40},
		{"dm_ioctl.name", offName, unsafe.Offsetof(io.Name), 48},
		{"dm_ioctl.uuid", offUUID, unsafe.Offsetof(io.Uuid), 176},
		{"dm_ioctl.data", offData, unsafe.Offsetof(io.Data), 305},
		{"DataOffset", DataOffset, unsafe.Offsetof(io.Data), 305},
		{"DataStart", DataStart, (unsafe.Sizeof(io) + 7) &^ 7, 312},
		{"DM_NAME_LEN", NameLen, unsafe.Sizeof(io.Name), 128},
		{"DM_UUID_LEN", UUIDLen, unsafe.Sizeof(io.Uuid), 129},
		{"DM_NAME_LEN const", NameLen, unix.DM_NAME_LEN, 128},
		{"DM_UUID_LEN const", UUIDLen, unix.DM_UUID_LEN, 129},

		// struct dm_target_spec
		{"sizeof(dm_target_spec)", SizeofTargetSpec, unsafe.Sizeof(ts), 40},
		{"SizeofDmTargetSpec", SizeofTargetSpec, unix.SizeofDmTargetSpec, 40},
		{"dm_target_spec.sector_start", specOffStart, unsafe.Offsetof(ts.Sector_start), 0},
		{"dm_target_spec.length", specOffLength, unsafe.Offsetof(ts.Length), 8},
		{"dm_target_spec.status", specOffStatus, unsafe.Offsetof(ts.Status), 16},
		{"dm_target_spec.next", specOffNext, unsafe.Offsetof(ts.Next), 20},
		{"dm_target_spec.target_type", specOffType, unsafe.Offsetof(ts.Target_type), 24},
		{"DM_MAX_TYPE_NAME", MaxTypeName, unsafe.Sizeof(ts.Target_type), 16},
		{"DM_MAX_TYPE_NAME const", MaxTypeName, unix.DM_MAX_TYPE_NAME, 16},

		// struct dm_target_deps
		{"sizeof(dm_target_deps)", sizeofTargetDeps, unsafe.Sizeof(td), 8},
		{"dm_target_deps.count", 0, unsafe.Offsetof(td.Count), 0},

		// struct dm_target_versions
		{"sizeof(dm_target_versions)", tvOffName, unsafe.Sizeof(tv), 16},
		{"dm_target_versions.next", tvOffNext, unsafe.Offsetof(tv.Next), 0},
		{"dm_target_versions.version", tvOffVersion, unsafe.Offsetof(tv.Version), 4},

		// struct dm_target_msg
		{"sizeof(dm_target_msg)", sizeofTargetMsg, unsafe.Sizeof(tm), 8},
		{"dm_target_msg.sector", 0, unsafe.Offsetof(tm.Sector), 0},

		// struct dm_name_list: the name is at 12 whatever sizeof says.
		{"dm_name_list.dev", nlOffDev, unsafe.Offsetof(unix.DmNameList{}.Dev), 0},
		{"dm_name_list.next", nlOffNext, unsafe.Offsetof(unix.DmNameList{}.Next), 8},
		// x/sys has no Name field on i386: the name follows next.
		{"dm_name_list.name", nlOffName, unsafe.Offsetof(unix.DmNameList{}.Next) + 4, 12},
	}
	for _, tt := range tests {
		if tt.ours != tt.unix || tt.ours != tt.literal {
			t.Errorf("%s: ours %d, x/sys/unix %d, literal %d", tt.name, tt.ours, tt.unix, tt.literal)
		}
	}
	if unsafe.Sizeof(uintptr(0)) == 8 && unsafe.Alignof(ts) != specAlign {
		t.Errorf("alignof(dm_target_spec) = %d, want %d", unsafe.Alignof(ts), specAlign)
	}
	// sizeof(struct dm_name_list) is 16 on 64-bit ABIs because of tail
	// padding, and 12 where u64 aligns to 4 (i386): never use it to find
	// the name.
	if s := unsafe.Sizeof(unix.DmNameList{}); s != sizeofNameList && s != 12 {
		t.Errorf("sizeof(dm_name_list) = %d, want 16 (or 12 on i386)", s)
	}
}

// TestLiteralConstants pins the exported constants to dm-ioctl.h.
func TestLiteralConstants(t *testing.T) {
	tests := []struct {
		name      string
		got, want int
	}{
		{"SizeofHeader", SizeofHeader, 312},
		{"DataOffset", DataOffset, 305},
		{"DataStart", DataStart, 312},
		{"NameLen", NameLen, 128},
		{"UUIDLen", UUIDLen, 129},
		{"MaxTypeName", MaxTypeName, 16},
		{"SizeofTargetSpec", SizeofTargetSpec, 40},
		{"DMIoctlType", DMIoctlType, 0xfd},
		{"DMIoctlType unix", DMIoctlType, unix.DM_IOCTL},
		{"NumCmds", NumCmds, 19},
		{"NameListHasUUID", NameListHasUUID, unix.DM_NAME_LIST_FLAG_HAS_UUID},
		{"NameListNoUUID", NameListNoUUID, unix.DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID},
		{"NameListHasUUID literal", NameListHasUUID, 1},
		{"NameListNoUUID literal", NameListNoUUID, 2},
		{"DefaultBufferSize", DefaultBufferSize, 16384},
		{"DefaultMaxBuffer", DefaultMaxBuffer, 1 << 30},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %d, want %d", tt.name, tt.got, tt.want)
		}
	}
}
