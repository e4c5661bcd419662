package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/thinp/thinp/examples/internal/size"
	"github.com/thinp/thinp/examples/internal/undo"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/loop"
	"github.com/thinp/thinp/thin"
	"github.com/thinp/thinp/thin/catalog"
)

// The volumes' keys in the catalog.
const (
	originKey = "vol"
	snapKey   = "snap"
)

// teardownTimeout bounds the whole teardown. Each removal waits for udev
// (30 s at most) and retries a busy device for 5 s, so this is generous;
// it only matters when something else holds our devices open.
const teardownTimeout = 2 * time.Minute

// demo is one run: what it made, in the order it made it.
type demo struct {
	cfg  config
	out  io.Writer
	errw io.Writer

	// undo holds the teardown steps, run last first.
	undo *undo.Stack

	ctl  *dm.Control
	lctl *loop.Control

	dir                string // holds the two files
	dataFile, metaFile string
	data, meta         *loop.Device
	pool               *thin.Pool
	cat                *catalog.Catalog
	catDir             string
	origin, snap       *thin.Volume
	names              []string // dm devices made, in creation order
}

func newDemo(cfg config, stdout, stderr io.Writer) *demo {
	return &demo{cfg: cfg, out: stdout, errw: stderr, undo: undo.New(stdout)}
}

// say narrates a step.
func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, format+"\n", args...)
}

// detail narrates what -v asks for.
func (d *demo) detail(format string, args ...any) {
	if d.cfg.verbose {
		fmt.Fprintf(d.out, "    "+format+"\n", args...)
	}
}

// printErr prints err on stderr; -v adds the stack of library errors.
func (d *demo) printErr(err error) {
	if d.cfg.verbose {
		fmt.Fprintf(d.errw, "thinpool: %+v\n", err)
		return
	}
	fmt.Fprintf(d.errw, "thinpool: %v\n", err)
}

// run makes everything and prints the report. Whatever it made is on
// d.undo, also when it fails.
func (d *demo) run(ctx context.Context) error {
	c := d.cfg
	// device-mapper first: without it, there is nothing to make files for.
	ctl, err := dm.Open()
	if err != nil {
		return fmt.Errorf("open device-mapper: %w", err)
	}
	d.ctl = ctl
	sync, why := ctl.UdevStatus()
	if sync {
		d.say("device-mapper interface %s; waiting for udev on every change", ctl.Version())
	} else {
		d.say("device-mapper interface %s; not waiting for udev (%s): managing /dev/mapper nodes directly", ctl.Version(), why)
	}
	if err := d.makeFiles(ctx); err != nil {
		return err
	}
	if err := d.attachLoops(ctx); err != nil {
		return err
	}
	if err := d.createPool(ctx); err != nil {
		return err
	}

	if err := d.openCatalog(ctx); err != nil {
		return err
	}

	// The thin volume: the catalog picks its thin id and creates it in a
	// pool transaction, so that after a crash it knows whether it exists.
	if err := d.createVolume(ctx, originKey, ""); err != nil {
		return err
	}
	var err2 error
	if d.origin, err2 = d.activate(ctx, originKey); err2 != nil {
		return err2
	}

	w := writePlan(c)
	if err := d.write(ctx, d.origin, 0, w.first, 'A'); err != nil {
		return err
	}

	// The snapshot: the library suspends the active origin around
	// create_snap and always resumes it.
	if err := d.createVolume(ctx, snapKey, originKey); err != nil {
		return err
	}
	if d.snap, err2 = d.activate(ctx, snapKey); err2 != nil {
		return err2
	}

	if err := d.write(ctx, d.origin, w.secondOff, w.second, 'B'); err != nil {
		return err
	}
	// Where the writes overlap, the origin has the new data and the
	// snapshot the old: the pool copied those blocks on write.
	overlap := w.first - w.secondOff
	if err := d.verify(ctx, d.snap, w.secondOff, overlap, 'A'); err != nil {
		return err
	}
	if err := d.verify(ctx, d.origin, w.secondOff, overlap, 'B'); err != nil {
		return err
	}
	d.say("checked: where the writes overlap (%s), %s holds the second write and %s still the first", size.Human(overlap), d.origin.Name(), d.snap.Name())

	r, err := d.report(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(d.out)
	r.print(d.out)
	fmt.Fprintln(d.out)
	return nil
}

// makeFiles makes the directory, if asked to, and the two sparse files.
func (d *demo) makeFiles(ctx context.Context) error {
	c := d.cfg
	if c.dir == "" {
		dir, err := os.MkdirTemp("", c.name+"*")
		if err != nil {
			return err
		}
		d.dir = dir
		d.undo.Push("remove directory "+dir, func(context.Context) error { return os.Remove(dir) })
	} else {
		fi, err := os.Stat(c.dir)
		if err != nil {
			return fmt.Errorf("-dir: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("-dir: %s is not a directory", c.dir)
		}
		d.dir = c.dir
	}
	d.dataFile = filepath.Join(d.dir, c.name+"data.img")
	d.metaFile = filepath.Join(d.dir, c.name+"metadata.img")
	for _, f := range []struct {
		path string
		size uint64
	}{{d.dataFile, c.dataSize}, {d.metaFile, c.metaSize}} {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := loop.CreateSparseFile(f.path, int64(f.size)); err != nil {
			return err
		}
		path := f.path
		d.undo.Push("remove file "+path, func(context.Context) error { return os.Remove(path) })
		d.say("created sparse file %s (%s)", f.path, size.Human(f.size))
	}
	return nil
}

// attachLoops attaches both files to loop devices with autoclear: once
// the pool is gone and our descriptors are closed, the kernel detaches
// them, even if this program dies.
func (d *demo) attachLoops(ctx context.Context) error {
	lctl, err := loop.OpenControl()
	if err != nil {
		return err
	}
	d.lctl = lctl
	for _, f := range []struct {
		path string
		dev  **loop.Device
	}{{d.dataFile, &d.data}, {d.metaFile, &d.meta}} {
		dev, err := lctl.Attach(ctx, f.path, &loop.Options{Autoclear: true})
		if err != nil {
			return err
		}
		*f.dev = dev
		d.undo.Push("detach "+dev.Path(), func(ctx context.Context) error {
			err := dev.Detach(ctx)
			dev.Close()
			if errors.Is(err, loop.ErrBusy) {
				// Someone (udev's probe) still has it open: the
				// kernel detaches it at the last close.
				d.detail("%s is still open elsewhere; the kernel detaches it at its last close", dev.Path())
				return nil
			}
			return err
		})
		d.say("attached %s (%s) to %s", dev.Path(), dev.Dev(), f.path)
	}
	return nil
}

// claim checks that no device is called name and registers its removal:
// the demo removes only devices it made.
func (d *demo) claim(ctx context.Context, name string, flags ...dm.Flag) error {
	_, err := d.ctl.Info(ctx, dm.Name(name))
	switch {
	case err == nil:
		return fmt.Errorf("a device named %s exists already, and it is not ours: pick another -name", name)
	case !errors.Is(err, dm.ErrNotFound):
		return err
	}
	d.undo.Push("remove device "+name, func(ctx context.Context) error {
		err := d.ctl.Remove(ctx, dm.Name(name), flags...)
		if errors.Is(err, dm.ErrNotFound) {
			return nil // a failed create leaves nothing
		}
		return err
	})
	return nil
}

// createPool creates the pool over the two loop devices on fresh
// metadata.
func (d *demo) createPool(ctx context.Context) error {
	c := d.cfg
	bs := dm.Sectors(c.blockSize / dm.SectorSize)
	blocks := thin.DataBlocks(c.dataSize / c.blockSize)
	spec := thin.PoolSpec{
		Metadata:     d.meta.Dev(),
		Data:         d.data.Dev(),
		BlockSize:    bs,
		LowWaterMark: blocks / 10, // an event when 90% is used
		// Fail writes at once when the pool is full, rather than queue
		// them for 60 s: a demo should never hang.
		ErrorIfNoSpace: true,
	}
	name := c.name + "pool"
	if err := d.claim(ctx, name); err != nil {
		return err
	}
	pool, err := thin.CreatePool(ctx, d.ctl, name, spec, thin.FormatMetadata(), thin.WithMetadataPath(d.meta.Path()))
	if err != nil {
		if errors.Is(err, dm.ErrExists) {
			d.undo.Pop() // someone else's, made since claim
		}
		return err
	}
	d.pool = pool
	d.names = append(d.names, name)
	d.say("created thin pool %s (%s), %s of data in blocks of %s", name, pool.Dev(), size.Human(c.dataSize), size.Human(c.blockSize))
	if live, err := pool.Spec(ctx); err == nil {
		d.detail("table: %s", live.Target())
	}
	return nil
}

// openCatalog opens the catalog of the demo's volumes, in a directory of
// its own beside the files.
func (d *demo) openCatalog(ctx context.Context) error {
	dir := filepath.Join(d.dir, d.cfg.name+"catalog")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	d.catDir = dir
	d.undo.Push("remove catalog "+dir, func(context.Context) error {
		if d.cat != nil {
			if err := d.cat.Close(); err != nil {
				return err
			}
			d.cat = nil
		}
		return os.RemoveAll(dir)
	})
	opts := []catalog.Option{catalog.WithDevicePrefix(d.cfg.name + "thin-")}
	if d.cfg.deferred {
		opts = append(opts, catalog.WithDeferredDeletion())
	}
	cat, err := catalog.Open(ctx, d.pool, dir, opts...)
	if err != nil {
		return err
	}
	d.cat = cat
	d.say("opened the volume catalog in %s", dir)
	return nil
}

// createVolume creates the volume key, a snapshot of parent if parent is
// not empty.
func (d *demo) createVolume(ctx context.Context, key, parent string) error {
	tid := d.cat.TransactionID()
	var v catalog.Volume
	var err error
	if parent == "" {
		v, err = d.cat.Create(ctx, key, dm.Sectors(d.cfg.volSize/dm.SectorSize))
	} else {
		v, err = d.cat.Snapshot(ctx, key, parent)
	}
	if err != nil {
		return err
	}
	d.undo.Push(fmt.Sprintf("delete volume %s (thin id %d)", key, v.ID), func(ctx context.Context) error {
		return d.cat.Delete(ctx, key)
	})
	if parent == "" {
		d.say("created volume %s: create_thin %d in transaction %d -> %d", key, v.ID, tid, d.cat.TransactionID())
	} else {
		d.say("created volume %s: create_snap %d %d in transaction %d -> %d", key, v.ID, v.ParentID, tid, d.cat.TransactionID())
	}
	return nil
}

// activate makes volume key available as <name prefix><key>, a name no
// other device may have.
func (d *demo) activate(ctx context.Context, key string) (*thin.Volume, error) {
	name := d.cfg.name + key
	if _, err := d.ctl.Info(ctx, dm.Name(name)); err == nil {
		return nil, fmt.Errorf("a device named %s exists already, and it is not ours: pick another -name", name)
	} else if !errors.Is(err, dm.ErrNotFound) {
		return nil, err
	}
	if _, err := d.cat.Activate(ctx, key, catalog.WithDeviceName(name)); err != nil {
		return nil, err
	}
	d.names = append(d.names, name)
	v, err := d.pool.Volume(ctx, name)
	if err != nil {
		return nil, err
	}
	d.say("activated thin id %d as %s (%s), %s", v.ID(), volPath(v), v.Dev(), size.Human(v.Size().Bytes()))
	return v, nil
}

// volPath is the volume's /dev/mapper node, or /dev/dm-N if that is
// missing.
func volPath(v *thin.Volume) string {
	if _, err := os.Stat(v.MapperPath()); err == nil {
		return v.MapperPath()
	}
	return v.DevPath()
}

// plan is what the demo writes: first at 0, then second at secondOff,
// overlapping the second half of first.
type plan struct{ first, second, secondOff uint64 }

func writePlan(c config) plan {
	first := min(16<<20, c.volSize/2) &^ 4095
	return plan{first: first, second: first, secondOff: first / 2}
}

// chunk is the size of each write and read.
const chunk = 1 << 20

// write writes n bytes of pattern tag at off, and syncs.
func (d *demo) write(ctx context.Context, v *thin.Volume, off, n uint64, tag byte) error {
	t0 := time.Now()
	path := volPath(v)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, chunk)
	for done := uint64(0); done < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := buf[:min(chunk, n-done)]
		fill(b, tag, off+done)
		if _, err := f.WriteAt(b, int64(off+done)); err != nil {
			return err
		}
		done += uint64(len(b))
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d.say("wrote %s to %s at offset %s (%.2fs)", size.Human(n), v.Name(), size.Human(off), time.Since(t0).Seconds())
	return nil
}

// verify checks that n bytes at off hold pattern tag.
func (d *demo) verify(ctx context.Context, v *thin.Volume, off, n uint64, tag byte) error {
	f, err := os.Open(volPath(v))
	if err != nil {
		return err
	}
	defer f.Close()
	got, want := make([]byte, chunk), make([]byte, chunk)
	for done := uint64(0); done < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		g, w := got[:min(chunk, n-done)], want[:min(chunk, n-done)]
		if _, err := f.ReadAt(g, int64(off+done)); err != nil {
			return err
		}
		fill(w, tag, off+done)
		if !bytes.Equal(g, w) {
			i := 0
			for g[i] == w[i] {
				i++
			}
			return fmt.Errorf("%s: byte %d holds %q, want %q (write %c)", v.Name(), off+done+uint64(i), g[i], w[i], tag)
		}
		done += uint64(len(g))
	}
	return nil
}

// fill fills b, which starts at byte off of a volume, with write tag's
// pattern: every 512-byte sector says what it is, readable with hexdump.
func fill(b []byte, tag byte, off uint64) {
	var sector [512]byte
	for i := 0; i < len(b); {
		at := off + uint64(i)
		n := copy(sector[:], fmt.Sprintf("thinp demo: write %c, sector %d\n", tag, at/512))
		for j := n; j < len(sector)-1; j++ {
			sector[j] = tag
		}
		sector[len(sector)-1] = '\n'
		i += copy(b[i:], sector[at%512:])
	}
}

// teardown undoes everything run made, last first, and goes on after a
// failure. It does not use ctx's cancellation: a Ctrl-C must not stop the
// cleanup it asked for.
func (d *demo) teardown(ctx context.Context) error { return d.undo.Run(ctx, teardownTimeout) }

// close releases what the demo holds: the catalog's lock (if -keep left
// it open), the loop devices (with autoclear they stay attached while a
// pool uses them), the loop control and the dm control.
func (d *demo) close() {
	if d.cat != nil { // kept (-keep): release its lock
		d.cat.Close()
	}
	for _, l := range []*loop.Device{d.data, d.meta} {
		if l != nil {
			l.Close()
		}
	}
	if d.lctl != nil {
		d.lctl.Close()
	}
	if d.ctl != nil {
		d.ctl.Close()
	}
}

// printKept says what -keep left and how to remove it.
func (d *demo) printKept() {
	fmt.Fprintln(d.out, "kept everything (-keep). To remove it (dmsetup, or go run ./examples/dmsetup):")
	for i := len(d.names) - 1; i >= 0; i-- {
		fmt.Fprintf(d.out, "  dmsetup remove %s\n", d.names[i])
	}
	fmt.Fprintf(d.out, "  (%s and %s detach themselves once the pool is removed: autoclear)\n", d.data.Path(), d.meta.Path())
	fmt.Fprintf(d.out, "  rm -r %s (the volume catalog)\n", d.catDir)
	if d.cfg.dir == "" {
		fmt.Fprintf(d.out, "  rm -r %s\n", d.dir)
	} else {
		fmt.Fprintf(d.out, "  rm %s %s\n", d.dataFile, d.metaFile)
	}
	fmt.Fprintf(d.out, "To grow the pool as it fills: go run ./examples/autoextend -pool %s -data-file %s\n", d.cfg.name+"pool", d.dataFile)
}
