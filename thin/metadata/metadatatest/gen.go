// Package metadatatest generates random thin pools for tests of code that
// reads thin-pool metadata: a model of what the
// kernel would have written after a workload of creates, snapshots,
// writes, discards and deletes, rendered as thin_dump's XML and turned
// into a metadata image with thin_restore.
package metadatatest

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// Map is a run of mappings as thin_dump prints them: consecutive virtual
// blocks to consecutive data blocks, all with the same time.
type Map struct {
	V, D, Len uint64
	T         uint32
}

// Dev is one thin device.
type Dev struct {
	ID           uint32
	TID          uint64
	CTime, STime uint32
	Maps         []Map // sorted by V, joined as thin_dump joins them
	Mapped       uint64
}

// Pool is a whole pool's metadata contents.
type Pool struct {
	Time      uint32
	TID       uint64
	Flags     uint32
	Version   uint32
	BlockSize uint32 // sectors
	NrData    uint64
	Devs      []Dev // sorted by ID
	MetaSize  int64 // bytes the image file should have
}

// Size selects how big Random's pool is.
type Size int

// Sizes.
const (
	Small       Size = iota // a few devices, a few hundred blocks
	Medium                  // up to 20 devices, thousands of blocks
	ManyDevices             // 150-300 devices: internal nodes in the top-level trees
	Deep                    // one device with 70,000+ mappings: three-level mapping tree
)

type sim struct {
	rng   *rand.Rand
	time  uint32
	tid   uint64
	ref   []uint32
	cur   uint64
	devs  map[uint32]*simDev
	dtids map[uint32]uint64
}

type simDev struct {
	ctime, stime uint32
	tid          uint64
	m            map[uint64]uint64 // vblock -> data<<24 | time
}

func (s *sim) alloc() (uint64, bool) {
	n := uint64(len(s.ref))
	for i := uint64(0); i < n; i++ {
		b := (s.cur + i) % n
		if s.ref[b] == 0 {
			s.ref[b] = 1
			s.cur = b + 1
			return b, true
		}
	}
	return 0, false
}

func (s *sim) newID() uint32 {
	for {
		var id uint32
		switch s.rng.IntN(4) {
		case 0:
			id = uint32(s.rng.IntN(1 << 24))
		default:
			id = uint32(s.rng.IntN(64))
		}
		if _, ok := s.devs[id]; !ok {
			return id
		}
	}
}

func (s *sim) pick() *simDev {
	if len(s.devs) == 0 {
		return nil
	}
	ids := make([]uint32, 0, len(s.devs))
	for id := range s.devs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return s.devs[ids[s.rng.IntN(len(ids))]]
}

func (s *sim) write(d *simDev, v, n uint64) {
	for b := v; b < v+n; b++ {
		if old, ok := d.m[b]; ok {
			if s.ref[old>>24] == 1 {
				continue // unshared: overwritten in place
			}
			s.ref[old>>24]--
		}
		nb, ok := s.alloc()
		if !ok {
			if old, had := d.m[b]; had {
				s.ref[old>>24]++ // keep the old mapping
			}
			return
		}
		d.m[b] = nb<<24 | uint64(s.time)
	}
}

func (s *sim) discard(d *simDev, v, n uint64) {
	for b := v; b < v+n; b++ {
		if old, ok := d.m[b]; ok {
			s.ref[old>>24]--
			delete(d.m, b)
		}
	}
}

// Random builds a pool from a random workload, deterministic for a seed.
func Random(seed uint64, size Size) *Pool {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	nrData := uint64(200 + rng.IntN(3000))
	ops, maxDevs, maxLen, vspace := 20+rng.IntN(40), 8, 64, uint64(2000)
	switch size {
	case Medium:
		nrData, ops, maxDevs, maxLen, vspace = uint64(5000+rng.IntN(30000)), 100+rng.IntN(200), 20, 300, 50000
	case ManyDevices:
		nrData, ops, maxDevs, maxLen, vspace = 20000, 400, 150+rng.IntN(150), 8, 1000
	case Deep:
		nrData, ops, maxDevs, maxLen, vspace = 200000, 60, 3, 5000, 1<<40
	}
	s := &sim{rng: rng, ref: make([]uint32, nrData), devs: map[uint32]*simDev{}, time: uint32(rng.IntN(3))}
	s.cur = uint64(rng.IntN(int(nrData)))
	if size == ManyDevices {
		for len(s.devs) < maxDevs {
			s.tid++
			s.devs[s.newID()] = &simDev{ctime: s.time, stime: s.time, tid: s.tid, m: map[uint64]uint64{}}
		}
	}
	for i := 0; i < ops; i++ {
		op := rng.IntN(100)
		d := s.pick()
		switch {
		case d == nil || (op < 15 && len(s.devs) < maxDevs):
			s.tid++
			s.devs[s.newID()] = &simDev{ctime: s.time, stime: s.time, tid: s.tid, m: map[uint64]uint64{}}
		case op < 30 && len(s.devs) < maxDevs:
			// Snapshot (possibly of a snapshot): share every block.
			s.tid++
			s.time++
			d.stime = s.time
			nd := &simDev{ctime: s.time, stime: s.time, tid: s.tid, m: make(map[uint64]uint64, len(d.m))}
			for k, v := range d.m {
				nd.m[k] = v
				s.ref[v>>24]++
			}
			s.devs[s.newID()] = nd
		case op < 80:
			n := uint64(1 + rng.IntN(maxLen))
			var v uint64
			if size == Deep && rng.IntN(2) == 0 {
				v = uint64(rng.IntN(100000)) // dense region
			} else {
				v = rng.Uint64N(vspace)
			}
			if size == Deep {
				n = uint64(1000 + rng.IntN(maxLen))
			}
			s.write(d, v, n)
			d.tid = s.tid
		case op < 92:
			s.discard(d, rng.Uint64N(vspace), uint64(1+rng.IntN(maxLen)))
		case len(s.devs) > 1:
			for id, x := range s.devs {
				if x == d {
					for _, v := range d.m {
						s.ref[v>>24]--
					}
					delete(s.devs, id)
					break
				}
			}
		}
		if rng.IntN(10) == 0 {
			s.tid++
		}
	}
	p := &Pool{
		Time: s.time, TID: s.tid, Version: uint32(1 + rng.IntN(2)),
		BlockSize: []uint32{128, 256, 1024, 2048}[rng.IntN(4)], NrData: nrData,
		MetaSize: 16 << 20,
	}
	if rng.IntN(8) == 0 {
		p.Flags = 1
	}
	if size == Deep {
		p.MetaSize = 32 << 20
	}
	ids := make([]uint32, 0, len(s.devs))
	for id := range s.devs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		d := s.devs[id]
		p.Devs = append(p.Devs, Dev{ID: id, TID: d.tid, CTime: d.ctime, STime: d.stime, Maps: joinMaps(d.m), Mapped: uint64(len(d.m))})
	}
	return p
}

// joinMaps turns single mappings into thin_dump's ranges.
func joinMaps(m map[uint64]uint64) []Map {
	vs := make([]uint64, 0, len(m))
	for v := range m {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	var out []Map
	for _, v := range vs {
		d, t := m[v]>>24, uint32(m[v]&0xffffff)
		if n := len(out); n > 0 {
			l := &out[n-1]
			if l.V+l.Len == v && l.D+l.Len == d && l.T == t {
				l.Len++
				continue
			}
		}
		out = append(out, Map{V: v, D: d, Len: 1, T: t})
	}
	return out
}

// WriteXML writes p in thin_dump's XML format, exactly as thin_dump would
// print it back.
func (p *Pool) WriteXML(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "<superblock uuid=\"\" time=\"%d\" transaction=\"%d\" flags=\"%d\" version=\"%d\" data_block_size=\"%d\" nr_data_blocks=\"%d\">\n",
		p.Time, p.TID, p.Flags, p.Version, p.BlockSize, p.NrData)
	for _, d := range p.Devs {
		fmt.Fprintf(bw, "  <device dev_id=\"%d\" mapped_blocks=\"%d\" transaction=\"%d\" creation_time=\"%d\" snap_time=\"%d\">\n",
			d.ID, d.Mapped, d.TID, d.CTime, d.STime)
		for _, m := range d.Maps {
			if m.Len == 1 {
				fmt.Fprintf(bw, "    <single_mapping origin_block=\"%d\" data_block=\"%d\" time=\"%d\"/>\n", m.V, m.D, m.T)
			} else {
				fmt.Fprintf(bw, "    <range_mapping origin_begin=\"%d\" data_begin=\"%d\" length=\"%d\" time=\"%d\"/>\n", m.V, m.D, m.Len, m.T)
			}
		}
		fmt.Fprintf(bw, "  </device>\n")
	}
	fmt.Fprintf(bw, "</superblock>\n")
	return bw.Flush()
}

// RefCounts returns the number of mappings pointing at each data block.
func (p *Pool) RefCounts() []uint32 {
	c := make([]uint32, p.NrData)
	for _, d := range p.Devs {
		for _, m := range d.Maps {
			for i := uint64(0); i < m.Len; i++ {
				c[m.D+i]++
			}
		}
	}
	return c
}

// Tool returns the path of a thin-provisioning-tools program. It skips t
// when the program is missing, unless THINP_REQUIRE_VM=1 (as in CI), when
// it fails t.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
			if fi, e := os.Stat(filepath.Join(d, name)); e == nil && fi.Mode()&0o111 != 0 {
				return filepath.Join(d, name)
			}
		}
		if os.Getenv("THINP_REQUIRE_VM") == "1" {
			t.Fatalf("needs %s (thin-provisioning-tools); THINP_REQUIRE_VM=1 forbids skipping", name)
		}
		t.Skipf("needs %s (thin-provisioning-tools): %v", name, err)
	}
	return p
}

// Restore writes p's XML into dir and runs thin_restore to build a
// metadata image there, returning the image's path.
func (p *Pool) Restore(t testing.TB, dir, name string) string {
	t.Helper()
	img, err := RestoreXML(Tool(t, "thin_restore"), p.WriteXML, p.MetaSize, dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// RestoreXML runs thin_restore (the program at tool) on the XML write
// produces, into a new file of size bytes in dir, and returns the file's
// path. It is safe to call from several goroutines.
func RestoreXML(tool string, write func(io.Writer) error, size int64, dir, name string) (string, error) {
	xml := filepath.Join(dir, name+".xml")
	f, err := os.Create(xml)
	if err != nil {
		return "", err
	}
	if err := write(f); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	defer os.Remove(xml)
	img := filepath.Join(dir, name+".img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Truncate(img, size); err != nil {
		return "", err
	}
	if out, err := exec.Command(tool, "-q", "-i", xml, "-o", img).CombinedOutput(); err != nil {
		return "", fmt.Errorf("thin_restore %s: %v\n%s", name, err, out)
	}
	return img, nil
}

// Image is one corpus pool restored to a file, with what the tools print
// for it.
type Image struct {
	Index int
	Pool  *Pool
	Path  string
	Out   map[string][]byte // tool output by command line ("thin_dump", ...)
	Held  uint64            // the metadata snapshot's block, or 0
	Err   error
}

// Corpus generates n corpus pools (Random(i, CorpusSize(i))), restores
// each into dir and runs each of cmds on it (argument lists whose last
// element is replaced by the image path), with a few pools in flight at
// once since the tools mostly wait on I/O. cmds and snapCmds choose
// the command lines for each pool. Images arrive in order on the
// returned channel; the caller removes the files.
//
// Every third image (Index%3 == 0) gets a metadata snapshot
// (AddHeldRootFile) before the commands run, and snapCmds are run on it
// too, their output stored under "snap:" + Key(cmd); Image.Held is then
// the snapshot's block.
func Corpus(tools map[string]string, dir string, n int, cmds, snapCmds func(i int, p *Pool) [][]string) <-chan *Image {
	const workers, ahead = 8, 16
	slots := make([]chan *Image, n)
	for i := range slots {
		slots[i] = make(chan *Image, 1)
	}
	credits := make(chan struct{}, ahead)
	for i := 0; i < ahead; i++ {
		credits <- struct{}{}
	}
	next := make(chan int)
	go func() {
		for i := 0; i < n; i++ {
			<-credits
			next <- i
		}
		close(next)
	}()
	for w := 0; w < workers; w++ {
		go func() {
			for i := range next {
				im := &Image{Index: i, Pool: Random(uint64(i), CorpusSize(i)), Out: map[string][]byte{}}
				im.Path, im.Err = RestoreXML(tools["thin_restore"], im.Pool.WriteXML, im.Pool.MetaSize, dir, Name(i))
				run := func(prefix string, cmdsOf func(int, *Pool) [][]string) {
					if cmdsOf == nil {
						return
					}
					for _, c := range cmdsOf(i, im.Pool) {
						if im.Err != nil {
							break
						}
						args := append(append([]string(nil), c[1:len(c)-1]...), im.Path)
						out, err := exec.Command(tools[c[0]], args...).Output()
						if err != nil {
							im.Err = fmt.Errorf("pool %d: %s: %v", i, c, err)
						}
						im.Out[prefix+Key(c)] = out
					}
				}
				if i%3 == 0 && im.Err == nil {
					im.Held, im.Err = AddHeldRootFile(im.Path)
				}
				run("", cmds)
				if im.Held != 0 {
					run("snap:", snapCmds)
				}
				slots[i] <- im
			}
		}()
	}
	ch := make(chan *Image, workers)
	go func() {
		for _, s := range slots {
			ch <- <-s
			credits <- struct{}{}
		}
		close(ch)
	}()
	return ch
}

// Key names a command line in Image.Out: its words but the last, joined
// by spaces.
func Key(c []string) string {
	k := c[0]
	for _, a := range c[1 : len(c)-1] {
		k += " " + a
	}
	return k
}

// CorpusSize returns the size class of corpus image i: mostly small, some
// medium, a few with many devices or one deep tree.
func CorpusSize(i int) Size {
	switch {
	case i%50 == 7:
		return Deep
	case i%20 == 3:
		return ManyDevices
	case i%4 == 1:
		return Medium
	}
	return Small
}

// Name returns a file name for corpus image i.
func Name(i int) string { return "pool" + strconv.Itoa(i) }
