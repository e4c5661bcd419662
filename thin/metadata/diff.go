package metadata

import (
	"iter"
	"strconv"
)

// DeltaKind classifies a Delta.
type DeltaKind uint8

// Delta kinds, as thin_delta names them.
const (
	// Same: both devices map the blocks to the same data blocks.
	Same DeltaKind = iota
	// Different: both map the blocks, to different data blocks.
	Different
	// LeftOnly: only the left device maps the blocks.
	LeftOnly
	// RightOnly: only the right device maps the blocks.
	RightOnly
)

// String returns thin_delta's element name for k: same, different,
// left_only, right_only.
func (k DeltaKind) String() string {
	switch k {
	case Same:
		return "same"
	case Different:
		return "different"
	case LeftOnly:
		return "left_only"
	case RightOnly:
		return "right_only"
	}
	return "DeltaKind(" + strconv.Itoa(int(k)) + ")"
}

// Delta is a run of virtual blocks that compare the same way between two
// thin devices.
type Delta struct {
	// Kind says how the two devices compare over the run.
	Kind DeltaKind
	// VBegin is the first virtual block of the run.
	VBegin uint64
	// Len is the number of blocks in the run.
	Len uint64
	// LeftData is the left device's data block for VBegin (Same,
	// Different, LeftOnly), 0 otherwise.
	LeftData uint64
	// RightData is the right device's data block for VBegin (Same,
	// Different, RightOnly), 0 otherwise.
	RightData uint64
}

// Diff iterates over the differences between thin devices left and right
// in virtual block order, as thin_delta computes them: each device's
// mappings are joined into runs of consecutive virtual and data blocks
// (time stamps ignored), and the two run lists are compared piece by
// piece; each Delta is one such piece (thin_delta --verbose prints one
// range per Delta; without it, adjacent pieces of the same kind are
// joined). Blocks neither device maps are not reported. Memory use does
// not depend on the number of mappings. A device without a mapping tree
// yields a *DeviceError (left's first).
func (m *Metadata) Diff(left, right uint32) iter.Seq2[Delta, error] {
	return func(yield func(Delta, error) bool) {
		for _, id := range []uint32{left, right} {
			if _, err := m.mappingRoot(id); err != nil {
				yield(Delta{}, err)
				return
			}
		}
		lnext, lstop := iter.Pull2(m.mappings(left, false))
		defer lstop()
		rnext, rstop := iter.Pull2(m.mappings(right, false))
		defer rstop()

		var err error
		pull := func(next func() (Mapping, error, bool)) (Mapping, bool) {
			mp, e, ok := next()
			if !ok {
				return Mapping{}, false
			}
			if e != nil {
				err = e
				return Mapping{}, false
			}
			return mp, true
		}
		l, lok := pull(lnext)
		r, rok := Mapping{}, false
		if err == nil {
			r, rok = pull(rnext)
		}
		consume := func(mp *Mapping, n uint64, next func() (Mapping, error, bool)) bool {
			if n < mp.Len {
				mp.VBegin += n
				mp.DBegin += n
				mp.Len -= n
				return true
			}
			var ok bool
			*mp, ok = pull(next)
			return ok
		}
		for lok && rok && err == nil {
			var d Delta
			switch {
			case l.VBegin < r.VBegin:
				n := min(l.Len, r.VBegin-l.VBegin)
				d = Delta{Kind: LeftOnly, VBegin: l.VBegin, Len: n, LeftData: l.DBegin}
				lok = consume(&l, n, lnext)
			case l.VBegin > r.VBegin:
				n := min(r.Len, l.VBegin-r.VBegin)
				d = Delta{Kind: RightOnly, VBegin: r.VBegin, Len: n, RightData: r.DBegin}
				rok = consume(&r, n, rnext)
			default:
				n := min(l.Len, r.Len)
				k := Same
				if l.DBegin != r.DBegin {
					k = Different
				}
				d = Delta{Kind: k, VBegin: l.VBegin, Len: n, LeftData: l.DBegin, RightData: r.DBegin}
				lok = consume(&l, n, lnext)
				if err == nil {
					rok = consume(&r, n, rnext)
				}
			}
			if !yield(d, nil) {
				return
			}
		}
		for lok && err == nil {
			if !yield(Delta{Kind: LeftOnly, VBegin: l.VBegin, Len: l.Len, LeftData: l.DBegin}, nil) {
				return
			}
			l, lok = pull(lnext)
		}
		for rok && err == nil {
			if !yield(Delta{Kind: RightOnly, VBegin: r.VBegin, Len: r.Len, RightData: r.DBegin}, nil) {
				return
			}
			r, rok = pull(rnext)
		}
		if err != nil {
			yield(Delta{}, err)
		}
	}
}
