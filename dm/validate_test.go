package dm

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

// recorder is a transport that answers DM_VERSION as a 4.47 kernel and
// records every other request, failing it with ENOSYS.
type recorder struct {
	mu    sync.Mutex
	calls []ioctl.Cmd
}

func (r *recorder) Ioctl(req uint, b []byte) error {
	cmd := ioctl.Cmd(req & 0xff)
	if cmd == ioctl.CmdVersion {
		var h ioctl.Header
		h.UnmarshalBinary(b)
		h.Version = ioctl.Version{4, 47, 0}
		return h.MarshalTo(b)
	}
	r.mu.Lock()
	r.calls = append(r.calls, cmd)
	r.mu.Unlock()
	return unix.ENOSYS
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

func openRecorder(t *testing.T) (*Control, *recorder) {
	t.Helper()
	rec := &recorder{}
	c, err := Open(WithTransport(rec))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, rec
}

// TestValidationSendsNothing: every malformed request is refused with
// ErrInvalid before any ioctl reaches the seam.
func TestValidationSendsNothing(t *testing.T) {
	ctx := context.Background()
	good := Table{{Start: 0, Length: 8, Type: "zero"}}
	long := strings.Repeat("n", 128)
	tests := []struct {
		name string
		run  func(c *Control) error
	}{
		{"empty name", func(c *Control) error { _, err := c.Create(ctx, "", good); return err }},
		{"name 128 bytes", func(c *Control) error { _, err := c.Create(ctx, long, good); return err }},
		{"slash in name", func(c *Control) error { _, err := c.Create(ctx, "a/b", good); return err }},
		{"name control", func(c *Control) error { _, err := c.Create(ctx, "control", good); return err }},
		{"name dot", func(c *Control) error { _, err := c.Create(ctx, ".", good); return err }},
		{"name dotdot", func(c *Control) error { _, err := c.Create(ctx, "..", good); return err }},
		{"NUL in name", func(c *Control) error { _, err := c.Create(ctx, "a\x00b", good); return err }},
		{"uuid 129 bytes", func(c *Control) error {
			_, err := c.Create(ctx, "ok", good, WithUUID(strings.Repeat("u", 129)))
			return err
		}},
		{"no targets", func(c *Control) error { _, err := c.Create(ctx, "ok", nil); return err }},
		{"type 16 bytes", func(c *Control) error {
			_, err := c.Create(ctx, "ok", Table{{Length: 8, Type: strings.Repeat("t", 16)}})
			return err
		}},
		{"empty type", func(c *Control) error { _, err := c.Create(ctx, "ok", Table{{Length: 8}}); return err }},
		{"NUL in params", func(c *Control) error {
			_, err := c.Create(ctx, "ok", Table{{Length: 8, Type: "linear", Params: "7:0\x000"}})
			return err
		}},
		{"zero length", func(c *Control) error { _, err := c.Create(ctx, "ok", Table{{Length: 0, Type: "zero"}}); return err }},
		{"not from 0", func(c *Control) error {
			_, err := c.Create(ctx, "ok", Table{{Start: 8, Length: 8, Type: "zero"}})
			return err
		}},
		{"gap", func(c *Control) error {
			_, err := c.Create(ctx, "ok", Table{{Length: 8, Type: "zero"}, {Start: 16, Length: 8, Type: "zero"}})
			return err
		}},
		{"overlap", func(c *Control) error {
			_, err := c.Create(ctx, "ok", Table{{Length: 8, Type: "zero"}, {Start: 4, Length: 8, Type: "zero"}})
			return err
		}},
		{"load bad table", func(c *Control) error { return c.Load(ctx, Name("ok"), Table{}) }},
		{"load bad flag", func(c *Control) error { return c.Load(ctx, Name("ok"), good, NoFlush) }},
		{"suspend bad flag", func(c *Control) error { return c.Suspend(ctx, Name("ok"), Deferred) }},
		{"remove zero ref", func(c *Control) error { return c.Remove(ctx, Ref{}) }},
		{"remove empty uuid", func(c *Control) error { return c.Remove(ctx, UUID("")) }},
		{"info dev 0:0", func(c *Control) error { _, err := c.Info(ctx, DevNum(Dev{})); return err }},
		{"rename to bad", func(c *Control) error { return c.Rename(ctx, Name("ok"), "x/y") }},
		{"set empty uuid", func(c *Control) error { return c.SetUUID(ctx, Name("ok"), "") }},
		{"empty message", func(c *Control) error { _, err := c.Message(ctx, Name("ok"), 0, ""); return err }},
		{"NUL message", func(c *Control) error { _, err := c.Message(ctx, Name("ok"), 0, "a\x00"); return err }},
		{"geometry heads", func(c *Control) error { return c.SetGeometry(ctx, Name("ok"), Geometry{Heads: 256}) }},
		{"status bad flag", func(c *Control) error { _, err := c.Status(ctx, Name("ok"), ReadOnly); return err }},
		{"wait bad flag", func(c *Control) error { _, err := c.Wait(ctx, Name("ok"), 0, Deferred); return err }},
		{"reload bad table", func(c *Control) error { return c.Reload(ctx, Name("ok"), Table{{Length: 1}}) }},
		{"target version empty", func(c *Control) error { _, err := c.TargetVersion(ctx, ""); return err }},
		{"list prefix NUL", func(c *Control) error { _, err := c.List(ctx, WithNamePrefix("a\x00")); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, rec := openRecorder(t)
			err := tt.run(c)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			var de *Error
			if !errors.As(err, &de) || de.Sent {
				t.Fatalf("err = %#v, want an unsent *dm.Error", err)
			}
			if n := rec.count(); n != 0 {
				t.Fatalf("%d ioctls reached the kernel: %v", n, rec.calls)
			}
		})
	}
}

func TestErrorClassification(t *testing.T) {
	mkc := func(op string, cmd ioctl.Cmd, errno unix.Errno) error {
		return newError(op, Name("x"), &ioctl.Error{Cmd: cmd, Err: errno})
	}
	mk := func(op string, errno unix.Errno) error { return mkc(op, ioctl.CmdDevRemove, errno) }
	tests := []struct {
		err   error
		is    []error
		isNot []error
	}{
		{mk("remove", unix.ENXIO), []error{ErrNotFound, unix.ENXIO}, []error{ErrBusy, ErrInvalid}},
		{mk("remove", unix.EBUSY), []error{ErrBusy, unix.EBUSY}, []error{ErrExists, ErrNotFound}},
		// EBUSY means "name or uuid taken" only from DM_DEV_CREATE and
		// DM_DEV_RENAME; from a table load it is a device in use.
		{mkc("create", ioctl.CmdDevCreate, unix.EBUSY), []error{ErrExists, unix.EBUSY}, []error{ErrBusy, ErrNotFound}},
		{mkc("rename", ioctl.CmdDevRename, unix.EBUSY), []error{ErrExists, unix.EBUSY}, []error{ErrBusy}},
		{mkc("create", ioctl.CmdTableLoad, unix.EBUSY), []error{ErrBusy, unix.EBUSY}, []error{ErrExists}},
		{mkc("reload", ioctl.CmdTableLoad, unix.EBUSY), []error{ErrBusy}, []error{ErrExists}},
		// A refusal before sending matches its errno and that errno's
		// sentinel, and claims no ioctl.
		{NewError("create_thin 1", Name("pool"), Refusal(unix.EEXIST, "thin id 1 is active as vol")), []error{ErrExists, unix.EEXIST}, []error{ErrBusy, ErrInvalid}},
		{mk("message", unix.EEXIST), []error{ErrExists, unix.EEXIST}, []error{ErrBusy}},
		{mk("message", unix.ENODATA), []error{ErrNoData}, []error{ErrNotFound}},
		{mk("load", unix.EINVAL), []error{ErrInvalid, unix.EINVAL}, []error{ErrNoData}},
		{mk("open", unix.EACCES), []error{ErrPermission}, []error{ErrInvalid}},
		{mk("message", unix.EOPNOTSUPP), []error{ErrNotSupported}, []error{ErrInvalid}},
		{newError("x", Ref{}, invalid("f", "bad")), []error{ErrInvalid}, []error{ErrBusy, unix.EINVAL}},
		{newError("x", Ref{}, &NotSupportedError{Need: ioctl.FeatureNameListUUID.MinVersion()}), []error{ErrNotSupported}, []error{ErrInvalid}},
	}
	for _, tt := range tests {
		for _, target := range tt.is {
			if !errors.Is(tt.err, target) {
				t.Errorf("%v: errors.Is(%v) = false", tt.err, target)
			}
		}
		for _, target := range tt.isNot {
			if errors.Is(tt.err, target) {
				t.Errorf("%v: errors.Is(%v) = true", tt.err, target)
			}
		}
	}
	e := mk("remove", unix.EBUSY).(*Error)
	if got, want := e.Error(), "dm remove x (DM_DEV_REMOVE): device busy (EBUSY)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	for _, tt := range []struct {
		err  error
		want string
	}{
		{mk("remove", unix.ENXIO), "dm remove x (DM_DEV_REMOVE): device not found (ENXIO)"},
		{mk("remove", unix.ENOSPC), "dm remove x (DM_DEV_REMOVE): no space left on device (ENOSPC)"},
		{NewError("create", Ref{}, Invalid("name", "%q contains '/'", "a/b")), `dm create: invalid name: "a/b" contains '/'`},
		{NewError("create_thin 1", Name("pool"), Refusal(unix.EEXIST, "thin id 1 is active as vol")), "dm create_thin 1 pool: thin id 1 is active as vol"},
		{NewError("info", DevNum(Dev{Major: 253, Minor: 1}), Invalid("x", "y")), "dm info dev 253:1: invalid x: y"},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		// Nothing refused before sending names an ioctl.
		if de := tt.err.(*Error); !de.Sent && strings.Contains(de.Error(), "DM_") {
			t.Errorf("%q names an ioctl that was never sent", de.Error())
		}
	}
	if e.Errno() != unix.EBUSY {
		t.Errorf("Errno() = %v", e.Errno())
	}
}

func TestTableRoundTrip(t *testing.T) {
	tables := []Table{
		{{Start: 0, Length: 2048, Type: "linear", Params: "7:0 0"}},
		{{Start: 0, Length: 100, Type: "zero"}, {Start: 100, Length: 50, Type: "error"}},
		{{Start: 0, Length: 20971520, Type: "thin-pool", Params: "7:1 7:2 128 32768 1 skip_block_zeroing"}},
	}
	for _, tb := range tables {
		got, err := ParseTable(tb.String())
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tb) {
			t.Fatalf("got %v", got)
		}
		for i := range tb {
			if got[i] != tb[i] {
				t.Errorf("target %d: got %+v want %+v", i, got[i], tb[i])
			}
		}
		if err := got.Validate(); err != nil {
			t.Error(err)
		}
	}
	if _, err := ParseTable("0 x linear"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad length: %v", err)
	}
	if _, err := ParseTable("0 8"); !errors.Is(err, ErrInvalid) {
		t.Errorf("missing type: %v", err)
	}
	got, err := ParseTable("# comment\n\n  0   8   linear   7:0    0  \n")
	if err != nil || len(got) != 1 || got[0].Params != "7:0    0" {
		t.Errorf("got %+v, %v", got, err)
	}
}

func TestDev(t *testing.T) {
	d, err := ParseDev("253:1024")
	if err != nil || d != (Dev{Major: 253, Minor: 1024}) || d.String() != "253:1024" {
		t.Fatalf("ParseDev: %v %v", d, err)
	}
	for _, bad := range []string{"", "253", "a:b", "4096:0", "1:1048576", "-1:0"} {
		if _, err := ParseDev(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseDev(%q) = %v", bad, err)
		}
	}
	if ioctl.DecodeDev(d.Encode()) != d {
		t.Error("dev round trip")
	}
}

func TestClosedControl(t *testing.T) {
	c, rec := openRecorder(t)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	_, err := c.Info(context.Background(), Name("x"))
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v", err)
	}
	if rec.count() != 0 {
		t.Fatal("ioctl after close")
	}
}

func TestNotSupportedOnOldKernel(t *testing.T) {
	rec := &oldKernel{v: ioctl.Version{4, 20, 0}}
	c, err := Open(WithTransport(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	err = c.Remove(ctx, Name("x"), Deferred)
	var ns *NotSupportedError
	if !errors.Is(err, ErrNotSupported) || !errors.As(err, &ns) || ns.Need != ioctl.FeatureDeferredRemove.MinVersion() {
		t.Fatalf("deferred remove on 4.20: %v", err)
	}
	if rec.calls != 0 {
		t.Fatalf("%d ioctls sent", rec.calls)
	}
	old := &oldKernel{v: ioctl.Version{4, 10, 0}}
	if _, err := Open(WithTransport(old)); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("Open on 4.10: %v", err)
	}
}

type oldKernel struct {
	v     ioctl.Version
	calls int
}

func (k *oldKernel) Ioctl(req uint, b []byte) error {
	if ioctl.Cmd(req&0xff) == ioctl.CmdVersion {
		var h ioctl.Header
		h.UnmarshalBinary(b)
		h.Version = k.v
		return h.MarshalTo(b)
	}
	k.calls++
	return unix.ENOSYS
}
