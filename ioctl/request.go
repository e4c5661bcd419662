package ioctl

import (
	"bytes"
	"encoding/binary"
	"unsafe"
)

// Request is one control command ready to be packed: a header and, depending
// on Cmd, a payload.
//
//   - CmdTableLoad: Targets, packed as a dm_target_spec chain.
//   - CmdTargetMsg: Sector and Message, packed as struct dm_target_msg.
//   - CmdDevRename and CmdDevSetGeometry: String, NUL-terminated.
//
// Header.Version defaults to Cmd.MinVersion; DataStart, DataSize and, for a
// table load, TargetCount are computed; EventNr is forced to zero for the
// commands that must not carry one (see Cmd.CarriesEventNr).
type Request struct {
	Cmd    Cmd
	Header Header

	Targets []TargetSpec
	Sector  uint64
	Message string
	String  string
}

// PayloadSize is the size of r's payload in bytes.
func (r *Request) PayloadSize() int {
	switch r.Cmd {
	case CmdTableLoad:
		return targetsSize(r.Targets)
	case CmdTargetMsg:
		return align8(sizeofTargetMsg + len(r.Message) + 1)
	case CmdDevRename, CmdDevSetGeometry:
		return align8(len(r.String) + 1)
	}
	return 0
}

// Size is the smallest buffer r fits in: the header plus the payload.
func (r *Request) Size() int { return DataStart + r.PayloadSize() }

// MarshalTo packs r into b and returns the number of bytes used, Size().
// data_size is set to len(b), so that the kernel may use all of b for its
// reply. It does not allocate.
func (r *Request) MarshalTo(b []byte) (int, error) {
	if !r.Cmd.Valid() {
		return 0, ErrMalformed
	}
	n := r.Size()
	if len(b) < n {
		return 0, ErrShortBuffer
	}
	if uint64(len(b)) > 1<<32-1 {
		return 0, ErrTooLarge
	}
	h := r.Header
	if h.Version == (Version{}) {
		h.Version = r.Cmd.MinVersion()
	}
	h.DataStart = DataStart
	h.DataSize = uint32(len(b))
	if !r.Cmd.CarriesEventNr(h.Flags) {
		h.EventNr = 0
	}
	switch r.Cmd {
	case CmdTableLoad:
		h.TargetCount = uint32(len(r.Targets))
	default:
		h.TargetCount = 0
	}
	if err := h.MarshalTo(b); err != nil {
		return 0, err
	}
	p := b[DataStart:n]
	switch r.Cmd {
	case CmdTableLoad:
		if _, err := putTargets(p, r.Targets); err != nil {
			return 0, err
		}
	case CmdTargetMsg:
		if err := checkString(r.Message, len(r.Message)+1, nil); err != nil {
			return 0, err
		}
		binary.NativeEndian.PutUint64(p, r.Sector)
		putCString(p[sizeofTargetMsg:], r.Message)
	case CmdDevRename, CmdDevSetGeometry:
		if err := checkString(r.String, len(r.String)+1, nil); err != nil {
			return 0, err
		}
		putCString(p, r.String)
	}
	return n, nil
}

// parseRequest is the inverse of MarshalTo, as the kernel reads a request:
// the header, then the payload that Cmd takes. It exists for fake kernels
// and round-trip tests.
func parseRequest(c Cmd, b []byte) (*Request, error) {
	r := &Request{Cmd: c}
	if err := r.Header.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	h := &r.Header
	if uint64(h.DataSize) > uint64(len(b)) || h.DataSize < DataOffset {
		return nil, ErrMalformed
	}
	b = b[:h.DataSize]
	switch c {
	case CmdTableLoad:
		specs, err := parseTargets(b, h.DataStart, h.TargetCount)
		if err != nil {
			return nil, err
		}
		r.Targets = specs
	case CmdTargetMsg:
		start := uint64(h.DataStart)
		if start < DataOffset || start+sizeofTargetMsg > uint64(len(b)) {
			return nil, ErrMalformed
		}
		r.Sector = binary.NativeEndian.Uint64(b[start:])
		s, ok := cStringIn(b, start+sizeofTargetMsg, false)
		if !ok {
			return nil, ErrMalformed
		}
		r.Message = s
	case CmdDevRename, CmdDevSetGeometry:
		s, ok := cStringIn(b, uint64(h.DataStart), false)
		if !ok || h.DataStart < DataOffset {
			return nil, ErrMalformed
		}
		r.String = s
	}
	return r, nil
}

func align8(n int) int { return (n + 7) &^ 7 }

// cStringIn returns the NUL-terminated string at off in b; ok is false if
// off is out of range or no NUL follows it within b.
func cStringIn(b []byte, off uint64, alias bool) (string, bool) {
	if off >= uint64(len(b)) {
		return "", false
	}
	i := bytes.IndexByte(b[off:], 0)
	if i < 0 {
		return "", false
	}
	if alias {
		if i == 0 {
			return "", true
		}
		return unsafe.String(&b[off], i), true
	}
	return string(b[off : off+uint64(i)]), true
}
