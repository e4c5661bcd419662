package thin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/thin"
)

// lvm2 is lvm2's lvm binary run with a configuration of the test's own
// (LVM_SYSTEM_DIR) that sees one device only and leaves no daemons,
// backups or locks behind outside the test's directory.
type lvm2 struct {
	bin string
	env []string
}

func newLVM2(t *testing.T, pv string) *lvm2 {
	t.Helper()
	bin := ""
	for _, p := range []string{"/usr/sbin/lvm", "/sbin/lvm"} {
		if _, err := os.Stat(p); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("no lvm binary (lvm2 is not installed on the host the guest was built on)")
	}
	dir := t.TempDir()
	tool := func(name string) string {
		for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
			if p := filepath.Join(d, name); fileExists(p) {
				return p
			}
		}
		return "/usr/sbin/" + name
	}
	conf := fmt.Sprintf(`devices {
	scan = [ "/dev" ]
	obtain_device_list_from_udev = 0
	external_device_info_source = "none"
	use_devicesfile = 0
	hints = "none"
	filter = [ "a|^%[1]s$|", "r|.*|" ]
	global_filter = [ "a|^%[1]s$|", "r|.*|" ]
}
global {
	locking_dir = "%[2]s/lock"
	use_lvmpolld = 0
	event_activation = 0
	thin_check_executable = "%[3]s"
	thin_dump_executable = "%[4]s"
	thin_repair_executable = "%[5]s"
}
activation {
	udev_sync = 1
	udev_rules = 1
	verify_udev_operations = 1
	monitoring = 0
}
backup {
	backup = 0
	archive = 0
}
`, pv, dir, tool("thin_check"), tool("thin_dump"), tool("thin_repair"))
	if err := os.WriteFile(filepath.Join(dir, "lvm.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "lock"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &lvm2{bin: bin, env: append(os.Environ(), "LVM_SYSTEM_DIR="+dir, "LVM_SUPPRESS_FD_WARNINGS=1")}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// run runs `lvm args...` and returns its standard output.
func (l *lvm2) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := l.try(args...)
	if err != nil {
		t.Fatalf("lvm %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (l *lvm2) try(args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := exec.Command(l.bin, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = l.env, &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%w\n%s%s", err, out.String(), errb.String())
	}
	return out.String(), nil
}

// field reads one lvs field of vg/lv.
func (l *lvm2) field(t *testing.T, lv, field string) string {
	t.Helper()
	return strings.TrimSpace(l.run(t, "lvs", "--noheadings", "-o", field, lv))
}

// TestIntegrationLVMPool opens a pool and thin volumes that lvm2 made:
// their status parses and agrees with what lvs reports, and the library
// refuses, with ErrManagedByLVM, every message that would change the thin
// ids or the transaction id LVM keeps in its own metadata; lvm2 can
// still use the pool afterwards. It needs udevd: lvm2 synchronises with
// udev through the same cookies.
func TestIntegrationLVMPool(t *testing.T) {
	ctl, prefix := vmSetup(t)
	if !testenv.UdevRunning() {
		t.Skip("lvm2 is run with udev synchronisation: the udev boot covers it")
	}
	ctx := context.Background()
	pv := newBacking(t, 256<<20)
	l := newLVM2(t, pv.Loop.Path())
	vg := strings.ReplaceAll(strings.TrimSuffix(prefix, "-"), "-", "_")
	l.run(t, "pvcreate", "-q", pv.Loop.Path())
	l.run(t, "vgcreate", "-q", vg, pv.Loop.Path())
	t.Cleanup(func() {
		if _, err := l.try("vgremove", "-q", "-ff", vg); err != nil {
			t.Errorf("vgremove: %v", err)
		}
		if _, err := l.try("pvremove", "-q", "-ff", pv.Loop.Path()); err != nil {
			t.Errorf("pvremove: %v", err)
		}
		devs, err := ctl.List(ctx, dm.WithNamePrefix(vg+"-"))
		if err != nil || len(devs) != 0 {
			t.Errorf("after vgremove: %v, %v", devs, err)
		}
	})
	l.run(t, "lvcreate", "-q", "--type", "thin-pool", "-L", "64m", "--poolmetadatasize", "4m", "-n", "pool", vg)
	l.run(t, "lvcreate", "-q", "-V", "32m", "--thinpool", vg+"/pool", "-n", "thin1")
	// A second thin volume, not a snapshot: lvm2 insists on the snapshot
	// target for lvcreate -s, which the guest has no modprobe to load.
	l.run(t, "lvcreate", "-q", "-V", "16m", "--thinpool", vg+"/pool", "-n", "snap1")

	// lvm2 names the pool's thin-pool device <vg>-<pool>-tpool and gives
	// every device a uuid "LVM-<vg uuid><lv uuid>[-suffix]".
	poolName := vg + "-pool-tpool"
	info, err := ctl.Info(ctx, dm.Name(poolName))
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if !strings.HasPrefix(info.UUID, "LVM-") || !strings.HasSuffix(info.UUID, "-tpool") {
		t.Errorf("pool uuid %q", info.UUID)
	}
	p, err := thin.OpenPool(ctx, ctl, poolName)
	if err != nil {
		t.Fatalf("OpenPool of lvm2's pool: %+v", err)
	}
	st, err := p.Status(ctx)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	t.Logf("pool %s: %s", poolName, st)
	if tid := l.field(t, vg+"/pool", "transaction_id"); tid != strconv.FormatUint(st.TransactionID, 10) {
		t.Errorf("transaction id %d, lvs says %s", st.TransactionID, tid)
	}
	if st.Mode != thin.ModeReadWrite || st.NeedsCheck {
		t.Errorf("pool status %s, want rw", st)
	}
	spec, err := p.Spec(ctx)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if chunk := l.field(t, vg+"/pool", "chunk_size"); spec.BlockSize.Bytes() != parseLVMSize(t, chunk) {
		t.Errorf("block size %d sectors, lvs says chunk size %s", spec.BlockSize, chunk)
	}

	ids := map[string]thin.DeviceID{}
	for _, lv := range []string{"thin1", "snap1"} {
		v, err := p.Volume(ctx, vg+"-"+lv)
		if err != nil {
			t.Fatalf("Volume %s: %+v", lv, err)
		}
		want := l.field(t, vg+"/"+lv, "thin_id")
		if strconv.FormatUint(uint64(v.ID()), 10) != want {
			t.Errorf("%s: thin id %d, lvs says %s", lv, v.ID(), want)
		}
		ids[lv] = v.ID()
		if _, err := v.Status(ctx); err != nil {
			t.Errorf("%s status: %+v", lv, err)
		}
	}
	vols, err := p.Volumes(ctx)
	if err != nil || len(vols) != 2 {
		t.Errorf("Volumes: %d, %+v; want thin1 and snap1 (a second thin)", len(vols), err)
	}

	// Nothing that changes ids or the transaction id reaches the pool.
	for name, err := range map[string]error{
		"CreateThin":       p.CreateThin(ctx, 100),
		"CreateSnapshot":   p.CreateSnapshot(ctx, 101, ids["thin1"]),
		"Delete":           p.Delete(ctx, ids["snap1"]),
		"SetTransactionID": p.SetTransactionID(ctx, st.TransactionID, st.TransactionID+1),
	} {
		if !errors.Is(err, thin.ErrManagedByLVM) || !errors.Is(err, dm.ErrPermission) || !errors.Is(err, unix.EPERM) {
			t.Errorf("%s on lvm2's pool: %v, want ErrManagedByLVM", name, err)
		}
	}
	after, err := p.Status(ctx)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if after.TransactionID != st.TransactionID {
		t.Errorf("transaction id moved from %d to %d", st.TransactionID, after.TransactionID)
	}
	// A metadata snapshot changes nothing LVM tracks (thin_ls reads a
	// live pool through one).
	if err := p.ReserveMetadataSnap(ctx); err != nil {
		t.Errorf("ReserveMetadataSnap: %+v", err)
	}
	if err := p.ReleaseMetadataSnap(ctx); err != nil {
		t.Errorf("ReleaseMetadataSnap: %+v", err)
	}
	// LVM still agrees with its pool.
	l.run(t, "lvcreate", "-q", "-V", "16m", "--thinpool", vg+"/pool", "-n", "thin3")
	l.run(t, "lvremove", "-q", "-f", vg+"/snap1")
	st2, err := p.Status(ctx)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if tid := l.field(t, vg+"/pool", "transaction_id"); tid != strconv.FormatUint(st2.TransactionID, 10) || st2.TransactionID <= st.TransactionID {
		t.Errorf("after lvcreate and lvremove: transaction id %d (was %d), lvs says %s", st2.TransactionID, st.TransactionID, tid)
	}
	l.run(t, "vgchange", "-q", "-an", vg)
}

// parseLVMSize parses an lvs size such as "64.00k" (binary units) into
// bytes.
func parseLVMSize(t *testing.T, s string) uint64 {
	t.Helper()
	s = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "<")
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"):
		mult = 1 << 10
	case strings.HasSuffix(s, "m"):
		mult = 1 << 20
	case strings.HasSuffix(s, "g"):
		mult = 1 << 30
	}
	f, err := strconv.ParseFloat(strings.TrimRight(s, "kmgb"), 64)
	if err != nil {
		t.Fatalf("lvs size %q: %v", s, err)
	}
	return uint64(f * mult)
}
