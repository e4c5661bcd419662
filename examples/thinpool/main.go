// Command thinpool is thinp's demo: the whole life of a device-mapper thin
// pool in one run, in pure Go (no cgo, no libdevmapper, no dmsetup).
//
//  1. two sparse files, for data and metadata, in -dir (default: a new
//     temporary directory);
//  2. a loop device over each (autoclear, so that the kernel detaches them
//     once nothing uses them, even if this program is killed);
//  3. a thin pool over the two loop devices, with fresh metadata;
//  4. a volume catalog (package thin/catalog) in a directory beside the
//     files, which keeps the demo's volumes under keys and picks their thin
//     ids;
//  5. a thin volume "vol" (thin id 1, created in transaction 0 -> 1),
//     activated, and data written to it;
//  6. a snapshot of it, "snap" (thin id 2, transaction 1 -> 2; the origin
//     is suspended around create_snap), activated;
//  7. more data written to the origin, overwriting half of the first
//     write; the snapshot is checked to still hold the old data;
//  8. a status report in the spirit of the devicemapper section of
//     `docker info` (pool name and block size, base device size, data and
//     metadata space used, total and available, minimum free space, udev
//     sync, deferred removal and deletion, loop files, versions), plus the
//     pool's transaction id and mode and each volume's mapped size;
//  9. teardown: volumes (deleted through the catalog), catalog, pool, loop
//     devices, files and the directory it made, in that order.
//
// Teardown also runs on an error and on Ctrl-C (SIGINT or SIGTERM): the
// program removes everything it made and nothing else (a device that
// already has one of its names stops it before it makes that device).
// Further signals during teardown are ignored; it is bounded by two
// minutes. With -keep it leaves everything in place after a successful
// run and prints how to remove it.
//
// Sizes are reported as docker did: four significant digits in SI units
// ("65.54 kB", "1.074 GB"). Data Space Available is, also as docker did,
// the pool's free space capped by the free space of the file system that
// holds the sparse data file, since writes to the pool must land there.
//
// Usage:
//
//	thinpool [-dir DIR] [-data-size 1GiB] [-meta-size 32MiB] [-block-size 64KiB]
//	         [-volume-size 256MiB] [-name thinp-demo-] [-deferred-remove] [-keep] [-v]
//
// It needs root and a kernel with device-mapper, dm-thin and loop devices
// (modprobe dm-thin-pool loop). Where the kernel has none, run it in the
// VM test tier: go run ./internal/vm/cmd/vmrun run ./examples/thinpool
//
// Exit status: 0 on success, 1 on failure (after teardown), 2 on a usage
// error, 130 when interrupted (after teardown).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/examples/internal/size"
)

// Exit statuses.
const (
	exitOK          = 0
	exitFail        = 1
	exitUsage       = 2
	exitInterrupted = 130 // 128 + SIGINT, as shells report it
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags say.
type config struct {
	dir       string // where the sparse files go; "" for a new temporary directory
	dataSize  uint64 // bytes
	metaSize  uint64 // bytes
	blockSize uint64 // bytes
	volSize   uint64 // bytes
	name      string // prefix of every device and file name
	deferred  bool   // deferred removal and deletion of busy volumes
	keep      bool   // leave everything in place after a successful run
	verbose   bool
}

// Defaults. The pool's block size is docker's default (64 KiB); the data
// file is sparse, so its size costs nothing until written.
const (
	defaultDataSize  = 1 << 30
	defaultMetaSize  = 32 << 20
	defaultBlockSize = 64 << 10
	defaultVolSize   = 256 << 20
	defaultName      = "thinp-demo-"
)

const usageText = `Usage: thinpool [flags]

The thinp demo: sparse files -> loop devices -> thin pool -> thin volume ->
write -> snapshot -> write more -> status report -> teardown. Everything it
makes is removed at the end, on an error, or on Ctrl-C; -keep leaves it in
place after a successful run. Needs root and a kernel with device-mapper,
dm-thin and loop devices; elsewhere run it in the VM:

  go run ./internal/vm/cmd/vmrun run ./examples/thinpool [-- flags]

Sizes take a unit: B, K/KiB, M/MiB, G/GiB, T/TiB (powers of 1024) or
kB/MB/GB/TB (powers of 1000).

Flags:
`

// parseFlags reads the command line. A request for help prints the usage
// on stdout and returns flag.ErrHelp.
func parseFlags(args []string, stdout, stderr io.Writer) (config, error) {
	cfg := config{name: defaultName}
	data := &size.Flag{N: defaultDataSize}
	meta := &size.Flag{N: defaultMetaSize}
	block := &size.Flag{N: defaultBlockSize}
	vol := &size.Flag{N: defaultVolSize}
	fs := flag.NewFlagSet("thinpool", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.dir, "dir", "", "directory for the sparse files (default: a new temporary directory, removed at teardown)")
	fs.Var(data, "data-size", "size of the sparse data file, the pool's data space")
	fs.Var(meta, "meta-size", "size of the sparse metadata file (at least 2MiB)")
	fs.Var(block, "block-size", "the pool's data block size: a multiple of 64KiB up to 1GiB")
	fs.Var(vol, "volume-size", "size of the thin volume (may exceed -data-size: thin provisioning)")
	fs.StringVar(&cfg.name, "name", defaultName, "prefix of the device and file names (<name>pool, <name>vol, <name>snap)")
	fs.BoolVar(&cfg.deferred, "deferred-remove", false, "remove the volumes with deferred removal (as docker's dm.use_deferred_removal)")
	fs.BoolVar(&cfg.keep, "keep", false, "after a successful run, leave everything in place and print how to remove it")
	fs.BoolVar(&cfg.verbose, "v", false, "verbose: print tables and status lines, and errors with their stacks")
	printUsage := func(w io.Writer) {
		fmt.Fprint(w, usageText)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout)
			return cfg, err
		}
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (thinpool takes only flags)", fs.Arg(0))
	}
	cfg.dataSize, cfg.metaSize, cfg.blockSize, cfg.volSize = data.N, meta.N, block.N, vol.N
	return cfg, cfg.validate()
}

// Limits the demo checks before touching anything.
const (
	minMetaSize = 2 << 20  // the kernel documentation's advice, thin.MinMetadataSize
	minVolSize  = 1 << 20  // room for the writes
	minBlock    = 64 << 10 // thin.MinBlockSize
	maxBlock    = 1 << 30  // thin.MaxBlockSize
)

func (c config) validate() error {
	// The names are checked before any file or device is made.
	for _, suffix := range []string{"pool", "vol", "snap"} {
		if err := dm.ValidateName(c.name + suffix); err != nil {
			return fmt.Errorf("-name: %q cannot prefix a device-mapper name: %w", c.name, err)
		}
	}
	switch {
	case c.name == "":
		return errors.New("-name: empty")
	case len(c.name)+len("pool") > 127:
		return fmt.Errorf("-name: %d bytes is too long for a device-mapper name", len(c.name))
	case c.blockSize < minBlock || c.blockSize > maxBlock || c.blockSize%minBlock != 0:
		return fmt.Errorf("-block-size: %s is not a multiple of 64KiB from 64KiB to 1GiB", size.IEC(c.blockSize))
	case c.metaSize < minMetaSize:
		return fmt.Errorf("-meta-size: %s is less than the 2MiB minimum", size.IEC(c.metaSize))
	case c.metaSize%4096 != 0:
		return fmt.Errorf("-meta-size: %s is not a multiple of the 4KiB metadata block", size.IEC(c.metaSize))
	case c.dataSize < 4*c.blockSize:
		return fmt.Errorf("-data-size: %s is less than 4 pool blocks of %s", size.IEC(c.dataSize), size.IEC(c.blockSize))
	case c.volSize < minVolSize:
		return fmt.Errorf("-volume-size: %s is less than 1MiB", size.IEC(c.volSize))
	case c.volSize%512 != 0:
		return fmt.Errorf("-volume-size: %s is not a multiple of 512 bytes", size.IEC(c.volSize))
	}
	if w := writePlan(c); w.first+w.second > c.dataSize/c.blockSize*c.blockSize {
		return fmt.Errorf("-data-size: %s cannot hold the demo's writes (%s)", size.IEC(c.dataSize), size.Human(w.first+w.second))
	}
	return nil
}

// openAdvice is the demo's first line when it cannot open device-mapper,
// for a process whose effective user id is euid.
func openAdvice(euid int) string {
	if euid != 0 {
		return "thinpool: this demo needs root (device-mapper and loop devices are root's): run it with sudo, or in a VM with bash .ci/demo"
	}
	return "thinpool: this kernel has no usable device-mapper; run the demo in a VM instead: bash .ci/demo\n" +
		"  (or: go run ./internal/vm/cmd/vmrun run ./examples/thinpool)"
}

// run runs the demo with args (without the program name) and returns the
// exit status. Cancelling ctx (main cancels it on SIGINT and SIGTERM)
// stops the demo and tears everything down.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "thinpool: %v\nRun 'thinpool -h' for usage.\n", err)
		return exitUsage
	}
	d := newDemo(cfg, stdout, stderr)
	defer d.close()
	err = d.run(ctx)
	interrupted := err != nil && ctx.Err() != nil
	switch {
	case interrupted:
		fmt.Fprintln(stderr, "thinpool: interrupted; tearing down")
		if cfg.verbose {
			fmt.Fprintf(stderr, "thinpool: %+v\n", err)
		}
	case err != nil:
		if d.ctl == nil {
			// Nothing was made: say first what to do about it.
			fmt.Fprintln(stderr, openAdvice(os.Geteuid()))
		}
		d.printErr(err)
		if d.undo.Len() > 0 {
			fmt.Fprintln(stderr, "thinpool: tearing down")
		}
	case cfg.keep:
		d.printKept()
		return exitOK
	}
	if terr := d.teardown(ctx); terr != nil {
		d.printErr(fmt.Errorf("teardown: %w", terr))
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
