package ioctl

import "strings"

// Flags is the flags field of struct dm_ioctl. Some bits are inputs, some
// outputs, some both; see each constant.
type Flags uint32

// The DM_*_FLAG values of include/uapi/linux/dm-ioctl.h.
const (
	FlagReadOnly           Flags = 1 << 0  // DM_READONLY_FLAG: in (load, create) / out (info)
	FlagSuspend            Flags = 1 << 1  // DM_SUSPEND_FLAG: in (suspend, not resume) / out (info)
	FlagExists             Flags = 1 << 2  // DM_EXISTS_FLAG: libdevmapper-internal, never set by the kernel
	FlagPersistentDev      Flags = 1 << 3  // DM_PERSISTENT_DEV_FLAG: in (create: use the minor in dev)
	FlagStatusTable        Flags = 1 << 4  // DM_STATUS_TABLE_FLAG: in (table status: return the table text)
	FlagActivePresent      Flags = 1 << 5  // DM_ACTIVE_PRESENT_FLAG: out (a live table exists)
	FlagInactivePresent    Flags = 1 << 6  // DM_INACTIVE_PRESENT_FLAG: out (an inactive table is loaded)
	FlagBufferFull         Flags = 1 << 8  // DM_BUFFER_FULL_FLAG: out (the reply did not fit)
	FlagSkipBdget          Flags = 1 << 9  // DM_SKIP_BDGET_FLAG: in, ignored by current kernels
	FlagSkipLockfs         Flags = 1 << 10 // DM_SKIP_LOCKFS_FLAG: in (suspend without freezing the filesystem)
	FlagNoFlush            Flags = 1 << 11 // DM_NOFLUSH_FLAG: in (suspend without flushing; status without committing)
	FlagQueryInactiveTable Flags = 1 << 12 // DM_QUERY_INACTIVE_TABLE_FLAG: in (deps, table status, info about the inactive table)
	FlagUeventGenerated    Flags = 1 << 13 // DM_UEVENT_GENERATED_FLAG: out (a uevent was sent, a udev cookie will complete)
	FlagUUID               Flags = 1 << 14 // DM_UUID_FLAG: in (rename: set the uuid; list: return uuids)
	FlagSecureData         Flags = 1 << 15 // DM_SECURE_DATA_FLAG: in (wipe buffers: the table holds keys)
	FlagDataOut            Flags = 1 << 16 // DM_DATA_OUT_FLAG: out (a message returned a string)
	FlagDeferredRemove     Flags = 1 << 17 // DM_DEFERRED_REMOVE: in (remove when last closed) / out (info: removal pending)
	FlagInternalSuspend    Flags = 1 << 18 // DM_INTERNAL_SUSPEND_FLAG: out (suspended by the kernel itself)
	FlagIMAMeasurement     Flags = 1 << 19 // DM_IMA_MEASUREMENT_FLAG: in (table status: IMA text)
)

var flagNames = [...]string{
	"READONLY", "SUSPEND", "EXISTS", "PERSISTENT_DEV", "STATUS_TABLE",
	"ACTIVE_PRESENT", "INACTIVE_PRESENT", "", "BUFFER_FULL", "SKIP_BDGET",
	"SKIP_LOCKFS", "NOFLUSH", "QUERY_INACTIVE_TABLE", "UEVENT_GENERATED",
	"UUID", "SECURE_DATA", "DATA_OUT", "DEFERRED_REMOVE", "INTERNAL_SUSPEND",
	"IMA_MEASUREMENT",
}

// String lists the set flags by their kernel names, "SUSPEND|NOFLUSH"; bits
// this package does not know appear as hex.
func (f Flags) String() string {
	if f == 0 {
		return "0"
	}
	var b strings.Builder
	for i := 0; i < 32; i++ {
		bit := Flags(1) << i
		if f&bit == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		if i < len(flagNames) && flagNames[i] != "" {
			b.WriteString(flagNames[i])
		} else {
			b.WriteString("0x")
			const hex = "0123456789abcdef"
			v := uint32(bit)
			var tmp [8]byte
			n := len(tmp)
			for v > 0 {
				n--
				tmp[n] = hex[v&0xf]
				v >>= 4
			}
			b.Write(tmp[n:])
		}
	}
	return b.String()
}

// MinVersion is the lowest interface version whose kernel understands every
// input flag in f for command c. Older kernels silently ignore flags they do
// not know, so package dm refuses such requests up front.
func (f Flags) MinVersion(c Cmd) Version {
	v := c.MinVersion()
	raise := func(w Version) {
		if v.Less(w) {
			v = w
		}
	}
	if f&FlagQueryInactiveTable != 0 {
		raise(v4_16)
	}
	// Older kernels ignore DM_UUID_FLAG on rename and rename the device to
	// the uuid string; libdevmapper refuses below 4.19.
	if c == CmdDevRename && f&FlagUUID != 0 {
		raise(Version{4, 19, 0})
	}
	// Older kernels do not wipe their buffers (libdevmapper: 4.20).
	if f&FlagSecureData != 0 {
		raise(Version{4, 20, 0})
	}
	if f&FlagDeferredRemove != 0 {
		raise(v4_27)
	}
	if f&FlagIMAMeasurement != 0 {
		raise(v4_45)
	}
	if c == CmdListDevices && f&FlagUUID != 0 {
		raise(v4_45)
	}
	return v
}
