package thinsnap

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/dm/dmtest"
	"github.com/thinp/thinp/ioctl"
	"github.com/thinp/thinp/thin"
	"github.com/thinp/thinp/thin/catalog"
)

// fakeFS records what the snapshotter formats and discards; failFormat
// makes the next Format fail.
type fakeFS struct {
	formats    []string
	discards   []string
	stale      []string // devices whose stale mounts were asked to go
	failFormat error
}

func (f *fakeFS) Format(ctx context.Context, dev, fs, options string) error {
	if err := f.failFormat; err != nil {
		f.failFormat = nil
		return err
	}
	f.formats = append(f.formats, fs+" "+options+" "+dev)
	return nil
}

func (f *fakeFS) Discard(ctx context.Context, dev string) error {
	f.discards = append(f.discards, dev)
	return nil
}

func (f *fakeFS) UnmountStale(major, minor uint32) error {
	f.stale = append(f.stale, fmt.Sprintf("%d:%d", major, minor))
	return nil
}

// rig is a snapshotter on a catalog on a pool of the fake kernel.
type rig struct {
	t    *testing.T
	ctx  context.Context
	k    *dmtest.Kernel
	pool *thin.Pool
	dir  string
	cat  *catalog.Catalog
	sn   *Snapshotter
	fs   *fakeFS
	cfg  Config
	tick time.Time
}

func newRig(t *testing.T, cfg Config, opts ...catalog.Option) *rig {
	t.Helper()
	ctx := context.Background()
	k := dmtest.New()
	meta, data := dm.Dev{Major: 7, Minor: 0}, dm.Dev{Major: 7, Minor: 1}
	k.AddBlockDevice(meta, 131072)
	k.AddBlockDevice(data, 2097152)
	ctl, err := dmtest.NewControl(k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	pool, err := thin.CreatePool(ctx, ctl, "pool", thin.PoolSpec{Metadata: meta, Data: data, BlockSize: 128, Length: 2097152})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, ctx: ctx, k: k, pool: pool, dir: t.TempDir(), fs: &fakeFS{}, cfg: cfg,
		tick: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)}
	r.open(opts...)
	return r
}

func (r *rig) open(opts ...catalog.Option) {
	r.t.Helper()
	cat, err := catalog.Open(r.ctx, r.pool, r.dir, opts...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { cat.Close() })
	sn, err := New(cat, r.cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	sn.fs = r.fs
	sn.now = func() time.Time { r.tick = r.tick.Add(time.Second); return r.tick }
	r.cat, r.sn = cat, sn
}

func (r *rig) reopen() {
	r.t.Helper()
	if err := r.sn.Close(); err != nil {
		r.t.Fatal(err)
	}
	if err := r.cat.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.open()
}

func (r *rig) prepare(key, parent string, labels map[string]string) {
	r.t.Helper()
	if _, err := r.sn.Prepare(r.ctx, key, parent, snapshots.WithLabels(labels)); err != nil {
		r.t.Fatalf("prepare %q on %q: %+v", key, parent, err)
	}
}

func (r *rig) commit(name, key string) {
	r.t.Helper()
	if err := r.sn.Commit(r.ctx, name, key); err != nil {
		r.t.Fatalf("commit %q as %q: %+v", key, name, err)
	}
}

func (r *rig) stat(key string) snapshots.Info {
	r.t.Helper()
	in, err := r.sn.Stat(r.ctx, key)
	if err != nil {
		r.t.Fatalf("stat %q: %+v", key, err)
	}
	return in
}

func TestBaseFormattedOnceAndMounts(t *testing.T) {
	r := newRig(t, Config{BaseImageSize: "64MiB"})
	m, err := r.sn.Prepare(r.ctx, "a/b/c", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || m[0].Type != "ext4" || !strings.Contains(m[0].Source, "/dev/dm-") || len(m[0].Options) != 0 {
		t.Fatalf("prepare mounts = %+v, want one ext4 mount of /dev/dm-N without options", m)
	}
	v, err := r.sn.View(r.ctx, "v", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].Type != "ext4" || !cmp.Equal(v[0].Options, []string{"ro"}) || v[0].Source == m[0].Source {
		t.Fatalf("view mounts = %+v, want a ro ext4 mount of another device", v)
	}
	if len(r.fs.formats) != 1 || !strings.HasPrefix(r.fs.formats[0], "ext4 "+DefaultExt4Options+" ") {
		t.Fatalf("formats = %q, want one mkfs.ext4 -E %s", r.fs.formats, DefaultExt4Options)
	}
	base, err := r.cat.Get(baseKey)
	if err != nil {
		t.Fatal(err)
	}
	if base.State != catalog.Inactive || base.Size != thin.Size(64<<20) {
		t.Errorf("base volume = %+v, want inactive and 64 MiB", base)
	}
	got, err := r.sn.Mounts(r.ctx, "a/b/c")
	if err != nil || !cmp.Equal(got, m) {
		t.Errorf("Mounts = %+v, %v; want %+v", got, err, m)
	}
	got, err = r.sn.Mounts(r.ctx, "v")
	if err != nil || !cmp.Equal(got, v) {
		t.Errorf("Mounts(view) = %+v, %v; want %+v", got, err, v)
	}
	r.prepare("c", "", nil)
	if len(r.fs.formats) != 1 {
		t.Errorf("the base volume was formatted %d times, want once", len(r.fs.formats))
	}
}

func TestXFSMountsNoUUID(t *testing.T) {
	r := newRig(t, Config{FSType: "xfs", FSOptions: "-m crc=1"})
	m, err := r.sn.View(r.ctx, "v", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || m[0].Type != "xfs" || !cmp.Equal(m[0].Options, []string{"nouuid", "ro"}) {
		t.Fatalf("mounts = %+v, want xfs with nouuid,ro", m)
	}
	if len(r.fs.formats) != 1 || !strings.HasPrefix(r.fs.formats[0], "xfs -m crc=1 ") {
		t.Fatalf("formats = %q", r.fs.formats)
	}
}

func TestFailedFormatLeavesNoBase(t *testing.T) {
	r := newRig(t, Config{})
	r.fs.failFormat = &FSError{Op: "mkfs.ext4", Device: "/dev/dm-1", Err: errors.New("boom")}
	_, err := r.sn.Prepare(r.ctx, "a", "")
	var fe *FSError
	if !errors.As(err, &fe) {
		t.Fatalf("prepare with a failing mkfs: %v, want an *FSError", err)
	}
	if vs := r.cat.List(); len(vs) != 0 {
		t.Fatalf("volumes left after a failed format: %+v", vs)
	}
	if _, err := r.sn.Stat(r.ctx, "a"); !errdefs.IsNotFound(err) {
		t.Fatalf("stat after a failed prepare: %v, want not found", err)
	}
	r.prepare("a", "", nil)
	if len(r.fs.formats) != 1 {
		t.Fatalf("formats = %q, want one", r.fs.formats)
	}
}

func TestUnformattedBaseIsRemade(t *testing.T) {
	r := newRig(t, Config{})
	// A crash between the base volume's creation and its format leaves it
	// without LabelFormatted.
	if _, err := r.cat.Create(r.ctx, baseKey, thin.Size(16<<20), catalog.WithLabels(map[string]string{LabelFSType: "ext4"})); err != nil {
		t.Fatal(err)
	}
	// Active, as a crash in Format leaves it: its stale mount goes first.
	if _, err := r.cat.Activate(r.ctx, baseKey); err != nil {
		t.Fatal(err)
	}
	old, _ := r.cat.Get(baseKey)
	info, err := r.pool.Control().Info(r.ctx, dm.Name(old.Device))
	if err != nil {
		t.Fatal(err)
	}
	r.prepare("a", "", nil)
	if want := fmt.Sprintf("%d:%d", info.Dev.Major, info.Dev.Minor); len(r.fs.stale) != 1 || r.fs.stale[0] != want {
		t.Fatalf("stale mounts removed of %q, want of %s", r.fs.stale, want)
	}
	base, err := r.cat.Get(baseKey)
	if err != nil {
		t.Fatal(err)
	}
	if base.ID == old.ID || base.Labels[LabelFormatted] == "" || len(r.fs.formats) != 1 {
		t.Fatalf("base = %+v (old id %d), formats %q: want a new, formatted base", base, old.ID, r.fs.formats)
	}
}

func TestLifecycle(t *testing.T) {
	r := newRig(t, Config{})
	gc := map[string]string{"containerd.io/gc.root": "x"}
	r.prepare("extract-1 sha256:aa", "", gc)
	a := r.stat("extract-1 sha256:aa")
	if a.Kind != snapshots.KindActive || a.Parent != "" || a.Name != "extract-1 sha256:aa" || !cmp.Equal(a.Labels, gc) || !a.Created.Equal(a.Updated) {
		t.Fatalf("active info = %+v", a)
	}
	r.commit("sha256:aa", "extract-1 sha256:aa")
	if _, err := r.sn.Stat(r.ctx, "extract-1 sha256:aa"); !errdefs.IsNotFound(err) {
		t.Fatalf("stat of the committed key: %v, want not found", err)
	}
	c := r.stat("sha256:aa")
	if c.Kind != snapshots.KindCommitted || c.Parent != "" || c.Labels != nil || !c.Created.After(a.Created) {
		t.Fatalf("committed info = %+v (active was %+v)", c, a)
	}
	v, err := r.cat.Get(prefixCommitted + "sha256:aa")
	if err != nil || v.State != catalog.Inactive {
		t.Fatalf("committed volume = %+v, %v; want inactive", v, err)
	}
	r.prepare("extract-2", "sha256:aa", nil)
	r.commit("sha256:bb", "extract-2")
	if in := r.stat("sha256:bb"); in.Parent != "sha256:aa" {
		t.Fatalf("parent of sha256:bb = %q", in.Parent)
	}
	r.prepare("container", "sha256:bb", nil)
	if _, err := r.sn.View(r.ctx, "view", "sha256:bb"); err != nil {
		t.Fatal(err)
	}
	if in := r.stat("view"); in.Kind != snapshots.KindView || in.Parent != "sha256:bb" {
		t.Fatalf("view info = %+v", in)
	}

	// The catalog is the only store: reopening gives the same answers.
	before := walk(t, r.sn)
	r.reopen()
	if after := walk(t, r.sn); !cmp.Equal(before, after) {
		t.Fatalf("after reopen:\n%s", cmp.Diff(before, after))
	}

	for _, key := range []string{"sha256:aa", "sha256:bb"} {
		err := r.sn.Remove(r.ctx, key)
		if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "remove") {
			t.Fatalf("remove %q with children: %v, want failed precondition", key, err)
		}
	}
	for _, key := range []string{"container", "view", "sha256:bb", "sha256:aa"} {
		if err := r.sn.Remove(r.ctx, key); err != nil {
			t.Fatalf("remove %q: %+v", key, err)
		}
	}
	if got := walk(t, r.sn); len(got) != 0 {
		t.Fatalf("left: %+v", got)
	}
	if vs := r.cat.List(); len(vs) != 1 || vs[0].Key != baseKey {
		t.Fatalf("catalog holds %+v, want the base volume only", vs)
	}
	if pi, _ := r.k.Pool("pool"); len(pi.Thins) != 1 {
		t.Fatalf("pool has %d thin devices, want the base only", len(pi.Thins))
	}
}

func walk(t *testing.T, sn *Snapshotter, filters ...string) map[string]snapshots.Info {
	t.Helper()
	out := map[string]snapshots.Info{}
	err := sn.Walk(context.Background(), func(ctx context.Context, in snapshots.Info) error {
		out[in.Name] = in
		return nil
	}, filters...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestErrors(t *testing.T) {
	r := newRig(t, Config{})
	r.prepare("a", "", nil)
	r.commit("c", "a")
	r.prepare("a2", "c", nil)
	if _, err := r.sn.View(r.ctx, "v", "c"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
		is   func(error) bool
	}{
		{"prepare existing active", r.prepErr("a2", "c"), errdefs.IsAlreadyExists},
		{"prepare existing committed", r.prepErr("c", ""), errdefs.IsAlreadyExists},
		{"view existing view", r.viewErr("v", "c"), errdefs.IsAlreadyExists},
		{"prepare on missing parent", r.prepErr("x", "nope"), errdefs.IsNotFound},
		{"prepare on active parent", r.prepErr("x", "a2"), errdefs.IsInvalidArgument},
		{"prepare on view parent", r.prepErr("x", "v"), errdefs.IsInvalidArgument},
		{"commit missing", r.sn.Commit(r.ctx, "n", "nope"), errdefs.IsNotFound},
		{"commit view", r.sn.Commit(r.ctx, "n", "v"), errdefs.IsFailedPrecondition},
		{"commit committed", r.sn.Commit(r.ctx, "n", "c"), errdefs.IsFailedPrecondition},
		{"commit onto existing", r.sn.Commit(r.ctx, "v", "a2"), errdefs.IsAlreadyExists},
		{"remove missing", r.sn.Remove(r.ctx, "nope"), errdefs.IsNotFound},
		{"stat missing", r.statErr("nope"), errdefs.IsNotFound},
		{"mounts missing", r.mountsErr("nope"), errdefs.IsNotFound},
		{"mounts committed", r.mountsErr("c"), errdefs.IsFailedPrecondition},
		{"usage missing", r.usageErr("nope"), errdefs.IsNotFound},
		{"update missing", r.updateErr(snapshots.Info{Name: "nope"}), errdefs.IsNotFound},
		{"update parent", r.updateErr(snapshots.Info{Name: "a2", Parent: "x"}, "parent"), errdefs.IsInvalidArgument},
		{"empty key", r.statErr(""), errdefs.IsInvalidArgument},
	} {
		if !tc.is(tc.err) {
			t.Errorf("%s: %v", tc.name, tc.err)
		}
	}
	// Failed operations changed nothing.
	got := walk(t, r.sn)
	names := make([]string, 0, len(got))
	for n := range got {
		names = append(names, n)
	}
	sort.Strings(names)
	if want := []string{"a2", "c", "v"}; !cmp.Equal(names, want) {
		t.Errorf("snapshots = %q, want %q", names, want)
	}
}

func (r *rig) prepErr(key, parent string) error {
	_, err := r.sn.Prepare(r.ctx, key, parent)
	return err
}

func (r *rig) viewErr(key, parent string) error {
	_, err := r.sn.View(r.ctx, key, parent)
	return err
}

func (r *rig) statErr(key string) error {
	_, err := r.sn.Stat(r.ctx, key)
	return err
}

func (r *rig) mountsErr(key string) error {
	_, err := r.sn.Mounts(r.ctx, key)
	return err
}

func (r *rig) usageErr(key string) error {
	_, err := r.sn.Usage(r.ctx, key)
	return err
}

func (r *rig) updateErr(in snapshots.Info, paths ...string) error {
	_, err := r.sn.Update(r.ctx, in, paths...)
	return err
}

func TestUpdate(t *testing.T) {
	r := newRig(t, Config{})
	r.prepare("a", "", map[string]string{"l1": "v1", "l2": "v2"})
	in := r.stat("a")
	in.Parent = "ignored"
	in.Labels = map[string]string{"l1": "x", "l3": "v3"}
	got, err := r.sn.Update(r.ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(got.Labels, in.Labels) || got.Parent != "" || !got.Updated.After(got.Created) {
		t.Fatalf("update all: %+v", got)
	}
	created := got.Created
	in.Labels = map[string]string{"l1": "updated", "l4": "v4"}
	got, err = r.sn.Update(r.ctx, in, "labels.l1", "labels.l3")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"l1": "updated"}; !cmp.Equal(got.Labels, want) {
		t.Fatalf("update labels.l1, labels.l3: labels %v, want %v", got.Labels, want)
	}
	in.Labels = map[string]string{"l5": "v5"}
	got, err = r.sn.Update(r.ctx, in, "labels")
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(got.Labels, in.Labels) || !got.Created.Equal(created) {
		t.Fatalf("update labels: %+v", got)
	}
	if st := r.stat("a"); !cmp.Equal(st, got) {
		t.Fatalf("stat after update:\n%s", cmp.Diff(got, st))
	}
}

func TestWalkFilters(t *testing.T) {
	r := newRig(t, Config{})
	r.prepare("p-tmp", "", nil)
	r.commit("p", "p-tmp")
	r.prepare("a", "p", map[string]string{"l": "1"})
	if _, err := r.sn.View(r.ctx, "v", "p"); err != nil {
		t.Fatal(err)
	}
	r.prepare("np", "", map[string]string{"l": "2"})
	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"a", "np", "p", "v"}},
		{[]string{"kind==active"}, []string{"a", "np"}},
		{[]string{"kind==view"}, []string{"v"}},
		{[]string{"kind==committed"}, []string{"p"}},
		{[]string{"parent==p"}, []string{"a", "v"}},
		{[]string{`parent!=""`}, []string{"a", "v"}},
		{[]string{"labels.l"}, []string{"a", "np"}},
		{[]string{"labels.l==2"}, []string{"np"}},
		{[]string{"name==p", "name==v"}, []string{"p", "v"}},
	} {
		got := walk(t, r.sn, tc.filters...)
		var names []string
		for n := range got {
			names = append(names, n)
		}
		sort.Strings(names)
		if !cmp.Equal(names, tc.want) {
			t.Errorf("walk %q = %q, want %q", tc.filters, names, tc.want)
		}
	}
	// fn may call the snapshotter, and its error ends the walk.
	stop := errors.New("stop here")
	n := 0
	err := r.sn.Walk(r.ctx, func(ctx context.Context, in snapshots.Info) error {
		n++
		if _, err := r.sn.Stat(ctx, in.Name); err != nil {
			return err
		}
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("walk returned %v after %d calls, want %v after 1", err, n, stop)
	}
}

func TestRemoveDiscards(t *testing.T) {
	r := newRig(t, Config{DiscardBlocks: true})
	r.prepare("a", "", nil)
	r.commit("c", "a")
	if _, err := r.sn.View(r.ctx, "v", "c"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"v", "c"} {
		if err := r.sn.Remove(r.ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.fs.discards) != 1 {
		t.Fatalf("discards = %q, want one (of the committed snapshot, not the view)", r.fs.discards)
	}
}

func TestCommitChecksNameBeforeChanging(t *testing.T) {
	r := newRig(t, Config{})
	r.prepare("a", "", nil)
	r.prepare("b", "", nil)
	err := r.sn.Commit(r.ctx, "b", "a")
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("commit onto an active key: %v", err)
	}
	if in := r.stat("a"); in.Kind != snapshots.KindActive {
		t.Fatalf("a after a refused commit: %+v", in)
	}
}

func TestCloseTwice(t *testing.T) {
	r := newRig(t, Config{})
	for i := range 2 {
		if err := r.sn.Close(); err != nil {
			t.Fatalf("close %d: %v", i+1, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"4096", 4096, true},
		{"64KiB", 64 << 10, true},
		{"10GB", 10 << 30, true},
		{"10G", 10 << 30, true},
		{"10 gib", 10 << 30, true},
		{"1TiB", 1 << 40, true},
		{"", 0, false},
		{"GB", 0, false},
		{"10XB", 0, false},
		{"-1", 0, false},
		{"99999999999PiB", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ParseSize(%q): %v does not match ErrInvalidConfig", tc.in, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{RootPath: "/r", PoolName: "p"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for key, c := range map[string]Config{
		"root_path":       {PoolName: "p"},
		"pool_name":       {RootPath: "/r"},
		"metadata_device": {RootPath: "/r", PoolName: "p", DataDevice: "/dev/loop1"},
		"base_image_size": {RootPath: "/r", PoolName: "p", BaseImageSize: "1MiB"},
		"data_block_size": {RootPath: "/r", PoolName: "p", DataBlockSize: "100KiB"},
		"fs_type":         {RootPath: "/r", PoolName: "p", FSType: "btrfs"},
	} {
		err := c.Validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != key {
			t.Errorf("%+v: %v, want a ConfigError on %s", c, err, key)
		}
	}
}

// While a snapshot is being made (held here in its create_snap message) the
// snapshotter's lock is free: its key is taken (a second Prepare or View of
// it fails at once), and its parent cannot be removed.
func TestSnapshotBeingMade(t *testing.T) {
	r := newRig(t, Config{})
	r.prepare("extract", "", nil)
	r.commit("img", "extract")
	arrived, held := make(chan struct{}), make(chan struct{})
	var once, released sync.Once
	release := func() { released.Do(func() { close(held) }) }
	t.Cleanup(release) // before the catalog's Close, which waits for it
	r.k.SetBeforeIoctl(func(cmd ioctl.Cmd, _ *ioctl.Header) error {
		if cmd == ioctl.CmdTargetMsg {
			once.Do(func() { close(arrived); <-held })
		}
		return nil
	})
	done := make(chan error, 1)
	go func() { _, err := r.sn.Prepare(r.ctx, "c1", "img"); done <- err }()
	<-arrived
	within := func(what string, f func() error) error {
		t.Helper()
		ch := make(chan error, 1)
		go func() { ch <- f() }()
		select {
		case err := <-ch:
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("%s waits for another snapshot's kernel work", what)
			return nil
		}
	}
	if err := within("prepare", func() error { _, err := r.sn.Prepare(r.ctx, "c1", "img"); return err }); !errdefs.IsAlreadyExists(err) {
		t.Errorf("prepare of a key being made: %v, want already exists", err)
	}
	if err := within("view", func() error { _, err := r.sn.View(r.ctx, "c1", "img"); return err }); !errdefs.IsAlreadyExists(err) {
		t.Errorf("view of a key being made: %v, want already exists", err)
	}
	if err := within("remove", func() error { return r.sn.Remove(r.ctx, "img") }); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("remove of a parent with a snapshot being made: %v, want failed precondition", err)
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("prepare: %+v", err)
	}
	if in := r.stat("c1"); in.Kind != snapshots.KindActive || in.Parent != "img" {
		t.Fatalf("c1 = %+v", in)
	}
	if err := r.sn.Remove(r.ctx, "img"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("remove of a parent: %v, want failed precondition", err)
	}
}
