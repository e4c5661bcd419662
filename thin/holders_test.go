package thin

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/ioctl"
)

// The fake host shows the fake kernel's holders, as sysfs would.
func (h *fakeHost) holders(d dm.Dev) ([]holderLink, error) {
	var out []holderLink
	for _, x := range h.k.Holders(d.Major, d.Minor) {
		out = append(out, holderLink{minor: x.Minor, link: x.Link})
	}
	return out, nil
}

func (h *fakeHost) watchHolders(d dm.Dev) error { return nil }

func (h *fakeHost) holdersStamp(d dm.Dev) (holderStamp, error) {
	return holderStamp{int64(h.k.HoldersStamp(d.Major, d.Minor))}, nil
}

func (h *fakeHost) dmName(d dm.Dev) (string, error) {
	info, err := h.k.DeviceName(d.Major, d.Minor)
	return info, err
}

// opCalls runs fn and returns the ioctls it issued, by command.
func (e *env) opCalls(fn func() error) []ioctl.Cmd {
	e.t.Helper()
	e.reset()
	if err := fn(); err != nil {
		e.t.Fatalf("%+v", err)
	}
	return e.cmds()
}

// hostDevices adds n linear dm devices that have nothing to do with the
// pool, and m volumes of the pool activated through it.
func (e *env) hostDevices(p *Pool, prefix string, n, m int, firstID DeviceID) {
	e.t.Helper()
	for i := range n {
		_, err := e.ctl.Create(e.ctx, fmt.Sprintf("%s-other-%d", prefix, i), dm.Table{{Length: 8, Type: "linear", Params: origDev.String() + " 0"}})
		ok(e.t, err)
	}
	for i := range m {
		id := firstID + DeviceID(i)
		ok(e.t, p.CreateThin(e.ctx, id))
		_, err := p.Activate(e.ctx, fmt.Sprintf("%s-vol-%d", prefix, i), id, 4096)
		ok(e.t, err)
	}
}

// Every thin operation issues the same ioctls whether the host has no
// other dm device or many, and whether the pool has one active volume or
// many: the pool's holders come from sysfs, and its own volumes from the
// holder cache.
func TestOpIoctlsDoNotGrow(t *testing.T) {
	const (
		tStatus = ioctl.CmdTableStatus
		tMsg    = ioctl.CmdTargetMsg
		tInfo   = ioctl.CmdDevStatus
		tSusp   = ioctl.CmdDevSuspend
		tCreate = ioctl.CmdDevCreate
		tLoad   = ioctl.CmdTableLoad
		tRemove = ioctl.CmdDevRemove
	)
	want := map[string][]ioctl.Cmd{
		"create_thin":          {tMsg},
		"activate":             {tCreate, tLoad, tSusp},
		"create_snap inactive": {tMsg},
		// Once per new holder: its name and uuid, dependencies and table.
		"first look at a new holder": {tInfo, ioctl.CmdTableDeps, tStatus, tMsg},
		// The origin's status (suspended by the caller? by its pool?),
		// then suspend, message, resume: one more than the floor.
		"create_snap active":    {tInfo, tSusp, tMsg, tSusp},
		"deactivate":            {tRemove},
		"delete":                {tMsg},
		"create_thin taken":     {tMsg},
		"create_snap taken":     {tMsg},
		"delete missing":        {tMsg},
		"delete active (EBUSY)": {tMsg},
	}
	for _, sc := range []struct{ others, vols int }{{0, 0}, {40, 0}, {0, 40}, {40, 40}} {
		t.Run(fmt.Sprintf("host%d-pool%d", sc.others, sc.vols), func(t *testing.T) {
			e := newEnv(t)
			p := e.pool()
			e.hostDevices(p, "h", sc.others, sc.vols, 1000)
			ctx := e.ctx
			ok(t, p.CreateThin(ctx, 1))
			origin, err := p.Activate(ctx, "origin", 1, 4096)
			ok(t, err)
			// The first look at the holders reads each new one once.
			ok(t, p.CreateSnapshot(ctx, 2, 1))
			ok(t, p.CreateSnapshot(ctx, 3, 2))
			got := map[string][]ioctl.Cmd{}
			got["create_thin"] = e.opCalls(func() error { return p.CreateThin(ctx, 10) })
			got["create_snap inactive"] = e.opCalls(func() error { return p.CreateSnapshot(ctx, 11, 3) })
			var v *Volume
			got["activate"] = e.opCalls(func() (err error) { v, err = p.Activate(ctx, "v10", 10, 4096); return err })
			got["first look at a new holder"] = e.opCalls(func() error { return p.CreateSnapshot(ctx, 20, 3) })
			got["create_snap active"] = e.opCalls(func() error { return origin.Snapshot(ctx, 12) })
			got["deactivate"] = e.opCalls(func() error { return v.Deactivate(ctx) })
			got["delete"] = e.opCalls(func() error { return p.Delete(ctx, 10) })
			got["create_thin taken"] = e.opCalls(func() error {
				if err := p.CreateThin(ctx, 11); !errors.Is(err, ErrIDInUse) {
					return fmt.Errorf("create_thin of an id in use: %v", err)
				}
				return nil
			})
			got["create_snap taken"] = e.opCalls(func() error {
				if err := p.CreateSnapshot(ctx, 11, 3); !errors.Is(err, ErrIDInUse) || !errors.Is(err, unix.EEXIST) {
					return fmt.Errorf("create_snap of an id in use: %v", err)
				}
				return nil
			})
			got["delete missing"] = e.opCalls(func() error {
				if err := p.Delete(ctx, 10); !errors.Is(err, ErrUnknownID) {
					return fmt.Errorf("delete of a missing id: %v", err)
				}
				return nil
			})
			got["delete active (EBUSY)"] = e.opCalls(func() error {
				if err := p.Delete(ctx, 1); !errors.Is(err, ErrInUse) || !errors.Is(err, unix.EBUSY) {
					return fmt.Errorf("delete of an active id: %v", err)
				}
				return nil
			})
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ioctls per operation (-want +got):\n%s", diff)
			}
		})
	}
}

// suspendedAtSnap records, for each create_snap the fake kernel receives,
// whether each named device was suspended at that moment.
func (e *env) suspendedAtSnap(names ...string) *[]map[string]bool {
	var (
		mu  sync.Mutex
		out []map[string]bool
	)
	e.k.SetBeforeIoctl(func(cmd ioctl.Cmd, h *ioctl.Header) error {
		if cmd != ioctl.CmdTargetMsg {
			return nil
		}
		m := map[string]bool{}
		for _, n := range names {
			if info, err := e.ctl.Info(context.Background(), dm.Name(n)); err == nil {
				m[n] = info.Suspended
			}
		}
		mu.Lock()
		out = append(out, m)
		mu.Unlock()
		return nil
	})
	return &out
}

// An origin activated by another tool (no uuid of this package) is found
// and suspended, also after that tool reloads it to another thin id, and
// after a volume of this package is removed and another tool's device takes
// its minor.
func TestSnapshotSuspendsOriginsOfOtherTools(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	for id := DeviceID(1); id <= 3; id++ {
		ok(t, p.CreateThin(ctx, id))
	}
	foreign := func(name string, id DeviceID) {
		t.Helper()
		_, err := e.ctl.Create(ctx, name, dm.Table{ThinSpec{Pool: p.Dev(), ID: id}.Target(4096)})
		ok(t, err)
	}
	foreign("other", 1)
	seen := e.suspendedAtSnap("other", "mine")
	ok(t, p.CreateSnapshot(ctx, 10, 1))
	if got := (*seen)[0]; !got["other"] {
		t.Errorf("origin activated by another tool not suspended around create_snap: %v", got)
	}
	if info, err := e.ctl.Info(ctx, dm.Name("other")); err != nil || info.Suspended {
		t.Errorf("origin left suspended: %+v %v", info, err)
	}

	// The other tool reloads its device to thin id 2.
	ok(t, e.ctl.Reload(ctx, dm.Name("other"), dm.Table{ThinSpec{Pool: p.Dev(), ID: 2}.Target(4096)}))
	*seen = nil
	ok(t, p.CreateSnapshot(ctx, 11, 2))
	if got := (*seen)[0]; !got["other"] {
		t.Errorf("reloaded origin not suspended: %v", got)
	}
	*seen = nil
	ok(t, p.CreateSnapshot(ctx, 12, 1)) // id 1 is not active any more
	if got := (*seen)[0]; got["other"] {
		t.Errorf("a device that no longer maps the origin was suspended: %v", got)
	}

	// A volume of this package, cached, goes; another tool's device gets
	// its minor and maps the origin.
	mine, err := p.Activate(ctx, "mine", 3, 4096)
	ok(t, err)
	ok(t, p.CreateSnapshot(ctx, 13, 3)) // caches "mine"
	minor := mine.Dev().Minor
	ok(t, mine.Deactivate(ctx))
	ok(t, e.ctl.Remove(ctx, dm.Name("other")))
	_, err = e.ctl.Create(ctx, "mine", dm.Table{ThinSpec{Pool: p.Dev(), ID: 1}.Target(4096)}, dm.WithMinor(minor))
	ok(t, err)
	*seen = nil
	ok(t, p.CreateSnapshot(ctx, 14, 1))
	if got := (*seen)[0]; !got["mine"] {
		t.Errorf("a device that took a cached volume's minor and maps the origin was not suspended: %v", got)
	}
}

// The holders directory parser reads getdents64 records.
func TestParseHolderDirents(t *testing.T) {
	rec := func(ino uint64, name string) []byte {
		n := 19 + len(name) + 1
		n = (n + 7) &^ 7
		b := make([]byte, n)
		binary.NativeEndian.PutUint64(b, ino)
		binary.NativeEndian.PutUint16(b[16:], uint16(n))
		copy(b[19:], name)
		return b
	}
	var b []byte
	for _, r := range [][]byte{rec(1, "."), rec(2, ".."), rec(77, "dm-3"), rec(78, "md0"), rec(90, "dm-12345"), rec(91, "dm-x")} {
		b = append(b, r...)
	}
	got := parseHolderDirents(b, nil)
	want := []holderLink{{minor: 3, link: 77}, {minor: 12345, link: 90}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(holderLink{})); diff != "" {
		t.Error(diff)
	}
	if got := parseHolderDirents(b[:30], nil); len(got) != 0 { // a torn record
		t.Errorf("torn: %v", got)
	}
}

func TestVolumeUUID(t *testing.T) {
	pool := dm.Dev{Major: 253, Minor: 4}
	u := volumeUUID(pool, 77, "vol-a")
	if u != "THINP-thin-253:4-77-vol-a" {
		t.Errorf("uuid %q", u)
	}
	if id, ok := volumeUUIDID(u, pool); !ok || id != 77 {
		t.Errorf("id %d %v", id, ok)
	}
	for _, bad := range []string{"", "THINP-thin-253:5-77-vol", "THINP-thin-253:4-x-vol", "THINP-thin-253:4-77", "LVM-abc", "THINP-thin-253:4-16777216-v"} {
		if _, ok := volumeUUIDID(bad, pool); ok {
			t.Errorf("%q parsed", bad)
		}
	}
	if u := volumeUUID(pool, 1, strings.Repeat("n", 127)); u != "" {
		t.Errorf("too long: %q", u)
	}
}

// Many goroutines on one Pool: lifecycles and snapshots of active origins
// on their own ids, all at once (run with -race).
func TestConcurrentOperations(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	const workers, rounds = 16, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := DeviceID(1000 * (w + 1))
			run := func() error {
				if err := p.CreateThin(ctx, base); err != nil {
					return err
				}
				origin, err := p.Activate(ctx, fmt.Sprintf("o%d", w), base, 4096)
				if err != nil {
					return err
				}
				for r := range rounds {
					id := base + 1 + DeviceID(r)
					if err := p.CreateThin(ctx, id); err != nil {
						return err
					}
					v, err := p.Activate(ctx, fmt.Sprintf("v%d-%d", w, r), id, 4096)
					if err != nil {
						return err
					}
					if err := origin.Snapshot(ctx, id+500); err != nil {
						return err
					}
					if err := v.Deactivate(ctx); err != nil {
						return err
					}
					if err := p.Delete(ctx, id); err != nil {
						return err
					}
					if err := p.Delete(ctx, id+500); err != nil {
						return err
					}
				}
				if err := origin.Deactivate(ctx); err != nil {
					return err
				}
				return p.Delete(ctx, base)
			}
			if err := run(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("%+v", err)
	}
	vols, err := p.Volumes(ctx)
	ok(t, err)
	if len(vols) != 0 {
		t.Errorf("%d volumes left", len(vols))
	}
}

// Operations on other ids do not wait for a slow one.
func TestOtherIDsDoNotWait(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	ok(t, p.CreateThin(ctx, 1))
	release, done := e.holdActivation(p, ioctl.CmdTableLoad, "slow", 1)
	// id 1 is held by the activation; id 2 goes ahead.
	ok(t, p.CreateThin(ctx, 2))
	ok(t, p.CreateSnapshot(ctx, 3, 2))
	ok(t, p.Delete(ctx, 3))
	close(release)
	ok(t, <-done)
}
