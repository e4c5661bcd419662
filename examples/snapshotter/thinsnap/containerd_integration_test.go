package thinsnap_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"

	"github.com/thinp/thinp/examples/snapshotter/thinsnap"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/thin/catalog"
	"github.com/thinp/thinp/thin/thintest"
)

// daemonNamespace is the containerd namespace the test works in; the
// containerd image name of the imported image is daemonImage.
const (
	daemonNamespace = "thinp-test"
	daemonImage     = "docker.io/thinp/layers:test"
)

// testLayers are the image's layers, lowest first: files by path ("" for
// a directory), where a name starting with ".wh." is an OCI whiteout that
// deletes the file of a lower layer named by the rest.
var testLayers = []map[string]string{
	{
		"data/":         "",
		"data/story":    "told by layer 1\n",
		"data/gone":     "deleted by layer 2\n",
		"data/kept":     "only in layer 1\n",
		"etc/":          "",
		"etc/thinp.cfg": "layer=1\n",
	},
	{
		"data/story":     "told by layer 2\n",
		"data/.wh.gone":  "",
		"data/second":    "added by layer 2\n",
		"etc/thinp.cfg":  "layer=2\n",
		"data/sub/":      "",
		"data/sub/inner": "in a directory of layer 2\n",
	},
	{
		"data/story": "told by layer 3\n",
		"data/third": "added by layer 3\n",
	},
}

// wantTree is what a view of the top layer holds under data/ and etc/:
// each path's content in the highest layer that has it, less the
// whiteout-deleted one.
var wantTree = map[string]string{
	"data/story":     "told by layer 3\n",
	"data/kept":      "only in layer 1\n",
	"data/second":    "added by layer 2\n",
	"data/sub/inner": "in a directory of layer 2\n",
	"data/third":     "added by layer 3\n",
	"etc/thinp.cfg":  "layer=2\n",
}

// TestIntegrationContainerdDaemon runs a real containerd daemon (Debian's
// containerd 1.6, the containerd and ctr programs) with the snapshotter as
// its proxy plugin "thinp", served over a unix socket as
// cmd/thinp-snapshotter serves it. ctr imports and unpacks a three-layer
// OCI image (one layer deletes a file of a lower one with a whiteout) onto
// it; the committed snapshots ctr lists must be those the catalog holds,
// one per layer chained by parent; a view of the top layer, mounted, must
// show the layers applied in order. Removing the view and the image (with
// containerd's synchronous garbage collection) must leave the catalog with
// its base volume only and the pool with that one thin device.
//
// It runs in the VM's udev boot only: containerd is slow to start under
// TCG, and what it adds to TestIntegrationProxyUsage does not depend on
// udev.
func TestIntegrationContainerdDaemon(t *testing.T) {
	testenv.Privileged(t)
	if !testenv.UdevRunning() {
		t.Skip("runs in the udev boot only (THINP_VM_UDEV=1 in the VM, or udevd running): one containerd run is enough, and it is slow under TCG")
	}
	testenv.Tool(t, "mkfs.ext4")
	containerd := testenv.Tool(t, "containerd")
	ctr := testenv.Tool(t, "ctr")
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	ctx := context.Background()

	ctl := thintest.Control(t)
	tp := thintest.NewPool(t, ctl, &thintest.Options{Name: prefix + "pool", DataSize: 512 << 20, MetaSize: 16 << 20})
	cat, err := catalog.Open(ctx, tp.Pool, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	sn, err := thinsnap.New(cat, thinsnap.Config{BaseImageSize: "64MiB"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sn.Close() })
	// Runs after containerd stops (cleanups run last-registered first):
	// whatever a failed run left, so the pool can be torn down.
	t.Cleanup(func() {
		if err := removeAll(context.Background(), sn); err != nil {
			t.Errorf("remove leftover snapshots: %v", err)
		}
	})
	snapSock := serveSnapshotter(t, sn)

	dir := t.TempDir()
	d := startContainerd(t, containerd, ctr, dir, snapSock)

	// Import and unpack. ctr's import unpacks onto --snapshotter unless
	// --no-unpack.
	tarPath, chain := writeOCIImage(t, filepath.Join(dir, "image.tar"))
	out := d.ctr(t, "images", "import", "--snapshotter", "thinp", tarPath)
	t.Logf("ctr images import:\n%s", out)
	out = d.ctr(t, "images", "ls")
	if !strings.Contains(out, daemonImage) {
		t.Fatalf("ctr images ls does not list %s:\n%s", daemonImage, out)
	}
	out = d.ctr(t, "images", "check", "--snapshotter", "thinp")
	t.Logf("ctr images check:\n%s", out)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 ||
		!regexp.MustCompile(regexp.QuoteMeta(daemonImage)+`\s.*complete.*\strue$`).MatchString(strings.TrimSpace(lines[1])) {
		t.Errorf("image not complete and unpacked:\n%s", out)
	}

	// The committed chain: ctr's names and parents are the layers' chain
	// IDs; the snapshotter's are containerd's backend keys for them,
	// "<namespace>/<n>/<name>".
	out = d.ctr(t, "snapshots", "--snapshotter", "thinp", "ls")
	t.Logf("ctr snapshots --snapshotter thinp ls:\n%s", out)
	listed := parseSnapshotList(t, out)
	var want []snapRow
	for i, c := range chain {
		r := snapRow{Name: c.String(), Kind: "Committed"}
		if i > 0 {
			r.Parent = chain[i-1].String()
		}
		want = append(want, r)
	}
	slices.SortFunc(want, cmpRow)
	if !slices.Equal(listed, want) {
		t.Errorf("ctr lists %+v\nwant the image's chain %+v", listed, want)
	}
	backend := backendRows(t, sn)
	t.Logf("snapshotter holds: %+v", backend)
	if !slices.Equal(backend, want) {
		t.Errorf("snapshotter holds %+v\nwant what ctr lists %+v", backend, want)
	}
	vols := cat.List()
	var keys []string
	for _, v := range vols {
		keys = append(keys, v.Key)
	}
	t.Logf("catalog keys: %q", keys)
	if len(vols) != 1+len(chain) {
		t.Errorf("catalog holds %q, want the base volume and %d committed snapshots", keys, len(chain))
	}
	for _, v := range vols {
		if v.State != catalog.Inactive {
			t.Errorf("catalog volume %s is %v after the unpack, want inactive", v.Key, v.State)
		}
	}

	// A view of the top layer, made through containerd; its mounts are
	// the snapshotter's (a read-only ext4 mount of a dm device).
	out = d.ctr(t, "snapshots", "--snapshotter", "thinp", "view", "--mounts", "top-view", chain[len(chain)-1].String())
	var ms []mount.Mount
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		t.Fatalf("ctr snapshots view --mounts: %v\n%s", err, out)
	}
	t.Logf("view mounts: %+v", ms)
	mnt := t.TempDir()
	if err := mount.All(ms, mnt); err != nil {
		t.Fatalf("mount the view: %v", err)
	}
	got, rerr := readTree(mnt, "data", "etc")
	werr := os.WriteFile(filepath.Join(mnt, "data", "new"), nil, 0o644)
	if err := mount.UnmountAll(mnt, 0); err != nil {
		t.Fatal(err)
	}
	if rerr != nil {
		t.Fatal(rerr)
	}
	t.Logf("data/story read back through the view: %q", got["data/story"])
	if !mapsEqual(got, wantTree) {
		t.Errorf("the view holds %q\nwant the layers applied in order %q", got, wantTree)
	}
	if werr == nil {
		t.Error("a write to the read-only view succeeded")
	}

	// Remove it all: the view, then the image; --sync waits for
	// containerd's garbage collection, which removes the snapshots the
	// image no longer references from the snapshotter.
	d.ctr(t, "snapshots", "--snapshotter", "thinp", "rm", "top-view")
	d.ctr(t, "images", "rm", "--sync", daemonImage)
	out = d.ctr(t, "snapshots", "--snapshotter", "thinp", "ls")
	t.Logf("ctr snapshots ls after images rm --sync:\n%s", out)
	if rows := parseSnapshotList(t, out); len(rows) != 0 {
		t.Errorf("ctr still lists %+v", rows)
	}
	if rows := backendRows(t, sn); len(rows) != 0 {
		t.Errorf("the snapshotter still holds %+v", rows)
	}
	vols = cat.List()
	if len(vols) != 1 || vols[0].Key != "base" {
		t.Errorf("catalog holds %+v, want the base volume only", vols)
	}
	us, err := tp.Pool.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 1 || len(vols) != 1 || us[0].ID != vols[0].ID {
		t.Errorf("pool has thin devices %+v, want the base volume's only", us)
	}
	d.stop(t)
}

// serveSnapshotter serves sn over containerd's snapshots gRPC API on a
// unix socket in a temporary directory, until the test ends, and returns
// the socket's path.
func serveSnapshotter(t *testing.T, sn snapshots.Snapshotter) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "snap.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(sn))
	var wg sync.WaitGroup
	wg.Go(func() { rpc.Serve(l) })
	t.Cleanup(func() { rpc.Stop(); wg.Wait() })
	return sock
}

// daemon is a containerd process the test started.
type daemon struct {
	ctrPath string
	addr    string
	cmd     *exec.Cmd
	log     *testenv.Buffer
	exited  chan struct{}
	waitErr error
	stopped bool
}

// containerdConfig is containerd 1.6's config.toml (version 2) for the
// test: everything under dir, the snapshotter as proxy plugin "thinp", and
// the plugins an image import does not use disabled (the CRI plugin, the
// other snapshotters, the runtimes, the task service and its cgroup
// monitor, tracing).
const containerdConfig = `version = 2
root = %[1]q
state = %[2]q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.native",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.runtime.v1.linux",
  "io.containerd.runtime.v2.task",
  "io.containerd.service.v1.tasks-service",
  "io.containerd.grpc.v1.tasks",
  "io.containerd.internal.v1.restart",
  "io.containerd.monitor.v1.cgroups",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[proxy_plugins.thinp]
  type = "snapshot"
  address = %[6]q
`

// startContainerd writes a config in dir, starts containerd with it, waits
// until ctr reaches it, and registers its stop.
func startContainerd(t *testing.T, containerd, ctr, dir, snapSock string) *daemon {
	t.Helper()
	d := &daemon{ctrPath: ctr, addr: filepath.Join(dir, "containerd.sock"), log: &testenv.Buffer{}, exited: make(chan struct{})}
	cfg := filepath.Join(dir, "config.toml")
	text := fmt.Sprintf(containerdConfig, filepath.Join(dir, "root"), filepath.Join(dir, "state"),
		d.addr, filepath.Join(dir, "containerd.ttrpc.sock"), filepath.Join(dir, "opt"), snapSock)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(containerd, "--config", cfg, "--log-level", "info")
	d.cmd.Stdout = d.log
	d.cmd.Stderr = d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.waitErr = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("containerd's log:\n%s", d.log.String())
		}
	})

	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := exec.Command(ctr, "-a", d.addr, "version").CombinedOutput()
		if err == nil {
			t.Logf("ctr version:\n%s", out)
			return d
		}
		select {
		case <-d.exited:
			t.Fatalf("containerd exited at start: %v\n%s", d.waitErr, d.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer in 2 minutes: %v: %s\n%s", err, out, d.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ctr runs ctr against the daemon in the test's namespace and returns its
// standard output; it fails the test if ctr fails.
func (d *daemon) ctr(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(d.ctrPath, append([]string{"-a", d.addr, "-n", daemonNamespace}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ctr %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

// stop stops containerd with SIGTERM, or SIGKILL if it has not exited in
// 30 seconds, and fails t if it did not exit cleanly after SIGTERM.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if d.stopped {
		return
	}
	d.stopped = true
	select {
	case <-d.exited:
		t.Errorf("containerd exited before the test stopped it: %v", d.waitErr)
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		if d.waitErr != nil {
			var ee *exec.ExitError
			if !errors.As(d.waitErr, &ee) || !ee.Exited() || ee.ExitCode() != 0 {
				t.Errorf("containerd after SIGTERM: %v", d.waitErr)
			}
		}
	case <-time.After(30 * time.Second):
		t.Errorf("containerd still runs 30s after SIGTERM; killing it")
		d.cmd.Process.Kill()
		<-d.exited
	}
}

// snapRow is a snapshot as ctr lists it.
type snapRow struct {
	Name, Parent, Kind string
}

func cmpRow(a, b snapRow) int { return strings.Compare(a.Name, b.Name) }

// parseSnapshotList reads the table of ctr snapshots ls (KEY PARENT KIND,
// PARENT empty for a snapshot without parent), sorted by name.
func parseSnapshotList(t *testing.T, out string) []snapRow {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !slices.Equal(strings.Fields(lines[0]), []string{"KEY", "PARENT", "KIND"}) {
		t.Fatalf("ctr snapshots ls: no KEY PARENT KIND header:\n%s", out)
	}
	var rows []snapRow
	for _, l := range lines[1:] {
		switch f := strings.Fields(l); len(f) {
		case 2:
			rows = append(rows, snapRow{Name: f[0], Kind: f[1]})
		case 3:
			rows = append(rows, snapRow{Name: f[0], Parent: f[1], Kind: f[2]})
		default:
			t.Fatalf("ctr snapshots ls: line %q", l)
		}
	}
	slices.SortFunc(rows, cmpRow)
	return rows
}

// backendKey is containerd's key for a snapshot in a proxy snapshotter:
// namespace, a number of its own, and the snapshot's name or key.
var backendKey = regexp.MustCompile(`^` + regexp.QuoteMeta(daemonNamespace) + `/[0-9]+/(.+)$`)

// backendRows lists the snapshotter's snapshots with containerd's names
// (the backend keys less their namespace and number), sorted by name.
func backendRows(t *testing.T, sn snapshots.Snapshotter) []snapRow {
	t.Helper()
	strip := func(k string) string {
		if k == "" {
			return ""
		}
		m := backendKey.FindStringSubmatch(k)
		if m == nil {
			t.Errorf("snapshotter key %q is not containerd's %s/<n>/<name>", k, daemonNamespace)
			return k
		}
		return m[1]
	}
	var rows []snapRow
	if err := sn.Walk(context.Background(), func(ctx context.Context, in snapshots.Info) error {
		rows = append(rows, snapRow{Name: strip(in.Name), Parent: strip(in.Parent), Kind: in.Kind.String()})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(rows, cmpRow)
	return rows
}

// readTree reads the regular files under the given directories of root,
// by path relative to root.
func readTree(root string, dirs ...string) (map[string]string, error) {
	files := map[string]string{}
	for _, d := range dirs {
		err := filepath.WalkDir(filepath.Join(root, d), func(p string, e os.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(root, p)
			files[rel] = string(b)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return files, nil
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// writeOCIImage writes an OCI image layout tarball of testLayers at path,
// an image for this machine's linux platform named daemonImage, and
// returns the path and the layers' chain IDs, lowest first.
func writeOCIImage(t *testing.T, path string) (string, []digest.Digest) {
	t.Helper()
	blobs := map[digest.Digest][]byte{}
	blob := func(mediaType string, b []byte) ocispec.Descriptor {
		dg := digest.FromBytes(b)
		blobs[dg] = b
		return ocispec.Descriptor{MediaType: mediaType, Digest: dg, Size: int64(len(b))}
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	var layers []ocispec.Descriptor
	var diffIDs []digest.Digest
	for _, files := range testLayers {
		raw := layerTar(t, files)
		diffIDs = append(diffIDs, digest.FromBytes(raw))
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(raw)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		layers = append(layers, blob(ocispec.MediaTypeImageLayerGzip, gz.Bytes()))
	}
	platform := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	config := blob(ocispec.MediaTypeImageConfig, mustJSON(ocispec.Image{
		Platform: platform,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
		Config:   ocispec.ImageConfig{Cmd: []string{"/bin/true"}},
	}))
	manifest := blob(ocispec.MediaTypeImageManifest, mustJSON(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config,
		Layers:    layers,
	}))
	manifest.Platform = &platform
	// containerd names an imported image by this annotation when it is
	// there; the OCI ref name alone would need ctr's --base-name.
	manifest.Annotations = map[string]string{
		"io.containerd.image.name": daemonImage,
		ocispec.AnnotationRefName:  "test",
	}
	index := mustJSON(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifest},
	})

	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	add := func(name string, b []byte) {
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}
		if b == nil {
			hdr = &tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	add(ocispec.ImageLayoutFile, mustJSON(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion}))
	add("index.json", index)
	add("blobs/", nil)
	add("blobs/sha256/", nil)
	dgs := make([]digest.Digest, 0, len(blobs))
	for dg := range blobs {
		dgs = append(dgs, dg)
	}
	slices.Sort(dgs)
	for _, dg := range dgs {
		add("blobs/sha256/"+dg.Encoded(), blobs[dg])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, identity.ChainIDs(slices.Clone(diffIDs))
}

// layerTar is an uncompressed layer tar of files (see testLayers), in
// sorted path order.
func layerTar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	mtime := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range names {
		hdr := &tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg, ModTime: mtime}
		if strings.HasSuffix(n, "/") {
			hdr = &tar.Header{Name: n, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: mtime}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
