package dm_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/dm/dmtest"
	"github.com/thinp/thinp/ioctl"
)

func fake(t *testing.T, opts ...dm.Option) (*dm.Control, *dmtest.Kernel) {
	t.Helper()
	k := dmtest.New()
	ctl, err := dm.Open(append([]dm.Option{dm.WithTransport(k), dm.WithRemoveRetry(time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	if err := k.AddBlockDevice(ioctl.Dev{Major: 7, Minor: 0}, 1<<20); err != nil {
		t.Fatal(err)
	}
	return ctl, k
}

func TestFakeCreateRoundTrip(t *testing.T) {
	ctl, k := fake(t)
	ctx := context.Background()
	table := dm.Table{
		{Start: 0, Length: 1024, Type: "linear", Params: "7:0 0"},
		{Start: 1024, Length: 1024, Type: "zero"},
	}
	info, err := ctl.Create(ctx, "vol", table, dm.WithUUID("U-1"), dm.WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	if !info.LivePresent || info.Suspended || !info.ReadOnly || info.UUID != "U-1" || info.TargetCount != 2 {
		t.Errorf("info %+v", info)
	}
	// Exactly create, load, resume.
	var cmds []ioctl.Cmd
	for _, c := range k.Calls() {
		cmds = append(cmds, c.Cmd)
	}
	want := []ioctl.Cmd{ioctl.CmdVersion, ioctl.CmdDevCreate, ioctl.CmdTableLoad, ioctl.CmdDevSuspend}
	if fmt.Sprint(cmds) != fmt.Sprint(want) {
		t.Errorf("calls %v, want %v", cmds, want)
	}
	got, err := ctl.Table(ctx, dm.Name("vol"))
	if err != nil || got.String() != table.String() {
		t.Errorf("table %q %v", got, err)
	}
	deps, err := ctl.Deps(ctx, dm.UUID("U-1"))
	if err != nil || len(deps) != 1 || deps[0] != (dm.Dev{Major: 7, Minor: 0}) {
		t.Errorf("deps %v %v", deps, err)
	}
	devs, err := ctl.List(ctx)
	if err != nil || len(devs) != 1 || devs[0].Name != "vol" || devs[0].UUID != "U-1" || devs[0].Dev != info.Dev {
		t.Errorf("list %+v %v", devs, err)
	}
}

// A create whose load fails leaves nothing behind.
func TestFakeCreateRollsBack(t *testing.T) {
	for _, failing := range []ioctl.Cmd{ioctl.CmdTableLoad, ioctl.CmdDevSuspend} {
		t.Run(failing.String(), func(t *testing.T) {
			ctl, k := fake(t)
			k.FailNext(failing, unix.EINVAL)
			_, err := ctl.Create(context.Background(), "vol", dm.Table{{Length: 8, Type: "zero"}})
			var de *dm.Error
			if !errors.As(err, &de) || de.Cmd != failing || !errors.Is(err, dm.ErrInvalid) {
				t.Fatalf("err = %v", err)
			}
			if devs := k.Devices(); len(devs) != 0 {
				t.Fatalf("left behind: %+v", devs)
			}
		})
	}
}

func TestFakeRemoveRetriesBusy(t *testing.T) {
	ctl, k := fake(t)
	ctx := context.Background()
	if _, err := ctl.Create(ctx, "vol", dm.Table{{Length: 8, Type: "zero"}}); err != nil {
		t.Fatal(err)
	}
	closeFn, err := k.Open("vol")
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Remove(ctx, dm.Name("vol"), dm.NoRetry); !errors.Is(err, dm.ErrBusy) {
		t.Fatalf("NoRetry: %v", err)
	}
	time.AfterFunc(100*time.Millisecond, closeFn)
	if err := ctl.Remove(ctx, dm.Name("vol")); err != nil {
		t.Fatalf("retrying remove: %v", err)
	}
	if _, ok := k.Device("vol"); ok {
		t.Fatal("still there")
	}
	// The budget runs out.
	if _, err := ctl.Create(ctx, "vol", dm.Table{{Length: 8, Type: "zero"}}); err != nil {
		t.Fatal(err)
	}
	closeFn, _ = k.Open("vol")
	defer closeFn()
	start := time.Now()
	if err := ctl.Remove(ctx, dm.Name("vol")); !errors.Is(err, dm.ErrBusy) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d < 800*time.Millisecond || d > 3*time.Second {
		t.Errorf("gave up after %v with a 1s budget", d)
	}
}

func TestFakeDeferredRemove(t *testing.T) {
	ctl, k := fake(t)
	ctx := context.Background()
	if _, err := ctl.Create(ctx, "vol", dm.Table{{Length: 8, Type: "zero"}}); err != nil {
		t.Fatal(err)
	}
	closeFn, _ := k.Open("vol")
	if err := ctl.Remove(ctx, dm.Name("vol"), dm.Deferred); err != nil {
		t.Fatal(err)
	}
	info, err := ctl.Info(ctx, dm.Name("vol"))
	if err != nil || !info.DeferredRemove {
		t.Fatalf("info %+v %v", info, err)
	}
	if err := ctl.CancelDeferredRemove(ctx, dm.Name("vol")); err != nil {
		t.Fatal(err)
	}
	closeFn()
	if _, ok := k.Device("vol"); !ok {
		t.Fatal("removed despite cancel")
	}
	closeFn, _ = k.Open("vol")
	if err := ctl.Remove(ctx, dm.Name("vol"), dm.Deferred); err != nil {
		t.Fatal(err)
	}
	closeFn()
	if _, ok := k.Device("vol"); ok {
		t.Fatal("not removed at last close")
	}
}

// Reload restores the previous table when the kernel refuses the new one at
// resume: a thin-pool shrunk below its data.
func TestFakeReloadRollsBack(t *testing.T) {
	ctl, k := fake(t)
	ctx := context.Background()
	if err := k.AddBlockDevice(ioctl.Dev{Major: 7, Minor: 1}, 8192); err != nil {
		t.Fatal(err)
	}
	pool := dm.Table{{Length: 1 << 20, Type: "thin-pool", Params: "7:1 7:0 128 0"}}
	if _, err := ctl.Create(ctx, "pool", pool); err != nil {
		t.Fatal(err)
	}
	smaller := dm.Table{{Length: 1 << 19, Type: "thin-pool", Params: "7:1 7:0 128 0"}}
	err := ctl.Reload(ctx, dm.Name("pool"), smaller)
	if !errors.Is(err, dm.ErrInvalid) {
		t.Fatalf("shrink: %v", err)
	}
	info, err := ctl.Info(ctx, dm.Name("pool"))
	if err != nil || info.Suspended {
		t.Fatalf("pool left suspended: %+v %v", info, err)
	}
	got, _ := ctl.Table(ctx, dm.Name("pool"))
	if got.Size() != 1<<20 {
		t.Errorf("live table after rollback: %v", got)
	}
}

func TestFakeWithSuspendedAlwaysResumes(t *testing.T) {
	ctl, k := fake(t)
	ctx := context.Background()
	if _, err := ctl.Create(ctx, "vol", dm.Table{{Length: 8, Type: "zero"}}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := ctl.WithSuspended(ctx, dm.Name("vol"), func() error {
		d, _ := k.Device("vol")
		if !d.Suspended {
			t.Error("not suspended inside")
		}
		return boom
	}, dm.NoFlush)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	func() {
		defer func() { recover() }()
		ctl.WithSuspended(ctx, dm.Name("vol"), func() error { panic("inside") })
	}()
	if d, _ := k.Device("vol"); d.Suspended {
		t.Fatal("left suspended")
	}
	// A cancelled ctx still resumes.
	cctx, cancel := context.WithCancel(ctx)
	ctl.WithSuspended(cctx, dm.Name("vol"), func() error { cancel(); return nil })
	if d, _ := k.Device("vol"); d.Suspended {
		t.Fatal("left suspended after cancel")
	}
}

func TestFakeWait(t *testing.T) {
	ctl, k := fake(t)
	ctx := context.Background()
	info, err := ctl.Create(ctx, "vol", dm.Table{{Length: 8, Type: "zero"}})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := ctl.Wait(cctx, dm.Name("vol"), info.EventNr); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no event: %v", err)
	}
	time.AfterFunc(30*time.Millisecond, func() { k.TriggerEvent("vol") })
	ev, err := ctl.Wait(ctx, dm.Name("vol"), info.EventNr)
	if err != nil || ev.Info.EventNr != info.EventNr+1 || len(ev.Status) != 1 {
		t.Fatalf("event %+v %v", ev, err)
	}
}

func TestFakeMessageAndRename(t *testing.T) {
	ctl, k := fake(t)
	ctx := context.Background()
	if err := k.AddBlockDevice(ioctl.Dev{Major: 7, Minor: 1}, 8192); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Create(ctx, "pool", dm.Table{{Length: 1 << 20, Type: "thin-pool", Params: "7:1 7:0 128 0"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Message(ctx, dm.Name("pool"), 0, "create_thin 1"); err != nil {
		t.Fatal(err)
	}
	_, err := ctl.Message(ctx, dm.Name("pool"), 0, "create_thin 1")
	if !errors.Is(err, dm.ErrExists) || !errors.Is(err, unix.EEXIST) {
		t.Fatalf("duplicate id: %v", err)
	}
	if err := ctl.Rename(ctx, dm.Name("pool"), "pool2"); err != nil {
		t.Fatal(err)
	}
	if err := ctl.SetUUID(ctx, dm.Name("pool2"), "P"); err != nil {
		t.Fatal(err)
	}
	if err := ctl.SetUUID(ctx, dm.Name("pool2"), "Q"); !errors.Is(err, dm.ErrInvalid) {
		t.Fatalf("second uuid: %v", err)
	}
	if p, ok := k.Pool("pool2"); !ok || len(p.Thins) != 1 {
		t.Fatalf("pool %+v", p)
	}
}

func TestFakeConcurrentUse(t *testing.T) {
	ctl, k := fake(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < 50; r++ {
				name := fmt.Sprintf("c%d-%d", w, r)
				if _, err := ctl.Create(ctx, name, dm.Table{{Length: 8, Type: "zero"}}); err != nil {
					t.Error(err)
					return
				}
				if _, err := ctl.Status(ctx, dm.Name(name), dm.NoFlush); err != nil {
					t.Error(err)
				}
				if err := ctl.Remove(ctx, dm.Name(name)); err != nil {
					t.Error(err)
				}
			}
		}(w)
	}
	wg.Wait()
	if n := len(k.Devices()); n != 0 {
		t.Fatalf("%d devices left", n)
	}
}

func TestFakeTargetsAndVersion(t *testing.T) {
	ctl, _ := fake(t)
	ctx := context.Background()
	if ctl.Version() != dmtest.DefaultVersion {
		t.Errorf("version %v", ctl.Version())
	}
	v, err := ctl.TargetVersion(ctx, "thin-pool")
	if err != nil || v[0] != 1 {
		t.Errorf("thin-pool %v %v", v, err)
	}
	if _, err := ctl.TargetVersion(ctx, "nope"); !errors.Is(err, dm.ErrNotSupported) {
		t.Errorf("unknown target: %v", err)
	}
	ts, err := ctl.Targets(ctx)
	if err != nil || len(ts) < 4 {
		t.Errorf("targets %v %v", ts, err)
	}
}

// A message to a device without a live table is not silently "sent": the
// kernel returns 2 and copies nothing back, which libdevmapper takes for
// success.
func TestFakeMessageWithoutTable(t *testing.T) {
	ctl, _ := fake(t)
	ctx := context.Background()
	if _, err := ctl.CreateDevice(ctx, "empty"); err != nil {
		t.Fatal(err)
	}
	_, err := ctl.Message(ctx, dm.Name("empty"), 0, "create_thin 0")
	if !errors.Is(err, ioctl.ErrNoReply) || !errors.Is(err, dm.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
}

// StatusFunc sees what Status returns, stops at fn's error, and refuses a
// nil fn before any ioctl.
func TestFakeStatusFunc(t *testing.T) {
	ctl, k := fake(t)
	ctx := context.Background()
	tb := dm.Table{{Length: 8, Type: "zero"}, {Start: 8, Length: 8, Type: "error"}, {Start: 16, Length: 8, Type: "zero"}}
	if _, err := ctl.Create(ctx, "sf", tb); err != nil {
		t.Fatal(err)
	}
	want, err := ctl.Status(ctx, dm.Name("sf"))
	if err != nil {
		t.Fatal(err)
	}
	var got []dm.TargetStatus
	err = ctl.StatusFunc(ctx, dm.Name("sf"), func(s dm.TargetStatus) error {
		s.Type, s.Status = strings.Clone(s.Type), strings.Clone(s.Status)
		got = append(got, s)
		return nil
	})
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) || len(got) != 3 {
		t.Errorf("StatusFunc saw %v, %v; Status gave %v", got, err, want)
	}

	stop := errors.New("enough")
	n := 0
	err = ctl.StatusFunc(ctx, dm.Name("sf"), func(dm.TargetStatus) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("fn's error: %v after %d calls", err, n)
	}

	k.ResetCalls()
	if err := ctl.StatusFunc(ctx, dm.Name("sf"), nil); !errors.Is(err, dm.ErrInvalid) {
		t.Errorf("nil fn: %v", err)
	}
	if err := ctl.StatusFunc(ctx, dm.Name("sf"), func(dm.TargetStatus) error { return nil }, dm.Deferred); !errors.Is(err, dm.ErrInvalid) {
		t.Errorf("bad flag: %v", err)
	}
	if c := k.Calls(); len(c) != 0 {
		t.Errorf("invalid calls reached the kernel: %v", c)
	}
	if err := ctl.StatusFunc(ctx, dm.Name("nope"), func(dm.TargetStatus) error { return nil }); !errors.Is(err, dm.ErrNotFound) {
		t.Errorf("missing device: %v", err)
	}
}

// StatusAll reads, for every device, what Status reads: one list and one
// status ioctl per device, on kernels that filter lists and on older ones.
// It filters by name and uuid prefix, leaves out a device removed or
// renamed after the list, names the device in fn's error, and refuses bad
// input before any ioctl.
func TestFakeStatusAll(t *testing.T) {
	for _, v := range []ioctl.Version{{4, 47, 0}, {4, 43, 0}, {4, 36, 0}} {
		t.Run(v.String(), func(t *testing.T) {
			k := dmtest.New(dmtest.WithVersion(v))
			ctl, err := dm.Open(dm.WithTransport(k))
			if err != nil {
				t.Fatal(err)
			}
			defer ctl.Close()
			testStatusAll(t, ctl, k)
		})
	}
}

func testStatusAll(t *testing.T, ctl *dm.Control, k *dmtest.Kernel) {
	ctx := context.Background()
	tb := dm.Table{{Length: 8, Type: "zero"}, {Start: 8, Length: 8, Type: "error"}}
	names := []string{"sa-a", "sa-b", "sa-c", "sb-d", "sb-e"}
	for i, name := range names {
		if _, err := ctl.Create(ctx, name, tb[:1+i%2], dm.WithUUID(fmt.Sprintf("u%d-%s", i%2, name))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ctl.CreateDevice(ctx, "sa-notable"); err != nil {
		t.Fatal(err)
	}
	scan := func(flags dm.Flag, opts ...dm.ListOption) (map[string]string, error) {
		got := map[string]string{}
		err := ctl.StatusAll(ctx, flags, func(d dm.Device, st []dm.TargetStatus) error {
			info, err := ctl.Info(ctx, dm.Name(d.Name))
			if err != nil {
				return err
			}
			if d.UUID != info.UUID || d.Dev != info.Dev || !d.HasEventNr || d.EventNr != info.EventNr {
				t.Errorf("%s: StatusAll gave %+v, Info %+v", d.Name, d, info)
			}
			want, err := ctl.Status(ctx, dm.Name(d.Name))
			if err != nil {
				return err
			}
			if fmt.Sprint(st) != fmt.Sprint(want) {
				t.Errorf("%s: StatusAll gave %v, Status %v", d.Name, st, want)
			}
			got[strings.Clone(d.Name)] = fmt.Sprint(len(st))
			return nil
		}, opts...)
		return got, err
	}

	got, err := scan(dm.NoFlush)
	if err != nil || fmt.Sprint(got) != "map[sa-a:1 sa-b:2 sa-c:1 sa-notable:0 sb-d:2 sb-e:1]" {
		t.Errorf("scan of every device: %v, %v", got, err)
	}
	k.ResetCalls()
	if got, err := scan(0, dm.WithNamePrefix("sb-")); err != nil || fmt.Sprint(got) != "map[sb-d:2 sb-e:1]" {
		t.Errorf("name prefix: %v, %v", got, err)
	}
	// From 4.45 the kernel filters the list itself.
	if c := k.Calls(); len(c) == 0 || c[0].Cmd != ioctl.CmdListDevices ||
		(c[0].Header.Name == "sb-") != ctl.Version().Has(ioctl.FeatureNameListUUID) {
		t.Errorf("the scan's list on %s: %+v", ctl.Version(), c)
	}
	if got, err := scan(0, dm.WithUUIDPrefix("u1-"), dm.WithNamePrefix("s")); err != nil || fmt.Sprint(got) != "map[sa-b:2 sb-d:2]" {
		t.Errorf("uuid prefix: %v, %v", got, err)
	}

	// One list, then one status read per device: nothing else.
	k.ResetCalls()
	n := 0
	if err := ctl.StatusAll(ctx, 0, func(dm.Device, []dm.TargetStatus) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	calls := k.Calls()
	if n != 6 || len(calls) != 7 || calls[0].Cmd != ioctl.CmdListDevices {
		t.Errorf("%d devices seen with %d ioctls: %v", n, len(calls), calls)
	}
	for _, c := range calls[1:] {
		if c.Cmd != ioctl.CmdTableStatus {
			t.Errorf("a scan sent %s", c.Cmd)
		}
	}

	// Devices removed and renamed after the list are left out.
	k.SetBeforeIoctl(func(cmd ioctl.Cmd, h *ioctl.Header) error {
		if cmd == ioctl.CmdTableStatus && h.Name == "sa-a" {
			k.SetBeforeIoctl(nil)
			if err := ctl.Remove(ctx, dm.Name("sa-b")); err != nil {
				t.Error(err)
			}
			if err := ctl.Rename(ctx, dm.Name("sa-c"), "zz"); err != nil {
				t.Error(err)
			}
		}
		return nil
	})
	if got, err := scan(0, dm.WithNamePrefix("sa-")); err != nil || fmt.Sprint(got) != "map[sa-a:1 sa-notable:0]" {
		t.Errorf("after a remove and a rename: %v, %v", got, err)
	}

	// fn's error stops the scan and names the device; a failing read too.
	stop := errors.New("enough")
	n = 0
	err = ctl.StatusAll(ctx, 0, func(dm.Device, []dm.TargetStatus) error { n++; return stop })
	var de *dm.Error
	if !errors.Is(err, stop) || n != 1 || !errors.As(err, &de) || de.Device != "sa-a" {
		t.Errorf("fn's error: %v after %d calls", err, n)
	}
	k.FailNext(ioctl.CmdTableStatus, unix.EIO)
	err = ctl.StatusAll(ctx, 0, func(dm.Device, []dm.TargetStatus) error { return nil })
	if !errors.Is(err, unix.EIO) || !errors.As(err, &de) || de.Device != "sa-a" || de.Cmd != ioctl.CmdTableStatus {
		t.Errorf("a failed read: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	n = 0
	err = ctl.StatusAll(cctx, 0, func(dm.Device, []dm.TargetStatus) error { n++; cancel(); return nil })
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Errorf("cancelled mid-scan: %v after %d devices", err, n)
	}

	k.ResetCalls()
	ok := func(dm.Device, []dm.TargetStatus) error { return nil }
	for what, err := range map[string]error{
		"nil fn":     ctl.StatusAll(ctx, 0, nil),
		"bad flag":   ctl.StatusAll(ctx, dm.Deferred, ok),
		"long name":  ctl.StatusAll(ctx, 0, ok, dm.WithNamePrefix(strings.Repeat("x", 128))),
		"NUL prefix": ctl.StatusAll(ctx, 0, ok, dm.WithUUIDPrefix("a\x00")),
	} {
		if !errors.Is(err, dm.ErrInvalid) {
			t.Errorf("%s: %v", what, err)
		}
	}
	if c := k.Calls(); len(c) != 0 {
		t.Errorf("invalid calls reached the kernel: %v", c)
	}
}
