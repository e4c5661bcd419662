package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/examples/internal/size"
	"github.com/thinp/thinp/examples/internal/undo"
	"github.com/thinp/thinp/loop"
	"github.com/thinp/thinp/thin"
)

// exitInterrupted is -demo's status when Ctrl-C stopped it (after its
// teardown): 128 + SIGINT, as shells report it.
const exitInterrupted = 130

// The demo's pool: metadata file size, block size, volume size, and the
// low water mark under -policy lwm without -threshold (4 MiB).
const (
	demoMetaSize  = 4 << 20
	demoBlockSize = 128 // sectors: 64 KiB
	demoVolSize   = 256 << 20
	demoLWM       = 64
	demoTeardown  = 2 * time.Minute
)

// validateDemo checks -demo's settings before anything is made.
func (c config) validateDemo() error {
	for _, suffix := range []string{"pool", "vol"} {
		if err := dm.ValidateName(c.name + suffix); err != nil {
			return fmt.Errorf("-name: %q cannot prefix a device-mapper name: %w", c.name, err)
		}
	}
	switch {
	case c.demoWrite < 1<<20 || c.demoWrite > demoVolSize:
		return fmt.Errorf("-demo-write: %s is not from 1MiB to the volume's %s", size.IEC(c.demoWrite), size.IEC(demoVolSize))
	case c.max < c.demoData:
		return fmt.Errorf("-max %s is below the demo pool's %s", size.IEC(c.max), size.IEC(c.demoData))
	case c.demoWrite+1<<20 > c.max:
		// A pool that cannot grow enough queues the writes for ever.
		return fmt.Errorf("-demo-write %s does not fit in -max %s with 1MiB to spare", size.IEC(c.demoWrite), size.IEC(c.max))
	}
	return nil
}

// demoRun is one -demo: what it made, to be undone last first.
type demoRun struct {
	cfg    config
	out    io.Writer
	undo   *undo.Stack
	loops  []*loop.Device
	ctl    *dm.Control
	pool   *thin.Pool
	vol    *thin.Volume
	grown  int // extensions seen in the daemon's log
	logged *countingWriter
}

func (r *demoRun) say(format string, args ...any) {
	fmt.Fprintf(r.out, format+"\n", args...)
}

// runDemo runs -demo and returns the exit status.
func runDemo(ctx context.Context, cfg config, stdout, stderr io.Writer) int {
	r := &demoRun{cfg: cfg, out: stdout, undo: undo.New(stdout)}
	defer r.close()
	err := r.run(ctx, stderr)
	interrupted := err != nil && ctx.Err() != nil
	switch {
	case interrupted:
		fmt.Fprintln(stderr, "autoextend: interrupted; tearing down")
	case err != nil:
		if r.ctl == nil && os.Geteuid() != 0 {
			fmt.Fprintln(stderr, "autoextend: -demo needs root (device-mapper and loop devices are root's): run it with sudo, or in a VM: go run ./internal/vm/cmd/vmrun run ./examples/autoextend -- -demo")
		}
		if cfg.verbose {
			fmt.Fprintf(stderr, "autoextend: %+v\n", err)
		} else {
			fmt.Fprintf(stderr, "autoextend: %v\n", err)
		}
	}
	if terr := r.teardown(ctx); terr != nil {
		fmt.Fprintf(stderr, "autoextend: teardown: %v\n", terr)
		return exitFail
	}
	switch {
	case interrupted:
		return exitInterrupted
	case err != nil:
		return exitFail
	}
	return exitOK
}

func (r *demoRun) run(ctx context.Context, stderr io.Writer) error {
	c := r.cfg
	ctl, err := dm.Open()
	if err != nil {
		return fmt.Errorf("open device-mapper: %w", err)
	}
	r.ctl = ctl
	for _, n := range []string{c.name + "pool", c.name + "vol"} {
		if _, err := ctl.Info(ctx, dm.Name(n)); err == nil {
			return fmt.Errorf("a device named %s exists already, and it is not ours: pick another -name", n)
		} else if !errors.Is(err, dm.ErrNotFound) {
			return err
		}
	}
	dir, err := os.MkdirTemp("", c.name)
	if err != nil {
		return err
	}
	r.undo.Push("remove directory "+dir, func(context.Context) error { return os.Remove(dir) })
	dataFile := filepath.Join(dir, c.name+"data.img")
	metaFile := filepath.Join(dir, c.name+"metadata.img")
	for _, f := range []struct {
		path string
		size uint64
	}{{dataFile, c.demoData}, {metaFile, demoMetaSize}} {
		if err := loop.CreateSparseFile(f.path, int64(f.size)); err != nil {
			return err
		}
		r.undo.Push("remove file "+f.path, func(context.Context) error { return os.Remove(f.path) })
		dev, err := loop.Attach(ctx, f.path, &loop.Options{Autoclear: true})
		if err != nil {
			return err
		}
		r.loops = append(r.loops, dev)
		r.undo.Push("detach "+dev.Path(), func(ctx context.Context) error {
			err := dev.Detach(ctx)
			if errors.Is(err, loop.ErrBusy) {
				return nil // open elsewhere (udev's probe): autoclear detaches it at its last close
			}
			return err
		})
		r.say("attached %s to %s (%s, sparse)", dev.Path(), f.path, size.IEC(f.size))
	}
	spec := thin.PoolSpec{Metadata: r.loops[1].Dev(), Data: r.loops[0].Dev(), BlockSize: demoBlockSize, LowWaterMark: demoLWM}
	pool, err := thin.CreatePool(ctx, ctl, c.name+"pool", spec, thin.FormatMetadata(), thin.WithMetadataPath(r.loops[1].Path()))
	if err != nil {
		return err
	}
	r.pool = pool
	r.undo.Push("remove pool "+pool.Name()+" and its volume", pool.Teardown)
	r.say("created thin pool %s: %s of data in blocks of %s, low water mark %d blocks, writes queued when full",
		pool.Name(), size.IEC(c.demoData), size.IEC(uint64(demoBlockSize)*512), demoLWM)
	if err := pool.CreateThin(ctx, 1); err != nil {
		return err
	}
	if r.vol, err = pool.Activate(ctx, c.name+"vol", 1, thin.Size(demoVolSize)); err != nil {
		return err
	}
	r.say("activated thin volume %s (%s)", r.vol.DevPath(), size.IEC(demoVolSize))

	// The daemon, as it runs on its own, in this process.
	dc := c
	dc.pool, dc.dataFile = pool.Name(), dataFile
	if c.policy == policyDmeventd {
		dc.metaFile = metaFile
	}
	r.logged = &countingWriter{w: stderr, match: []byte("extended pool " + pool.Name() + " data")}
	d := newDaemon(dc, r.logged)
	defer d.close()
	dctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	if err := d.open(dctx); err != nil {
		return err
	}
	watched := make(chan error, 1)
	running, ended := context.WithCancel(ctx)
	defer ended()
	go func() {
		err := d.watch(dctx)
		ended()
		watched <- err
	}()
	stopDaemon := func() error {
		stop()
		err := <-watched
		if rerr := d.restoreLWM(context.WithoutCancel(ctx)); rerr != nil {
			err = errors.Join(err, fmt.Errorf("restoring the low water mark: %w", rerr))
		}
		return err
	}

	werr := r.write(ctx)
	if werr == nil {
		// The daemon's last look, at what the last writes left: it
		// reads the status on events and timers, and the demo stops
		// it right away.
		lctx, cancel := context.WithTimeout(running, time.Minute)
		d.lookNow(lctx)
		cancel()
	}
	derr := stopDaemon()
	if werr != nil {
		return werr
	}
	if derr != nil {
		return derr
	}
	st, err := pool.Status(ctx)
	if err != nil {
		return err
	}
	spec, err = pool.Spec(ctx)
	if err != nil {
		return err
	}
	r.say("done: wrote %s; pool %s grew %d times, from %s to %s; data %.1f%% used, metadata %.1f%% used",
		size.IEC(c.demoWrite), pool.Name(), r.logged.count(), size.IEC(c.demoData), size.IEC(spec.Length.Bytes()), st.DataPercent(), st.MetaPercent())
	return nil
}

// write writes -demo-write to the volume, 1 MiB at a time with O_SYNC so
// that each write reaches the pool before the next, and prints the pool's
// usage every 4 MiB.
func (r *demoRun) write(ctx context.Context) error {
	f, err := os.OpenFile(r.vol.DevPath(), os.O_RDWR|os.O_SYNC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	n := int((r.cfg.demoWrite + 1<<20 - 1) >> 20)
	for i := range n {
		if err := ctx.Err(); err != nil {
			return err
		}
		for j := range buf {
			buf[j] = byte(i + j/512)
		}
		if _, err := f.WriteAt(buf, int64(i)<<20); err != nil {
			return fmt.Errorf("write of MiB %d: %w", i, err)
		}
		if (i+1)%4 == 0 || i == n-1 {
			st, err := r.pool.Status(ctx)
			if err != nil {
				return err
			}
			r.say("wrote %d MiB: pool data %s of %s used (%.1f%%), metadata %.1f%% used",
				i+1, size.IEC(st.DataUsedBytes(r.pool.BlockSize())), size.IEC(st.DataTotalBytes(r.pool.BlockSize())), st.DataPercent(), st.MetaPercent())
		}
	}
	return f.Sync()
}

// teardown undoes what run made, last first, going on after failures; a
// Ctrl-C does not stop it.
func (r *demoRun) teardown(ctx context.Context) error { return r.undo.Run(ctx, demoTeardown) }

func (r *demoRun) close() {
	for _, l := range r.loops {
		l.Close()
	}
	if r.ctl != nil {
		r.ctl.Close()
	}
}

// countingWriter passes writes on and counts those that contain match
// (the daemon's logger writes one line per call).
type countingWriter struct {
	w     io.Writer
	match []byte
	mu    sync.Mutex
	n     int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	if bytes.Contains(p, c.match) {
		c.n++
	}
	c.mu.Unlock()
	return c.w.Write(p)
}

func (c *countingWriter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
