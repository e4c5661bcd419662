// Command autoextend is the userspace half of thin-pool data space
// management that the kernel's thin-provisioning.rst describes: it waits
// for a pool's low-water-mark event and grows the pool's data device
// before it runs out.
//
// Usage:
//
//	autoextend -pool NAME -data-file PATH [-step 64MiB] [-max 1GiB] [-threshold 20%|BLOCKS|SIZE] [-v]
//
// The pool must exist and its data device must be a loop device over
// -data-file (as the thinpool demo, docker's loop-lvm and many test set-ups
// make them). autoextend opens the pool, watches its device-mapper events
// and, each time free data space is at or below the threshold:
//
//  1. grows the data file by -step (sparsely: no blocks are written),
//  2. makes the loop device re-read the file's size (LOOP_SET_CAPACITY),
//  3. reloads the pool's table with the larger data size and resumes it,
//
// and logs one line per extension. It never grows the pool past -max (the
// size of the data file, and so of the pool's data space). Pool events are
// edge-triggered (the kernel signals the low water mark once per resume),
// so autoextend re-reads the pool's status after every event, including
// the one its own resume raises, and grows again while still below the
// threshold; a failed extension is retried after -retry.
//
// The threshold is by default the pool's own low water mark. -threshold
// sets it, as a percentage of the pool's data size ("20%"), a number of
// data blocks ("1024") or a size ("64MiB"), and makes the pool's low water
// mark equal to it (the table is reloaded at start and with every
// extension), so that the kernel signals exactly when it is crossed.
//
// A pool in queue_if_no_space mode (the default) holds writes while it is
// out of data space, so a late extension only delays them; with
// error_if_no_space they fail. Read-only, failed and needs_check pools are
// not grown: autoextend logs their mode and waits.
//
// autoextend stops cleanly on SIGINT or SIGTERM (exit status 0). It exits
// with status 1 when the pool cannot be opened or disappears, and 2 on a
// usage error. It needs root and a kernel with device-mapper.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/thinp/thinp/examples/internal/size"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags say.
type config struct {
	pool      string
	dataFile  string
	step      uint64 // bytes
	max       uint64 // bytes
	threshold threshold
	retry     time.Duration
	verbose   bool
}

// Defaults.
const (
	defaultStep  = 64 << 20
	defaultMax   = 1 << 30
	defaultRetry = 5 * time.Second
)

const usageText = `Usage: autoextend -pool NAME -data-file PATH [flags]

Watches a thin pool whose data device is a loop device over PATH and, when
free data space falls to the threshold, grows PATH by -step, refreshes the
loop device's capacity and reloads the pool with the larger size, up to
-max. Stops on SIGINT or SIGTERM. Needs root and device-mapper.

Sizes take a unit: B, K/KiB, M/MiB, G/GiB, T/TiB (powers of 1024) or
kB/MB/GB/TB (powers of 1000).

Flags:
`

// parseFlags reads the command line. A request for help prints the usage
// on stdout and returns flag.ErrHelp.
func parseFlags(args []string, stdout io.Writer) (config, error) {
	var cfg config
	step := &size.Flag{N: defaultStep}
	max := &size.Flag{N: defaultMax}
	fs := flag.NewFlagSet("autoextend", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.pool, "pool", "", "name of the thin-pool device (required)")
	fs.StringVar(&cfg.dataFile, "data-file", "", "the file behind the pool's data loop device (required)")
	fs.Var(step, "step", "how much to grow the data file by at each extension (rounded up to whole pool blocks)")
	fs.Var(max, "max", "the largest the data file, and so the pool's data space, may become")
	fs.Var(&cfg.threshold, "threshold", "grow when free data space is at or below this: a percentage of the pool (20%), a number of blocks (1024) or a size (64MiB); sets the pool's low water mark to it (default: the pool's low water mark)")
	fs.DurationVar(&cfg.retry, "retry", defaultRetry, "how long to wait before retrying a failed extension")
	fs.BoolVar(&cfg.verbose, "v", false, "verbose: log every event, and errors with their stacks")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usageText)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
		}
		return cfg, err
	}
	cfg.step, cfg.max = step.N, max.N
	switch {
	case fs.NArg() > 0:
		return cfg, fmt.Errorf("unexpected argument %q (autoextend takes only flags)", fs.Arg(0))
	case cfg.pool == "":
		return cfg, errors.New("-pool is required")
	case cfg.dataFile == "":
		return cfg, errors.New("-data-file is required")
	case cfg.step == 0:
		return cfg, errors.New("-step: must be more than zero")
	case cfg.max == 0:
		return cfg, errors.New("-max: must be more than zero")
	case cfg.retry <= 0:
		return cfg, errors.New("-retry: must be more than zero")
	}
	return cfg, nil
}

// run runs the daemon with args (without the program name), logging to
// stderr, until ctx is cancelled (main cancels it on SIGINT and SIGTERM)
// or the pool fails it, and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "autoextend: %v\nRun 'autoextend -h' for usage.\n", err)
		return exitUsage
	}
	d := newDaemon(cfg, stderr)
	defer d.close()
	err = d.open(ctx)
	if err == nil {
		err = d.watch(ctx)
	}
	if rerr := d.restoreLWM(context.Background()); rerr != nil {
		d.logErr(fmt.Errorf("restoring the low water mark: %w", rerr))
		if err == nil {
			return exitFail
		}
	}
	var mb *maxBelowSizeError
	switch {
	case errors.As(err, &mb):
		fmt.Fprintf(stderr, "autoextend: %v\nRun 'autoextend -h' for usage.\n", err)
		return exitUsage
	case err != nil && ctx.Err() != nil:
		// Asked to stop while starting: not a failure.
		d.log.Printf("stopping")
	case err != nil:
		d.logErr(err)
		return exitFail
	}
	return exitOK
}
