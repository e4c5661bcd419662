package thin_test

import (
	"bufio"
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/thin"
	"github.com/thinp/thinp/thin/thintest"
)

// One owner per device, on the real kernel: a second pool on a running
// pool's data device would be accepted by the kernel (device-mapper claims
// the devices under its tables with one holder for all dm devices) and the
// two pools would overwrite each other's data. CreatePool refuses it, and
// any device another dm device holds or a mount uses, with nothing
// created; AllowInUse is the explicit way past.
func TestIntegrationOneOwnerPerDevice(t *testing.T) {
	ctl := thintest.Control(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	ctx := context.Background()
	p1 := thintest.NewPool(t, ctl, &thintest.Options{Name: prefix + "pool1"})
	meta2 := newBacking(t, 8<<20)

	refused := func(what string, spec thin.PoolSpec, holder string, opts ...thin.PoolOption) *dm.BusyError {
		t.Helper()
		opts = append([]thin.PoolOption{thin.FormatMetadata(), thin.WithMetadataPath(meta2.Loop.Path())}, opts...)
		_, err := thin.CreatePool(ctx, ctl, prefix+"pool2", spec, opts...)
		if !errors.Is(err, thin.ErrInUse) || !errors.Is(err, dm.ErrBusy) || !errors.Is(err, unix.EBUSY) || errors.Is(err, dm.ErrExists) {
			t.Fatalf("%s: %v, want ErrInUse, dm.ErrBusy, EBUSY", what, err)
		}
		var be *dm.BusyError
		if !errors.As(err, &be) {
			t.Fatalf("%s: no *dm.BusyError in %v", what, err)
		}
		if holder != "" && !slices.Contains(be.Users.Holders, holder) {
			t.Errorf("%s: holders %v, want %s", what, be.Users.Holders, holder)
		}
		if _, err := ctl.Info(ctx, dm.Name(prefix+"pool2")); !errors.Is(err, dm.ErrNotFound) {
			t.Errorf("%s: pool2 exists after the refusal: %v", what, err)
		}
		t.Logf("%s: %v", what, err)
		return be
	}

	// The corruption case: another pool's data device.
	spec := thin.PoolSpec{Metadata: meta2.Dev, Data: p1.DataDev(), BlockSize: 128}
	refused("data device of a running pool", spec, p1.Name())
	// Another pool's metadata device (the kernel refuses it too, later).
	other := newBacking(t, 64<<20)
	refused("metadata device of a running pool", thin.PoolSpec{Metadata: p1.MetadataDev(), Data: other.Dev, BlockSize: 128}, p1.Name())

	// A device another dm device (a linear mapping) holds.
	lin, err := ctl.Create(ctx, prefix+"linear", dm.Table{{Length: 8192, Type: "linear", Params: other.Dev.String() + " 0"}})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	refused("device held by a linear device", thin.PoolSpec{Metadata: meta2.Dev, Data: other.Dev, BlockSize: 128}, prefix+"linear")
	if err := ctl.Remove(ctx, dm.DevNum(lin.Dev)); err != nil {
		t.Fatal(err)
	}

	// A mounted device.
	busybox := testenv.Tool(t, "busybox")
	mounted := newBacking(t, 16<<20)
	if out, err := exec.Command(busybox, "mke2fs", "-q", mounted.Loop.Path()).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	dir := t.TempDir()
	if err := unix.Mount(mounted.Loop.Path(), dir, "ext2", 0, ""); err != nil {
		t.Fatalf("mount: %v", err)
	}
	be := refused("mounted device", thin.PoolSpec{Metadata: meta2.Dev, Data: mounted.Dev, BlockSize: 128}, "")
	if len(be.Users.Mounts) == 0 || be.Users.Mounts[0].Point != dir {
		t.Errorf("mounts %+v, want %s", be.Users.Mounts, dir)
	}
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}

	// The explicit opt-out lets the caller through, for that device only.
	refused("opt-out of another device", spec, p1.Name(), thin.AllowInUse(other.Dev))
	p2, err := thin.CreatePool(ctx, ctl, prefix+"pool2", spec, thin.FormatMetadata(), thin.WithMetadataPath(meta2.Loop.Path()), thin.AllowInUse(p1.DataDev()))
	if err != nil {
		t.Fatalf("with AllowInUse: %+v", err)
	}
	if err := p2.Remove(ctx); err != nil {
		t.Fatal(err)
	}
}

// A volume mounted in another mount namespace cannot be deactivated, and
// the error says where it is mounted: the mount that leaked into a
// container's namespace, which otherwise shows only as EBUSY.
func TestIntegrationBusyNamesMountInOtherNamespace(t *testing.T) {
	ctl := thintest.Control(t)
	busybox := testenv.Tool(t, "busybox")
	ctx := context.Background()
	p := thintest.NewPool(t, ctl, nil)
	vol := p.NewVolume(t, "", 1, thin.Size(16*thin.MiB))
	if out, err := exec.Command(busybox, "mke2fs", "-q", vol.DevPath()).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	dir := t.TempDir()
	// A process in a mount namespace of its own mounts the volume; the
	// test's namespace never sees the mount.
	cmd := exec.Command(busybox, "unshare", "-m", busybox, "sh", "-c",
		"mount -t ext2 "+vol.DevPath()+" "+dir+" && echo mounted && exec sleep 600")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "mounted" {
		t.Fatalf("the child did not mount: %q %v", line, err)
	}
	if us, err := ctl.Users(ctx, vol.Dev()); err != nil || len(us.Mounts) != 1 {
		t.Fatalf("Users: %+v %v", us, err)
	}

	err = vol.Deactivate(ctx, dm.NoRetry)
	if !errors.Is(err, thin.ErrInUse) || !errors.Is(err, dm.ErrBusy) || !errors.Is(err, unix.EBUSY) {
		t.Fatalf("deactivate of a volume mounted elsewhere: %v", err)
	}
	var be *dm.BusyError
	if !errors.As(err, &be) || len(be.Users.Mounts) != 1 || be.Users.Mounts[0].Point != dir || be.Users.Mounts[0].PID == 0 || be.Users.OpenCount < 1 {
		t.Fatalf("BusyError %+v", be)
	}
	if !strings.Contains(err.Error(), "mounted at "+dir) {
		t.Errorf("the error does not name the mount: %v", err)
	}
	t.Logf("%v", err)

	// Once that namespace is gone, so is the mount.
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = vol.Deactivate(ctx, dm.NoRetry)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("deactivate after the namespace ended: %v", err)
	}
}
