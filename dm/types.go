package dm

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/thinp/thinp/ioctl"
)

// Version is a dm interface or target version.
type Version = ioctl.Version

// SectorSize is the unit of every device-mapper offset and length.
const SectorSize = 512

// Sectors counts 512-byte sectors.
type Sectors uint64

// Bytes is s in bytes.
func (s Sectors) Bytes() uint64 { return uint64(s) * SectorSize }

// Dev is a block device number, major:minor. It is ioctl.Dev, the one
// device-number type of the module, which package loop and package udev use
// too: a loop device's Dev goes straight into a table.
type Dev = ioctl.Dev

// ParseDev parses "major:minor", as tables write device numbers. A string
// that is not one, or a number the kernel cannot have, is ErrInvalid.
func ParseDev(s string) (Dev, error) {
	d, err := ioctl.ParseDev(s)
	if err != nil {
		return Dev{}, invalid("device number", "%q is not major:minor of a device", s)
	}
	return d, nil
}

type refKind uint8

const (
	refNone refKind = iota
	refName
	refUUID
	refDev
)

// Ref names one device to the kernel: by name, by uuid or by device number,
// exactly one of them (the kernel refuses a mix).
type Ref struct {
	kind refKind
	s    string
	dev  Dev
}

// Name refers to the device called name.
func Name(name string) Ref { return Ref{kind: refName, s: name} }

// UUID refers to the device whose uuid is uuid.
func UUID(uuid string) Ref { return Ref{kind: refUUID, s: uuid} }

// DevNum refers to the device with number d.
func DevNum(d Dev) Ref { return Ref{kind: refDev, dev: d} }

// IsZero reports whether r refers to nothing.
func (r Ref) IsZero() bool { return r.kind == refNone }

// String describes r: "vol" (a name), "uuid X", "dev 253:0".
func (r Ref) String() string {
	switch r.kind {
	case refName:
		return r.s
	case refUUID:
		return "uuid " + r.s
	case refDev:
		return "dev " + r.dev.String()
	}
	return "<none>"
}

// validate checks r before it is sent.
func (r Ref) validate() error {
	switch r.kind {
	case refName:
		return ValidateName(r.s)
	case refUUID:
		if r.s == "" {
			return invalid("uuid", "empty")
		}
		return ValidateUUID(r.s)
	case refDev:
		if err := r.dev.Valid(); err != nil {
			return invalid("device number", "%s is not a device the kernel can have", r.dev)
		}
		return nil
	}
	return invalid("device", "no name, uuid or device number given")
}

// put fills the identity fields of h.
func (r Ref) put(h *ioctl.Header) {
	switch r.kind {
	case refName:
		h.Name = r.s
	case refUUID:
		h.UUID = r.s
	case refDev:
		h.Dev = r.dev.Encode()
	}
}

// Target is one line of a table: Length sectors starting at Start, mapped by
// the target Type with its parameters.
type Target struct {
	Start  Sectors
	Length Sectors
	Type   string
	Params string
}

// String formats t exactly as `dmsetup table` prints it: "0 2048 linear
// 7:0 0". Like dmsetup, it keeps the space after the type even when there
// are no parameters ("0 8 zero ").
func (t Target) String() string {
	return strconv.FormatUint(uint64(t.Start), 10) + " " + strconv.FormatUint(uint64(t.Length), 10) + " " + t.Type + " " + t.Params
}

// Table is a device's mapping: targets in order, covering [0, Size()) with
// no gaps or overlaps.
type Table []Target

// Size is the table's length in sectors: the end of its last target.
func (t Table) Size() Sectors {
	if len(t) == 0 {
		return 0
	}
	last := t[len(t)-1]
	return last.Start + last.Length
}

// String formats t as `dmsetup table` prints it, one target a line, each
// ending in a newline.
func (t Table) String() string {
	var b strings.Builder
	for _, tg := range t {
		b.WriteString(tg.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// ParseTable parses the text `dmsetup table` prints, or that
// `dmsetup create --table` takes: one "start length type params..." a line.
// As in dmsetup, a '#' starts a comment that runs to the end of the line,
// and blank lines are skipped. It does not check
// that the targets are contiguous: Validate does.
func ParseTable(s string) (Table, error) {
	var t Table
	for i, line := range strings.Split(s, "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		tg, err := ParseTarget(line)
		if err != nil {
			return nil, invalid(fmt.Sprintf("table line %d", i+1), "%v", err.(*InvalidError).Reason)
		}
		t = append(t, tg)
	}
	return t, nil
}

// ParseTarget parses one table line, "start length type [params...]".
func ParseTarget(line string) (Target, error) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return Target{}, invalid("target", "%q: want start length type [params]", line)
	}
	start, err1 := strconv.ParseUint(f[0], 10, 64)
	length, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return Target{}, invalid("target", "%q: start and length must be sector counts", line)
	}
	t := Target{Start: Sectors(start), Length: Sectors(length), Type: f[2]}
	// Keep the parameters as written after the type, minus outer spaces.
	rest := strings.TrimSpace(line)
	for i := 0; i < 3; i++ {
		rest = strings.TrimLeft(rest, " \t")
		j := strings.IndexAny(rest, " \t")
		if j < 0 {
			rest = ""
			break
		}
		rest = rest[j:]
	}
	t.Params = strings.TrimSpace(rest)
	return t, nil
}

// Validate checks t as the kernel would before loading it: at least one
// target, valid type names, parameters without NUL, each target starting
// where the previous one ended, from sector 0, and no empty target.
func (t Table) Validate() error {
	if len(t) == 0 {
		return invalid("table", "no targets")
	}
	var next Sectors
	for i, tg := range t {
		field := fmt.Sprintf("target %d", i)
		if tg.Type == "" {
			return invalid(field, "empty target type")
		}
		if len(tg.Type) > ioctl.MaxTypeName-1 {
			return invalid(field, "target type %q is longer than 15 bytes", tg.Type)
		}
		if strings.ContainsAny(tg.Type, " \t\n\x00") {
			return invalid(field, "target type %q contains white space or NUL", tg.Type)
		}
		if strings.IndexByte(tg.Params, 0) >= 0 {
			return invalid(field, "parameters contain a NUL byte")
		}
		if tg.Length == 0 {
			return invalid(field, "zero length")
		}
		if tg.Start != next {
			if tg.Start < next {
				return invalid(field, "starts at sector %d, overlapping the previous target which ends at %d", tg.Start, next)
			}
			return invalid(field, "starts at sector %d, leaving a gap after sector %d", tg.Start, next)
		}
		if tg.Start+tg.Length < tg.Start {
			return invalid(field, "length overflows")
		}
		next = tg.Start + tg.Length
	}
	return nil
}

func (t Table) specs() []ioctl.TargetSpec {
	specs := make([]ioctl.TargetSpec, len(t))
	for i, tg := range t {
		specs[i] = ioctl.TargetSpec{Start: uint64(tg.Start), Length: uint64(tg.Length), Type: tg.Type, Params: tg.Params}
	}
	return specs
}

// ValidateName checks a device name by the kernel's rules and the length
// the wire format carries: not empty, at most 127 bytes, no '/' or NUL, and
// not "control", "." or "..". A bad name is a *InvalidError (ErrInvalid).
func ValidateName(name string) error {
	switch {
	case name == "":
		return invalid("name", "empty")
	case len(name) > ioctl.NameLen-1:
		return invalid("name", "%d bytes, more than the kernel's 127", len(name))
	case name == "control" || name == "." || name == "..":
		return invalid("name", "%q is reserved", name)
	}
	// One pass for both bytes: names are short, and this runs before
	// every ioctl on a name.
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '/':
			return invalid("name", "%q contains '/'", name)
		case 0:
			return invalid("name", "contains a NUL byte")
		}
	}
	return nil
}

// ValidateUUID checks a device uuid: at most 128 bytes and no NUL. The
// empty uuid is valid (a device without one). A bad uuid is a
// *InvalidError (ErrInvalid).
func ValidateUUID(uuid string) error {
	switch {
	case len(uuid) > ioctl.UUIDLen-1:
		return invalid("uuid", "%d bytes, more than the kernel's 128", len(uuid))
	case strings.IndexByte(uuid, 0) >= 0:
		return invalid("uuid", "contains a NUL byte")
	}
	return nil
}

// Info is what the kernel reports about a device (DM_DEV_STATUS).
type Info struct {
	Name        string
	UUID        string
	Dev         Dev
	OpenCount   int32
	EventNr     uint32
	TargetCount uint32 // of the live table, or of the inactive one when queried with Inactive

	ReadOnly        bool
	Suspended       bool
	LivePresent     bool // a live (active) table exists
	InactivePresent bool // an inactive table is loaded, waiting for resume
	DeferredRemove  bool // removal is pending until the last close
	InternalSuspend bool // suspended by the kernel itself (e.g. a pool reload)

	Flags ioctl.Flags // the raw flags of the reply
}

func infoFromHeader(h *ioctl.Header) Info {
	f := h.Flags
	return Info{
		Name:            h.Name,
		UUID:            h.UUID,
		Dev:             ioctl.DecodeDev(h.Dev),
		OpenCount:       h.OpenCount,
		EventNr:         h.EventNr,
		TargetCount:     h.TargetCount,
		ReadOnly:        f&ioctl.FlagReadOnly != 0,
		Suspended:       f&ioctl.FlagSuspend != 0,
		LivePresent:     f&ioctl.FlagActivePresent != 0,
		InactivePresent: f&ioctl.FlagInactivePresent != 0,
		DeferredRemove:  f&ioctl.FlagDeferredRemove != 0,
		InternalSuspend: f&ioctl.FlagInternalSuspend != 0,
		Flags:           f,
	}
}

// TargetStatus is one target's status line (DM_TABLE_STATUS without
// DM_STATUS_TABLE_FLAG), as `dmsetup status` prints it.
type TargetStatus struct {
	Start  Sectors
	Length Sectors
	Type   string
	Status string
}

// String formats s as `dmsetup status` prints it.
func (s TargetStatus) String() string {
	return Target{Start: s.Start, Length: s.Length, Type: s.Type, Params: s.Status}.String()
}

// Flag modifies an operation. Each operation accepts only the flags its
// documentation lists and refuses others with ErrInvalid.
type Flag uint32

// Operation flags.
const (
	// NoFlush: Suspend and Resume do not flush queued I/O (thin pools and
	// volumes out of space); Status does not commit thin-pool metadata.
	NoFlush Flag = Flag(ioctl.FlagNoFlush)
	// SkipLockfs: Suspend and Resume do not freeze the filesystem on top.
	SkipLockfs Flag = Flag(ioctl.FlagSkipLockfs)
	// Inactive: Info, Table, Status and Deps describe the inactive table.
	Inactive Flag = Flag(ioctl.FlagQueryInactiveTable)
	// ReadOnly: Load and Create make the table read-only.
	ReadOnly Flag = Flag(ioctl.FlagReadOnly)
	// Deferred: Remove and RemoveAll remove a device that is in use when it
	// is last closed, instead of failing with ErrBusy.
	Deferred Flag = Flag(ioctl.FlagDeferredRemove)
	// SecureData: Load asks the kernel to wipe its copy of the table, which
	// holds secrets (crypt keys); our buffers are wiped as well.
	SecureData Flag = Flag(ioctl.FlagSecureData)
	// NoRetry: Remove fails at once on EBUSY instead of retrying.
	NoRetry Flag = 1 << 31
)

func collect(op string, allowed Flag, flags []Flag) (Flag, error) {
	var f Flag
	for _, x := range flags {
		if x&^allowed != 0 {
			return 0, invalid("flags", "%s does not take flag %#x", op, uint32(x&^allowed))
		}
		f |= x
	}
	return f, nil
}

func (f Flag) wire() ioctl.Flags { return ioctl.Flags(f &^ NoRetry) }

// targetStatus is the status of the target whose spec a DM_TABLE_STATUS
// reply gave.
func targetStatus(s ioctl.TargetSpec) TargetStatus {
	return TargetStatus{Start: Sectors(s.Start), Length: Sectors(s.Length), Type: s.Type, Status: s.Params}
}
