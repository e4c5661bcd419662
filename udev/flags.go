package udev

import (
	"fmt"
	"strconv"
	"strings"
)

// Flags are the DM_UDEV_* flags that libdevmapper puts in the high 16 bits of
// dm_ioctl.event_nr for the ioctls that generate a uevent (resume, remove and
// rename). The kernel copies event_nr into the uevent as DM_COOKIE, and lvm2's
// udev rules decode the flags with `dmsetup udevflags` to decide which rules
// run.
//
// From libdm/libdevmapper.h:
//
//	#define DM_UDEV_FLAGS_MASK 0xFFFF0000
//	#define DM_UDEV_FLAGS_SHIFT 16
type Flags uint16

// The flags, with the values of libdm/libdevmapper.h.
const (
	// DisableDMRules (DM_UDEV_DISABLE_DM_RULES_FLAG 0x0001) turns off the
	// basic device-mapper rules that create the /dev/mapper symlinks. udev's
	// default /dev/dm-N node is still created.
	DisableDMRules Flags = 0x0001
	// DisableSubsystemRules (DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG 0x0002)
	// turns off subsystem rules (LVM, multipath, crypt, ...) but keeps the
	// general dm rules.
	DisableSubsystemRules Flags = 0x0002
	// DisableDiskRules (DM_UDEV_DISABLE_DISK_RULES_FLAG 0x0004) turns off the
	// rules that create /dev/disk/by-* symlinks.
	DisableDiskRules Flags = 0x0004
	// DisableOtherRules (DM_UDEV_DISABLE_OTHER_RULES_FLAG 0x0008) asks every
	// foreign rule (blkid, mdadm, ...) to skip the event.
	DisableOtherRules Flags = 0x0008
	// LowPriority (DM_UDEV_LOW_PRIORITY_FLAG 0x0010) gives the device's
	// symlinks low priority, so a device with the same filesystem UUID (an
	// origin, say) wins a symlink name conflict.
	LowPriority Flags = 0x0010
	// DisableLibraryFallback (DM_UDEV_DISABLE_LIBRARY_FALLBACK 0x0020) says the
	// caller relies on udev completely and will not create nodes itself.
	DisableLibraryFallback Flags = 0x0020
	// PrimarySource (DM_UDEV_PRIMARY_SOURCE_FLAG 0x0040) marks a uevent as
	// caused by a device-mapper library call rather than by `udevadm
	// trigger` or the watch rule. libdevmapper sets it on every
	// resume, remove and rename; Cookie.EventNr does too.
	PrimarySource Flags = 0x0040

	// SubsystemFlag0 to SubsystemFlag7 (DM_SUBSYSTEM_UDEV_FLAG0..7,
	// 0x0100..0x8000) are reserved for the subsystem that owns the device
	// (LVM uses them); their meaning depends on that subsystem.
	SubsystemFlag0 Flags = 0x0100
	SubsystemFlag1 Flags = 0x0200 // DM_SUBSYSTEM_UDEV_FLAG1, see SubsystemFlag0
	SubsystemFlag2 Flags = 0x0400 // DM_SUBSYSTEM_UDEV_FLAG2, see SubsystemFlag0
	SubsystemFlag3 Flags = 0x0800 // DM_SUBSYSTEM_UDEV_FLAG3, see SubsystemFlag0
	SubsystemFlag4 Flags = 0x1000 // DM_SUBSYSTEM_UDEV_FLAG4, see SubsystemFlag0
	SubsystemFlag5 Flags = 0x2000 // DM_SUBSYSTEM_UDEV_FLAG5, see SubsystemFlag0
	SubsystemFlag6 Flags = 0x4000 // DM_SUBSYSTEM_UDEV_FLAG6, see SubsystemFlag0
	SubsystemFlag7 Flags = 0x8000 // DM_SUBSYSTEM_UDEV_FLAG7, see SubsystemFlag0
)

// FallbackFlags are the flags to send when udev may be running but the caller
// does not synchronise with it and creates /dev/mapper nodes itself:
// libdevmapper sets exactly these in that case so that udev's dm and subsystem
// rules do not race with the caller's own node management, while the
// /dev/disk rules still run. Use them with EventNrWithoutCookie.
const FallbackFlags = DisableDMRules | DisableSubsystemRules

const (
	// CookieMagic is the prefix of every device-mapper udev cookie:
	// the upper 16 bits of the SysV semaphore key (DM_COOKIE_MAGIC 0x0D4D).
	CookieMagic = 0x0D4D

	flagsShift = 16 // DM_UDEV_FLAGS_SHIFT
)

// bitName names bit i the way dmsetup udevflags does (its _dm_flag_names
// table), without the DM_UDEV_/DM_ prefix and the _FLAG suffix: the seven named
// flags, FLAG7 for the unnamed bit 7, and SUBSYSTEM_FLAG0..7 for the high
// byte.
func bitName(i int) string {
	switch i {
	case 0:
		return "DISABLE_DM_RULES"
	case 1:
		return "DISABLE_SUBSYSTEM_RULES"
	case 2:
		return "DISABLE_DISK_RULES"
	case 3:
		return "DISABLE_OTHER_RULES"
	case 4:
		return "LOW_PRIORITY"
	case 5:
		return "DISABLE_LIBRARY_FALLBACK"
	case 6:
		return "PRIMARY_SOURCE"
	case 7:
		return "FLAG7"
	default:
		return "SUBSYSTEM_FLAG" + strconv.Itoa(i-8)
	}
}

// String decodes the flags the way `dmsetup udevflags` does, as names joined
// by "|", for example "DISABLE_DM_RULES|PRIMARY_SOURCE|SUBSYSTEM_FLAG0".
// Zero is "0". ParseFlags reverses it.
func (f Flags) String() string {
	if f == 0 {
		return "0"
	}
	var b strings.Builder
	for i := 0; i < 16; i++ {
		if f&(1<<i) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString(bitName(i))
	}
	return b.String()
}

// Env returns the lines `dmsetup udevflags <cookie>` prints for these flags,
// which lvm2's 10-dm.rules imports into the udev environment, for example
// "DM_UDEV_PRIMARY_SOURCE_FLAG='1'" or "DM_SUBSYSTEM_UDEV_FLAG0='1'".
func (f Flags) Env() []string {
	var out []string
	for i := 0; i < 16; i++ {
		if f&(1<<i) == 0 {
			continue
		}
		switch {
		case i < 7:
			out = append(out, "DM_UDEV_"+bitName(i)+"_FLAG='1'")
		case i == 7:
			out = append(out, "DM_UDEV_FLAG7='1'")
		default:
			out = append(out, fmt.Sprintf("DM_SUBSYSTEM_UDEV_FLAG%d='1'", i-8))
		}
	}
	return out
}

// ParseFlags parses the output of Flags.String: names joined by "|" (case
// insensitive, with or without the DM_UDEV_ or DM_ prefix and _FLAG suffix),
// or a number such as "0x41".
func ParseFlags(s string) (Flags, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 0, 16); err == nil {
		return Flags(n), nil
	}
	var f Flags
	for _, tok := range strings.Split(s, "|") {
		name := strings.ToUpper(strings.TrimSpace(tok))
		name = strings.TrimPrefix(name, "DM_UDEV_")
		name = strings.TrimPrefix(name, "DM_")
		found := false
		for i := 0; i < 16; i++ {
			bn := bitName(i)
			if name == bn || name == bn+"_FLAG" || (i >= 8 && name == fmt.Sprintf("SUBSYSTEM_UDEV_FLAG%d", i-8)) {
				f |= 1 << i
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("udev: unknown udev flag %q in %q", tok, s)
		}
	}
	return f, nil
}

// EventNrWithoutCookie returns the event_nr for a resume, remove or rename
// that carries udev flags but no cookie: the flags plus PrimarySource in the
// high 16 bits and a zero base, which tells 95-dm-notify.rules that nobody
// waits. Use it when Detect reports that sync is not possible; FallbackFlags
// are the flags libdevmapper uses then.
func EventNrWithoutCookie(f Flags) uint32 {
	return uint32(f|PrimarySource) << flagsShift
}

// SplitEventNr splits an event_nr or DM_COOKIE value into its udev flags and
// the 16-bit base that identifies the cookie's semaphore (zero when the value
// carries flags only).
func SplitEventNr(v uint32) (Flags, uint16) {
	return Flags(v >> flagsShift), uint16(v)
}

// cookieKey returns the SysV key of the semaphore that the event_nr or
// DM_COOKIE value v refers to: its flags replaced by CookieMagic, the way
// `dmsetup udevcomplete` does. ok is false when v carries flags only.
func cookieKey(v uint32) (key uint32, ok bool) {
	base := v & 0xffff
	if base == 0 {
		return 0, false
	}
	return CookieMagic<<flagsShift | base, true
}
