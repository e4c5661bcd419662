package ioctl

import (
	"encoding/binary"
	"errors"
	"strings"
	"unsafe"
)

// struct dm_ioctl from include/uapi/linux/dm-ioctl.h:
//
//	struct dm_ioctl {
//		__u32 version[3];	/* in/out */
//		__u32 data_size;	/* total size of data passed in
//					 * including this struct */
//		__u32 data_start;	/* offset to start of data
//					 * relative to start of this struct */
//		__u32 target_count;	/* in/out */
//		__s32 open_count;	/* out */
//		__u32 flags;		/* in/out */
//		__u32 event_nr;		/* in/out */
//		__u32 padding;
//		__u64 dev;		/* in/out */
//		char name[DM_NAME_LEN];	/* device name */
//		char uuid[DM_UUID_LEN];	/* unique identifier for
//					 * the block device */
//		char data[7];		/* padding or data */
//	};
const (
	offVersion     = 0
	offDataSize    = 12
	offDataStart   = 16
	offTargetCount = 20
	offOpenCount   = 24
	offFlags       = 28
	offEventNr     = 32
	offPadding     = 36
	offDev         = 40
	offName        = 48
	offUUID        = 176
	offData        = 305

	// SizeofHeader is sizeof(struct dm_ioctl).
	SizeofHeader = 312
	// DataOffset is offsetof(struct dm_ioctl, data): the smallest data_size
	// the kernel accepts, and the data_size of a reply with no payload.
	DataOffset = offData
	// DataStart is where payloads begin: sizeof(struct dm_ioctl), which is
	// already a multiple of 8.
	DataStart = SizeofHeader

	// NameLen is DM_NAME_LEN: a name holds at most NameLen-1 bytes.
	NameLen = 128
	// UUIDLen is DM_UUID_LEN: a uuid holds at most UUIDLen-1 bytes.
	UUIDLen = 129
	// MaxTypeName is DM_MAX_TYPE_NAME: a target type holds at most 15 bytes.
	MaxTypeName = 16
)

// Encoding errors: what the wire format cannot carry. These are structural
// limits, not policy; package dm reports friendlier errors before getting
// here.
var (
	ErrShortBuffer    = errors.New("ioctl: buffer too short")
	ErrNameTooLong    = errors.New("ioctl: device name longer than 127 bytes")
	ErrUUIDTooLong    = errors.New("ioctl: uuid longer than 128 bytes")
	ErrTypeTooLong    = errors.New("ioctl: target type longer than 15 bytes")
	ErrNUL            = errors.New("ioctl: string contains a NUL byte")
	ErrTooLarge       = errors.New("ioctl: request larger than 4 GiB")
	ErrBufferTooLarge = errors.New("ioctl: reply still truncated at the buffer size cap")
	ErrMalformed      = errors.New("ioctl: malformed reply")
)

// Header is struct dm_ioctl in Go form. Name and UUID are the NUL-terminated
// strings of the C arrays.
type Header struct {
	Version     Version
	DataSize    uint32
	DataStart   uint32
	TargetCount uint32
	OpenCount   int32
	Flags       Flags
	EventNr     uint32
	Dev         uint64 // huge_encode_dev form; see Dev.Encode and DecodeDev
	Name        string
	UUID        string
}

// MarshalTo writes h into the first SizeofHeader bytes of b. The padding and
// the 7 bytes of data[] are zeroed. It does not allocate.
func (h *Header) MarshalTo(b []byte) error {
	if len(b) < SizeofHeader {
		return ErrShortBuffer
	}
	if err := checkString(h.Name, NameLen, ErrNameTooLong); err != nil {
		return err
	}
	if err := checkString(h.UUID, UUIDLen, ErrUUIDTooLong); err != nil {
		return err
	}
	ne := binary.NativeEndian
	ne.PutUint32(b[offVersion:], h.Version[0])
	ne.PutUint32(b[offVersion+4:], h.Version[1])
	ne.PutUint32(b[offVersion+8:], h.Version[2])
	ne.PutUint32(b[offDataSize:], h.DataSize)
	ne.PutUint32(b[offDataStart:], h.DataStart)
	ne.PutUint32(b[offTargetCount:], h.TargetCount)
	ne.PutUint32(b[offOpenCount:], uint32(h.OpenCount))
	ne.PutUint32(b[offFlags:], uint32(h.Flags))
	ne.PutUint32(b[offEventNr:], h.EventNr)
	ne.PutUint32(b[offPadding:], 0)
	ne.PutUint64(b[offDev:], h.Dev)
	putCString(b[offName:offName+NameLen], h.Name)
	putCString(b[offUUID:offUUID+UUIDLen], h.UUID)
	clear(b[offData:SizeofHeader])
	return nil
}

// UnmarshalBinary reads a header from the first SizeofHeader bytes of b. A
// name or uuid without a terminating NUL (which the kernel never sends) is
// read to the end of its array.
func (h *Header) UnmarshalBinary(b []byte) error {
	if err := h.unmarshalFixed(b); err != nil {
		return err
	}
	h.Name = cString(b[offName : offName+NameLen])
	h.UUID = cString(b[offUUID : offUUID+UUIDLen])
	return nil
}

// unmarshalFixed reads every field but the strings.
func (h *Header) unmarshalFixed(b []byte) error {
	if len(b) < SizeofHeader {
		return ErrShortBuffer
	}
	ne := binary.NativeEndian
	h.Version = Version{ne.Uint32(b[offVersion:]), ne.Uint32(b[offVersion+4:]), ne.Uint32(b[offVersion+8:])}
	h.DataSize = ne.Uint32(b[offDataSize:])
	h.DataStart = ne.Uint32(b[offDataStart:])
	h.TargetCount = ne.Uint32(b[offTargetCount:])
	h.OpenCount = int32(ne.Uint32(b[offOpenCount:]))
	h.Flags = Flags(ne.Uint32(b[offFlags:]))
	h.EventNr = ne.Uint32(b[offEventNr:])
	h.Dev = ne.Uint64(b[offDev:])
	return nil
}

// unmarshalLike is UnmarshalBinary for a reply to a request with header
// req: the kernel echoes the request's name and uuid, and those strings are
// reused instead of allocated again. With alias, a name or uuid that is
// not the request's points into b instead of being copied.
func (h *Header) unmarshalLike(b []byte, req *Header, alias bool) error {
	if err := h.unmarshalFixed(b); err != nil {
		return err
	}
	h.Name = cStringLike(b[offName:offName+NameLen], req.Name, alias)
	h.UUID = cStringLike(b[offUUID:offUUID+UUIDLen], req.UUID, alias)
	return nil
}

// Payload returns the payload of a reply held in b: the bytes from
// data_start to data_size, both checked against len(b). A reply without
// payload (data_size at most 312) gives an empty slice; a data_start before
// the data area or past data_size is ErrMalformed.
func (h *Header) Payload(b []byte) ([]byte, error) {
	start, end := uint64(h.DataStart), uint64(h.DataSize)
	if end <= DataStart || end == start {
		return nil, nil
	}
	if start < DataOffset || start > end || end > uint64(len(b)) {
		return nil, ErrMalformed
	}
	return b[start:end], nil
}

func checkString(s string, size int, tooLong error) error {
	if len(s) > size-1 {
		return tooLong
	}
	if strings.IndexByte(s, 0) >= 0 {
		return ErrNUL
	}
	return nil
}

// putCString copies s into dst and zero-fills the rest; the caller has
// checked that s fits with its NUL.
func putCString(dst []byte, s string) {
	n := copy(dst, s)
	clear(dst[n:])
}

// cLen is the length of the C string in b: up to the first NUL, or all of b.
func cLen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

// cString returns the bytes of b up to the first NUL (or all of b).
func cString(b []byte) string { return string(b[:cLen(b)]) }

// cStringLike is cString, returning like itself when the bytes spell it;
// with alias, other strings point into b.
func cStringLike(b []byte, like string, alias bool) string {
	if len(like) < len(b) && b[len(like)] == 0 && string(b[:len(like)]) == like {
		return like // the usual echo, found without scanning for the NUL
	}
	n := cLen(b)
	if alias && n > 0 {
		return unsafe.String(&b[0], n)
	}
	return string(b[:n])
}
