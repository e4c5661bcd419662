package ioctl

import "encoding/binary"

// struct dm_name_list:
//
//	struct dm_name_list {
//		__u64 dev;
//		__u32 next;		/* offset to the next record from
//					   the _start_ of this */
//		char name[];
//
//		/*
//		 * The following members can be accessed by taking a pointer that
//		 * points immediately after the terminating zero character in "name"
//		 * and aligning this pointer to next 8-byte boundary.
//		 * Uuid is present if the flag DM_NAME_LIST_FLAG_HAS_UUID is set.
//		 *
//		 * __u32 event_nr;
//		 * __u32 flags;
//		 * char uuid[0];
//		 */
//	};
//
// sizeof(struct dm_name_list) is 16 because of tail padding: the name is at
// offset 12, not 16.
const (
	nlOffDev  = 0
	nlOffNext = 8
	nlOffName = 12

	sizeofNameList = 16 // sizeof(struct dm_name_list) on 64-bit kernels
)

// Name list entry flags, DM_NAME_LIST_FLAG_*.
const (
	NameListHasUUID = 1 // DM_NAME_LIST_FLAG_HAS_UUID
	NameListNoUUID  = 2 // DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID
)

// NameEntry is one device of a DM_LIST_DEVICES reply.
type NameEntry struct {
	Dev     uint64 // huge_encode_dev form
	Name    string
	EventNr uint32 // from interface 4.37 on
	Flags   uint32 // NameListHasUUID, NameListNoUUID (4.45 with DM_UUID_FLAG)
	UUID    string

	HasEventNr bool // the kernel sent event_nr (4.37 on; flags only from 4.45)
}

// NameListReader walks the dm_name_list chain of a DM_LIST_DEVICES reply.
// The layout after the name depends on the kernel: pass the interface
// version the reply came with (Header.Version).
//
//   - before 4.37: nothing follows the name (4.36 put event_nr at an
//     ABI-dependent offset; it is ignored);
//   - 4.37 to 4.44: event_nr, then 4 bytes the kernel does not write (they
//     hold whatever the request buffer held there), so flags are not read;
//   - from 4.45: event_nr, flags, and the uuid if flags has NameListHasUUID.
type NameListReader struct {
	b        []byte
	off      uint64
	done     bool
	extended bool // event_nr follows the name
	hasFlags bool // flags follow event_nr, and maybe a uuid
	cur      NameEntry
	err      error
	alias    bool // strings point into b
}

// NewNameListReader reads the name list in payload (Header.Payload of the
// reply), laid out by a kernel of version v.
func NewNameListReader(payload []byte, v Version) *NameListReader {
	r := &NameListReader{}
	r.Reset(payload, v)
	return r
}

// ResetAliased points r at a new reply, as NewNameListReader does, with
// the entries' Name and UUID pointing into payload instead of copied:
// nothing is allocated, and the strings are valid only while payload is
// unchanged (strings.Clone keeps one).
func (r *NameListReader) ResetAliased(payload []byte, v Version) {
	r.Reset(payload, v)
	r.alias = true
}

// Reset points r at a new reply, so that one reader can be reused.
func (r *NameListReader) Reset(payload []byte, v Version) {
	*r = NameListReader{b: payload, extended: v.AtLeast(v4_37), hasFlags: v.AtLeast(v4_45)}
	// An empty list is no payload at all (current kernels) or one entry
	// with dev == 0.
	switch {
	case len(payload) == 0:
		r.done = true
	case len(payload) < 8:
		r.err = ErrMalformed
	case binary.NativeEndian.Uint64(payload) == 0:
		r.done = true
	}
}

// Next reads the next entry; it returns false at the end or on error.
func (r *NameListReader) Next() bool {
	if r.done || r.err != nil {
		return false
	}
	b := r.b
	off := r.off
	if off+nlOffName > uint64(len(b)) {
		r.err = ErrMalformed
		return false
	}
	ne := binary.NativeEndian
	e := NameEntry{Dev: ne.Uint64(b[off+nlOffDev:])}
	next := uint64(ne.Uint32(b[off+nlOffNext:]))
	name, ok := cStringIn(b, off+nlOffName, r.alias)
	if !ok {
		r.err = ErrMalformed
		return false
	}
	e.Name = name
	end := off + nlOffName + uint64(len(name)) + 1
	if r.extended {
		p := alignU64(end)
		if p+8 > uint64(len(b)) {
			r.err = ErrMalformed
			return false
		}
		e.HasEventNr = true
		e.EventNr = ne.Uint32(b[p:])
		end = p + 8
		if r.hasFlags {
			e.Flags = ne.Uint32(b[p+4:])
		}
		if e.Flags&NameListHasUUID != 0 {
			u, ok := cStringIn(b, alignU64(end), r.alias)
			if !ok {
				r.err = ErrMalformed
				return false
			}
			e.UUID = u
			end = alignU64(end) + uint64(len(u)) + 1
		}
	}
	if next == 0 {
		r.done = true
	} else if next < end-off {
		r.err = ErrMalformed
		return false
	}
	r.off = off + next
	r.cur = e
	return true
}

// Entry is the entry Next just read.
func (r *NameListReader) Entry() NameEntry { return r.cur }

// Err is the first inconsistency found, or nil.
func (r *NameListReader) Err() error { return r.err }

// appendNameList appends entries to b as a kernel of version v lays out a
// DM_LIST_DEVICES payload: event_nr from 4.37, flags and the uuids (only
// where Flags has NameListHasUUID) from 4.45; older kernels leave those out.
// b must end 8-byte aligned relative to the data area. An empty list is the
// 8 zero bytes of a dev == 0 entry.
func appendNameList(b []byte, v Version, entries []NameEntry) []byte {
	if len(entries) == 0 {
		return append(b, make([]byte, 8)...)
	}
	ne := binary.NativeEndian
	extended := v.AtLeast(v4_37)
	hasFlags := v.AtLeast(v4_45)
	prev := -1
	for i := range entries {
		e := &entries[i]
		off := len(b)
		if prev >= 0 {
			ne.PutUint32(b[prev+nlOffNext:], uint32(off-prev))
		}
		// Before 4.37 the kernel stepped over sizeof(struct dm_name_list)
		// (16 on 64-bit kernels), not to the name, before adding the name.
		n := sizeofNameList + len(e.Name) + 1
		if extended {
			n = align8(nlOffName+len(e.Name)+1) + 8
			if hasFlags && e.Flags&NameListHasUUID != 0 {
				n += len(e.UUID) + 1
			}
		}
		n = align8(n)
		b = append(b, make([]byte, n)...)
		ne.PutUint64(b[off+nlOffDev:], e.Dev)
		copy(b[off+nlOffName:], e.Name)
		if extended {
			p := off + align8(nlOffName+len(e.Name)+1)
			ne.PutUint32(b[p:], e.EventNr)
			if hasFlags {
				ne.PutUint32(b[p+4:], e.Flags)
				if e.Flags&NameListHasUUID != 0 {
					copy(b[p+8:], e.UUID)
				}
			}
		}
		prev = off
	}
	return b
}

// struct dm_target_versions:
//
//	struct dm_target_versions {
//		__u32 next;
//		__u32 version[3];
//
//		char name[];
//	};
const (
	tvOffNext    = 0
	tvOffVersion = 4
	tvOffName    = 16
)

// TargetVersion is one entry of a DM_LIST_VERSIONS or DM_GET_TARGET_VERSION
// reply.
type TargetVersion struct {
	Name    string
	Version Version
}

// VersionReader walks a dm_target_versions chain; each next is relative to
// the current entry, and zero ends the chain.
type VersionReader struct {
	b    []byte
	off  uint64
	done bool
	cur  TargetVersion
	err  error
}

// NewVersionReader reads the target versions in payload.
func NewVersionReader(payload []byte) *VersionReader {
	return &VersionReader{b: payload, done: len(payload) == 0}
}

// Next reads the next entry; it returns false at the end or on error.
func (r *VersionReader) Next() bool {
	if r.done || r.err != nil {
		return false
	}
	off := r.off
	if off+tvOffName > uint64(len(r.b)) {
		r.err = ErrMalformed
		return false
	}
	ne := binary.NativeEndian
	next := uint64(ne.Uint32(r.b[off+tvOffNext:]))
	v := Version{ne.Uint32(r.b[off+tvOffVersion:]), ne.Uint32(r.b[off+tvOffVersion+4:]), ne.Uint32(r.b[off+tvOffVersion+8:])}
	name, ok := cStringIn(r.b, off+tvOffName, false)
	if !ok {
		r.err = ErrMalformed
		return false
	}
	if next == 0 {
		r.done = true
	} else if next < tvOffName+uint64(len(name))+1 {
		r.err = ErrMalformed
		return false
	}
	r.off = off + next
	r.cur = TargetVersion{Name: name, Version: v}
	return true
}

// Entry is the entry Next just read.
func (r *VersionReader) Entry() TargetVersion { return r.cur }

// Err is the first inconsistency found, or nil.
func (r *VersionReader) Err() error { return r.err }

// appendVersions appends vs to b as a dm_target_versions chain.
func appendVersions(b []byte, vs []TargetVersion) []byte {
	ne := binary.NativeEndian
	prev := -1
	for i := range vs {
		off := len(b)
		if prev >= 0 {
			ne.PutUint32(b[prev+tvOffNext:], uint32(off-prev))
		}
		n := align8(tvOffName + len(vs[i].Name) + 1)
		b = append(b, make([]byte, n)...)
		for j := 0; j < 3; j++ {
			ne.PutUint32(b[off+tvOffVersion+4*j:], vs[i].Version[j])
		}
		copy(b[off+tvOffName:], vs[i].Name)
		prev = off
	}
	return b
}

// struct dm_target_deps:
//
//	struct dm_target_deps {
//		__u32 count;	/* Array size */
//		__u32 padding;	/* unused */
//		__u64 dev[];	/* out */
//	};
const sizeofTargetDeps = 8

// ParseDeps reads a DM_TABLE_DEPS payload: the devices the table uses, in
// huge_encode_dev form.
func ParseDeps(payload []byte) ([]uint64, error) {
	if len(payload) == 0 {
		return nil, nil
	}
	if len(payload) < sizeofTargetDeps {
		return nil, ErrMalformed
	}
	ne := binary.NativeEndian
	count := uint64(ne.Uint32(payload))
	if count > uint64(len(payload)-sizeofTargetDeps)/8 {
		return nil, ErrMalformed
	}
	devs := make([]uint64, count)
	for i := range devs {
		devs[i] = ne.Uint64(payload[sizeofTargetDeps+8*i:])
	}
	return devs, nil
}

// appendDeps appends devs to b as a dm_target_deps payload.
func appendDeps(b []byte, devs []uint64) []byte {
	off := len(b)
	b = append(b, make([]byte, sizeofTargetDeps+8*len(devs))...)
	ne := binary.NativeEndian
	ne.PutUint32(b[off:], uint32(len(devs)))
	for i, d := range devs {
		ne.PutUint64(b[off+sizeofTargetDeps+8*i:], d)
	}
	return b
}

// ParseString reads the NUL-terminated string at the start of payload, as
// a DM_TARGET_MSG reply with DM_DATA_OUT_FLAG carries it. A payload without
// a NUL is malformed.
func ParseString(payload []byte) (string, error) {
	if len(payload) == 0 {
		return "", nil
	}
	s, ok := cStringIn(payload, 0, false)
	if !ok {
		return "", ErrMalformed
	}
	return s, nil
}

func alignU64(n uint64) uint64 { return (n + 7) &^ 7 }
