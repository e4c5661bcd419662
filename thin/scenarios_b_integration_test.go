//go:build linux

package thin_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/loop"
	"github.com/thinp/thinp/thin"
)

// Privileged scenarios 10 to 18: snapshots,
// discards, running out of data and metadata space, resizing, metadata
// failure and suspend ordering, against the real kernel in the VM tier.
//
// Every wait for the kernel is bounded, and every test resumes what it
// suspends in its cleanups, so that a failing scenario never hangs the VM.
// Every pool teardown is followed by thin_check, which logs "thin_check
// passed" so that a run's checks can be counted.

const (
	sbBlock  = 64 << 10         // the pools' data block, 128 sectors
	sbWait   = 30 * time.Second // the bound of every wait for the kernel
	sbSettle = 2 * time.Second  // how long an operation that must block is watched
)

// --- block I/O -----------------------------------------------------------

// sbAligned returns n zero bytes aligned for O_DIRECT.
func sbAligned(n int) []byte {
	b := make([]byte, n+4096)
	off := int(-uintptr(unsafe.Pointer(&b[0])) & 4095)
	return b[off : off+n : off+n]
}

// sbPattern returns n aligned bytes in which the i-th pool block is filled
// with a byte derived from seed and i (never zero), so that a read can tell
// blocks, patterns and unprovisioned (zero) space apart.
func sbPattern(n int, seed byte) []byte {
	b := sbAligned(n)
	for i := 0; i < n; i += sbBlock {
		v := byte(1 + (int(seed)+i/sbBlock)%251)
		chunk := b[i:min(i+sbBlock, n)]
		for j := range chunk {
			chunk[j] = v
		}
	}
	return b
}

// sbWriteDirect writes data at off with O_DIRECT, chunk bytes a write, and
// returns how many bytes were written before the first error.
func sbWriteDirect(path string, off int64, data []byte, chunk int) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var done int64
	for done < int64(len(data)) {
		n := min(int64(chunk), int64(len(data))-done)
		m, err := f.WriteAt(data[done:done+n], off+done)
		done += int64(m)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// sbReadDirect reads n bytes at off with O_DIRECT.
func sbReadDirect(path string, off int64, n int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := sbAligned(n)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, err
	}
	return b, nil
}

// sbExpect reads n bytes at off and compares them with want.
func sbExpect(t *testing.T, path string, off int64, want []byte) {
	t.Helper()
	got, err := sbReadDirect(path, off, len(want))
	if err != nil {
		t.Fatalf("read %s at %d: %v", path, off, err)
	}
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: byte %d (block %d) is %#x, want %#x", path, off+int64(i), (off+int64(i))/sbBlock, got[i], want[i])
			}
		}
	}
}

// sbDiscard discards [off, off+n) of the block device at path with the
// BLKDISCARD ioctl, as blkdiscard does.
func sbDiscard(path string, off, n int64) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	r := [2]uint64{uint64(off), uint64(n)}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKDISCARD, uintptr(unsafe.Pointer(&r[0])))
	runtime.KeepAlive(&r)
	if errno != 0 {
		return &os.PathError{Op: "BLKDISCARD", Path: path, Err: errno}
	}
	return nil
}

// sbSync flushes the block device at path (fsync: a REQ_PREFLUSH, which
// makes a thin pool commit its metadata).
func sbSync(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func sbDevPath(d dm.Dev) string { return "/dev/dm-" + strconv.FormatUint(uint64(d.Minor), 10) }

// --- asynchronous operations ----------------------------------------------

// sbAsync is an operation running in its own goroutine: I/O that the
// kernel holds, or an ioctl that must block.
type sbAsync struct {
	what string
	done chan struct{}
	n    int64
	err  error
}

func sbGo(what string, fn func() (int64, error)) *sbAsync {
	a := &sbAsync{what: what, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.n, a.err = fn()
	}()
	return a
}

// blocked fails t unless the operation is still running after d.
func (a *sbAsync) blocked(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-a.done:
		t.Fatalf("%s returned (%d bytes, %v) while it should block", a.what, a.n, a.err)
	case <-time.After(d):
	}
}

// wait waits at most d for the operation and returns its result.
func (a *sbAsync) wait(t *testing.T, d time.Duration) (int64, error) {
	t.Helper()
	select {
	case <-a.done:
		return a.n, a.err
	case <-time.After(d):
		t.Fatalf("%s still blocked after %v", a.what, d)
		return 0, nil
	}
}

// sbWithin runs an ioctl that should return promptly, failing t if it
// does not return within sbWait rather than hanging the VM run.
func sbWithin(t *testing.T, what string, fn func() error) {
	t.Helper()
	a := sbGo(what, func() (int64, error) { return 0, fn() })
	if _, err := a.wait(t, sbWait); err != nil {
		t.Fatalf("%s: %+v", what, err)
	}
}

// sbRetryEINTR repeats a device-mapper call that the kernel may interrupt
// while it sleeps in wait_on_bit (a suspend or resume waiting for a pool).
func sbRetryEINTR(fn func() error) error {
	for {
		err := fn()
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// sbResumeAtCleanup resumes, at cleanup, each named device that is still
// suspended, in the order given: pools before their thins, because a thin's
// resume waits for its pool.
func sbResumeAtCleanup(t *testing.T, ctl *dm.Control, names ...string) {
	t.Cleanup(func() {
		ctx := context.Background()
		for _, n := range names {
			info, err := ctl.Info(ctx, dm.Name(n))
			if err != nil || !info.Suspended {
				continue
			}
			a := sbGo("resume "+n, func() (int64, error) {
				_, err := ctl.Resume(ctx, dm.Name(n))
				return 0, err
			})
			if _, err := a.wait(t, sbWait); err != nil {
				t.Errorf("cleanup: resume %s: %+v", n, err)
			}
		}
	})
}

// --- devices and pools -----------------------------------------------------

// sbLinear is a linear dm device over a loop device, which can grow: the
// devices the resize scenarios grow.
type sbLinear struct {
	ctl  *dm.Control
	name string
	b    *backing
	dev  dm.Dev
	size int64 // bytes
}

// sbNewLinear makes a linear device of size bytes, removed at cleanup.
func sbNewLinear(t *testing.T, ctl *dm.Control, name string, size int64) *sbLinear {
	t.Helper()
	l := &sbLinear{ctl: ctl, name: name, b: newBacking(t, size), size: size}
	info, err := ctl.Create(context.Background(), name, l.table())
	if err != nil {
		t.Fatalf("create linear %s: %+v", name, err)
	}
	l.dev = info.Dev
	t.Cleanup(func() {
		if err := ctl.Remove(context.Background(), dm.Name(name)); err != nil && !errors.Is(err, dm.ErrNotFound) {
			t.Errorf("remove %s: %+v", name, err)
		}
	})
	return l
}

func (l *sbLinear) ref() dm.Ref  { return dm.Name(l.name) }
func (l *sbLinear) path() string { return sbDevPath(l.dev) }

// table maps the whole loop device as it is now.
func (l *sbLinear) table() dm.Table {
	return dm.Table{{Start: 0, Length: dm.Sectors(l.size / dm.SectorSize), Type: "linear", Params: l.b.Dev.String() + " 0"}}
}

// grow grows the loop device's backing file to size bytes and makes the
// loop device see it; the caller then loads l.table().
func (l *sbLinear) grow(t *testing.T, size int64) {
	t.Helper()
	if err := loop.Grow(l.b.Path, size); err != nil {
		t.Fatalf("grow %s: %v", l.b.Path, err)
	}
	if err := l.b.Loop.SetCapacity(); err != nil {
		t.Fatalf("set capacity of %s: %v", l.b.Loop.Path(), err)
	}
	l.size = size
}

// sbNeedTarget skips t when the kernel lacks a target type (the VM has them
// all), or fails it under THINP_REQUIRE_PRIVILEGED=1, as testenv does for
// the other privileges.
func sbNeedTarget(t *testing.T, ctl *dm.Control, name string) {
	t.Helper()
	_, err := ctl.TargetVersion(context.Background(), name)
	switch {
	case err == nil:
	case errors.Is(err, dm.ErrNotSupported) && os.Getenv("THINP_REQUIRE_PRIVILEGED") != "1":
		t.Skipf("needs the %s target: %v", name, err)
	default:
		t.Fatalf("target %s: %+v", name, err)
	}
}

// sbNewZero makes a dm zero device of size bytes (writes vanish, reads
// return zeros): a data device as large as a scenario needs, at no memory
// cost. Removed at cleanup.
func sbNewZero(t *testing.T, ctl *dm.Control, name string, size int64) dm.Dev {
	t.Helper()
	sbNeedTarget(t, ctl, "zero")
	info, err := ctl.Create(context.Background(), name, dm.Table{{Start: 0, Length: dm.Sectors(size / dm.SectorSize), Type: "zero"}})
	if err != nil {
		t.Fatalf("create zero %s: %+v", name, err)
	}
	t.Cleanup(func() {
		if err := ctl.Remove(context.Background(), dm.Name(name)); err != nil && !errors.Is(err, dm.ErrNotFound) {
			t.Errorf("remove %s: %+v", name, err)
		}
	})
	return info.Dev
}

// sbThinCheck runs thin_check (with args) on a metadata device, which must
// not be in use, fails t unless it passes, and logs each pass.
func sbThinCheck(t *testing.T, path string, args ...string) bool {
	t.Helper()
	cmd := exec.Command(testenv.Tool(t, "thin_check"), append(args, path)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("thin_check %s: %v\n%s", strings.Join(append(args, path), " "), err, strings.TrimSpace(string(out)))
		return false
	}
	t.Logf("thin_check passed: %s", strings.Join(append(args, path), " "))
	return true
}

// sbTeardown removes the pool and its thins, then checks the metadata.
func sbTeardown(t *testing.T, p *thin.Pool, metaPath string) {
	t.Helper()
	if err := p.Teardown(context.Background()); err != nil && !errors.Is(err, dm.ErrNotFound) {
		t.Errorf("teardown %s: %+v", p.Name(), err)
	}
	sbThinCheck(t, metaPath)
}

// sbPool is newPool whose teardown and thin_check the test runs itself
// first (newPool's cleanup then finds the pool gone and checks again).
func sbPool(t *testing.T, ctl *dm.Control, prefix string, o poolOpts) *testPool {
	t.Helper()
	tp := newPool(t, ctl, prefix, o)
	t.Cleanup(func() { sbTeardown(t, tp.Pool, tp.Meta.Loop.Path()) })
	return tp
}

// sbStack is a pool on devices the test made (linear, zero), which the test
// may take down and bring up again on the same metadata.
type sbStack struct {
	ctl      *dm.Control
	name     string
	spec     thin.PoolSpec
	metaPath string // the metadata device's node, for thin_check and thin_dump
	pool     *thin.Pool
}

// sbNewStack creates the pool on fresh metadata; its cleanup takes it down
// (thin_check included). Create it after its devices, so that it goes
// first.
func sbNewStack(t *testing.T, ctl *dm.Control, name string, spec thin.PoolSpec, metaPath string) *sbStack {
	t.Helper()
	p, err := thin.CreatePool(context.Background(), ctl, name, spec, thin.FormatMetadata(), thin.WithMetadataPath(metaPath))
	if err != nil {
		t.Fatalf("create pool: %+v", err)
	}
	s := &sbStack{ctl: ctl, name: name, spec: spec, metaPath: metaPath, pool: p}
	t.Cleanup(func() {
		if s.pool != nil {
			s.down(t)
		}
	})
	return s
}

// down tears the pool down and runs thin_check.
func (s *sbStack) down(t *testing.T) {
	t.Helper()
	if spec, err := s.pool.Spec(context.Background()); err == nil {
		s.spec = spec
	}
	sbTeardown(t, s.pool, s.metaPath)
	s.pool = nil
}

// up brings the pool back on its existing metadata.
func (s *sbStack) up(t *testing.T) {
	t.Helper()
	p, err := thin.CreatePool(context.Background(), s.ctl, s.name, s.spec)
	if err != nil {
		t.Fatalf("reactivate pool: %+v", err)
	}
	s.pool = p
}

// sbActivate creates (if create) and activates thin id; deactivated at
// cleanup if still there.
func sbActivate(t *testing.T, p *thin.Pool, name string, id thin.DeviceID, size int64, create bool) *thin.Volume {
	t.Helper()
	ctx := context.Background()
	if create {
		if err := p.CreateThin(ctx, id); err != nil {
			t.Fatalf("create_thin %d: %+v", id, err)
		}
	}
	v, err := p.Activate(ctx, name, id, thin.Size(uint64(size)))
	if err != nil {
		t.Fatalf("activate %d: %+v", id, err)
	}
	t.Cleanup(func() {
		if err := p.Control().Remove(context.Background(), dm.Name(name)); err != nil && !errors.Is(err, dm.ErrNotFound) {
			t.Errorf("deactivate %s: %+v", name, err)
		}
	})
	return v
}

// sbStatus reads the pool status; commit makes the kernel commit the
// metadata first.
func sbStatus(t *testing.T, p *thin.Pool, commit bool) thin.PoolStatus {
	t.Helper()
	var opts []thin.StatusOption
	if commit {
		opts = append(opts, thin.CommitMetadata())
	}
	st, err := p.Status(context.Background(), opts...)
	if err != nil {
		t.Fatalf("pool status: %+v", err)
	}
	return st
}

// sbWaitStatus polls the pool's status (without committing) until cond
// holds, for at most sbWait.
func sbWaitStatus(t *testing.T, p *thin.Pool, what string, cond func(thin.PoolStatus) bool) thin.PoolStatus {
	t.Helper()
	deadline := time.Now().Add(sbWait)
	for {
		st := sbStatus(t, p, false)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool never reached %s; status %q", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sbOutOfData(st thin.PoolStatus) bool { return st.Mode == thin.ModeOutOfDataSpace }

// sbMapped is a thin volume's provisioned size in pool blocks.
func sbMapped(t *testing.T, v *thin.Volume) thin.DataBlocks {
	t.Helper()
	st, err := v.Status(context.Background())
	if err != nil {
		t.Fatalf("thin status: %+v", err)
	}
	if st.State != thin.ThinActive {
		t.Fatalf("thin %s status %q", v.Name(), st)
	}
	return st.MappedBlocks(128)
}

// sbSetNoSpaceTimeout sets dm-thin's no_space_timeout module parameter (in
// seconds) and restores it at cleanup. It takes effect when a pool next
// runs out of data space.
func sbSetNoSpaceTimeout(t *testing.T, secs int) {
	t.Helper()
	const param = "/sys/module/dm_thin_pool/parameters/no_space_timeout"
	old, err := os.ReadFile(param)
	if err != nil {
		t.Fatalf("no_space_timeout: %v", err)
	}
	if err := os.WriteFile(param, []byte(strconv.Itoa(secs)), 0); err != nil {
		t.Fatalf("no_space_timeout: %v", err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(param, bytes.TrimSpace(old), 0); err != nil {
			t.Errorf("restore no_space_timeout: %v", err)
		}
	})
}

// --- cross-checks with thin-provisioning-tools ------------------------------

// sbLsLive is thinLsLive for a pool whose metadata device is metaPath:
// thin_ls -m on a metadata snapshot of the live pool, id to mapped blocks.
func sbLsLive(t *testing.T, p *thin.Pool, metaPath string) map[thin.DeviceID]uint64 {
	t.Helper()
	ctx := context.Background()
	if err := p.ReserveMetadataSnap(ctx); err != nil {
		t.Fatalf("reserve_metadata_snap: %+v", err)
	}
	defer func() {
		if err := p.ReleaseMetadataSnap(ctx); err != nil {
			t.Errorf("release_metadata_snap: %+v", err)
		}
	}()
	out := thinTool(t, "thin_ls", "-m", "--no-headers", "-o", "DEV,MAPPED_BLOCKS", metaPath)
	got := map[thin.DeviceID]uint64{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var id, blocks uint64
		if line == "" {
			continue
		}
		if _, err := fmt.Sscan(line, &id, &blocks); err != nil {
			t.Fatalf("thin_ls line %q: %v", line, err)
		}
		got[thin.DeviceID(id)] = blocks
	}
	return got
}

// sbCompareLs fails t unless thin_ls reported exactly want.
func sbCompareLs(t *testing.T, got, want map[thin.DeviceID]uint64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("thin_ls lists %d devices, want %d: %v", len(got), len(want), got)
	}
	for id, n := range want {
		if g, ok := got[id]; !ok || g != n {
			t.Errorf("thin_ls: device %d maps %d blocks (listed %v), want %d", id, g, ok, n)
		}
	}
}

// sbDumpDevice is one device of thin_dump's XML.
type sbDumpDevice struct {
	ID      uint32 `xml:"dev_id,attr"`
	Mapped  uint64 `xml:"mapped_blocks,attr"`
	Singles []struct {
		Origin uint64 `xml:"origin_block,attr"`
	} `xml:"single_mapping"`
	Ranges []struct {
		Origin uint64 `xml:"origin_begin,attr"`
		Length uint64 `xml:"length,attr"`
	} `xml:"range_mapping"`
}

// blocks lists the device's mapped virtual blocks, as a set.
func (d sbDumpDevice) blocks() map[uint64]bool {
	m := map[uint64]bool{}
	for _, s := range d.Singles {
		m[s.Origin] = true
	}
	for _, r := range d.Ranges {
		for b := r.Origin; b < r.Origin+r.Length; b++ {
			m[b] = true
		}
	}
	return m
}

// sbDump runs thin_dump on the metadata of a pool that is not active and
// returns its superblock's flags and devices.
func sbDump(t *testing.T, metaPath string) (flags uint32, devs map[thin.DeviceID]sbDumpDevice) {
	t.Helper()
	out := thinTool(t, "thin_dump", metaPath)
	var sb struct {
		Flags   uint32         `xml:"flags,attr"`
		Devices []sbDumpDevice `xml:"device"`
	}
	if err := xml.Unmarshal([]byte(out), &sb); err != nil {
		t.Fatalf("thin_dump output: %v\n%.2000s", err, out)
	}
	devs = map[thin.DeviceID]sbDumpDevice{}
	for _, d := range sb.Devices {
		devs[thin.DeviceID(d.ID)] = d
	}
	return sb.Flags, devs
}

// --- 10. Many snapshots of one volume ----------------------------------------

// TestIntegrationManySnapshots writes an origin, pauses it, takes 1000
// snapshots of it, writes it again, and reads the old data back from the
// first and last snapshots.
func TestIntegrationManySnapshots(t *testing.T) {
	ctl, prefix := vmSetup(t)
	ctx := context.Background()
	const size = 4 << 20 // 64 blocks
	const snaps = 1000
	tp := sbPool(t, ctl, prefix, poolOpts{})
	origin := tp.activate(t, prefix+"origin", 0, thin.Size(size), true)
	before, after := sbPattern(size, 1), sbPattern(size, 101)
	if _, err := sbWriteDirect(origin.DevPath(), 0, before, 1<<20); err != nil {
		t.Fatal(err)
	}

	// Pause the origin once; CreateSnapshot leaves a device its caller
	// suspended alone.
	start := time.Now()
	err := ctl.WithSuspended(ctx, dm.Name(origin.Name()), func() error {
		for id := thin.DeviceID(1); id <= snaps; id++ {
			if err := tp.CreateSnapshot(ctx, id, 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("snapshots: %+v", err)
	}
	t.Logf("%d snapshots in %v", snaps, time.Since(start).Round(time.Millisecond))
	if info, err := ctl.Info(ctx, dm.Name(origin.Name())); err != nil || info.Suspended {
		t.Fatalf("origin after the snapshots: %+v, suspended %v", err, info.Suspended)
	}

	if _, err := sbWriteDirect(origin.DevPath(), 0, after, 1<<20); err != nil {
		t.Fatal(err)
	}
	first := tp.activate(t, prefix+"snap1", 1, thin.Size(size), false)
	last := tp.activate(t, prefix+"snap"+strconv.Itoa(snaps), snaps, thin.Size(size), false)
	sbExpect(t, first.DevPath(), 0, before)
	sbExpect(t, last.DevPath(), 0, before)
	sbExpect(t, origin.DevPath(), 0, after)

	// Every snapshot shares the first 64 blocks; the origin's rewrite broke
	// the sharing of all of them.
	st := tp.status(t)
	if st.UsedData != 128 {
		t.Errorf("used data blocks %d, want 128 (64 shared by the snapshots, 64 rewritten)", st.UsedData)
	}
	for _, v := range []*thin.Volume{origin, first, last} {
		if got := sbMapped(t, v); got != 64 {
			t.Errorf("%s maps %d blocks, want 64", v.Name(), got)
		}
	}
	want := map[thin.DeviceID]uint64{}
	for id := thin.DeviceID(0); id <= snaps; id++ {
		want[id] = 64
	}
	sbCompareLs(t, tp.thinLsLive(t), want)
}

// --- 11. Discard --------------------------------------------------------------

// TestIntegrationDiscard discards through a thin device with BLKDISCARD:
// the whole device, one block, a block shared with a snapshot, past the
// end, and on a pool that ignores discards.
func TestIntegrationDiscard(t *testing.T) {
	const size = 4 << 20 // 64 blocks
	ctx := context.Background()

	t.Run("whole", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := sbPool(t, ctl, prefix, poolOpts{})
		v := tp.activate(t, prefix+"thin", 0, thin.Size(size), true)
		if _, err := sbWriteDirect(v.DevPath(), 0, sbPattern(size, 3), 1<<20); err != nil {
			t.Fatal(err)
		}
		if st := tp.status(t); st.UsedData != 64 || st.Discard != thin.DiscardPassdown {
			t.Fatalf("after the wipe: used %d blocks, discards %v; want 64, discard_passdown", st.UsedData, st.Discard)
		}
		if err := sbDiscard(v.DevPath(), 0, size); err != nil {
			t.Fatal(err)
		}
		if st := tp.status(t); st.UsedData != 0 {
			t.Errorf("after discarding everything: used %d blocks, want 0", st.UsedData)
		}
		if got := sbMapped(t, v); got != 0 {
			t.Errorf("thin maps %d blocks, want 0", got)
		}
		sbCompareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 0})
		sbExpect(t, v.DevPath(), 0, sbAligned(size))

		// Offline, the metadata has no mappings left.
		if err := tp.Teardown(ctx); err != nil {
			t.Fatal(err)
		}
		sbThinCheck(t, tp.Meta.Loop.Path())
		_, devs := sbDump(t, tp.Meta.Loop.Path())
		if d, ok := devs[0]; !ok || d.Mapped != 0 || len(d.blocks()) != 0 {
			t.Errorf("thin_dump: device 0 %+v (listed %v), want no mappings", d, ok)
		}
	})

	t.Run("one block", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := sbPool(t, ctl, prefix, poolOpts{})
		v := tp.activate(t, prefix+"thin", 0, thin.Size(size), true)
		data := sbPattern(size, 5)
		if _, err := sbWriteDirect(v.DevPath(), 0, data, 1<<20); err != nil {
			t.Fatal(err)
		}
		if err := sbDiscard(v.DevPath(), 10*sbBlock, sbBlock); err != nil {
			t.Fatal(err)
		}
		if st := tp.status(t); st.UsedData != 63 {
			t.Errorf("used %d blocks, want 63", st.UsedData)
		}
		if got := sbMapped(t, v); got != 63 {
			t.Errorf("thin maps %d blocks, want 63", got)
		}
		sbCompareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 63})
		copy(data[10*sbBlock:11*sbBlock], make([]byte, sbBlock)) // unprovisioned reads as zeros
		sbExpect(t, v.DevPath(), 0, data)
	})

	t.Run("shared with a snapshot", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := sbPool(t, ctl, prefix, poolOpts{})
		v := tp.activate(t, prefix+"thin", 0, thin.Size(size), true)
		data := sbPattern(size, 7)
		if _, err := sbWriteDirect(v.DevPath(), 0, data, 1<<20); err != nil {
			t.Fatal(err)
		}
		if err := v.Snapshot(ctx, 1); err != nil {
			t.Fatalf("snapshot: %+v", err)
		}
		if err := sbDiscard(v.DevPath(), 10*sbBlock, sbBlock); err != nil {
			t.Fatal(err)
		}
		// The origin lost the block; the snapshot still maps it, so it
		// stays allocated and was not discarded on the data device.
		if got := sbMapped(t, v); got != 63 {
			t.Errorf("origin maps %d blocks, want 63", got)
		}
		if st := tp.status(t); st.UsedData != 64 || st.Discard != thin.DiscardPassdown {
			t.Errorf("used %d blocks, discards %v; want 64, discard_passdown", st.UsedData, st.Discard)
		}
		sbCompareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 63, 1: 64})
		snap := tp.activate(t, prefix+"snap", 1, thin.Size(size), false)
		sbExpect(t, snap.DevPath(), 0, data)
	})

	t.Run("past the end", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := sbPool(t, ctl, prefix, poolOpts{})
		v := tp.activate(t, prefix+"thin", 0, thin.Size(size), true)
		if _, err := sbWriteDirect(v.DevPath(), 0, sbPattern(size, 9), 1<<20); err != nil {
			t.Fatal(err)
		}
		for _, r := range [][2]int64{{size - sbBlock, 2 * sbBlock}, {size, sbBlock}} {
			if err := sbDiscard(v.DevPath(), r[0], r[1]); !errors.Is(err, unix.EINVAL) {
				t.Errorf("discard [%d, +%d) of a %d-byte device: %v, want EINVAL", r[0], r[1], size, err)
			}
		}
		if st := tp.status(t); st.UsedData != 64 {
			t.Errorf("used %d blocks after the failed discards, want 64", st.UsedData)
		}
		sbCompareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 64})
	})

	t.Run("ignore_discard", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := sbPool(t, ctl, prefix, poolOpts{Edit: func(s *thin.PoolSpec) { s.IgnoreDiscard = true }})
		v := tp.activate(t, prefix+"thin", 0, thin.Size(size), true)
		if _, err := sbWriteDirect(v.DevPath(), 0, sbPattern(size, 11), 1<<20); err != nil {
			t.Fatal(err)
		}
		if st := tp.status(t); st.Discard != thin.DiscardIgnore {
			t.Fatalf("discard mode %v, want ignore_discard", st.Discard)
		}
		if err := sbDiscard(v.DevPath(), 0, size); !errors.Is(err, unix.EOPNOTSUPP) {
			t.Errorf("discard with ignore_discard: %v, want EOPNOTSUPP", err)
		}
		if st := tp.status(t); st.UsedData != 64 {
			t.Errorf("used %d blocks, want 64", st.UsedData)
		}
		sbCompareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 64})

		// Discard support cannot be toggled on a live pool: the library
		// refuses before loading anything, and the kernel refuses the
		// table (the old one keeps running).
		spec, err := tp.Pool.Spec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		on := spec
		on.IgnoreDiscard = false
		if err := tp.Reconfigure(ctx, func(s *thin.PoolSpec) { s.IgnoreDiscard = false }); !errors.Is(err, thin.ErrImmutable) {
			t.Errorf("Reconfigure without ignore_discard: %v, want ErrImmutable", err)
		}
		if err := ctl.Load(ctx, dm.Name(tp.Name), on.Table()); !errors.Is(err, unix.EINVAL) {
			t.Errorf("loading a table without ignore_discard: %v, want EINVAL", err)
		}
		info, err := ctl.Info(ctx, dm.Name(tp.Name))
		if err != nil || info.InactivePresent || info.Suspended {
			t.Errorf("pool after the refused load: %+v %+v", info, err)
		}
		if st := tp.status(t); st.Mode != thin.ModeReadWrite || st.Discard != thin.DiscardIgnore {
			t.Errorf("pool after the refused load: %q", st)
		}
	})

	t.Run("enable ignore_discard", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := sbPool(t, ctl, prefix, poolOpts{})
		spec, err := tp.Pool.Spec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		off := spec
		off.IgnoreDiscard = true
		if err := tp.Reconfigure(ctx, func(s *thin.PoolSpec) { s.IgnoreDiscard = true }); !errors.Is(err, thin.ErrImmutable) {
			t.Errorf("Reconfigure with ignore_discard: %v, want ErrImmutable", err)
		}
		if err := ctl.Load(ctx, dm.Name(tp.Name), off.Table()); !errors.Is(err, unix.EINVAL) {
			t.Errorf("loading a table with ignore_discard: %v, want EINVAL", err)
		}
		if st := tp.status(t); st.Mode != thin.ModeReadWrite || st.Discard != thin.DiscardPassdown {
			t.Errorf("pool after the refused load: %q", st)
		}
		if err := tp.CreateThin(ctx, 0); err != nil {
			t.Fatal(err)
		}
		sbCompareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 0})
	})
}

// --- 12. Out of data space, error mode -------------------------------------------

// TestIntegrationOutOfDataSpaceError fills a thin device twice the size of
// its error_if_no_space pool: the writer gets ENOSPC and the pool reports
// out_of_data_space; discarding the thin, or deleting it, returns the pool
// to rw with nothing used.
func TestIntegrationOutOfDataSpaceError(t *testing.T) {
	ctl, prefix := vmSetup(t)
	ctx := context.Background()
	const size = 8 << 20 // 128 blocks on a pool of 64
	tp := sbPool(t, ctl, prefix, poolOpts{DataSize: size / 2, Edit: func(s *thin.PoolSpec) { s.ErrorIfNoSpace = true }})
	v := tp.activate(t, prefix+"thin", 0, thin.Size(size), true)

	fill := func(round int) {
		t.Helper()
		n, err := sbWriteDirect(v.DevPath(), 0, sbPattern(size, byte(round)), sbBlock)
		if !errors.Is(err, unix.ENOSPC) || n != size/2 {
			t.Fatalf("round %d: wrote %d bytes, then %v; want %d, then ENOSPC", round, n, err, size/2)
		}
		st := sbStatus(t, tp.Pool, false)
		if st.Mode != thin.ModeOutOfDataSpace || st.UsedData != 64 || st.TotalData != 64 || st.NoSpace != thin.ErrorIfNoSpace || st.NeedsCheck {
			t.Fatalf("round %d: status %q, want out_of_data_space with 64/64 blocks, error_if_no_space, no needs_check", round, st)
		}
		if got := sbMapped(t, v); got != 64 {
			t.Errorf("round %d: thin maps %d blocks, want 64", round, got)
		}
		// Messages still work out of data space.
		sbCompareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 64})
	}

	// Discarding the whole thin frees its blocks; the next commit sees
	// free space and the pool goes back to rw.
	fill(1)
	if err := sbDiscard(v.DevPath(), 0, size); err != nil {
		t.Fatal(err)
	}
	if st := tp.status(t); st.Mode != thin.ModeReadWrite || st.UsedData != 0 {
		t.Errorf("after the discard: %q, want rw with 0 blocks used", st)
	}

	// So does deleting the thin (its message commits).
	fill(2)
	if err := v.Deactivate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tp.Delete(ctx, 0); err != nil {
		t.Fatalf("delete 0: %+v", err)
	}
	if st := sbStatus(t, tp.Pool, false); st.Mode != thin.ModeReadWrite || st.UsedData != 0 {
		t.Errorf("after delete 0: %q, want rw with 0 blocks used", st)
	}
	sbCompareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{})
}

// --- 13. Out of data space, queue mode -----------------------------------------------

// TestIntegrationOutOfDataSpaceQueue fills a thin device twice the size of
// its queue_if_no_space pool with no_space_timeout=5: the write that finds
// no space blocks until the timeout, then fails; needs_check stays clear.
func TestIntegrationOutOfDataSpaceQueue(t *testing.T) {
	ctl, prefix := vmSetup(t)
	const size = 8 << 20 // 128 blocks on a pool of 64
	const timeout = 5 * time.Second
	tp := sbPool(t, ctl, prefix, poolOpts{DataSize: size / 2})
	sbSetNoSpaceTimeout(t, int(timeout/time.Second))
	v := tp.activate(t, prefix+"thin", 0, thin.Size(size), true)

	w := sbGo("write", func() (int64, error) { return sbWriteDirect(v.DevPath(), 0, sbPattern(size, 1), sbBlock) })
	st := sbWaitStatus(t, tp.Pool, "out_of_data_space", sbOutOfData)
	full := time.Now()
	if st.UsedData != 64 || st.TotalData != 64 || st.NoSpace != thin.QueueIfNoSpace || st.NeedsCheck {
		t.Errorf("out of space: %q, want 64/64 blocks, queue_if_no_space, no needs_check", st)
	}
	w.blocked(t, time.Second)
	n, err := w.wait(t, sbWait)
	held := time.Since(full)
	t.Logf("the write was held %v after the pool ran out of space, then: %v", held.Round(10*time.Millisecond), err)
	if !errors.Is(err, unix.ENOSPC) || n != size/2 {
		t.Errorf("wrote %d bytes, then %v; want %d, then ENOSPC", n, err, size/2)
	}
	if held < timeout/2 || held > timeout+10*time.Second {
		t.Errorf("the write was held %v, want about no_space_timeout (%v)", held, timeout)
	}

	// The timeout switches the pool to failing such writes at once: the
	// status reports error_if_no_space, although the table still asks to
	// queue. The mode stays out_of_data_space and needs_check stays clear.
	st = sbStatus(t, tp.Pool, false)
	if st.Mode != thin.ModeOutOfDataSpace || st.NeedsCheck || st.UsedData != 64 {
		t.Errorf("after the timeout: %q, want out_of_data_space, 64 blocks used, no needs_check", st)
	}
	if st.NoSpace != thin.ErrorIfNoSpace {
		t.Errorf("after the timeout the no-space policy is %v, want error_if_no_space", st.NoSpace)
	}
	if spec, err := tp.Pool.Spec(context.Background()); err != nil || spec.ErrorIfNoSpace {
		t.Errorf("table after the timeout: %+v %v, want queue_if_no_space", spec, err)
	}
	start := time.Now()
	if _, err := sbWriteDirect(v.DevPath(), size/2, sbPattern(sbBlock, 2), sbBlock); !errors.Is(err, unix.ENOSPC) {
		t.Errorf("write after the timeout: %v, want ENOSPC", err)
	}
	if d := time.Since(start); d > timeout/2 {
		t.Errorf("a write after the timeout took %v, want an immediate failure", d)
	}
	sbCompareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 64})
}

// --- 14. Resize while out of space with held I/O -----------------------------------

// TestIntegrationResizeHeldIO runs a queue_if_no_space pool out of space
// under a writer, and grows it while the write is held: with the thin
// paused noflush (dmtest), with LVM's preload ordering (new tables loaded
// first, then resumed), and in 8 steps (dmtest's resize_io). The held write
// completes and the pool is rw.
func TestIntegrationResizeHeldIO(t *testing.T) {
	const size = 8 << 20 // 128 blocks
	ctx := context.Background()

	// start builds a pool of half the thin's size on a linear data device,
	// and a writer of the whole thin held once the pool is out of space.
	start := func(t *testing.T) (*dm.Control, *sbLinear, *sbStack, *thin.Volume, []byte, *sbAsync) {
		ctl, prefix := vmSetup(t)
		meta := newBacking(t, 8<<20)
		data := sbNewLinear(t, ctl, prefix+"data", size/2)
		s := sbNewStack(t, ctl, prefix+"pool", thin.PoolSpec{Metadata: meta.Dev, Data: data.dev, BlockSize: 128}, meta.Loop.Path())
		// Long enough for the resize under TCG; short enough that a
		// failed test does not hold the write for the default minute.
		sbSetNoSpaceTimeout(t, 30)
		v := sbActivate(t, s.pool, prefix+"thin", 0, size, true)
		sbResumeAtCleanup(t, ctl, s.name, v.Name())
		buf := sbPattern(size, 21)
		w := sbGo("write", func() (int64, error) { return sbWriteDirect(v.DevPath(), 0, buf, sbBlock) })
		st := sbWaitStatus(t, s.pool, "out_of_data_space", sbOutOfData)
		if st.UsedData != 64 || st.TotalData != 64 {
			t.Fatalf("out of space: %q, want 64/64 blocks", st)
		}
		w.blocked(t, time.Second)
		return ctl, data, s, v, buf, w
	}
	// finish checks that the held write completed and the pool grew.
	finish := func(t *testing.T, s *sbStack, v *thin.Volume, buf []byte, w *sbAsync) {
		t.Helper()
		if n, err := w.wait(t, sbWait); err != nil || n != size {
			t.Fatalf("held write: %d bytes, %v; want %d, no error", n, err, size)
		}
		st := sbStatus(t, s.pool, true)
		if st.Mode != thin.ModeReadWrite || st.UsedData != 128 || st.TotalData != 256 || st.NeedsCheck {
			t.Errorf("after the resize: %q, want rw with 128/256 blocks", st)
		}
		if got := sbMapped(t, v); got != 128 {
			t.Errorf("thin maps %d blocks, want 128", got)
		}
		sbExpect(t, v.DevPath(), 0, buf)
		sbCompareLs(t, sbLsLive(t, s.pool, s.metaPath), map[thin.DeviceID]uint64{0: 128})
	}

	t.Run("noflush", func(t *testing.T) {
		ctl, data, s, v, buf, w := start(t)
		// Pause the thin with noflush: the held write goes back to dm
		// core instead of being waited for.
		sbWithin(t, "suspend the thin (noflush)", func() error { return ctl.Suspend(ctx, dm.Name(v.Name()), dm.NoFlush) })
		data.grow(t, 2*size)
		if err := ctl.Reload(ctx, data.ref(), data.table()); err != nil {
			t.Fatalf("reload the data device: %+v", err)
		}
		sbWithin(t, "resize the pool", func() error { return s.pool.Resize(ctx, thin.Size(2*size)) })
		w.blocked(t, 100*time.Millisecond) // the thin is still paused
		sbWithin(t, "resume the thin", func() error { _, err := ctl.Resume(ctx, dm.Name(v.Name())); return err })
		finish(t, s, v, buf, w)
	})

	t.Run("preload", func(t *testing.T) {
		ctl, data, s, v, buf, w := start(t)
		// LVM's order: grow the sub-device and resume it at once (libdm
		// resumes a child whose size grew during preload), load the
		// pool's new table while everything runs, then suspend the
		// thin (noflush) and the pool, and resume them the other way.
		data.grow(t, 2*size)
		if err := ctl.Reload(ctx, data.ref(), data.table()); err != nil {
			t.Fatalf("reload the data device: %+v", err)
		}
		spec, err := s.pool.Spec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		spec.Length = thin.Size(2 * size)
		if err := ctl.Load(ctx, dm.Name(s.name), spec.Table()); err != nil {
			t.Fatalf("preload the pool table: %+v", err)
		}
		if st := sbStatus(t, s.pool, false); st.Mode != thin.ModeOutOfDataSpace || st.TotalData != 64 {
			t.Errorf("with the new table loaded but not live: %q, want out_of_data_space, 64 blocks", st)
		}
		w.blocked(t, 100*time.Millisecond)
		sbWithin(t, "suspend the thin (noflush)", func() error { return ctl.Suspend(ctx, dm.Name(v.Name()), dm.NoFlush) })
		sbWithin(t, "suspend the pool", func() error { return ctl.Suspend(ctx, dm.Name(s.name)) })
		sbWithin(t, "resume the pool", func() error { _, err := ctl.Resume(ctx, dm.Name(s.name)); return err })
		sbWithin(t, "resume the thin", func() error { _, err := ctl.Resume(ctx, dm.Name(v.Name())); return err })
		if got, err := s.pool.Spec(ctx); err != nil || got.Length != thin.Size(2*size) {
			t.Errorf("live pool table %+v %v, want length %d", got, err, thin.Size(2*size))
		}
		finish(t, s, v, buf, w)
	})

	t.Run("8 steps", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		const steps = 8
		step := thin.Size(size / steps)
		tp := sbPool(t, ctl, prefix, poolOpts{DataSize: size, Edit: func(s *thin.PoolSpec) { s.Length = step }})
		sbSetNoSpaceTimeout(t, 30)
		v := tp.activate(t, prefix+"thin", 0, thin.Size(size), true)
		sbResumeAtCleanup(t, ctl, tp.Name, v.Name())
		buf := sbPattern(size, 33)
		w := sbGo("write", func() (int64, error) { return sbWriteDirect(v.DevPath(), 0, buf, sbBlock) })
		for i := 2; i <= steps; i++ {
			st := sbWaitStatus(t, tp.Pool, fmt.Sprintf("out_of_data_space at step %d", i), sbOutOfData)
			if want := thin.DataBlocks((i - 1) * size / steps / sbBlock); st.TotalData != want || st.UsedData != want {
				t.Fatalf("step %d: %q, want %d/%d blocks", i, st, want, want)
			}
			err := ctl.WithSuspended(ctx, dm.Name(v.Name()), func() error {
				return tp.Resize(ctx, dm.Sectors(i)*step)
			}, dm.NoFlush)
			if err != nil {
				t.Fatalf("step %d: %+v", i, err)
			}
		}
		if n, err := w.wait(t, sbWait); err != nil || n != size {
			t.Fatalf("write: %d bytes, %v; want %d, no error", n, err, size)
		}
		// A suspend and resume must not flip the pool to read-only.
		sbWithin(t, "pause the pool", func() error {
			return ctl.WithSuspended(ctx, dm.Name(tp.Name), func() error { return nil })
		})
		st := tp.status(t)
		if st.Mode != thin.ModeReadWrite || st.UsedData != 128 || st.TotalData != 128 || st.NeedsCheck {
			t.Errorf("after the last pause: %q, want rw with 128/128 blocks", st)
		}
		sbExpect(t, v.DevPath(), 0, buf)
		sbCompareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 128})
		if err := v.Deactivate(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tp.Delete(ctx, 0); err != nil {
			t.Fatalf("delete 0: %+v", err)
		}
		if st := tp.status(t); st.Mode != thin.ModeReadWrite || st.UsedData != 0 {
			t.Errorf("after delete 0: %q, want rw with nothing used", st)
		}
	})
}

// --- 15. Metadata resize ------------------------------------------------------------

// sbPauseMetaSwap pauses the pool and, inside it, the metadata device while
// the metadata device's table is replaced (dmtest's pool.pause {
// md.pause { md.load } }); the pool's resume then reads the new size.
func sbPauseMetaSwap(t *testing.T, ctl *dm.Control, pool string, meta *sbLinear, table dm.Table) {
	t.Helper()
	ctx := context.Background()
	sbWithin(t, "swap the metadata table under the paused pool", func() error {
		return ctl.WithSuspended(ctx, dm.Name(pool), func() error {
			return ctl.WithSuspended(ctx, meta.ref(), func() error { return ctl.Load(ctx, meta.ref(), table) })
		})
	})
}

// TestIntegrationMetadataResize grows a pool's metadata device in steps,
// under I/O, and checks that deletes after a resize keep the pool rw.
func TestIntegrationMetadataResize(t *testing.T) {
	ctx := context.Background()
	const mib = 1 << 20

	t.Run("steps", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		meta := sbNewLinear(t, ctl, prefix+"meta", mib)
		data := newBacking(t, 100*mib)
		s := sbNewStack(t, ctl, prefix+"pool", thin.PoolSpec{Metadata: meta.dev, Data: data.Dev, BlockSize: 128}, meta.path())
		size := int64(mib)
		for i, step := range []int64{1, 3, 7, 31, 67, 511, 1023} {
			if st := sbStatus(t, s.pool, false); st.TotalMeta != thin.MetaBlocks(size/thin.MetaBlockSize) {
				t.Fatalf("before step %d: %d metadata blocks, want %d", i, st.TotalMeta, size/thin.MetaBlockSize)
			}
			size += step * mib
			meta.grow(t, size)
			want := thin.MetaBlocks(size / thin.MetaBlockSize)
			if i%2 == 0 {
				sbPauseMetaSwap(t, ctl, s.name, meta, meta.table())
			} else {
				// The library's way: grow the device, then GrowMetadata.
				if err := ctl.Reload(ctx, meta.ref(), meta.table()); err != nil {
					t.Fatalf("reload the metadata device: %+v", err)
				}
				got, err := s.pool.GrowMetadata(ctx)
				if err != nil || got != want {
					t.Fatalf("GrowMetadata to %d MiB: %d blocks, %+v; want %d", size/mib, got, err, want)
				}
			}
			st := sbStatus(t, s.pool, true)
			if st.TotalMeta != want || st.Mode != thin.ModeReadWrite || st.NeedsCheck {
				t.Fatalf("after growing the metadata to %d MiB: %q, want %d metadata blocks, rw", size/mib, st, want)
			}
		}
		v := sbActivate(t, s.pool, prefix+"thin", 0, 4*mib, true)
		if _, err := sbWriteDirect(v.DevPath(), 0, sbPattern(mib, 41), mib); err != nil {
			t.Fatal(err)
		}
		sbCompareLs(t, sbLsLive(t, s.pool, s.metaPath), map[thin.DeviceID]uint64{0: 16})
	})

	t.Run("under io", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		meta := sbNewLinear(t, ctl, prefix+"meta", mib)
		data := newBacking(t, 64*mib)
		s := sbNewStack(t, ctl, prefix+"pool", thin.PoolSpec{Metadata: meta.dev, Data: data.Dev, BlockSize: 128}, meta.path())
		before := sbStatus(t, s.pool, false)
		const vol = 32 * mib
		v := sbActivate(t, s.pool, prefix+"thin", 0, vol, true)
		sbResumeAtCleanup(t, ctl, meta.name, s.name, v.Name())
		stop := make(chan struct{})
		w := sbGo("rewrite the thin", func() (int64, error) {
			buf := sbPattern(vol, 43)
			var total int64
			for {
				for off := int64(0); off < vol; off += sbBlock {
					select {
					case <-stop:
						return total, nil
					default:
					}
					n, err := sbWriteDirect(v.DevPath(), off, buf[off:off+sbBlock], sbBlock)
					total += n
					if err != nil {
						return total, err
					}
				}
			}
		})
		defer func() {
			select {
			case <-stop:
			default:
				close(stop)
			}
			w.wait(t, sbWait)
		}()
		sbWaitStatus(t, s.pool, "some blocks written", func(st thin.PoolStatus) bool { return st.UsedData >= 32 })

		meta.grow(t, 2*mib)
		sbWithin(t, "swap the metadata table under the paused thin and pool", func() error {
			return ctl.WithSuspended(ctx, dm.Name(v.Name()), func() error {
				return ctl.WithSuspended(ctx, dm.Name(s.name), func() error {
					return ctl.WithSuspended(ctx, meta.ref(), func() error { return ctl.Load(ctx, meta.ref(), meta.table()) })
				})
			})
		})
		time.Sleep(500 * time.Millisecond) // more writes on the grown metadata
		close(stop)
		n, err := w.wait(t, sbWait)
		if err != nil {
			t.Fatalf("writer: %v after %d bytes", err, n)
		}
		t.Logf("the writer wrote %d MiB", n/mib)
		st := sbStatus(t, s.pool, true)
		if st.TotalMeta != 2*before.TotalMeta || st.Mode != thin.ModeReadWrite || st.NeedsCheck {
			t.Errorf("after the resize: %q, want %d metadata blocks, rw", st, 2*before.TotalMeta)
		}
		mapped := sbMapped(t, v)
		if st.UsedData != mapped {
			t.Errorf("pool uses %d blocks, the thin maps %d", st.UsedData, mapped)
		}
		sbCompareLs(t, sbLsLive(t, s.pool, s.metaPath), map[thin.DeviceID]uint64{0: uint64(mapped)})
	})

	// The "Kabi" bug: after a metadata resize, the first delete failed a
	// commit and flipped the pool to read-only, so the second failed.
	t.Run("delete after resize", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		meta := sbNewLinear(t, ctl, prefix+"meta", 2*mib)
		data := newBacking(t, 100*mib)
		s := sbNewStack(t, ctl, prefix+"pool", thin.PoolSpec{Metadata: meta.dev, Data: data.Dev, BlockSize: 128}, meta.path())
		for _, id := range []thin.DeviceID{0, 1} {
			if err := s.pool.CreateThin(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		sbCompareLs(t, sbLsLive(t, s.pool, s.metaPath), map[thin.DeviceID]uint64{0: 0, 1: 0})
		if st := sbStatus(t, s.pool, false); st.TotalMeta != 512 {
			t.Fatalf("%d metadata blocks, want 512", st.TotalMeta)
		}
		meta.grow(t, 256*mib)
		sbPauseMetaSwap(t, ctl, s.name, meta, meta.table())
		if err := s.pool.Delete(ctx, 0); err != nil {
			t.Fatalf("delete 0: %+v", err)
		}
		if st := sbStatus(t, s.pool, false); st.TotalMeta != 65536 || st.Mode != thin.ModeReadWrite {
			t.Fatalf("after delete 0: %q, want 65536 metadata blocks, rw", st)
		}
		if err := s.pool.Delete(ctx, 1); err != nil {
			t.Fatalf("delete 1: %+v", err)
		}
		if st := sbStatus(t, s.pool, true); st.Mode != thin.ModeReadWrite {
			t.Errorf("after delete 1: %q, want rw", st)
		}
		sbCompareLs(t, sbLsLive(t, s.pool, s.metaPath), map[thin.DeviceID]uint64{})
	})
}

// --- 16. Metadata exhaustion ---------------------------------------------------------

// sbRefused checks that a pool refuses every message: the library refuses
// each before sending it, with kind and EOPNOTSUPP, and the kernel refuses
// each one sent directly with EOPNOTSUPP.
func sbRefused(t *testing.T, ctl *dm.Control, p *thin.Pool, kind error) {
	t.Helper()
	ctx := context.Background()
	lib := map[string]error{
		"CreateThin":          p.CreateThin(ctx, 100),
		"CreateSnapshot":      p.CreateSnapshot(ctx, 101, 0),
		"Delete":              p.Delete(ctx, 0),
		"SetTransactionID":    p.SetTransactionID(ctx, 0, 1),
		"ReserveMetadataSnap": p.ReserveMetadataSnap(ctx),
		"ReleaseMetadataSnap": p.ReleaseMetadataSnap(ctx),
	}
	for op, err := range lib {
		if !errors.Is(err, kind) || !errors.Is(err, unix.EOPNOTSUPP) || !errors.Is(err, dm.ErrNotSupported) {
			t.Errorf("%s: %v; want %v, EOPNOTSUPP", op, err, kind)
		}
	}
	for _, msg := range []string{"create_thin 100", "create_snap 101 0", "delete 0", "set_transaction_id 0 1", "reserve_metadata_snap", "release_metadata_snap"} {
		if _, err := ctl.Message(ctx, dm.Name(p.Name()), 0, msg); !errors.Is(err, unix.EOPNOTSUPP) {
			t.Errorf("kernel answer to %q: %v, want EOPNOTSUPP", msg, err)
		}
	}
}

// TestIntegrationMetadataExhaustion fills a thin device on a pool with tiny
// metadata and error_if_no_space until the metadata runs out, then takes
// the pool through reactivation, thin_check --clear-needs-check-flag and
// metadata growth until the thin is fully provisioned.
//
// Measured on 6.1, the size of the metadata decides how the pool fails:
//
//   - 256 KiB (dmtest's size): an operation runs out of metadata inside a
//     transaction, which aborts; needs_check is set, so the pool stays ro
//     after reactivation until thin_check --clear-needs-check-flag.
//   - 512 KiB: the commit that finds only the kernel's metadata reserve
//     left (a tenth of the device) switches the pool to its
//     out-of-metadata-space mode (status "ro") before anything fails, so
//     needs_check stays clear; a reactivated pool is rw until its first
//     commit finds the reserve again.
//
// Either way, writes that need a block fail with EIO, and the data block
// allocated for the write that tripped the failure stays allocated without
// a mapping, in the committed metadata too (used = mapped + 1, which
// thin_check does not flag). After an abort, the thin's status keeps
// counting the mappings of the aborted transaction.
func TestIntegrationMetadataExhaustion(t *testing.T) {
	t.Run("256KiB", func(t *testing.T) { sbExhaustMetadata(t, 256<<10, true) })
	t.Run("512KiB", func(t *testing.T) { sbExhaustMetadata(t, 512<<10, false) })
}

func sbExhaustMetadata(t *testing.T, metaSize int64, aborts bool) {
	ctl, prefix := vmSetup(t)
	ctx := context.Background()
	size := metaSize << 12 // 4 MiB of thin per KiB of metadata: more mappings than it holds
	const spare = 1 << 20
	meta := sbNewLinear(t, ctl, prefix+"meta", metaSize)
	// A zero target: as large as needed at no memory cost, with room for
	// the block that the exhaustion leaks.
	data := sbNewZero(t, ctl, prefix+"zero", size+spare)
	s := sbNewStack(t, ctl, prefix+"pool", thin.PoolSpec{Metadata: meta.dev, Data: data, BlockSize: 128, ErrorIfNoSpace: true}, meta.path())
	v := sbActivate(t, s.pool, prefix+"thin", 0, size, true)
	const chunk = 1 << 20
	buf := sbPattern(chunk, 51)

	// writeFrom writes the thin from off to its end, 1 MiB at a time, and
	// returns where it stopped and why.
	writeFrom := func(off int64) (int64, error) {
		for off < size {
			n, err := sbWriteDirect(v.DevPath(), off, buf, len(buf))
			off += n
			if err != nil {
				return off, err
			}
		}
		return off, nil
	}
	start := time.Now()
	off, err := writeFrom(0)
	t.Logf("writes failed at %d MiB after %v: %v", off>>20, time.Since(start).Round(time.Millisecond), err)
	if !errors.Is(err, unix.EIO) {
		t.Fatalf("filling the thin with %d KiB of metadata: stopped at %d MiB with %v, want EIO", metaSize>>10, off>>20, err)
	}
	st := sbStatus(t, s.pool, false)
	mapped := sbMapped(t, v)
	t.Logf("status after the failure: %q; the thin maps %d blocks", st, mapped)
	if st.Mode != thin.ModeReadOnly || st.NeedsCheck != aborts {
		t.Fatalf("after running out of metadata: %q, want ro, needs_check %v", st, aborts)
	}
	used := st.UsedData
	if aborts {
		if _, err := s.pool.GrowMetadata(ctx); !errors.Is(err, thin.ErrNeedsCheck) {
			t.Errorf("GrowMetadata with needs_check: %v, want ErrNeedsCheck", err)
		}
		sbRefused(t, ctl, s.pool, thin.ErrNeedsCheck)
	} else {
		sbRefused(t, ctl, s.pool, thin.ErrPoolReadOnly)
	}

	// Offline, the metadata holds the last commit: needs_check if the
	// transaction aborted, and the mappings the pool had.
	s.down(t)
	flags, devs := sbDump(t, s.metaPath)
	const needsCheckFlag = 1 // THIN_METADATA_NEEDS_CHECK_FLAG
	if (flags&needsCheckFlag != 0) != aborts {
		t.Errorf("superblock flags %#x, want needs_check %v", flags, aborts)
	}
	committed := thin.DataBlocks(devs[0].Mapped)
	if !aborts && committed != mapped {
		t.Errorf("thin_dump: thin 0 maps %d blocks, its status said %d", committed, mapped)
	}
	// An aborted transaction can leave data blocks allocated in the
	// committed space map but mapped by no thin (one in most runs, 16 in
	// one of ours under TCG); thin_check does not flag them. What must
	// hold is that nothing maps more than the pool counts as used, and
	// that the leak stays a sliver of the pool.
	leaked := used - committed
	t.Logf("thin_dump: thin 0 maps %d blocks of the %d used (%d allocated, unmapped)", committed, used, leaked)
	if used < committed || leaked > used/100 {
		t.Errorf("thin_dump: thin 0 maps %d blocks, the pool uses %d", committed, used)
	}

	// Reactivated, the pool is read-only at once with needs_check, and
	// at its first commit otherwise.
	s.up(t)
	if st := sbStatus(t, s.pool, false); st.NeedsCheck != aborts || (st.Mode == thin.ModeReadOnly) != aborts {
		t.Errorf("reactivated: %q, want needs_check %v", st, aborts)
	}
	if st := sbStatus(t, s.pool, true); st.Mode != thin.ModeReadOnly || st.UsedData != used {
		t.Errorf("reactivated, after a commit: %q, want ro with %d blocks used", st, used)
	}
	s.down(t)
	sbThinCheck(t, s.metaPath, "--clear-needs-check-flag")
	if flags, _ := sbDump(t, s.metaPath); flags != 0 {
		t.Errorf("superblock flags %#x after thin_check --clear-needs-check-flag", flags)
	}
	s.up(t)
	if st := sbStatus(t, s.pool, false); st.Mode != thin.ModeReadWrite || st.NeedsCheck {
		t.Errorf("reactivated after thin_check: %q, want rw", st)
	}
	// At its first commit, a pool left with nothing but the reserve goes
	// read-only again; the aborted transaction left a few blocks free.
	if st := sbStatus(t, s.pool, true); (st.Mode == thin.ModeReadOnly) == aborts || st.NeedsCheck {
		t.Errorf("reactivated after thin_check, after a commit: %q, want ro %v", st, !aborts)
	}

	// Grow the metadata (from ro, when the pool is): the pool is rw for
	// good, and the thin can be provisioned to its end.
	meta.grow(t, 4*metaSize)
	if err := ctl.Reload(ctx, meta.ref(), meta.table()); err != nil {
		t.Fatalf("reload the metadata device: %+v", err)
	}
	total, err := s.pool.GrowMetadata(ctx)
	if want := thin.MetaBlocks(4 * metaSize / thin.MetaBlockSize); err != nil || total != want {
		t.Fatalf("GrowMetadata: %d blocks, %+v; want %d", total, err, want)
	}
	if st := sbStatus(t, s.pool, true); st.Mode != thin.ModeReadWrite || st.NeedsCheck {
		t.Fatalf("after growing the metadata: %q, want rw", st)
	}
	v = sbActivate(t, s.pool, prefix+"thin", 0, size, false)
	from := max(0, off-chunk) / chunk * chunk
	if off, err := writeFrom(from); err != nil {
		t.Fatalf("provisioning the thin after the growth failed at %d MiB: %v", off>>20, err)
	}
	blocks := thin.DataBlocks(size / sbBlock)
	if got := sbMapped(t, v); got != blocks {
		t.Errorf("thin maps %d blocks, want all %d", got, blocks)
	}
	if st := sbStatus(t, s.pool, true); st.Mode != thin.ModeReadWrite || st.UsedData != blocks+leaked {
		t.Errorf("fully provisioned: %q, want rw with %d blocks used", st, blocks+leaked)
	}
	sbCompareLs(t, sbLsLive(t, s.pool, s.metaPath), map[thin.DeviceID]uint64{0: uint64(blocks)})
}

// --- 17. Metadata commit failure ---------------------------------------------------------

// TestIntegrationMetadataCommitFailure swaps the metadata linear device of
// a working pool for a failing one under the paused thin, pool and
// metadata device, provisions new blocks so that the next commit fails,
// and checks the pool's state, its refusals, and that after restoring the
// device and checking the metadata the pool comes back rw with exactly the
// last commit.
//
// Three failing devices, measured on 6.1:
//
//   - dmtest's linear(8 sectors) + flakey(rest, up 0, down 60), which keeps
//     the superblock working: flakey fails reads as well as writes, so
//     the abort that follows the failed commit cannot reread the metadata
//     and the pool goes to Fail, without needs_check;
//   - the same with flakey's error_writes, which fails only writes: the
//     abort succeeds, needs_check is set and the pool is ro;
//   - a total error target: Fail.
func TestIntegrationMetadataCommitFailure(t *testing.T) {
	flakey := func(features string) func(l *sbLinear) dm.Table {
		return func(l *sbLinear) dm.Table {
			n := dm.Sectors(l.size / dm.SectorSize)
			return dm.Table{
				{Start: 0, Length: 8, Type: "linear", Params: l.b.Dev.String() + " 0"},
				{Start: 8, Length: n - 8, Type: "flakey", Params: l.b.Dev.String() + " 8 0 60" + features},
			}
		}
	}
	cases := []struct {
		name       string
		bad        func(l *sbLinear) dm.Table
		mode       thin.PoolMode
		needsCheck bool
	}{
		{"flakey", flakey(""), thin.ModeFail, false},
		{"flakey error_writes", flakey(" 1 error_writes"), thin.ModeReadOnly, true},
		{"error", func(l *sbLinear) dm.Table {
			return dm.Table{{Start: 0, Length: dm.Sectors(l.size / dm.SectorSize), Type: "error"}}
		}, thin.ModeFail, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { sbCommitFailure(t, c.bad, c.mode, c.needsCheck) })
	}
}

func sbCommitFailure(t *testing.T, bad func(*sbLinear) dm.Table, mode thin.PoolMode, needsCheck bool) {
	ctl, prefix := vmSetup(t)
	ctx := context.Background()
	for _, target := range []string{"flakey", "error"} {
		sbNeedTarget(t, ctl, target)
	}
	const mib = 1 << 20
	const size = 8 * mib
	const tid = 7
	meta := sbNewLinear(t, ctl, prefix+"meta", 8*mib)
	data := newBacking(t, 64*mib)
	s := sbNewStack(t, ctl, prefix+"pool", thin.PoolSpec{Metadata: meta.dev, Data: data.Dev, BlockSize: 128}, meta.path())
	v := sbActivate(t, s.pool, prefix+"thin", 0, size, true)
	// Resume everything and put the metadata table back, whatever
	// happens: these run before the pool's teardown.
	sbResumeAtCleanup(t, ctl, meta.name, s.name, v.Name())
	t.Cleanup(func() {
		if table, err := ctl.Table(ctx, meta.ref()); err == nil && (len(table) != 1 || table[0].Type != "linear") {
			sbWithin(t, "restore the metadata table", func() error {
				return ctl.WithSuspended(ctx, meta.ref(), func() error { return ctl.Load(ctx, meta.ref(), meta.table()) })
			})
		}
	})

	// The last commit: blocks 0-15 written, transaction id 7.
	before := sbPattern(mib, 61)
	if _, err := sbWriteDirect(v.DevPath(), 0, before, mib); err != nil {
		t.Fatal(err)
	}
	if err := s.pool.SetTransactionID(ctx, 0, tid); err != nil {
		t.Fatal(err)
	}
	sbCompareLs(t, sbLsLive(t, s.pool, s.metaPath), map[thin.DeviceID]uint64{0: 16})

	sbWithin(t, "swap in the failing metadata table", func() error {
		return ctl.WithSuspended(ctx, dm.Name(v.Name()), func() error {
			return ctl.WithSuspended(ctx, dm.Name(s.name), func() error {
				return ctl.WithSuspended(ctx, meta.ref(), func() error { return ctl.Load(ctx, meta.ref(), bad(meta)) })
			})
		})
	})

	// Provision blocks 32-47 and flush: the commit fails.
	n, werr := sbWriteDirect(v.DevPath(), 2*mib, sbPattern(mib, 62), mib)
	serr := sbSync(v.DevPath())
	t.Logf("after the swap: write %d bytes, %v; fsync %v", n, werr, serr)
	st := sbWaitStatus(t, s.pool, "ro or Fail", func(st thin.PoolStatus) bool {
		return st.Mode == thin.ModeReadOnly || st.Mode == thin.ModeFail
	})
	if vs, err := v.Status(ctx); err == nil {
		t.Logf("status: pool %q, thin %q", st, vs)
	}
	if st.Mode != mode || st.NeedsCheck != needsCheck {
		t.Fatalf("after the failed commit: %q, want %v, needs_check %v", st, mode, needsCheck)
	}
	switch {
	case mode == thin.ModeFail:
		sbRefused(t, ctl, s.pool, thin.ErrPoolFailed)
		if _, err := s.pool.Activate(ctx, prefix+"again", 0, thin.Size(size)); !errors.Is(err, thin.ErrPoolFailed) || !errors.Is(err, unix.EINVAL) {
			t.Errorf("activating a thin on the failed pool: %v, want ErrPoolFailed, EINVAL", err)
		}
	case needsCheck:
		sbRefused(t, ctl, s.pool, thin.ErrNeedsCheck)
		sbRefused(t, ctl, s.pool, thin.ErrPoolReadOnly)
	default:
		sbRefused(t, ctl, s.pool, thin.ErrPoolReadOnly)
	}

	// Restore the metadata device, deactivate, check and clear
	// needs_check offline.
	sbWithin(t, "restore the metadata table", func() error {
		return ctl.WithSuspended(ctx, meta.ref(), func() error { return ctl.Load(ctx, meta.ref(), meta.table()) })
	})
	s.down(t)
	const needsCheckFlag = 1 // THIN_METADATA_NEEDS_CHECK_FLAG
	if flags, _ := sbDump(t, s.metaPath); (flags&needsCheckFlag != 0) != needsCheck {
		t.Errorf("superblock flags %#x, want needs_check %v", flags, needsCheck)
	}
	sbThinCheck(t, s.metaPath, "--clear-needs-check-flag")
	if flags, _ := sbDump(t, s.metaPath); flags != 0 {
		t.Errorf("superblock flags %#x after thin_check --clear-needs-check-flag", flags)
	}

	// The metadata is the last commit: blocks 0-15 only, transaction 7.
	_, devs := sbDump(t, s.metaPath)
	got := devs[0].blocks()
	if len(devs) != 1 || len(got) != 16 || devs[0].Mapped != 16 {
		t.Errorf("thin_dump after the failure: %+v, want thin 0 mapping blocks 0-15", devs)
	}
	for b := uint64(0); b < 16; b++ {
		if !got[b] {
			t.Errorf("thin_dump: block %d is not mapped", b)
		}
	}
	s.up(t)
	st = sbStatus(t, s.pool, false)
	if st.Mode != thin.ModeReadWrite || st.NeedsCheck || st.TransactionID != tid || st.UsedData != 16 {
		t.Errorf("back up: %q, want rw, transaction %d, 16 blocks used", st, tid)
	}
	v = sbActivate(t, s.pool, prefix+"thin", 0, size, false)
	sbExpect(t, v.DevPath(), 0, before)
	sbExpect(t, v.DevPath(), 2*mib, sbAligned(mib)) // the lost writes
	if got := sbMapped(t, v); got != 16 {
		t.Errorf("thin maps %d blocks, want 16", got)
	}
	// And it works again.
	if err := s.pool.CreateThin(ctx, 1); err != nil {
		t.Errorf("create_thin after the repair: %+v", err)
	}
	sbCompareLs(t, sbLsLive(t, s.pool, s.metaPath), map[thin.DeviceID]uint64{0: 16, 1: 0})
}

// --- 18. Suspend/resume ordering ---------------------------------------------------------

// TestIntegrationSuspendOrdering suspends pools with and without thins, and
// checks the orderings that block: I/O to a thin resumed while its pool is
// suspended, a thin's suspend or resume while its pool is suspended (the
// thin is internally suspended by the pool, and the kernel waits for the
// pool's resume), and a delete of a thin that is noflush-suspended during
// discards (bz1195506).
func TestIntegrationSuspendOrdering(t *testing.T) {
	ctx := context.Background()
	const size = 4 << 20
	// setup makes a pool with thins 0 and 1 active, and resumes all three
	// at cleanup, pool first.
	setup := func(t *testing.T) (*dm.Control, *testPool, *thin.Volume, *thin.Volume) {
		ctl, prefix := vmSetup(t)
		tp := sbPool(t, ctl, prefix, poolOpts{})
		a := tp.activate(t, prefix+"thin0", 0, thin.Size(size), true)
		b := tp.activate(t, prefix+"thin1", 1, thin.Size(size), true)
		sbResumeAtCleanup(t, ctl, tp.Name, a.Name(), b.Name())
		return ctl, tp, a, b
	}
	pause := func(t *testing.T, ctl *dm.Control, name string) {
		t.Helper()
		sbWithin(t, "pause "+name, func() error {
			return ctl.WithSuspended(ctx, dm.Name(name), func() error { return nil })
		})
	}
	suspend := func(ctl *dm.Control, name string, flags ...dm.Flag) func() (int64, error) {
		return func() (int64, error) {
			return 0, sbRetryEINTR(func() error { return ctl.Suspend(ctx, dm.Name(name), flags...) })
		}
	}
	resume := func(ctl *dm.Control, name string) func() (int64, error) {
		return func() (int64, error) {
			return 0, sbRetryEINTR(func() error { _, err := ctl.Resume(ctx, dm.Name(name)); return err })
		}
	}
	// isWorking writes and reads back one block of v.
	isWorking := func(t *testing.T, v *thin.Volume, seed byte) {
		t.Helper()
		b := sbPattern(sbBlock, seed)
		if _, err := sbWriteDirect(v.DevPath(), 0, b, sbBlock); err != nil {
			t.Fatal(err)
		}
		sbExpect(t, v.DevPath(), 0, b)
	}

	t.Run("pool", func(t *testing.T) {
		ctl, prefix := vmSetup(t)
		tp := sbPool(t, ctl, prefix, poolOpts{})
		sbResumeAtCleanup(t, ctl, tp.Name)
		pause(t, ctl, tp.Name) // no thins
		for _, id := range []thin.DeviceID{0, 1} {
			if err := tp.CreateThin(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		pause(t, ctl, tp.Name) // inactive thins
		a := tp.activate(t, prefix+"thin0", 0, thin.Size(size), false)
		b := tp.activate(t, prefix+"thin1", 1, thin.Size(size), false)
		sbResumeAtCleanup(t, ctl, a.Name(), b.Name())
		pause(t, ctl, tp.Name) // active idle thins
		// A pool paused under a suspended thin; I/O to the thin waits
		// for the thin.
		sbWithin(t, "suspend thin0", func() error { return ctl.Suspend(ctx, dm.Name(a.Name())) })
		pause(t, ctl, tp.Name)
		w := sbGo("write to the suspended thin", func() (int64, error) {
			return sbWriteDirect(a.DevPath(), 0, sbPattern(sbBlock, 70), sbBlock)
		})
		w.blocked(t, sbSettle)
		sbWithin(t, "resume thin0", func() error { _, err := ctl.Resume(ctx, dm.Name(a.Name())); return err })
		if _, err := w.wait(t, sbWait); err != nil {
			t.Fatal(err)
		}
		isWorking(t, b, 71)
		if st := tp.status(t); st.Mode != thin.ModeReadWrite || st.UsedData != 2 {
			t.Errorf("after the pauses: %q, want rw with 2 blocks used", st)
		}
		sbCompareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 1, 1: 1})
	})

	t.Run("io to a thin resumed under a suspended pool", func(t *testing.T) {
		ctl, tp, a, _ := setup(t)
		sbWithin(t, "suspend the pool", func() error { return ctl.Suspend(ctx, dm.Name(tp.Name)) })
		// The thin was not suspended, so its resume does nothing; but
		// the pool's suspend suspended it internally.
		sbWithin(t, "resume thin0", func() error { _, err := ctl.Resume(ctx, dm.Name(a.Name())); return err })
		w := sbGo("write to thin0", func() (int64, error) {
			return sbWriteDirect(a.DevPath(), 0, sbPattern(sbBlock, 72), sbBlock)
		})
		w.blocked(t, sbSettle)
		sbWithin(t, "resume the pool", func() error { _, err := ctl.Resume(ctx, dm.Name(tp.Name)); return err })
		if _, err := w.wait(t, sbWait); err != nil {
			t.Fatalf("the held write: %v", err)
		}
		sbExpect(t, a.DevPath(), 0, sbPattern(sbBlock, 72))
		sbCompareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 1, 1: 0})
	})

	t.Run("suspend a thin under a suspended pool", func(t *testing.T) {
		ctl, tp, a, _ := setup(t)
		sbWithin(t, "suspend the pool", func() error { return ctl.Suspend(ctx, dm.Name(tp.Name)) })
		s := sbGo("suspend thin0", suspend(ctl, a.Name()))
		s.blocked(t, sbSettle)
		sbWithin(t, "resume the pool", func() error { _, err := ctl.Resume(ctx, dm.Name(tp.Name)); return err })
		if _, err := s.wait(t, sbWait); err != nil {
			t.Fatalf("suspend thin0 after the pool's resume: %+v", err)
		}
		if info, err := ctl.Info(ctx, dm.Name(a.Name())); err != nil || !info.Suspended {
			t.Errorf("thin0 after its suspend: %+v %v", info, err)
		}
		sbWithin(t, "resume thin0", func() error { _, err := ctl.Resume(ctx, dm.Name(a.Name())); return err })
		isWorking(t, a, 73)
		// And the nested case: thin suspended, then the pool; the thin's
		// resume waits for the pool's.
		sbWithin(t, "suspend thin0", func() error { return ctl.Suspend(ctx, dm.Name(a.Name())) })
		sbWithin(t, "suspend the pool", func() error { return ctl.Suspend(ctx, dm.Name(tp.Name)) })
		r := sbGo("resume thin0", resume(ctl, a.Name()))
		r.blocked(t, sbSettle)
		sbWithin(t, "resume the pool", func() error { _, err := ctl.Resume(ctx, dm.Name(tp.Name)); return err })
		if _, err := r.wait(t, sbWait); err != nil {
			t.Fatalf("resume thin0 after the pool's resume: %+v", err)
		}
		isWorking(t, a, 74)
		sbCompareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 1, 1: 0})
	})

	t.Run("duplicate inactive table", func(t *testing.T) {
		ctl, tp, a, _ := setup(t)
		table, err := ctl.Table(ctx, dm.Name(a.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := ctl.Load(ctx, dm.Name(a.Name()), table); err != nil {
			t.Fatalf("load thin0's table into its inactive slot: %+v", err)
		}
		// The inactive table's thin is on the pool's list of active
		// thins too: pausing the pool must not deadlock.
		pause(t, ctl, tp.Name)
		// Swapping it in while the pool is suspended waits for the pool.
		sbWithin(t, "suspend the pool", func() error { return ctl.Suspend(ctx, dm.Name(tp.Name)) })
		r := sbGo("resume thin0 with its new table", resume(ctl, a.Name()))
		r.blocked(t, sbSettle)
		sbWithin(t, "resume the pool", func() error { _, err := ctl.Resume(ctx, dm.Name(tp.Name)); return err })
		if _, err := r.wait(t, sbWait); err != nil {
			t.Fatalf("resume thin0 after the pool's resume: %+v", err)
		}
		info, err := ctl.Info(ctx, dm.Name(a.Name()))
		if err != nil || info.Suspended || info.InactivePresent {
			t.Errorf("thin0 after the swap: %+v %v, want live, no inactive table", info, err)
		}
		isWorking(t, a, 75)
		sbCompareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{0: 1, 1: 0})
	})

	t.Run("bz1195506", func(t *testing.T) {
		ctl, tp, a, _ := setup(t)
		if _, err := sbWriteDirect(a.DevPath(), 0, sbPattern(size, 76), 1<<20); err != nil {
			t.Fatal(err)
		}
		// Rewrite and discard thin0's blocks in a loop.
		stop := make(chan struct{})
		var stopped bool
		halt := func() {
			if !stopped {
				stopped = true
				close(stop)
			}
		}
		var done atomic.Int64 // discards completed
		d := sbGo("discards", func() (int64, error) {
			b := sbPattern(sbBlock, 77)
			for n := int64(0); ; n++ {
				select {
				case <-stop:
					return n, nil
				default:
				}
				off := n % (size / sbBlock) * sbBlock
				if _, err := sbWriteDirect(a.DevPath(), off, b, sbBlock); err != nil {
					return n, err
				}
				if err := sbDiscard(a.DevPath(), off, sbBlock); err != nil {
					return n, err
				}
				done.Add(1)
			}
		})
		t.Cleanup(func() { halt(); d.wait(t, sbWait) })
		for done.Load() < 10 {
			d.blocked(t, 10*time.Millisecond)
		}
		sbWithin(t, "suspend thin0 (noflush)", func() error { return ctl.Suspend(ctx, dm.Name(a.Name()), dm.NoFlush) })
		held := done.Load()
		for i := 0; i < 10; i++ {
			if err := tp.Delete(ctx, 0); !errors.Is(err, thin.ErrInUse) || !errors.Is(err, unix.EBUSY) {
				t.Fatalf("delete %d of the suspended thin: %v, want ErrInUse, EBUSY", i, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// The discard loop's I/O was held all along.
		if n := done.Load(); n > held+1 {
			t.Errorf("%d discards completed while thin0 was suspended", n-held)
		}
		sbWithin(t, "resume thin0", func() error { _, err := ctl.Resume(ctx, dm.Name(a.Name())); return err })
		halt()
		n, err := d.wait(t, sbWait)
		if err != nil {
			t.Fatalf("discards: %v", err)
		}
		t.Logf("%d rewrites and discards", n)
		if st := tp.status(t); st.Mode != thin.ModeReadWrite || st.UsedData != thin.DataBlocks(sbMapped(t, a)) {
			t.Errorf("pool %q, want rw with thin0's blocks used", st)
		}
		if err := a.Deactivate(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tp.Delete(ctx, 0); err != nil {
			t.Fatalf("delete 0 once deactivated: %+v", err)
		}
		if st := tp.status(t); st.Mode != thin.ModeReadWrite || st.UsedData != 0 {
			t.Errorf("after delete 0: %q, want rw with nothing used", st)
		}
		sbCompareLs(t, tp.thinLsLive(t), map[thin.DeviceID]uint64{1: 0})
	})
}
