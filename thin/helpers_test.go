package thin

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/dm/dmtest"
	"github.com/thinp/thinp/ioctl"
)

// The fake kernel's block devices: a 4 MiB metadata device and a 1 GiB
// data device, like loop devices.
var (
	metaDev = dm.Dev{Major: 7, Minor: 0}
	dataDev = dm.Dev{Major: 7, Minor: 1}
	origDev = dm.Dev{Major: 7, Minor: 2} // an external origin
)

const (
	metaSectors = 8192    // 4 MiB: 1024 metadata blocks
	dataSectors = 2097152 // 1 GiB: 16384 blocks of 64 KiB
)

// withHost replaces sysfs and /dev for tests.
func withHost(h hostDevs) PoolOption { return func(c *poolConfig) { c.host = h } }

// fakeHost answers device sizes from a table and formats metadata through
// the fake kernel.
type fakeHost struct {
	k         *dmtest.Kernel
	mu        sync.Mutex
	sizes     map[dm.Dev]dm.Sectors
	formatted []dm.Dev
	formatErr error
}

func (h *fakeHost) size(d dm.Dev) (dm.Sectors, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.sizes[d]
	if !ok {
		return 0, errors.New("no such device in the fake sysfs")
	}
	return s, nil
}

func (h *fakeHost) format(d dm.Dev, path string, force bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.formatErr != nil {
		return h.formatErr
	}
	h.formatted = append(h.formatted, d)
	return h.k.WipeMetadata(d)
}

// users reports the fake kernel's dm devices whose live tables use d.
func (h *fakeHost) users(_ context.Context, d dm.Dev) (dm.Users, error) {
	u := dm.Users{Dev: d, OpenCount: -1}
	for _, dev := range h.k.Devices() {
		if slices.Contains(dev.Deps, d.String()) {
			u.Holders = append(u.Holders, dev.Name)
		}
		if (dm.Dev{Major: dev.Major, Minor: dev.Minor}) == d {
			u.OpenCount = int32(dev.OpenCount)
		}
	}
	return u, nil
}

// superblock makes the fields CreatePool reads from the metadata the fake
// kernel keeps on d.
func (h *fakeHost) superblock(d dm.Dev) ([]byte, error) {
	pi, ok := h.k.Metadata(d)
	if !ok {
		return nil, errors.New("no metadata in the fake")
	}
	b := make([]byte, MetaBlockSize)
	binary.LittleEndian.PutUint64(b[thinSuperblockMagicOff:], thinSuperblockMagic)
	binary.LittleEndian.PutUint64(b[sbDataBlocksOff:], pi.DataBlocks)
	binary.LittleEndian.PutUint32(b[sbDataBlockSizeOff:], uint32(pi.BlockSize))
	return b, nil
}

func (h *fakeHost) resize(t *testing.T, d dm.Dev, s dm.Sectors) {
	t.Helper()
	h.mu.Lock()
	h.sizes[d] = s
	h.mu.Unlock()
	if err := h.k.ResizeBlockDevice(d, uint64(s)); err != nil {
		t.Fatal(err)
	}
}

type env struct {
	t    *testing.T
	ctx  context.Context
	k    *dmtest.Kernel
	ctl  *dm.Control
	host *fakeHost

	mu   sync.Mutex
	msgs []string // every target message the fake kernel received
}

func newEnv(t *testing.T) *env {
	t.Helper()
	k := dmtest.New()
	for _, d := range []struct {
		dev dm.Dev
		s   dm.Sectors
	}{{metaDev, metaSectors}, {dataDev, dataSectors}, {origDev, dataSectors}} {
		if err := k.AddBlockDevice(d.dev, uint64(d.s)); err != nil {
			t.Fatal(err)
		}
	}
	ctl, err := dm.Open(dm.WithTransport(k), dm.WithRemoveRetry(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	e := &env{t: t, ctx: context.Background(), k: k, ctl: ctl,
		host: &fakeHost{k: k, sizes: map[dm.Dev]dm.Sectors{metaDev: metaSectors, dataDev: dataSectors, origDev: dataSectors}}}
	k.SetMessageHook(func(device string, _ ioctl.TargetSpec, argv []string) (string, bool, bool, error) {
		e.mu.Lock()
		e.msgs = append(e.msgs, strings.Join(argv, " "))
		e.mu.Unlock()
		return "", false, false, nil
	})
	return e
}

func (e *env) spec() PoolSpec {
	return PoolSpec{Metadata: metaDev, Data: dataDev, BlockSize: 128}
}

// pool creates "pool" on fresh metadata with spec changed by mod.
func (e *env) pool(mods ...func(*PoolSpec)) *Pool {
	e.t.Helper()
	s := e.spec()
	for _, m := range mods {
		m(&s)
	}
	p, err := CreatePool(e.ctx, e.ctl, "pool", s, FormatMetadata(), withHost(e.host))
	if err != nil {
		e.t.Fatalf("CreatePool: %+v", err)
	}
	return p
}

// holdActivation activates id as name in the background, holding it in
// the fake kernel before its cmd ioctl until release is closed; it returns
// once the activation has reached that ioctl, and done then gets
// Activate's error.
func (e *env) holdActivation(p *Pool, cmd ioctl.Cmd, name string, id DeviceID) (release chan struct{}, done chan error) {
	entered := make(chan struct{})
	release = make(chan struct{})
	var once sync.Once
	e.k.SetBeforeIoctl(func(c ioctl.Cmd, h *ioctl.Header) error {
		if c == cmd && h.Name == name {
			once.Do(func() { close(entered) })
			<-release
		}
		return nil
	})
	done = make(chan error, 1)
	go func() {
		_, err := p.Activate(e.ctx, name, id, 2048)
		done <- err
	}()
	<-entered
	return release, done
}

// reset forgets the recorded ioctls and messages.
func (e *env) reset() {
	e.k.ResetCalls()
	e.mu.Lock()
	e.msgs = nil
	e.mu.Unlock()
}

func (e *env) messages() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.msgs...)
}

// cmds lists the recorded ioctls by command, in order.
func (e *env) cmds() []ioctl.Cmd {
	var cmds []ioctl.Cmd
	for _, c := range e.k.Calls() {
		cmds = append(cmds, c.Cmd)
	}
	return cmds
}

// calls counts the recorded ioctls of cmd (all of them for a negative cmd).
func (e *env) calls(cmd int) int {
	n := 0
	for _, c := range e.k.Calls() {
		if cmd < 0 || int(c.Cmd) == cmd {
			n++
		}
	}
	return n
}

// noCalls asserts that nothing reached the seam since the last reset.
func (e *env) noCalls(what string) {
	e.t.Helper()
	if cs := e.k.Calls(); len(cs) != 0 {
		var names []string
		for _, c := range cs {
			names = append(names, c.Cmd.String())
		}
		e.t.Errorf("%s: %d ioctls reached the kernel: %v", what, len(cs), names)
	}
}

// failMessage makes the fake kernel fail the next message whose first word
// is verb with errno, without processing it.
func (e *env) failMessage(verb string, errno unix.Errno) {
	var once sync.Once
	e.k.SetMessageHook(func(device string, _ ioctl.TargetSpec, argv []string) (string, bool, bool, error) {
		e.mu.Lock()
		e.msgs = append(e.msgs, strings.Join(argv, " "))
		e.mu.Unlock()
		fail := false
		if argv[0] == verb {
			once.Do(func() { fail = true })
		}
		if fail {
			return "", false, true, errno
		}
		return "", false, false, nil
	})
}

// is asserts that err matches every target.
func is(t *testing.T, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one matching %v", targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Errorf("error %q does not match %v", err, target)
		}
	}
	var te *Error
	if !errors.As(err, &te) {
		t.Errorf("error %q is not a *thin.Error", err)
	}
	var de *dm.Error
	if !errors.As(err, &de) {
		t.Errorf("error %q does not wrap a *dm.Error", err)
	}
}

func (e *env) status(p *Pool) PoolStatus {
	e.t.Helper()
	st, err := p.Status(e.ctx)
	if err != nil {
		e.t.Fatalf("Status: %+v", err)
	}
	return st
}

func (e *env) info(name string) dm.Info {
	e.t.Helper()
	info, err := e.ctl.Info(e.ctx, dm.Name(name))
	if err != nil {
		e.t.Fatalf("Info(%s): %v", name, err)
	}
	return info
}

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%+v", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
