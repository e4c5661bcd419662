package ioctl

import "fmt"

// Cmd is a device-mapper control command: the nr in _IOWR(DM_IOCTL, nr,
// struct dm_ioctl).
//
//	enum {
//		DM_VERSION_CMD = 0, DM_REMOVE_ALL_CMD, DM_LIST_DEVICES_CMD,
//		DM_DEV_CREATE_CMD, DM_DEV_REMOVE_CMD, DM_DEV_RENAME_CMD,
//		DM_DEV_SUSPEND_CMD, DM_DEV_STATUS_CMD, DM_DEV_WAIT_CMD,
//		DM_TABLE_LOAD_CMD, DM_TABLE_CLEAR_CMD, DM_TABLE_DEPS_CMD,
//		DM_TABLE_STATUS_CMD, DM_LIST_VERSIONS_CMD, DM_TARGET_MSG_CMD,
//		DM_DEV_SET_GEOMETRY_CMD, DM_DEV_ARM_POLL_CMD,
//		DM_GET_TARGET_VERSION_CMD, DM_MPATH_PROBE_PATHS_CMD,
//	};
type Cmd uint8

// The control commands, in kernel order.
const (
	CmdVersion          Cmd = 0  // DM_VERSION: negotiate the interface version
	CmdRemoveAll        Cmd = 1  // DM_REMOVE_ALL: remove every unused device
	CmdListDevices      Cmd = 2  // DM_LIST_DEVICES: dm_name_list chain
	CmdDevCreate        Cmd = 3  // DM_DEV_CREATE: create a device without a table
	CmdDevRemove        Cmd = 4  // DM_DEV_REMOVE: remove a device (cookie)
	CmdDevRename        Cmd = 5  // DM_DEV_RENAME: rename, or set the uuid once (cookie)
	CmdDevSuspend       Cmd = 6  // DM_DEV_SUSPEND: suspend, or resume without DM_SUSPEND_FLAG (cookie on resume)
	CmdDevStatus        Cmd = 7  // DM_DEV_STATUS: device info
	CmdDevWait          Cmd = 8  // DM_DEV_WAIT: wait for event_nr to move
	CmdTableLoad        Cmd = 9  // DM_TABLE_LOAD: load the inactive table
	CmdTableClear       Cmd = 10 // DM_TABLE_CLEAR: drop the inactive table
	CmdTableDeps        Cmd = 11 // DM_TABLE_DEPS: dm_target_deps
	CmdTableStatus      Cmd = 12 // DM_TABLE_STATUS: status or table text per target
	CmdListVersions     Cmd = 13 // DM_LIST_VERSIONS: dm_target_versions chain
	CmdTargetMsg        Cmd = 14 // DM_TARGET_MSG: send a message to a target
	CmdDevSetGeometry   Cmd = 15 // DM_DEV_SET_GEOMETRY: "cyl heads sectors start"
	CmdDevArmPoll       Cmd = 16 // DM_DEV_ARM_POLL: re-arm poll() on the control fd
	CmdGetTargetVersion Cmd = 17 // DM_GET_TARGET_VERSION: one target's version
	CmdMpathProbePaths  Cmd = 18 // DM_MPATH_PROBE_PATHS: a block-device ioctl on a multipath device, not a control command
)

// NumCmds is the number of commands this package knows.
const NumCmds = 19

// Version is a dm interface version: major, minor, patchlevel.
type Version [3]uint32

// Less reports whether v is an older interface version than w.
func (v Version) Less(w Version) bool {
	for i := range v {
		if v[i] != w[i] {
			return v[i] < w[i]
		}
	}
	return false
}

// AtLeast reports whether v is w or newer.
func (v Version) AtLeast(w Version) bool { return !v.Less(w) }

// String formats v as dmsetup prints it, "4.47.0".
func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

// Interface versions that introduced a command or a flag. Sources: the
// kernel's dm-ioctl.h history and libdevmapper's per-command table. Callers
// outside this package ask by Feature.
var (
	v4_0  = Version{4, 0, 0}
	v4_1  = Version{4, 1, 0}  // DM_LIST_VERSIONS
	v4_2  = Version{4, 2, 0}  // DM_TARGET_MSG
	v4_6  = Version{4, 6, 0}  // DM_DEV_SET_GEOMETRY
	v4_15 = Version{4, 15, 0} // udev cookies in event_nr
	v4_16 = Version{4, 16, 0} // DM_QUERY_INACTIVE_TABLE_FLAG
	v4_27 = Version{4, 27, 0} // DM_DEFERRED_REMOVE, DM_DATA_OUT_FLAG
	// DM_DEV_ARM_POLL: the kernel change that added DM_DEV_ARM_POLL_CMD
	// to dm-ioctl.c's command table (and poll() on the control node)
	// raised DM_VERSION_MINOR from 35 to 36, DM_VERSION_EXTRA
	// "-ioctl (2017-06-09)", in Linux 4.13. 4.37 (Linux 4.14) only moved
	// event_nr in struct dm_name_list, which DM_DEV_ARM_POLL does not
	// use, so 4.36 is its minimum, not 4.37.
	v4_36 = Version{4, 36, 0}
	v4_37 = Version{4, 37, 0} // event_nr in dm_name_list (4.36 put it at an ABI-dependent offset)
	v4_41 = Version{4, 41, 0} // DM_GET_TARGET_VERSION
	v4_45 = Version{4, 45, 0} // uuid in dm_name_list, list prefix filters, IMA
	v4_50 = Version{4, 50, 0} // DM_MPATH_PROBE_PATHS
)

// Feature is something of the dm interface that arrived in a given
// version, beyond the commands (see Cmd.MinVersion).
type Feature uint8

// Features.
const (
	FeatureUdevCookies     Feature = iota // udev cookies in event_nr (4.15)
	FeatureInactiveQuery                  // DM_QUERY_INACTIVE_TABLE_FLAG (4.16)
	FeatureDeferredRemove                 // DM_DEFERRED_REMOVE (4.27)
	FeatureArmPoll                        // DM_DEV_ARM_POLL (4.36)
	FeatureNameListEventNr                // event_nr in dm_name_list (4.37)
	FeatureTargetVersion                  // DM_GET_TARGET_VERSION (4.41)
	FeatureNameListUUID                   // uuids in dm_name_list, and list filters by name prefix or uuid (4.45)
	numFeatures
)

var features = [numFeatures]struct {
	name string
	min  *Version
}{
	FeatureUdevCookies:     {"udev cookies", &v4_15},
	FeatureInactiveQuery:   {"inactive table queries", &v4_16},
	FeatureDeferredRemove:  {"deferred remove", &v4_27},
	FeatureArmPoll:         {"DM_DEV_ARM_POLL", &v4_36},
	FeatureNameListEventNr: {"event numbers in device lists", &v4_37},
	FeatureTargetVersion:   {"DM_GET_TARGET_VERSION", &v4_41},
	FeatureNameListUUID:    {"uuids and filters in device lists", &v4_45},
}

// MinVersion is the lowest interface version that has f.
func (f Feature) MinVersion() Version {
	if f >= numFeatures {
		return Version{^uint32(0)}
	}
	return *features[f].min
}

// String names f.
func (f Feature) String() string {
	if f >= numFeatures {
		return fmt.Sprintf("feature %d", uint8(f))
	}
	return features[f].name
}

// Has reports whether interface version v has f.
func (v Version) Has(f Feature) bool { return v.AtLeast(f.MinVersion()) }

type cmdInfo struct {
	name        string
	min         Version
	returnsData bool // the kernel writes a payload back that can hit DM_BUFFER_FULL_FLAG
}

var cmds = [NumCmds]cmdInfo{
	CmdVersion:          {"DM_VERSION", v4_0, false},
	CmdRemoveAll:        {"DM_REMOVE_ALL", v4_0, false},
	CmdListDevices:      {"DM_LIST_DEVICES", v4_0, true},
	CmdDevCreate:        {"DM_DEV_CREATE", v4_0, false},
	CmdDevRemove:        {"DM_DEV_REMOVE", v4_0, false},
	CmdDevRename:        {"DM_DEV_RENAME", v4_0, false},
	CmdDevSuspend:       {"DM_DEV_SUSPEND", v4_0, false},
	CmdDevStatus:        {"DM_DEV_STATUS", v4_0, false},
	CmdDevWait:          {"DM_DEV_WAIT", v4_0, true},
	CmdTableLoad:        {"DM_TABLE_LOAD", v4_0, false},
	CmdTableClear:       {"DM_TABLE_CLEAR", v4_0, false},
	CmdTableDeps:        {"DM_TABLE_DEPS", v4_0, true},
	CmdTableStatus:      {"DM_TABLE_STATUS", v4_0, true},
	CmdListVersions:     {"DM_LIST_VERSIONS", v4_1, true},
	CmdTargetMsg:        {"DM_TARGET_MSG", v4_2, true},
	CmdDevSetGeometry:   {"DM_DEV_SET_GEOMETRY", v4_6, false},
	CmdDevArmPoll:       {"DM_DEV_ARM_POLL", v4_36, false},
	CmdGetTargetVersion: {"DM_GET_TARGET_VERSION", v4_41, true},
	CmdMpathProbePaths:  {"DM_MPATH_PROBE_PATHS", v4_50, false},
}

// Valid reports whether c is a command this package knows.
func (c Cmd) Valid() bool { return int(c) < NumCmds }

// String returns the kernel's name for c, such as "DM_TABLE_LOAD".
func (c Cmd) String() string {
	if !c.Valid() {
		return fmt.Sprintf("DM_CMD_%d", uint8(c))
	}
	return cmds[c].name
}

// MinVersion is the lowest interface version that has c. It is the version
// sent with c, as libdevmapper does, so that an older kernel accepts every
// command it actually has.
func (c Cmd) MinVersion() Version {
	if !c.Valid() {
		return Version{}
	}
	return cmds[c].min
}

// ReturnsData reports whether the kernel writes a payload back for c, which
// may come back truncated with DM_BUFFER_FULL_FLAG set.
func (c Cmd) ReturnsData() bool { return c.Valid() && cmds[c].returnsData }

// Request is the ioctl request number of c: _IOWR(0xfd, c, struct dm_ioctl),
// which is 0xc138fd00+c; DM_MPATH_PROBE_PATHS is _IO(0xfd, 18).
func (c Cmd) Request() uint {
	if c == CmdMpathProbePaths {
		return iocNone<<iocDirShift | uint(DMIoctlType)<<iocTypeShift | uint(c)
	}
	return (iocRead|iocWrite)<<iocDirShift | SizeofHeader<<iocSizeShift |
		uint(DMIoctlType)<<iocTypeShift | uint(c)
}

// CarriesEventNr reports whether event_nr means anything for c with the
// given flags: a udev cookie on DM_DEV_REMOVE, DM_DEV_RENAME and a resume
// (DM_DEV_SUSPEND without DM_SUSPEND_FLAG), the awaited event number on
// DM_DEV_WAIT. Every other command must send zero: a stray value has caused
// EINVAL or hangs elsewhere.
func (c Cmd) CarriesEventNr(f Flags) bool {
	switch c {
	case CmdDevRemove, CmdDevRename, CmdDevWait:
		return true
	case CmdDevSuspend:
		return f&FlagSuspend == 0
	}
	return false
}

// The ioctl number layout: nr and type are 8 bits everywhere; the size and
// direction fields differ between asm-generic (cmd_generic.go) and alpha,
// mips, powerpc and sparc (cmd_otherarch.go).
const (
	iocNrBits    = 8
	iocTypeBits  = 8
	iocTypeShift = iocNrBits
	iocSizeShift = iocTypeShift + iocTypeBits
	iocDirShift  = iocSizeShift + iocSizeBits
)

// DMIoctlType is the ioctl type byte of device-mapper, DM_IOCTL.
const DMIoctlType = 0xfd
