package dm_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/dm/dmtest"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Users reads holders from sysfs (dm devices by their dm name) and mounts
// from every mount namespace's mountinfo, one process per namespace.
func TestUsersFromSysfsAndProc(t *testing.T) {
	dir := t.TempDir()
	sys, proc := filepath.Join(dir, "sys"), filepath.Join(dir, "proc")
	ctl, err := dmtest.NewControl(dmtest.New(), dm.WithSysDir(sys), dm.WithProcDir(proc), dm.WithDevDir(filepath.Join(dir, "dev")))
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	data := dm.Dev{Major: 7, Minor: 1}
	write(t, filepath.Join(sys, "dev/block/7:1/holders/dm-3"), "")
	write(t, filepath.Join(sys, "dev/block/7:1/holders/md0"), "")
	write(t, filepath.Join(sys, "block/dm-3/dm/name"), "pool1\n")
	// Three processes in two mount namespaces; 7:1 is mounted in both, at
	// a path with a space (escaped by the kernel), and read-only in one.
	mi := func(point, opts string) string {
		return "36 25 7:1 / " + point + " " + opts + " shared:1 - ext4 /dev/loop1 rw\n" +
			"37 25 8:1 / /boot rw - ext4 /dev/sda1 rw\n"
	}
	for pid, ns := range map[string]string{"1": "mnt:[1]", "42": "mnt:[2]", "43": "mnt:[2]"} {
		if err := os.MkdirAll(filepath.Join(proc, pid, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(ns, filepath.Join(proc, pid, "ns/mnt")); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(proc, "1/mountinfo"), mi(`/srv/my\040data`, "rw,relatime"))
	write(t, filepath.Join(proc, "42/mountinfo"), mi("/mnt", "ro,relatime"))
	write(t, filepath.Join(proc, "43/mountinfo"), mi("/mnt", "ro,relatime"))
	write(t, filepath.Join(proc, "self/mountinfo"), "") // not a pid: skipped

	u, err := ctl.Users(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	want := dm.Users{
		Dev:     data,
		Holders: []string{"pool1", "md0"},
		Mounts: []dm.Mount{
			{Point: "/srv/my data", PID: 1, ReadWrite: true},
			{Point: "/mnt", PID: 42},
		},
		OpenCount: -1,
	}
	if !reflect.DeepEqual(u, want) {
		t.Fatalf("Users:\n got %+v\nwant %+v", u, want)
	}
	if !u.InUse() {
		t.Error("not in use")
	}
	const text = "7:1 is held by dm device pool1, held by dm device md0, mounted at /srv/my data (in the mount namespace of pid 1), mounted at /mnt (in the mount namespace of pid 42)"
	if u.String() != text {
		t.Errorf("String:\n got %q\nwant %q", u.String(), text)
	}

	// A device nothing uses.
	free, err := ctl.Users(context.Background(), dm.Dev{Major: 7, Minor: 2})
	if err != nil || free.InUse() || free.String() != "7:2 is not in use" {
		t.Errorf("free device: %+v %v", free, err)
	}
	// A bad number is refused before looking.
	if _, err := ctl.Users(context.Background(), dm.Dev{}); !errors.Is(err, dm.ErrInvalid) {
		t.Errorf("Users(0:0) = %v", err)
	}

	// As the cause of an error, it matches EBUSY and ErrBusy, and says
	// who holds the device once.
	err = dm.NewError("remove", dm.Name("vol"), &dm.BusyError{Users: u})
	if !errors.Is(err, dm.ErrBusy) || !errors.Is(err, unix.EBUSY) || errors.Is(err, dm.ErrExists) {
		t.Errorf("BusyError classification: %v", err)
	}
	if got, want := err.Error(), "dm remove vol: "+text+" (EBUSY)"; got != want {
		t.Errorf("Error:\n got %q\nwant %q", got, want)
	}
	var be *dm.BusyError
	if !errors.As(err, &be) || len(be.Users.Mounts) != 2 {
		t.Errorf("errors.As BusyError: %+v", be)
	}
}
