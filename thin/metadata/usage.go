package metadata

// Usage is a thin device's share of the data device, in data blocks, as
// thin_ls reports it.
type Usage struct {
	// ID is the thin device id.
	ID uint32
	// Mapped is the number of data blocks the device maps (the device
	// details' mapped block count).
	Mapped uint64
	// Exclusive is the number of those no other thin device maps.
	Exclusive uint64
	// Shared is Mapped - Exclusive: blocks the device shares with at least
	// one other (a snapshot, its origin, a sibling snapshot).
	Shared uint64
}

// sharing records, in two bits per data block, whether no, one, or more
// than one mapping points at it. Pages are allocated as blocks are seen,
// so memory follows the data in use, not the device size.
type sharing struct {
	pages map[uint64]*[pageWords]uint64
	last  uint64
	lastP *[pageWords]uint64
}

const (
	pageWords  = 1024           // 8 KiB pages
	pageBlocks = pageWords * 32 // 2 bits per block
)

func (s *sharing) page(b uint64, create bool) *[pageWords]uint64 {
	pi := b / pageBlocks
	if s.lastP != nil && s.last == pi {
		return s.lastP
	}
	p := s.pages[pi]
	if p == nil {
		if !create {
			return nil
		}
		p = new([pageWords]uint64)
		s.pages[pi] = p
	}
	s.last, s.lastP = pi, p
	return p
}

func (s *sharing) inc(b uint64) {
	p := s.page(b, true)
	off := b % pageBlocks
	w, sh := off/32, (off%32)*2
	switch (p[w] >> sh) & 3 {
	case 0:
		p[w] |= 1 << sh
	case 1:
		p[w] |= 2 << sh
	}
}

func (s *sharing) exclusive(b uint64) bool {
	p := s.page(b, false)
	if p == nil {
		return false
	}
	off := b % pageBlocks
	return (p[off/32]>>((off%32)*2))&3 == 1
}

// Usage returns the usage of every thin device in id order: mapped,
// exclusive and shared data blocks, thin_ls's MAPPED_BLOCKS,
// EXCLUSIVE_BLOCKS and SHARED_BLOCKS. It walks every device's mappings
// twice and keeps two bits per data block in use, whatever the number of
// mappings. Sharing is counted among the devices read (the metadata
// snapshot's, with Options.MetadataSnap).
func (m *Metadata) Usage() ([]Usage, error) {
	devs, err := m.DeviceList()
	if err != nil {
		return nil, err
	}
	s := sharing{pages: make(map[uint64]*[pageWords]uint64)}
	roots := make([]uint64, len(devs))
	for i, d := range devs {
		if roots[i], err = m.mappingRoot(d.ID); err != nil {
			return nil, err
		}
		if err := m.rawMappings(roots[i], func(_, db uint64, _ uint32) bool {
			s.inc(db)
			return true
		}); err != nil {
			return nil, err
		}
	}
	us := make([]Usage, len(devs))
	for i, d := range devs {
		var excl uint64
		if err := m.rawMappings(roots[i], func(_, db uint64, _ uint32) bool {
			if s.exclusive(db) {
				excl++
			}
			return true
		}); err != nil {
			return nil, err
		}
		us[i] = Usage{ID: d.ID, Mapped: d.MappedBlocks, Exclusive: excl, Shared: d.MappedBlocks - excl}
	}
	return us, nil
}
