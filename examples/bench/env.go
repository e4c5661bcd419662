package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/examples/internal/tool"
	"github.com/thinp/thinp/loop"
	"github.com/thinp/thinp/udev"
)

// poolBlockSize is the pool's data block size in sectors (64 KiB).
const poolBlockSize = 128

// env is the pool every workload runs on, and what it takes to tear it
// down again.
type env struct {
	cfg config
	// ctl is the library's Control for (a) to (c) and for all set-up and
	// clean-up: it does not wait for udev and manages /dev/mapper itself.
	ctl *dm.Control

	dir        string
	ownDir     bool
	files      []string // the backing files this run created
	meta, data *loop.Device

	pool    string
	poolDev dm.Dev
	nextID  uint64

	// udev is what udev.Detect found; udevadm is its admin tool, used to
	// wait for udevd to settle before each timed phase.
	udev    udev.Support
	udevadm string
}

// logf writes a progress note.
func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.cfg.Log, "bench: "+format+"\n", args...)
}

// newID returns an unused thin device id. It is not safe for concurrent
// use: the workloads draw ids before they fan out.
func (e *env) newID() uint64 {
	e.nextID++
	return e.nextID
}

// setup makes the pool: two sparse files, two loop devices and a
// thin-pool device. On error it undoes what it did.
func setup(ctx context.Context, cfg config) (_ *env, err error) {
	e := &env{cfg: cfg, pool: cfg.Prefix + "pool", udev: udev.Detect()}
	defer func() {
		if err != nil {
			if cerr := e.teardown(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
	}()
	if e.udev.UdevRunning {
		e.udevadm, _ = tool.Look("udevadm")
	}
	if cfg.Dir != "" {
		e.dir = cfg.Dir
	} else {
		d, err := os.MkdirTemp("", cfg.Prefix+"*")
		if err != nil {
			return nil, err
		}
		e.dir, e.ownDir = d, true
	}
	metaPath := filepath.Join(e.dir, cfg.Prefix+"meta.img")
	dataPath := filepath.Join(e.dir, cfg.Prefix+"data.img")
	if err := sparseFile(metaPath, cfg.MetaSize, true); err != nil {
		return nil, err
	}
	e.files = append(e.files, metaPath)
	if err := sparseFile(dataPath, cfg.DataSize, false); err != nil {
		return nil, err
	}
	e.files = append(e.files, dataPath)
	// Autoclear: should this process die, the kernel detaches the loop
	// devices once the pool (or nothing) holds them.
	opts := &loop.Options{Autoclear: true}
	if e.meta, err = loop.Attach(ctx, metaPath, opts); err != nil {
		return nil, err
	}
	if e.data, err = loop.Attach(ctx, dataPath, opts); err != nil {
		return nil, err
	}
	if e.ctl, err = dm.Open(dm.WithUdev(dm.UdevOff)); err != nil {
		return nil, err
	}
	params := fmt.Sprintf("%s %s %d 0", e.meta.Dev(), e.data.Dev(), poolBlockSize)
	info, err := e.ctl.Create(ctx, e.pool, dm.Table{{Length: dm.Sectors(uint64(cfg.DataSize) / dm.SectorSize), Type: "thin-pool", Params: params}})
	if err != nil {
		return nil, err
	}
	e.poolDev = info.Dev
	e.logf("pool %s (%s) on %s and %s, files in %s; udev: running=%v sync=%v %s",
		e.pool, e.poolDev, e.meta.Path(), e.data.Path(), e.dir, e.udev.UdevRunning, e.udev.Sync, e.udev.Reason)
	return e, nil
}

// sparseFile creates a sparse file of size bytes; with zeroHead, its first
// 4 KiB are written as zeros, so that thin-pool formats fresh metadata
// instead of finding an old superblock.
func sparseFile(path string, size int64, zeroHead bool) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	if zeroHead {
		if _, err := f.WriteAt(make([]byte, 4096), 0); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// settle waits for udevd to finish the events queued so far, so that its
// work does not land in the next timed phase. It does nothing when udevd
// is not running.
func (e *env) settle(ctx context.Context) {
	if e.udevadm == "" {
		return
	}
	cmd := exec.CommandContext(ctx, e.udevadm, "settle", "--timeout=600")
	if out, err := cmd.CombinedOutput(); err != nil {
		e.logf("udevadm settle: %v %s", err, strings.TrimSpace(string(out)))
	}
}

// teardown removes every device whose name has the run's prefix (thin
// volumes first, the pool last), detaches the loop devices, removes the
// files, and closes the Control. It runs after errors and interrupts too,
// so it needs nothing but the prefix and tolerates missing pieces; it
// returns the first failure but always goes on.
func (e *env) teardown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var errs []error
	ctl := e.ctl
	if ctl == nil {
		// Set-up failed before opening it: there may still be nothing
		// to remove, but look.
		c, err := dm.Open(dm.WithUdev(dm.UdevOff))
		if err == nil {
			ctl = c
			defer c.Close()
		}
	}
	if ctl != nil {
		errs = append(errs, removeByPrefix(ctx, ctl, e.cfg.Prefix, e.pool, e.cfg.Log))
	}
	for _, d := range []*loop.Device{e.meta, e.data} {
		if d == nil {
			continue
		}
		// Detach leaves d open when LOOP_CLR_FD fails (including when
		// the device is no longer attached); Close is idempotent.
		if err := d.Detach(ctx); err != nil && !errors.Is(err, loop.ErrNotAttached) {
			errs = append(errs, err)
		}
		d.Close()
	}
	for _, f := range e.files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	e.files = nil
	if e.ownDir {
		if err := os.Remove(e.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		e.ownDir = false
	}
	// Nodes dmsetup or udev made for devices that are gone.
	if ents, err := os.ReadDir("/dev/mapper"); err == nil {
		for _, ent := range ents {
			if strings.HasPrefix(ent.Name(), e.cfg.Prefix) {
				os.Remove(filepath.Join("/dev/mapper", ent.Name()))
			}
		}
	}
	if e.ctl != nil {
		errs = append(errs, e.ctl.Close())
		e.ctl = nil
	}
	return errors.Join(errs...)
}

// removeByPrefix removes the dm devices named prefix*, the pool last.
func removeByPrefix(ctx context.Context, ctl *dm.Control, prefix, pool string, log io.Writer) error {
	devs, err := ctl.List(ctx, dm.WithNamePrefix(prefix))
	if err != nil {
		return err
	}
	havePool := false
	var vols []string
	for _, d := range devs {
		if d.Name == pool {
			havePool = true
		} else {
			vols = append(vols, d.Name)
		}
	}
	_, verr := parallel(ctx, vols, func(ctx context.Context, name string) error {
		// Resume first: an interrupted snapshot may have left an origin
		// suspended.
		if info, err := ctl.Info(ctx, dm.Name(name)); err == nil && info.Suspended {
			ctl.Resume(ctx, dm.Name(name))
		}
		if err := ctl.Remove(ctx, dm.Name(name)); err != nil && !errors.Is(err, dm.ErrNotFound) {
			return err
		}
		return nil
	})
	if len(vols) > 0 {
		fmt.Fprintf(log, "bench: clean-up removed %d leftover volumes\n", len(vols))
	}
	if havePool {
		if err := ctl.Remove(ctx, dm.Name(pool)); err != nil && !errors.Is(err, dm.ErrNotFound) {
			return errors.Join(verr, err)
		}
	}
	return verr
}
