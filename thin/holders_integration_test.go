package thin_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/ioctl"
	"github.com/thinp/thinp/thin"
)

// snapSpy is the control device with a look at the kernel's state, from
// sysfs, at the moment each create_snap message goes in: whether each
// watched device is suspended (/sys/block/dm-N/dm/suspended).
type snapSpy struct {
	*ioctl.File
	mu      sync.Mutex
	watch   map[string]dm.Dev // name -> device
	seen    []map[string]bool // one per create_snap: name -> suspended
	readErr error
}

func (s *snapSpy) Ioctl(req uint, b []byte) error {
	if bytes.Contains(b, []byte("create_snap ")) {
		s.mu.Lock()
		m := map[string]bool{}
		for name, d := range s.watch {
			v, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%s/dm/suspended", d))
			if err != nil {
				s.readErr = err
				continue
			}
			m[name] = strings.TrimSpace(string(v)) == "1"
		}
		s.seen = append(s.seen, m)
		s.mu.Unlock()
	}
	return s.File.Ioctl(req, b)
}

func (s *snapSpy) last(t *testing.T) map[string]bool {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readErr != nil {
		t.Fatalf("reading sysfs: %v", s.readErr)
	}
	if len(s.seen) == 0 {
		t.Fatal("no create_snap reached the kernel")
	}
	return s.seen[len(s.seen)-1]
}

func runDmsetup(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(testenv.Tool(t, "dmsetup"), append([]string{"--noudevsync"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dmsetup %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// An origin that dmsetup activated (no uuid of this package, so the pool
// finds it only through its holders in sysfs) is suspended while
// create_snap goes in, as the kernel's sysfs says at that moment; also
// after the pool has cached its holders (the new one must move the
// holders directory's stamp), after dmsetup reloads it to another thin
// id, and next to a volume this package activated on the same id.
func TestIntegrationSnapshotSuspendsOriginOfDmsetup(t *testing.T) {
	testenv.Privileged(t)
	f, err := ioctl.Open("/dev/mapper/control")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	spy := &snapSpy{File: f, watch: map[string]dm.Dev{}}
	ctl, prefix := vmSetup(t, dm.WithTransport(spy))
	tp := newPool(t, ctl, prefix, poolOpts{})
	ctx := context.Background()
	for id := thin.DeviceID(1); id <= 3; id++ {
		if err := tp.CreateThin(ctx, id); err != nil {
			t.Fatalf("%+v", err)
		}
	}
	// A first snapshot: the pool lists its holders (none) and stamps them.
	if err := tp.CreateSnapshot(ctx, 10, 1); err != nil {
		t.Fatalf("%+v", err)
	}

	ext := prefix + "ext"
	runDmsetup(t, "create", ext, "--table", fmt.Sprintf("0 8192 thin %s 1", tp.Dev()))
	t.Cleanup(func() { exec.Command(testenv.Tool(t, "dmsetup"), "--noudevsync", "remove", ext).Run() })
	info, err := ctl.Info(ctx, dm.Name(ext))
	if err != nil {
		t.Fatalf("%+v", err)
	}
	spy.mu.Lock()
	spy.watch[ext] = info.Dev
	spy.mu.Unlock()

	if err := tp.CreateSnapshot(ctx, 11, 1); err != nil {
		t.Fatalf("%+v", err)
	}
	if got := spy.last(t); !got[ext] {
		t.Errorf("origin activated by dmsetup was running during create_snap: %v", got)
	}
	if v := sysSuspended(t, info.Dev); v {
		t.Error("origin left suspended")
	}

	// dmsetup reloads it to thin id 2: the link stays, the thin id changes.
	runDmsetup(t, "load", ext, "--table", fmt.Sprintf("0 8192 thin %s 2", tp.Dev()))
	runDmsetup(t, "resume", ext)
	if err := tp.CreateSnapshot(ctx, 12, 2); err != nil {
		t.Fatalf("%+v", err)
	}
	if got := spy.last(t); !got[ext] {
		t.Errorf("origin reloaded by dmsetup was running during create_snap: %v", got)
	}
	if err := tp.CreateSnapshot(ctx, 13, 1); err != nil {
		t.Fatalf("%+v", err)
	}
	if got := spy.last(t); got[ext] {
		t.Errorf("a device that no longer maps the origin was suspended: %v", got)
	}

	// This package's volume and dmsetup's device on one id: both.
	mine := tp.activate(t, prefix+"mine", 2, 8192, false)
	spy.mu.Lock()
	spy.watch[mine.Name()] = mine.Dev()
	spy.mu.Unlock()
	if err := tp.CreateSnapshot(ctx, 14, 2); err != nil {
		t.Fatalf("%+v", err)
	}
	if got := spy.last(t); !got[ext] || !got[mine.Name()] {
		t.Errorf("not every device of the origin was suspended: %v", got)
	}
	if err := tp.CreateSnapshot(ctx, 15, 2); err != nil { // from the cache now
		t.Fatalf("%+v", err)
	}
	if got := spy.last(t); !got[ext] || !got[mine.Name()] {
		t.Errorf("not every device of the origin was suspended (cached): %v", got)
	}
	// udevd may still be probing ext after dmsetup's --noudevsync resume
	// (the udev boot): --retry waits out such a short-lived open, as this
	// package's Remove does by default.
	runDmsetup(t, "remove", "--retry", ext)
	if err := mine.Deactivate(ctx); err != nil {
		t.Fatalf("%+v", err)
	}
}

func sysSuspended(t *testing.T, d dm.Dev) bool {
	t.Helper()
	v, err := os.ReadFile(filepath.Join("/sys/dev/block", d.String(), "dm/suspended"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(v)) == "1"
}

// Sixteen goroutines on one pool, each with its own origin: lifecycles
// and snapshots of the active origin, in parallel on the real kernel.
func TestIntegrationConcurrentPoolOps(t *testing.T) {
	ctl, prefix := vmSetup(t)
	tp := newPool(t, ctl, prefix, poolOpts{})
	ctx := context.Background()
	const workers, rounds = 16, 3
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				base := thin.DeviceID(100 * (w + 1))
				if err := tp.CreateThin(ctx, base); err != nil {
					return err
				}
				origin, err := tp.Activate(ctx, fmt.Sprintf("%so%02d", prefix, w), base, 8192)
				if err != nil {
					return err
				}
				for r := range rounds {
					id := base + 1 + thin.DeviceID(r)
					if err := tp.CreateThin(ctx, id); err != nil {
						return err
					}
					v, err := tp.Activate(ctx, fmt.Sprintf("%sv%02d-%d", prefix, w, r), id, 8192)
					if err != nil {
						return err
					}
					if err := origin.Snapshot(ctx, id+50); err != nil {
						return err
					}
					if err := v.Deactivate(ctx); err != nil {
						return err
					}
					for _, d := range []thin.DeviceID{id, id + 50} {
						if err := tp.Delete(ctx, d); err != nil {
							return err
						}
					}
				}
				if err := origin.Deactivate(ctx); err != nil {
					return err
				}
				return tp.Delete(ctx, base)
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("%+v", err)
		}
	}
	vols, err := tp.Volumes(ctx)
	if err != nil || len(vols) != 0 {
		t.Errorf("volumes left: %v %+v", vols, err)
	}
}
