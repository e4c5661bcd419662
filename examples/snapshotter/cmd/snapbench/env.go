package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/examples/internal/tool"
	"github.com/thinp/thinp/loop"
	"github.com/thinp/thinp/thin"
	"github.com/thinp/thinp/udev"
)

// blockSize is both pools' data block size in sectors (64 KiB).
const blockSize = 128

// pool is one thin pool on two loop devices over sparse files.
type pool struct {
	name       string
	meta, data *loop.Device
	files      []string
	pool       *thin.Pool
}

// env is everything the run makes, and what it takes to remove it again.
type env struct {
	cfg config
	// ctl makes and removes the pools and is the thinp snapshotter's
	// Control: it waits for udev when udevd runs (dm.UdevAuto), as
	// dmsetup does for the devmapper snapshotter.
	ctl     *dm.Control
	dir     string // the run's directory: backing files, catalog, devmapper's databases
	pools   []*pool
	udevadm string
	cookies map[uint32]bool // the udev cookies there were before the run
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "snapbench: "+format+"\n", args...)
}

// newEnv makes the run's directory and opens the Control.
func newEnv(cfg config) (*env, error) {
	e := &env{cfg: cfg, cookies: map[uint32]bool{}}
	if cs, err := udev.ListCookies(); err == nil {
		for _, c := range cs {
			e.cookies[c.Cookie] = true
		}
	}
	if udev.Detect().UdevRunning {
		e.udevadm, _ = tool.Look("udevadm")
	}
	var err error
	if e.dir, err = os.MkdirTemp(cfg.Dir, cfg.Prefix+"*"); err != nil {
		return nil, err
	}
	if e.ctl, err = dm.Open(); err != nil {
		os.Remove(e.dir)
		return nil, err
	}
	return e, nil
}

// makePool makes a pool named e.cfg.Prefix+suffix: sparse files in the
// run's directory, loop devices over them, and a thin pool on fresh
// metadata. What it made is recorded before each next step, so teardown
// removes it after a failure too.
func (e *env) makePool(ctx context.Context, suffix string) (*pool, error) {
	p := &pool{name: e.cfg.Prefix + suffix}
	e.pools = append(e.pools, p)
	metaPath := filepath.Join(e.dir, suffix+"-meta.img")
	dataPath := filepath.Join(e.dir, suffix+"-data.img")
	// Autoclear: should this process die, the kernel detaches the loop
	// devices once the pool (or nothing) holds them.
	opts := &loop.Options{Autoclear: true}
	for _, f := range []struct {
		path string
		size int64
		dev  **loop.Device
	}{{metaPath, e.cfg.MetaSize, &p.meta}, {dataPath, e.cfg.DataSize, &p.data}} {
		if err := loop.CreateSparseFile(f.path, f.size); err != nil {
			return nil, err
		}
		p.files = append(p.files, f.path)
		d, err := loop.Attach(ctx, f.path, opts)
		if err != nil {
			return nil, err
		}
		*f.dev = d
	}
	tp, err := thin.CreatePool(ctx, e.ctl, p.name, thin.PoolSpec{
		Metadata: p.meta.Dev(), Data: p.data.Dev(), BlockSize: blockSize,
	}, thin.FormatMetadata())
	if err != nil {
		return nil, err
	}
	p.pool = tp
	e.logf("pool %s on %s and %s (data %d MiB, metadata %d MiB, blocks of 64 KiB)",
		p.name, p.meta.Path(), p.data.Path(), e.cfg.DataSize>>20, e.cfg.MetaSize>>20)
	return p, nil
}

// settle waits for udevd to finish the events queued so far, so that its
// work does not land in the next timed phase. Nothing when udevd is not
// running.
func (e *env) settle(ctx context.Context) {
	if e.udevadm == "" {
		return
	}
	if out, err := exec.CommandContext(ctx, e.udevadm, "settle", "--timeout=120").CombinedOutput(); err != nil {
		e.logf("udevadm settle: %v %s", err, strings.TrimSpace(string(out)))
	}
}

// teardown removes every dm device named with the run's prefix (thin
// devices first, the pools last), detaches the loop devices, removes the
// run's directory, closes the Control, and warns of udev cookies the run
// left. It needs nothing but what was recorded, tolerates missing pieces,
// goes on after failures and returns them all.
func (e *env) teardown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var errs []error
	e.settle(ctx)
	if e.ctl != nil {
		errs = append(errs, e.removeDevices(ctx))
	}
	for _, p := range e.pools {
		for _, d := range []*loop.Device{p.meta, p.data} {
			if d == nil {
				continue
			}
			if err := d.Detach(ctx); err != nil && !errors.Is(err, loop.ErrNotAttached) {
				errs = append(errs, err)
			}
			d.Close()
		}
	}
	if e.dir != "" {
		if err := os.RemoveAll(e.dir); err != nil {
			errs = append(errs, err)
		}
	}
	if e.ctl != nil {
		errs = append(errs, e.ctl.Close())
		e.ctl = nil
	}
	if cs, err := udev.ListCookies(); err == nil {
		for _, c := range cs {
			if !e.cookies[c.Cookie] {
				errs = append(errs, fmt.Errorf("udev cookie %#x (last used by pid %d) appeared during the run and is still there", c.Cookie, c.LastPID))
			}
		}
	}
	return errors.Join(errs...)
}

// removeDevices removes the dm devices named with the run's prefix, the
// pools last. Normally the snapshotters have removed every snapshot by
// now, and only the pools are left.
func (e *env) removeDevices(ctx context.Context) error {
	devs, err := e.ctl.List(ctx, dm.WithNamePrefix(e.cfg.Prefix))
	if err != nil {
		return err
	}
	isPool := map[string]bool{}
	for _, p := range e.pools {
		isPool[p.name] = true
	}
	var errs []error
	var vols, pools []string
	for _, d := range devs {
		if isPool[d.Name] {
			pools = append(pools, d.Name)
		} else {
			vols = append(vols, d.Name)
		}
	}
	if len(vols) > 0 {
		e.logf("clean-up: removing %d leftover thin devices", len(vols))
	}
	for _, name := range append(vols, pools...) {
		// An interrupted snapshot may have left its origin suspended.
		if info, err := e.ctl.Info(ctx, dm.Name(name)); err == nil && info.Suspended {
			e.ctl.Resume(ctx, dm.Name(name))
		}
		if err := e.ctl.Remove(ctx, dm.Name(name)); err != nil && !errors.Is(err, dm.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
