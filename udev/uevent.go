package udev

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Source is where a uevent comes from: the kernel or udevd. The values are
// the NETLINK_KOBJECT_UEVENT multicast groups.
type Source uint32

const (
	// SourceKernel is the kernel's own uevent (group 1), sent as soon as
	// the kernel acts, before any udev rule ran.
	SourceKernel Source = 1
	// SourceUdev is udevd's processed event (group 2), sent after the rules
	// ran: nodes and symlinks exist (or are gone) when it arrives, and the
	// properties include what the rules added.
	SourceUdev Source = 2
)

// String names the source: "kernel", "udev" or "kernel|udev".
func (s Source) String() string {
	switch s {
	case SourceKernel:
		return "kernel"
	case SourceUdev:
		return "udev"
	case SourceKernel | SourceUdev:
		return "kernel|udev"
	default:
		return "Source(" + strconv.FormatUint(uint64(s), 10) + ")"
	}
}

// Action is a uevent's ACTION.
type Action string

// The actions the kernel sends (lib/kobject_uevent.c kobject_actions).
const (
	ActionAdd     Action = "add"
	ActionRemove  Action = "remove"
	ActionChange  Action = "change"
	ActionMove    Action = "move"
	ActionOnline  Action = "online"
	ActionOffline Action = "offline"
	ActionBind    Action = "bind"
	ActionUnbind  Action = "unbind"
)

// Event is one uevent, from the kernel or from udevd.
type Event struct {
	Source    Source
	Action    Action
	DevPath   string // DEVPATH, under /sys: /devices/virtual/block/dm-0
	Subsystem string // SUBSYSTEM: block, ...
	DevType   string // DEVTYPE: disk, partition, ...
	// DevName is DEVNAME as sent: relative to /dev from the kernel
	// ("dm-0"), absolute from udev ("/dev/dm-0"). DevNode normalises it.
	DevName string
	Seqnum  uint64 // SEQNUM; 0 if absent
	// Major and Minor are MAJOR and MINOR; HasDevNum says whether both
	// were present.
	Major, Minor uint32
	HasDevNum    bool
	// Env holds every KEY=VALUE of the event, including the ones above and,
	// for device-mapper devices, DM_NAME, DM_UUID and DM_COOKIE.
	Env map[string]string
}

// Get returns the value of key in the event's environment.
func (e *Event) Get(key string) string { return e.Env[key] }

// DevNode returns the device node path, "/dev/" + DEVNAME for the kernel's
// relative names, or "" when the event names no node.
func (e *Event) DevNode() string {
	switch {
	case e.DevName == "":
		return ""
	case strings.HasPrefix(e.DevName, "/"):
		return e.DevName
	default:
		return "/dev/" + e.DevName
	}
}

// SysName returns the last element of DEVPATH, the kernel's name for the
// device (dm-0, loop3, sda1).
func (e *Event) SysName() string {
	if e.DevPath == "" {
		return ""
	}
	return path.Base(e.DevPath)
}

// Cookie returns the event's DM_COOKIE, the event_nr a device-mapper resume,
// remove or rename carried (flags and cookie base), and whether it had one.
func (e *Event) Cookie() (uint32, bool) {
	s, ok := e.Env["DM_COOKIE"]
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return 0, false
	}
	return uint32(v), true
}

// IsDevice reports whether the event is about dev, given as a node path
// ("/dev/dm-0", or a symlink udev announces in DEVLINKS such as
// "/dev/mapper/vol"), a DEVNAME ("dm-0"), a DEVPATH
// ("/devices/virtual/block/dm-0") or a sysfs name ("dm-0").
func (e *Event) IsDevice(dev string) bool {
	if dev == "" {
		return false
	}
	switch {
	case strings.HasPrefix(dev, "/dev/"):
		return e.DevNode() == dev || slices.Contains(strings.Fields(e.Env["DEVLINKS"]), dev)
	case strings.HasPrefix(dev, "/"):
		return e.DevPath == dev || strings.TrimPrefix(e.DevPath, "/sys") == strings.TrimPrefix(dev, "/sys")
	default:
		return e.SysName() == dev || strings.TrimPrefix(e.DevNode(), "/dev/") == dev
	}
}

// String summarises the event: source, action, DEVPATH and subsystem.
func (e *Event) String() string {
	return fmt.Sprintf("%s %s %s (%s)", e.Source, e.Action, e.DevPath, e.Subsystem)
}

// libudev's monitor header, from systemd's src/libsystemd/sd-device/
// device-monitor.c (all fields unsigned int; magic and the filter hashes in
// network byte order, the sizes in host byte order):
//
//	struct monitor_netlink_header {
//		char prefix[8];                       /*  0: "libudev\0" */
//		unsigned magic;                       /*  8: htobe32(0xfeedcafe) */
//		unsigned header_size;                 /* 12: sizeof this header, 40 */
//		unsigned properties_off;              /* 16: offset of KEY=VALUE\0... */
//		unsigned properties_len;              /* 20: their length */
//		unsigned filter_subsystem_hash;       /* 24 */
//		unsigned filter_devtype_hash;         /* 28 */
//		unsigned filter_tag_bloom_hi;         /* 32 */
//		unsigned filter_tag_bloom_lo;         /* 36 */
//	};                                        /* 40 */
const (
	udevPrefix     = "libudev\x00"
	udevMagic      = 0xfeedcafe
	sizeofUdevHdr  = 40
	maxEnvEntries  = 4096    // more KEY=VALUE pairs than any real uevent
	maxEventLength = 1 << 20 // larger than any datagram the monitor reads
)

var errMalformed = errors.New("malformed uevent")

// ParseEvent decodes one NETLINK_KOBJECT_UEVENT datagram: a libudev message
// (it starts with "libudev\0") or a kernel message ("ACTION@DEVPATH\0" then
// KEY=VALUE\0 pairs). It checks every length and offset before using it and
// never panics; a message without ACTION or DEVPATH is an error.
func ParseEvent(b []byte) (*Event, error) {
	if bytes.HasPrefix(b, []byte(udevPrefix)) {
		return parseUdevEvent(b)
	}
	return parseKernelEvent(b)
}

// parseKernelEvent decodes the kernel's format.
func parseKernelEvent(b []byte) (*Event, error) {
	if len(b) > maxEventLength {
		return nil, fmt.Errorf("%w: %d bytes", errMalformed, len(b))
	}
	hdr, rest, _ := bytes.Cut(b, []byte{0})
	action, devpath, ok := bytes.Cut(hdr, []byte("@"))
	if !ok || len(action) == 0 || len(devpath) == 0 {
		return nil, fmt.Errorf("%w: kernel header %q is not ACTION@DEVPATH", errMalformed, truncate(hdr))
	}
	e, err := parseEnv(SourceKernel, rest)
	if err != nil {
		return nil, err
	}
	// The header repeats ACTION and DEVPATH; the pairs are authoritative,
	// the header fills in if they are missing.
	if e.Action == "" {
		e.Action = Action(action)
		e.Env["ACTION"] = string(action)
	}
	if e.DevPath == "" {
		e.DevPath = string(devpath)
		e.Env["DEVPATH"] = string(devpath)
	}
	return e, nil
}

// parseUdevEvent decodes a libudev message.
func parseUdevEvent(b []byte) (*Event, error) {
	if len(b) > maxEventLength {
		return nil, fmt.Errorf("%w: %d bytes", errMalformed, len(b))
	}
	if len(b) < sizeofUdevHdr {
		return nil, fmt.Errorf("%w: libudev message of %d bytes is shorter than its %d-byte header",
			errMalformed, len(b), sizeofUdevHdr)
	}
	if !bytes.Equal(b[:8], []byte(udevPrefix)) {
		return nil, fmt.Errorf("%w: no libudev prefix", errMalformed)
	}
	if m := binary.BigEndian.Uint32(b[8:12]); m != udevMagic {
		return nil, fmt.Errorf("%w: libudev magic %#08x, want %#08x", errMalformed, m, uint32(udevMagic))
	}
	ne := binary.NativeEndian
	hdrSize := uint64(ne.Uint32(b[12:16]))
	off := uint64(ne.Uint32(b[16:20]))
	n := uint64(ne.Uint32(b[20:24]))
	total := uint64(len(b))
	switch {
	case hdrSize < sizeofUdevHdr || hdrSize > total:
		return nil, fmt.Errorf("%w: libudev header_size %d outside [%d, %d]", errMalformed, hdrSize, sizeofUdevHdr, total)
	case off < hdrSize || off > total:
		return nil, fmt.Errorf("%w: libudev properties_off %d outside [%d, %d]", errMalformed, off, hdrSize, total)
	case n > total-off:
		return nil, fmt.Errorf("%w: libudev properties_len %d at offset %d exceeds the %d-byte message", errMalformed, n, off, total)
	}
	return parseEnv(SourceUdev, b[off:off+n])
}

// parseEnv decodes NUL-separated KEY=VALUE pairs. Empty entries (padding,
// trailing NULs) are skipped; an entry without '=' or with an empty key is an
// error.
func parseEnv(src Source, b []byte) (*Event, error) {
	e := &Event{Source: src, Env: make(map[string]string)}
	var haveMajor, haveMinor bool
	count := 0
	for len(b) > 0 {
		var kv []byte
		kv, b, _ = bytes.Cut(b, []byte{0})
		if len(kv) == 0 {
			continue
		}
		if count++; count > maxEnvEntries {
			return nil, fmt.Errorf("%w: more than %d properties", errMalformed, maxEnvEntries)
		}
		k, v, ok := bytes.Cut(kv, []byte("="))
		if !ok || len(k) == 0 {
			return nil, fmt.Errorf("%w: property %q is not KEY=VALUE", errMalformed, truncate(kv))
		}
		key, val := string(k), string(v)
		e.Env[key] = val
		switch key {
		case "ACTION":
			e.Action = Action(val)
		case "DEVPATH":
			e.DevPath = val
		case "SUBSYSTEM":
			e.Subsystem = val
		case "DEVTYPE":
			e.DevType = val
		case "DEVNAME":
			e.DevName = val
		case "SEQNUM":
			n, err := strconv.ParseUint(val, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%w: SEQNUM %q", errMalformed, truncate(v))
			}
			e.Seqnum = n
		case "MAJOR", "MINOR":
			n, err := strconv.ParseUint(val, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%w: %s %q", errMalformed, key, truncate(v))
			}
			if key == "MAJOR" {
				e.Major, haveMajor = uint32(n), true
			} else {
				e.Minor, haveMinor = uint32(n), true
			}
		}
	}
	e.HasDevNum = haveMajor && haveMinor
	if e.Action == "" || e.DevPath == "" {
		if src == SourceUdev {
			return nil, fmt.Errorf("%w: libudev message without ACTION or DEVPATH", errMalformed)
		}
	}
	return e, nil
}

// truncate shortens b for error messages.
func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
