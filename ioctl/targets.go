package ioctl

import (
	"encoding/binary"
	"strings"
	"unsafe"
)

// struct dm_target_spec:
//
//	struct dm_target_spec {
//		__u64 sector_start;
//		__u64 length;
//		__s32 status;		/* used when reading from kernel only */
//		/*
//		 * Location of the next dm_target_spec.
//		 * - When specifying targets on a DM_TABLE_LOAD command, this value is
//		 *   the number of bytes from the start of the "current" dm_target_spec
//		 *   to the start of the "next" dm_target_spec.
//		 * - When retrieving targets on a DM_TABLE_STATUS command, this value
//		 *   is the number of bytes from the start of the first dm_target_spec
//		 *   (that follows the dm_ioctl struct) to the start of the "next"
//		 *   dm_target_spec.
//		 */
//		__u32 next;
//		char target_type[DM_MAX_TYPE_NAME];
//		/*
//		 * Parameter string starts immediately after this object.
//		 * Be careful to add padding after string to ensure correct
//		 * alignment of subsequent dm_target_spec.
//		 */
//	};
const (
	specOffStart  = 0
	specOffLength = 8
	specOffStatus = 16
	specOffNext   = 20
	specOffType   = 24

	// SizeofTargetSpec is sizeof(struct dm_target_spec).
	SizeofTargetSpec = 40

	// specAlign is __alignof__(struct dm_target_spec) on 64-bit ABIs, which
	// current kernels require of every next on DM_TABLE_LOAD.
	specAlign = 8
)

// struct dm_target_msg:
//
//	struct dm_target_msg {
//		__u64 sector;	/* Device sector */
//		char message[];
//	};
const sizeofTargetMsg = 8

// TargetSpec is one target of a table: a dm_target_spec and the parameter
// (or status) string after it. Start and Length are in 512-byte sectors.
type TargetSpec struct {
	Start  uint64
	Length uint64
	Status int32 // set by the kernel in replies only
	Type   string
	Params string
}

// specSize is the room one spec takes in a chain: header, params, NUL,
// padded to 8 so that the next spec is aligned as the kernel requires.
func specSize(t *TargetSpec) int { return align8(SizeofTargetSpec + len(t.Params) + 1) }

// targetsSize is the size of specs packed as a DM_TABLE_LOAD payload.
func targetsSize(specs []TargetSpec) int {
	n := 0
	for i := range specs {
		n += specSize(&specs[i])
	}
	return n
}

// putTargets packs specs into b as a DM_TABLE_LOAD payload: each spec's next
// is the distance from that spec to the following one, a multiple of 8
// (current kernels reject anything else). It returns the bytes written.
func putTargets(b []byte, specs []TargetSpec) (int, error) {
	off := 0
	for i := range specs {
		t := &specs[i]
		if len(t.Type) > MaxTypeName-1 {
			return 0, ErrTypeTooLong
		}
		if strings.IndexByte(t.Type, 0) >= 0 || strings.IndexByte(t.Params, 0) >= 0 {
			return 0, ErrNUL
		}
		n := specSize(t)
		if len(b)-off < n {
			return 0, ErrShortBuffer
		}
		putSpec(b[off:off+n], t, uint32(n))
		off += n
	}
	return off, nil
}

func putSpec(b []byte, t *TargetSpec, next uint32) {
	ne := binary.NativeEndian
	ne.PutUint64(b[specOffStart:], t.Start)
	ne.PutUint64(b[specOffLength:], t.Length)
	ne.PutUint32(b[specOffStatus:], uint32(t.Status))
	ne.PutUint32(b[specOffNext:], next)
	putCString(b[specOffType:SizeofTargetSpec], t.Type)
	putCString(b[SizeofTargetSpec:], t.Params)
}

func getSpec(b []byte, alias bool) (t TargetSpec, next uint32) {
	ne := binary.NativeEndian
	t.Start = ne.Uint64(b[specOffStart:])
	t.Length = ne.Uint64(b[specOffLength:])
	t.Status = int32(ne.Uint32(b[specOffStatus:]))
	t.Type = targetType(b[specOffType:SizeofTargetSpec], alias)
	return t, ne.Uint32(b[specOffNext:])
}

// targetType is cString for a target type name, without allocating for the
// targets of the kernel tree; other names alias b when alias is set.
func targetType(b []byte, alias bool) string {
	n := cLen(b)
	switch string(b[:n]) { // the compiler does not allocate here
	case "thin":
		return "thin"
	case "thin-pool":
		return "thin-pool"
	case "linear":
		return "linear"
	case "striped":
		return "striped"
	case "zero":
		return "zero"
	case "error":
		return "error"
	case "snapshot":
		return "snapshot"
	case "snapshot-origin":
		return "snapshot-origin"
	case "snapshot-merge":
		return "snapshot-merge"
	case "crypt":
		return "crypt"
	case "cache":
		return "cache"
	case "writecache":
		return "writecache"
	case "multipath":
		return "multipath"
	case "raid":
		return "raid"
	case "mirror":
		return "mirror"
	case "verity":
		return "verity"
	case "integrity":
		return "integrity"
	case "delay":
		return "delay"
	case "flakey":
		return "flakey"
	case "era":
		return "era"
	case "vdo":
		return "vdo"
	}
	if alias {
		return unsafe.String(unsafe.SliceData(b), n)
	}
	return string(b[:n])
}

// parseTargets reads count specs of a DM_TABLE_LOAD request held in b (the
// whole request, header included), as the kernel's populate_table does: the
// first spec is at start, each next is relative to the current spec and must
// point past the previous spec's parameters. As in current kernels, start
// must be at least sizeof(struct dm_ioctl) and start and every next a
// multiple of 8 (the alignment of struct dm_target_spec).
func parseTargets(b []byte, start, count uint32) ([]TargetSpec, error) {
	if count == 0 {
		return nil, nil
	}
	if uint64(count) > uint64(len(b))/SizeofTargetSpec {
		return nil, ErrMalformed
	}
	if start < SizeofHeader || start%specAlign != 0 {
		return nil, ErrMalformed
	}
	specs := make([]TargetSpec, 0, count)
	off := uint64(start)
	minNext := uint64(0)
	for i := uint32(0); i < count; i++ {
		if off < minNext || off+SizeofTargetSpec > uint64(len(b)) {
			return nil, ErrMalformed
		}
		t, next := getSpec(b[off:], false)
		if i+1 < count && next%specAlign != 0 {
			return nil, ErrMalformed
		}
		params, ok := cStringIn(b, off+SizeofTargetSpec, false)
		if !ok {
			return nil, ErrMalformed
		}
		t.Params = params
		specs = append(specs, t)
		minNext = off + SizeofTargetSpec + uint64(len(params)) + 1
		off += uint64(next)
	}
	return specs, nil
}

// TargetReader walks the target specs of a DM_TABLE_STATUS or DM_DEV_WAIT
// reply, where each next is relative to the start of the data area.
//
//	r := NewTargetReader(h, buf)
//	for r.Next() {
//		t := r.Spec()
//	}
//	if err := r.Err(); err != nil { ... }
type TargetReader struct {
	b       []byte // the reply up to data_size
	base    uint64 // data_start
	off     uint64 // offset of the next spec to read
	minOff  uint64 // the next spec must start at or after this
	left    uint32
	cur     TargetSpec
	err     error
	started bool
	alias   bool // strings point into b
}

// NewTargetReader reads h.TargetCount specs from the reply held in b.
func NewTargetReader(h *Header, b []byte) *TargetReader {
	r := &TargetReader{}
	r.Reset(h, b)
	return r
}

// Reset points r at a new reply, so that one reader can be reused.
func (r *TargetReader) Reset(h *Header, b []byte) {
	*r = TargetReader{left: h.TargetCount, base: uint64(h.DataStart), off: uint64(h.DataStart)}
	if uint64(h.DataSize) > uint64(len(b)) || (h.TargetCount > 0 && h.DataStart < DataOffset) {
		r.err = ErrMalformed
		return
	}
	r.b = b[:h.DataSize]
}

// ResetAliased is Reset for a reader whose specs' Type and Params point
// into b instead of being copied: nothing is allocated, and the strings
// are valid only while b is unchanged (strings.Clone keeps one). Target
// types of the kernel tree are constants either way.
func (r *TargetReader) ResetAliased(h *Header, b []byte) {
	r.Reset(h, b)
	r.alias = true
}

// Next reads the next spec; it returns false at the end or on error.
func (r *TargetReader) Next() bool {
	if r.err != nil || r.left == 0 {
		return false
	}
	if r.off < r.minOff || r.off+SizeofTargetSpec > uint64(len(r.b)) {
		r.err = ErrMalformed
		return false
	}
	t, next := getSpec(r.b[r.off:], r.alias)
	params, ok := cStringIn(r.b, r.off+SizeofTargetSpec, r.alias)
	if !ok {
		r.err = ErrMalformed
		return false
	}
	t.Params = params
	r.cur = t
	r.left--
	r.minOff = r.off + SizeofTargetSpec + uint64(len(params)) + 1
	r.off = r.base + uint64(next)
	return true
}

// Spec is the spec Next just read.
func (r *TargetReader) Spec() TargetSpec { return r.cur }

// Err is the first inconsistency found, or nil.
func (r *TargetReader) Err() error { return r.err }

// appendStatusTargets appends specs to b in the DM_TABLE_STATUS reply layout
// (next relative to the data area, which starts at len(b) when called with
// the header already in b at offset 0 and the data area starting at base).
// It is the encoder fake kernels use; base is the offset of the data area
// in b.
func appendStatusTargets(b []byte, base int, specs []TargetSpec) []byte {
	for i := range specs {
		t := &specs[i]
		off := len(b)
		n := specSize(t)
		b = append(b, make([]byte, n)...)
		putSpec(b[off:off+n], t, uint32(off+n-base))
	}
	return b
}
