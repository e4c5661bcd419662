package dmtest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

// Block devices every fixture has: loop-like devices on major 7.
const (
	metaSectors  = 8192    // 7:0, 4 MiB: 1024 metadata blocks
	dataSectors  = 1 << 22 // 7:1, 2 GiB
	spareSectors = 1 << 20 // 7:2, 512 MiB
)

type fixture struct {
	t *testing.T
	k *Kernel
	c *ioctl.Conn
}

func newFixture(t *testing.T, opts ...Option) *fixture {
	t.Helper()
	k := New(opts...)
	for _, bd := range []struct {
		minor   uint32
		sectors uint64
	}{{0, metaSectors}, {1, dataSectors}, {2, spareSectors}} {
		if err := k.AddBlockDevice(ioctl.Dev{Major: 7, Minor: bd.minor}, bd.sectors); err != nil {
			t.Fatal(err)
		}
	}
	return &fixture{t: t, k: k, c: &ioctl.Conn{T: k}}
}

// do runs r through an ioctl.Conn and returns the reply header and a copy
// of the reply buffer.
func (f *fixture) do(r *ioctl.Request) (ioctl.Header, []byte, error) {
	var h ioctl.Header
	var b []byte
	err := f.c.Do(r, func(hh *ioctl.Header, bb []byte) error {
		h = *hh
		b = append([]byte(nil), bb...)
		return nil
	})
	return h, b, err
}

func (f *fixture) mustDo(r *ioctl.Request) (ioctl.Header, []byte) {
	f.t.Helper()
	h, b, err := f.do(r)
	if err != nil {
		f.t.Fatalf("%s %q: %v", r.Cmd, r.Header.Name, err)
	}
	return h, b
}

func named(cmd ioctl.Cmd, name string) *ioctl.Request {
	return &ioctl.Request{Cmd: cmd, Header: ioctl.Header{Name: name}}
}

func (f *fixture) create(name string) ioctl.Header {
	f.t.Helper()
	h, _ := f.mustDo(named(ioctl.CmdDevCreate, name))
	return h
}

func (f *fixture) load(name string, specs ...ioctl.TargetSpec) error {
	r := named(ioctl.CmdTableLoad, name)
	r.Targets = specs
	_, _, err := f.do(r)
	return err
}

func (f *fixture) mustLoad(name string, specs ...ioctl.TargetSpec) {
	f.t.Helper()
	if err := f.load(name, specs...); err != nil {
		f.t.Fatalf("load %s: %v", name, err)
	}
}

func (f *fixture) resume(name string) error {
	_, _, err := f.do(named(ioctl.CmdDevSuspend, name))
	return err
}

func (f *fixture) mustResume(name string) {
	f.t.Helper()
	if err := f.resume(name); err != nil {
		f.t.Fatalf("resume %s: %v", name, err)
	}
}

func (f *fixture) suspend(name string) {
	f.t.Helper()
	r := named(ioctl.CmdDevSuspend, name)
	r.Header.Flags = ioctl.FlagSuspend
	f.mustDo(r)
}

// activate creates name with the table and resumes it.
func (f *fixture) activate(name string, specs ...ioctl.TargetSpec) {
	f.t.Helper()
	f.create(name)
	f.mustLoad(name, specs...)
	f.mustResume(name)
}

func (f *fixture) remove(name string) error {
	_, _, err := f.do(named(ioctl.CmdDevRemove, name))
	return err
}

// status returns the per-target strings of DM_TABLE_STATUS with flags.
func (f *fixture) status(name string, flags ioctl.Flags) ([]ioctl.TargetSpec, ioctl.Header, error) {
	r := named(ioctl.CmdTableStatus, name)
	r.Header.Flags = flags
	h, b, err := f.do(r)
	if err != nil {
		return nil, h, err
	}
	var specs []ioctl.TargetSpec
	tr := ioctl.NewTargetReader(&h, b)
	for tr.Next() {
		specs = append(specs, tr.Spec())
	}
	if err := tr.Err(); err != nil {
		f.t.Fatalf("status %s: %v", name, err)
	}
	return specs, h, nil
}

// line is the status (or table, with FlagStatusTable) of a one-target
// device.
func (f *fixture) line(name string, flags ioctl.Flags) string {
	f.t.Helper()
	specs, _, err := f.status(name, flags)
	if err != nil {
		f.t.Fatalf("status %s: %v", name, err)
	}
	if len(specs) != 1 {
		f.t.Fatalf("status %s: %d targets", name, len(specs))
	}
	return specs[0].Params
}

func (f *fixture) msg(name string, m string) error {
	r := named(ioctl.CmdTargetMsg, name)
	r.Message = m
	_, _, err := f.do(r)
	return err
}

func (f *fixture) mustMsg(name string, m string) {
	f.t.Helper()
	if err := f.msg(name, m); err != nil {
		f.t.Fatalf("message %s %q: %v", name, m, err)
	}
}

// pool activates a pool on 7:0 and 7:1 with the given length, block size
// and extra table arguments.
func (f *fixture) pool(name string, length uint64, args string) {
	f.t.Helper()
	f.activate(name, ioctl.TargetSpec{Length: length, Type: "thin-pool", Params: "7:0 7:1 " + args})
}

func (f *fixture) info(name string) DeviceInfo {
	f.t.Helper()
	di, ok := f.k.Device(name)
	if !ok {
		f.t.Fatalf("no device %s", name)
	}
	return di
}

func errnoOf(err error) unix.Errno {
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

func wantErrno(t *testing.T, what string, err error, want unix.Errno) {
	t.Helper()
	if got := errnoOf(err); got != want {
		t.Errorf("%s: got %v, want %v", what, err, want)
	}
}

// rawBuf packs r into a buffer of size bytes whose unused bytes hold a
// pattern, so that a test can see which bytes the kernel wrote.
func rawBuf(t *testing.T, r *ioctl.Request, size int) []byte {
	t.Helper()
	b := bytes.Repeat([]byte{0xa5}, size)
	if _, err := r.MarshalTo(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// onlyVersionChanged checks that a failed ioctl changed nothing in b but
// the version, which must be the kernel's.
func onlyVersionChanged(t *testing.T, before, after []byte, v ioctl.Version) {
	t.Helper()
	if !bytes.Equal(before[12:], after[12:]) {
		for i := 12; i < len(before); i++ {
			if before[i] != after[i] {
				t.Errorf("byte %d changed: %#x -> %#x", i, before[i], after[i])
				break
			}
		}
	}
	var h ioctl.Header
	if err := h.UnmarshalBinary(after); err != nil {
		t.Fatal(err)
	}
	if h.Version != v {
		t.Errorf("version %v, want %v", h.Version, v)
	}
}

func hdr(t *testing.T, b []byte) ioctl.Header {
	t.Helper()
	var h ioctl.Header
	if err := h.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	return h
}

func linear(start, length uint64, params string) ioctl.TargetSpec {
	return ioctl.TargetSpec{Start: start, Length: length, Type: "linear", Params: params}
}

// waitCalls waits until a call of cmd has reached k (and so, for DEV_WAIT,
// is about to block).
func waitCalls(t *testing.T, k *Kernel, cmd ioctl.Cmd) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		for _, c := range k.Calls() {
			if c.Cmd == cmd {
				time.Sleep(5 * time.Millisecond)
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no %s call", cmd)
}
