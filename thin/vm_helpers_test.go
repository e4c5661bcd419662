package thin_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/ioctl"
	"github.com/thinp/thinp/loop"
	"github.com/thinp/thinp/thin"
	"github.com/thinp/thinp/thin/thintest"
	"golang.org/x/sys/unix"
)

// Shared helpers of the privileged thin scenarios, which run
// in the VM tier. Every helper registers its own cleanup, so a scenario that
// fails half way still leaves nothing behind, and every pool teardown is
// followed by thin_check on its metadata.

// vmSetup checks privileges, registers the leak check and opens a Control
// that is closed, after everything made with it is removed, at cleanup.
func vmSetup(t *testing.T, opts ...dm.Option) (*dm.Control, string) {
	t.Helper()
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	// Under TCG udevd can take tens of seconds for a pool's events when
	// it is busy; a longer udev deadline keeps that from failing tests
	// (callers may still pass their own).
	opts = append([]dm.Option{dm.WithUdevTimeout(2 * time.Minute)}, opts...)
	ctl, err := dm.Open(opts...)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	t.Cleanup(func() {
		// Last resort: remove whatever is left with our prefix, thins
		// before pools (names sort so; retry a few passes for stacking).
		ctx := context.Background()
		for pass := 0; pass < 3; pass++ {
			devs, _ := ctl.List(ctx, dm.WithNamePrefix(prefix))
			if len(devs) == 0 {
				break
			}
			for i := len(devs) - 1; i >= 0; i-- {
				ctl.Remove(ctx, dm.Name(devs[i].Name), dm.NoRetry)
			}
		}
		ctl.Close()
	})
	return ctl, prefix
}

// backing is a loop device over a sparse file in the test's temp dir.
type backing struct {
	Path string // the backing file
	Loop *loop.Device
	Dev  dm.Dev
}

// newBacking attaches a sparse file of size bytes; detached at cleanup.
func newBacking(t *testing.T, size int64) *backing {
	t.Helper()
	path := testenv.SparseFile(t, size)
	d, err := loop.Attach(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Detach(context.Background())
		d.Close()
	})
	return &backing{Path: path, Loop: d, Dev: d.Dev()}
}

// poolOpts describes a test pool; zero values give dmtest's defaults:
// 64 MiB of data, 8 MiB of metadata, 128-sector blocks, low water mark 0.
type poolOpts struct {
	DataSize  int64
	MetaSize  int64
	BlockSize dm.Sectors
	// Edit adjusts the spec before the pool is created (features, low
	// water mark, a shorter Length).
	Edit func(*thin.PoolSpec)
}

// testPool is a pool on two loop devices.
type testPool struct {
	*thin.Pool
	Ctl  *dm.Control
	Name string
	Meta *backing
	Data *backing
	Spec thin.PoolSpec
}

// newPool formats fresh metadata and creates a pool named prefix+"pool",
// with package thintest: at cleanup it tears the pool down (thins first)
// and runs thin_check on the metadata device, failing the test if either
// fails, and then logs "thin_check passed", which a VM run's output lets
// one count.
func newPool(t *testing.T, ctl *dm.Control, prefix string, o poolOpts) *testPool {
	t.Helper()
	var failedBefore bool
	// Registered before thintest's cleanups, so it runs after them.
	t.Cleanup(func() {
		switch {
		case failedBefore:
			t.Logf("thin_check: not counted (the test had failed before teardown)")
		case t.Failed(): // teardown or thin_check failed, and said so
		default:
			t.Logf("thin_check passed")
		}
	})
	p := thintest.NewPool(t, ctl, &thintest.Options{
		Name: prefix + "pool", DataSize: o.DataSize, MetaSize: o.MetaSize, BlockSize: o.BlockSize, Edit: o.Edit,
	})
	t.Cleanup(func() { failedBefore = t.Failed() })
	return &testPool{
		Pool: p.Pool, Ctl: ctl, Name: p.Name(), Spec: p.Spec,
		Meta: &backing{Path: p.MetaFile, Loop: p.Meta, Dev: p.Meta.Dev()},
		Data: &backing{Path: p.DataFile, Loop: p.Data, Dev: p.Data.Dev()},
	}
}

// activate creates (if create) and activates thin id as prefix+name.
func (tp *testPool) activate(t *testing.T, name string, id thin.DeviceID, size dm.Sectors, create bool) *thin.Volume {
	t.Helper()
	ctx := context.Background()
	if create {
		if err := tp.CreateThin(ctx, id); err != nil {
			t.Fatalf("create_thin %d: %+v", id, err)
		}
	}
	v, err := tp.Activate(ctx, name, id, size)
	if err != nil {
		t.Fatalf("activate %d: %+v", id, err)
	}
	t.Cleanup(func() { v.Deactivate(context.Background()) })
	return v
}

// writeVolume writes n bytes of pattern b at byte offset off and syncs.
func writeVolume(t *testing.T, v *thin.Volume, off int64, n int, b byte) {
	t.Helper()
	f, err := os.OpenFile(v.DevPath(), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte{b}, n), off); err != nil {
		t.Fatalf("write %s at %d: %v", v.Name(), off, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("sync %s: %v", v.Name(), err)
	}
}

// readVolume reads n bytes at off.
func readVolume(t *testing.T, v *thin.Volume, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(v.DevPath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatalf("read %s at %d: %v", v.Name(), off, err)
	}
	return buf
}

// status reads the pool status, committing metadata first so that used
// block counts are current.
func (tp *testPool) status(t *testing.T) thin.PoolStatus {
	t.Helper()
	st, err := tp.Status(context.Background(), thin.CommitMetadata())
	if err != nil {
		t.Fatalf("pool status: %+v", err)
	}
	return st
}

// thinTool runs a thin-provisioning-tools program (a cross-check, never the
// library's own path) and returns its standard output.
func thinTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(testenv.Tool(t, name), args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// thinLsLive lists the pool's devices from a metadata snapshot of the live
// pool (thin_ls -m): device id to mapped blocks. It reserves and releases
// the metadata snapshot itself.
func (tp *testPool) thinLsLive(t *testing.T) map[thin.DeviceID]uint64 {
	t.Helper()
	return lsLive(t, tp.Pool, tp.Meta.Loop.Path())
}

// The privileged scenarios' shared helpers follow: every helper registers
// its own cleanup, and every wait for the kernel is bounded.

// massSize is the size of the mass scenarios (1, 2, 7): message-only, fast
// enough under TCG at full size.
const massSize = 1000

// scenarioScale returns how many iterations to run of a scenario whose
// full size is full and whose default (reduced) size is def, from
// THINP_SCENARIO_SCALE: unset, the reduced default; "full" or "1", the
// full size; a number f in (0, 1], that fraction of the full size. It does
// not depend on testing.Short. (The scenarios too slow under TCG at full
// size use it.)
func scenarioScale(t *testing.T, full, def int) int {
	t.Helper()
	v := os.Getenv("THINP_SCENARIO_SCALE")
	n := def
	switch {
	case v == "":
	case v == "full":
		n = full
	default:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f <= 1) {
			t.Fatalf("THINP_SCENARIO_SCALE=%q: want full or a number in (0, 1]", v)
		}
		n = max(1, int(math.Round(float64(full)*f)))
	}
	return n
}

// kernelRefused asserts that err is the kernel's errno for ioctl cmd, and that
// it matches every target as well.
func kernelRefused(t *testing.T, what string, err error, cmd ioctl.Cmd, errno unix.Errno, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %v from %v", what, errno, cmd)
	}
	var de *dm.Error
	switch {
	case !errors.As(err, &de):
		t.Errorf("%s: %v is not a *dm.Error", what, err)
	case !de.Sent:
		t.Errorf("%s: %v did not come from the kernel", what, err)
	case de.Cmd != cmd || de.Errno() != errno:
		t.Errorf("%s: %v: the kernel said %v to %v, want %v to %v", what, err, de.Errno(), de.Cmd, errno, cmd)
	}
	for _, tg := range append([]error{errno}, targets...) {
		if !errors.Is(err, tg) {
			t.Errorf("%s: %v does not match %v", what, err, tg)
		}
	}
	t.Logf("%s: %v", what, err)
}

// refusedFirst asserts that err is a refusal made before anything was sent,
// matching every target.
func refusedFirst(t *testing.T, what string, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want a refusal matching %v", what, targets)
	}
	var te *thin.Error
	if !errors.As(err, &te) {
		t.Errorf("%s: %v is not a *thin.Error", what, err)
	}
	var de *dm.Error
	if errors.As(err, &de) && de.Sent {
		t.Errorf("%s: %v came from the kernel (%v), want a refusal before it", what, err, de.Cmd)
	}
	for _, tg := range targets {
		if !errors.Is(err, tg) {
			t.Errorf("%s: %v does not match %v", what, err, tg)
		}
	}
	t.Logf("%s: %v", what, err)
}

// assertGone asserts that no dm device name exists.
func assertGone(t *testing.T, ctl *dm.Control, name string) {
	t.Helper()
	if info, err := ctl.Info(context.Background(), dm.Name(name)); !errors.Is(err, dm.ErrNotFound) {
		t.Errorf("device %s: %+v, %v; want it gone", name, info, err)
	}
}

// namesWithPrefix lists the dm devices whose names start with prefix.
func namesWithPrefix(t *testing.T, ctl *dm.Control, prefix string) []string {
	t.Helper()
	devs, err := ctl.List(context.Background(), dm.WithNamePrefix(prefix))
	if err != nil {
		t.Fatalf("list: %+v", err)
	}
	var names []string
	for _, d := range devs {
		names = append(names, d.Name)
	}
	slices.Sort(names)
	return names
}

// rawMessage sends a message straight to the pool with dm.Control, bypassing
// the library's checks, to learn the kernel's own answer.
func rawMessage(tp *testPool, msg string) error {
	_, err := tp.Ctl.Message(context.Background(), dm.Name(tp.Name), 0, msg)
	return err
}

// lsMatches compares the live pool's thin_ls -m with want (device id to
// mapped blocks, as the library reported them) and the pool's used data
// blocks with used.
func lsMatches(t *testing.T, tp *testPool, want map[thin.DeviceID]uint64, used thin.DataBlocks) {
	t.Helper()
	got := tp.thinLsLive(t)
	if len(got) != len(want) {
		t.Errorf("thin_ls -m: %d devices, the library made %d", len(got), len(want))
	}
	n := 0
	for id, w := range want {
		if g, ok := got[id]; !ok || g != w {
			if n++; n <= 10 {
				t.Errorf("thin_ls -m: device %d: mapped %d (present %v), the library says %d", id, g, ok, w)
			}
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			if n++; n <= 10 {
				t.Errorf("thin_ls -m: device %d, which the library did not make", id)
			}
		}
	}
	if st := tp.status(t); st.UsedData != used {
		t.Errorf("pool used data %d blocks, want %d", st.UsedData, used)
	}
	t.Logf("thin_ls -m agrees with the library: %d devices, %d data blocks used", len(got), used)
}

// recorder is an ioctl.Transport over the real control node that records
// every command it issues, so a test can prove what reached the kernel.
type recorder struct {
	f    *ioctl.File
	mu   sync.Mutex
	cmds []ioctl.Cmd
}

func (r *recorder) Ioctl(req uint, b []byte) error {
	r.mu.Lock()
	r.cmds = append(r.cmds, ioctl.Cmd(req&0xff))
	r.mu.Unlock()
	return r.f.Ioctl(req, b)
}

// take returns and forgets the commands issued so far.
func (r *recorder) take() []ioctl.Cmd {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.cmds
	r.cmds = nil
	return c
}

// readOnlyCmds are the commands that change nothing.
var readOnlyCmds = map[ioctl.Cmd]bool{
	ioctl.CmdVersion: true, ioctl.CmdListDevices: true, ioctl.CmdDevStatus: true,
	ioctl.CmdTableDeps: true, ioctl.CmdTableStatus: true, ioctl.CmdListVersions: true,
	ioctl.CmdGetTargetVersion: true,
}

// recordingControl opens a Control whose ioctls are recorded.
func recordingControl(t *testing.T) (*dm.Control, *recorder) {
	t.Helper()
	f, err := ioctl.Open(ioctl.ControlPath)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{f: f}
	ctl, err := dm.Open(dm.WithTransport(rec))
	if err != nil {
		f.Close()
		t.Fatalf("%+v", err)
	}
	t.Cleanup(func() {
		ctl.Close()
		f.Close()
	})
	rec.take()
	return ctl, rec
}

const (
	blockBytes  = 64 << 10         // the pools' data block, 128 sectors
	kernelWait  = 30 * time.Second // the bound of every wait for the kernel
	blockSettle = 2 * time.Second  // how long an operation that must block is watched
)

// alignedBuf returns n zero bytes aligned for O_DIRECT.
func alignedBuf(n int) []byte {
	b := make([]byte, n+4096)
	off := int(-uintptr(unsafe.Pointer(&b[0])) & 4095)
	return b[off : off+n : off+n]
}

// patternBuf returns n aligned bytes in which the i-th pool block is filled
// with a byte derived from seed and i (never zero), so that a read can tell
// blocks, patterns and unprovisioned (zero) space apart.
func patternBuf(n int, seed byte) []byte {
	b := alignedBuf(n)
	for i := 0; i < n; i += blockBytes {
		v := byte(1 + (int(seed)+i/blockBytes)%251)
		chunk := b[i:min(i+blockBytes, n)]
		for j := range chunk {
			chunk[j] = v
		}
	}
	return b
}

// writeDirect writes data at off with O_DIRECT, chunk bytes a write, and
// returns how many bytes were written before the first error.
func writeDirect(path string, off int64, data []byte, chunk int) (int64, error) {
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

// readDirect reads n bytes at off with O_DIRECT.
func readDirect(path string, off int64, n int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := alignedBuf(n)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, err
	}
	return b, nil
}

// expectData reads n bytes at off and compares them with want.
func expectData(t *testing.T, path string, off int64, want []byte) {
	t.Helper()
	got, err := readDirect(path, off, len(want))
	if err != nil {
		t.Fatalf("read %s at %d: %v", path, off, err)
	}
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: byte %d (block %d) is %#x, want %#x", path, off+int64(i), (off+int64(i))/blockBytes, got[i], want[i])
			}
		}
	}
}

// discardRange discards [off, off+n) of the block device at path with the
// BLKDISCARD ioctl, as blkdiscard does.
func discardRange(path string, off, n int64) error {
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

// syncDevice flushes the block device at path (fsync: a REQ_PREFLUSH, which
// makes a thin pool commit its metadata).
func syncDevice(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func dmDevPath(d dm.Dev) string { return "/dev/dm-" + strconv.FormatUint(uint64(d.Minor), 10) }

// asyncOp is an operation running in its own goroutine: I/O that the
// kernel holds, or an ioctl that must block.
type asyncOp struct {
	what string
	done chan struct{}
	n    int64
	err  error
}

func goAsync(what string, fn func() (int64, error)) *asyncOp {
	a := &asyncOp{what: what, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.n, a.err = fn()
	}()
	return a
}

// blocked fails t unless the operation is still running after d.
func (a *asyncOp) blocked(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-a.done:
		t.Fatalf("%s returned (%d bytes, %v) while it should block", a.what, a.n, a.err)
	case <-time.After(d):
	}
}

// wait waits at most d for the operation and returns its result.
func (a *asyncOp) wait(t *testing.T, d time.Duration) (int64, error) {
	t.Helper()
	select {
	case <-a.done:
		return a.n, a.err
	case <-time.After(d):
		t.Fatalf("%s still blocked after %v", a.what, d)
		return 0, nil
	}
}

// within runs an ioctl that should return promptly, failing t if it
// does not return within kernelWait rather than hanging the VM run.
func within(t *testing.T, what string, fn func() error) {
	t.Helper()
	a := goAsync(what, func() (int64, error) { return 0, fn() })
	if _, err := a.wait(t, kernelWait); err != nil {
		t.Fatalf("%s: %+v", what, err)
	}
}

// retryEINTR repeats a device-mapper call that the kernel may interrupt
// while it sleeps in wait_on_bit (a suspend or resume waiting for a pool).
func retryEINTR(fn func() error) error {
	for {
		err := fn()
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// resumeAtCleanup resumes, at cleanup, each named device that is still
// suspended, in the order given: pools before their thins, because a thin's
// resume waits for its pool.
func resumeAtCleanup(t *testing.T, ctl *dm.Control, names ...string) {
	t.Cleanup(func() {
		ctx := context.Background()
		for _, n := range names {
			info, err := ctl.Info(ctx, dm.Name(n))
			if err != nil || !info.Suspended {
				continue
			}
			a := goAsync("resume "+n, func() (int64, error) {
				_, err := ctl.Resume(ctx, dm.Name(n))
				return 0, err
			})
			if _, err := a.wait(t, kernelWait); err != nil {
				t.Errorf("cleanup: resume %s: %+v", n, err)
			}
		}
	})
}

// linearDev is a linear dm device over a loop device, which can grow: the
// devices the resize scenarios grow.
type linearDev struct {
	ctl  *dm.Control
	name string
	b    *backing
	dev  dm.Dev
	size int64 // bytes
}

// newLinear makes a linear device of size bytes, removed at cleanup.
func newLinear(t *testing.T, ctl *dm.Control, name string, size int64) *linearDev {
	t.Helper()
	l := &linearDev{ctl: ctl, name: name, b: newBacking(t, size), size: size}
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

func (l *linearDev) ref() dm.Ref { return dm.Name(l.name) }

func (l *linearDev) path() string { return dmDevPath(l.dev) }

// table maps the whole loop device as it is now.
func (l *linearDev) table() dm.Table {
	return dm.Table{{Start: 0, Length: dm.Sectors(l.size / dm.SectorSize), Type: "linear", Params: l.b.Dev.String() + " 0"}}
}

// grow grows the loop device's backing file to size bytes and makes the
// loop device see it; the caller then loads l.table().
func (l *linearDev) grow(t *testing.T, size int64) {
	t.Helper()
	if err := loop.Grow(l.b.Path, size); err != nil {
		t.Fatalf("grow %s: %v", l.b.Path, err)
	}
	if err := l.b.Loop.SetCapacity(); err != nil {
		t.Fatalf("set capacity of %s: %v", l.b.Loop.Path(), err)
	}
	l.size = size
}

// needTarget skips t when the kernel lacks a target type (the VM has them
// all), or fails it under THINP_REQUIRE_PRIVILEGED=1, as testenv does for
// the other privileges.
func needTarget(t *testing.T, ctl *dm.Control, name string) {
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

// newZero makes a dm zero device of size bytes (writes vanish, reads
// return zeros): a data device as large as a scenario needs, at no memory
// cost. Removed at cleanup.
func newZero(t *testing.T, ctl *dm.Control, name string, size int64) dm.Dev {
	t.Helper()
	needTarget(t, ctl, "zero")
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

// teardownAndCheck removes the pool and its thins, then checks the metadata.
func teardownAndCheck(t *testing.T, p *thin.Pool, metaPath string) {
	t.Helper()
	if err := p.Teardown(context.Background()); err != nil && !errors.Is(err, dm.ErrNotFound) {
		t.Errorf("teardown %s: %+v", p.Name(), err)
	}
	thinCheck(t, metaPath)
}

// selfCheckedPool is newPool whose teardown and thin_check the test runs itself
// first (newPool's cleanup then finds the pool gone and checks again).
func selfCheckedPool(t *testing.T, ctl *dm.Control, prefix string, o poolOpts) *testPool {
	t.Helper()
	tp := newPool(t, ctl, prefix, o)
	t.Cleanup(func() { teardownAndCheck(t, tp.Pool, tp.Meta.Loop.Path()) })
	return tp
}

// poolStack is a pool on devices the test made (linear, zero), which the test
// may take down and bring up again on the same metadata.
type poolStack struct {
	ctl      *dm.Control
	name     string
	spec     thin.PoolSpec
	metaPath string // the metadata device's node, for thin_check and thin_dump
	pool     *thin.Pool
}

// newPoolStack creates the pool on fresh metadata; its cleanup takes it down
// (thin_check included). Create it after its devices, so that it goes
// first.
func newPoolStack(t *testing.T, ctl *dm.Control, name string, spec thin.PoolSpec, metaPath string) *poolStack {
	t.Helper()
	p, err := thin.CreatePool(context.Background(), ctl, name, spec, thin.FormatMetadata(), thin.WithMetadataPath(metaPath))
	if err != nil {
		t.Fatalf("create pool: %+v", err)
	}
	s := &poolStack{ctl: ctl, name: name, spec: spec, metaPath: metaPath, pool: p}
	t.Cleanup(func() {
		if s.pool != nil {
			s.down(t)
		}
	})
	return s
}

// down tears the pool down and runs thin_check.
func (s *poolStack) down(t *testing.T) {
	t.Helper()
	if spec, err := s.pool.Spec(context.Background()); err == nil {
		s.spec = spec
	}
	teardownAndCheck(t, s.pool, s.metaPath)
	s.pool = nil
}

// up brings the pool back on its existing metadata.
func (s *poolStack) up(t *testing.T) {
	t.Helper()
	p, err := thin.CreatePool(context.Background(), s.ctl, s.name, s.spec)
	if err != nil {
		t.Fatalf("reactivate pool: %+v", err)
	}
	s.pool = p
}

// activateVolume creates (if create) and activates thin id; deactivated at
// cleanup if still there.
func activateVolume(t *testing.T, p *thin.Pool, name string, id thin.DeviceID, size int64, create bool) *thin.Volume {
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

// poolStatusOf reads the pool status; commit makes the kernel commit the
// metadata first.
func poolStatusOf(t *testing.T, p *thin.Pool, commit bool) thin.PoolStatus {
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

// waitStatus polls the pool's status (without committing) until cond
// holds, for at most kernelWait.
func waitStatus(t *testing.T, p *thin.Pool, what string, cond func(thin.PoolStatus) bool) thin.PoolStatus {
	t.Helper()
	deadline := time.Now().Add(kernelWait)
	for {
		st := poolStatusOf(t, p, false)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool never reached %s; status %q", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func outOfData(st thin.PoolStatus) bool { return st.Mode == thin.ModeOutOfDataSpace }

// setNoSpaceTimeout sets dm-thin's no_space_timeout module parameter (in
// seconds) and restores it at cleanup. It takes effect when a pool next
// runs out of data space.
func setNoSpaceTimeout(t *testing.T, secs int) {
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

// compareLs fails t unless thin_ls reported exactly want.
func compareLs(t *testing.T, got, want map[thin.DeviceID]uint64) {
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

// thinCheck runs thin_check (with args) on a metadata device, which must
// not be in use, fails t unless it passes, and logs each pass ("thin_check
// passed", which the VM output lets a run count).
func thinCheck(t *testing.T, path string, args ...string) bool {
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

// mappedBlocks is the number of data blocks an active volume maps, from
// its status.
func mappedBlocks(t *testing.T, v *thin.Volume) thin.DataBlocks {
	t.Helper()
	st, err := v.Status(context.Background())
	if err != nil {
		t.Fatalf("status %s: %+v", v.Name(), err)
	}
	if st.State != thin.ThinActive {
		t.Fatalf("thin %s status %q", v.Name(), st)
	}
	return st.MappedBlocks(v.Pool().BlockSize())
}

// lsLive runs thin_ls -m on a metadata snapshot of the live pool whose
// metadata device is metaPath: device id to mapped blocks. It reserves and
// releases the metadata snapshot itself.
func lsLive(t *testing.T, p *thin.Pool, metaPath string) map[thin.DeviceID]uint64 {
	t.Helper()
	defer heldMetadataSnap(t, p)()
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

// dumpSuperblock is thin_dump's XML, the parts the tests compare.
type dumpSuperblock struct {
	XMLName       xml.Name     `xml:"superblock"`
	Flags         uint32       `xml:"flags,attr"`
	Transaction   uint64       `xml:"transaction,attr"`
	DataBlockSize uint64       `xml:"data_block_size,attr"`
	NrDataBlocks  uint64       `xml:"nr_data_blocks,attr"`
	Devices       []dumpDevice `xml:"device"`
}

// dumpDevice is one device of thin_dump's XML.
type dumpDevice struct {
	ID           thin.DeviceID `xml:"dev_id,attr"`
	MappedBlocks uint64        `xml:"mapped_blocks,attr"`
	Singles      []struct {
		Origin uint64 `xml:"origin_block,attr"`
		Data   uint64 `xml:"data_block,attr"`
	} `xml:"single_mapping"`
	Ranges []struct {
		Origin uint64 `xml:"origin_begin,attr"`
		Data   uint64 `xml:"data_begin,attr"`
		Length uint64 `xml:"length,attr"`
	} `xml:"range_mapping"`
}

// mappings is the device's block map, virtual block to data block.
func (d dumpDevice) mappings() map[uint64]uint64 {
	m := map[uint64]uint64{}
	for _, s := range d.Singles {
		m[s.Origin] = s.Data
	}
	for _, r := range d.Ranges {
		for i := uint64(0); i < r.Length; i++ {
			m[r.Origin+i] = r.Data + i
		}
	}
	return m
}

// blocks is the set of the device's mapped virtual blocks.
func (d dumpDevice) blocks() map[uint64]bool {
	m := map[uint64]bool{}
	for b := range d.mappings() {
		m[b] = true
	}
	return m
}

func parseDump(t *testing.T, text string) dumpSuperblock {
	t.Helper()
	var sb dumpSuperblock
	if err := xml.Unmarshal([]byte(text), &sb); err != nil {
		t.Fatalf("thin_dump output: %v\n%.2000s", err, text)
	}
	return sb
}

// dumpLive reserves a metadata snapshot, dumps it (thin_dump -m) and
// releases it.
func dumpLive(t *testing.T, tp *testPool) dumpSuperblock {
	t.Helper()
	defer heldMetadataSnap(t, tp.Pool)()
	return parseDump(t, thinTool(t, "thin_dump", "-m", tp.Meta.Loop.Path()))
}

// dumpOffline runs thin_dump on the metadata of a pool that is not active
// and returns its superblock's flags and devices.
func dumpOffline(t *testing.T, metaPath string) (flags uint32, devs map[thin.DeviceID]dumpDevice) {
	t.Helper()
	sb := parseDump(t, thinTool(t, "thin_dump", metaPath))
	devs = map[thin.DeviceID]dumpDevice{}
	for _, d := range sb.Devices {
		devs[d.ID] = d
	}
	return sb.Flags, devs
}

// heldMetadataSnap reserves a metadata snapshot of the live pool p, for the
// tools' -m mode, and returns the function that releases it.
func heldMetadataSnap(t *testing.T, p *thin.Pool) (release func()) {
	t.Helper()
	ctx := context.Background()
	if err := p.ReserveMetadataSnap(ctx); err != nil {
		t.Fatalf("reserve_metadata_snap: %+v", err)
	}
	return func() {
		if err := p.ReleaseMetadataSnap(ctx); err != nil {
			t.Errorf("release_metadata_snap: %+v", err)
		}
	}
}
