// Command autoextend is the userspace half of thin-pool data space
// management that the kernel's thin-provisioning.rst describes: it waits
// for a pool's low-water-mark event and grows the pool's data device
// before it runs out.
//
// Usage:
//
//	autoextend -pool NAME -data-file PATH [-step 64MiB] [-max 1GiB] [-threshold 20%|BLOCKS|SIZE] [-v]
//	           [-policy lwm|dmeventd] [-interval 10s] [-meta-file PATH] [-meta-step 8MiB]
//	autoextend -demo [-policy lwm|dmeventd] [-demo-write 40MiB] [-name autoextend-demo-] [...]
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
// -policy dmeventd does instead what lvm2's dmeventd thin plugin does for
// a pool it monitors (its CHECK_MINIMUM, CHECK_STEP and WARNING_THRESH):
// nothing while less than 50% of the data space is used; from 50%, one
// extension by -step each time usage reaches another 5% step (50, 55, 60,
// ...: an extension that brings usage down starts the count again from
// there); a logged warning at 80, 85, 90 and 95% used; and the same for
// metadata, whose loop-backed file grows by -meta-step with -meta-file (or
// is only warned about). The status is read every -interval as well as on
// the pool's events; -threshold defaults to 50%, so that the kernel
// signals when the policy starts to act. (dmeventd's umount of thin
// volumes at 95% is not done.)
//
// -demo shows it all on a pool of its own: two sparse files and loop
// devices, a pool of 16MiB (in 64KiB blocks, queueing writes when full)
// and a 256MiB thin volume; autoextend watches the pool (steps of 16MiB up
// to 64MiB unless -step and -max say otherwise) while the demo writes
// -demo-write to the volume, printing the pool's usage as it goes and
// logging each growth; then it removes everything, also on an error or
// Ctrl-C (exit status 130 then).
//
// A pool in queue_if_no_space mode (the default) holds writes while it is
// out of data space, so a late extension only delays them; with
// error_if_no_space they fail. Read-only, failed and needs_check pools are
// not grown: autoextend logs their mode and waits.
//
// autoextend stops cleanly on SIGINT or SIGTERM (exit status 0; -demo: 130). It exits
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

	policy   string        // policyLWM or policyDmeventd
	interval time.Duration // how often the dmeventd policy reads the status
	metaFile string        // the file behind the metadata loop device, or ""
	metaStep uint64        // bytes

	demo      bool   // -demo: make a pool, fill it, tear down
	name      string // -demo: prefix of the names
	demoWrite uint64 // -demo: bytes to write
	demoData  uint64 // -demo: the pool's first data size
}

// Defaults.
const (
	defaultStep     = 64 << 20
	defaultMax      = 1 << 30
	defaultRetry    = 5 * time.Second
	defaultInterval = 10 * time.Second // dmeventd's
	defaultMetaStep = 8 << 20

	// -demo's defaults: a 16 MiB pool growing by 16 MiB up to 64 MiB
	// while 40 MiB are written, its status read every second.
	demoData     = 16 << 20
	demoStep     = 16 << 20
	demoMax      = 64 << 20
	demoWrite    = 40 << 20
	demoInterval = time.Second
	demoName     = "autoextend-demo-"
)

const usageText = `Usage: autoextend -pool NAME -data-file PATH [flags]
       autoextend -demo [-policy dmeventd] [flags]

Watches a thin pool whose data device is a loop device over PATH and, when
free data space falls to the threshold, grows PATH by -step, refreshes the
loop device's capacity and reloads the pool with the larger size, up to
-max. Stops on SIGINT or SIGTERM. Needs root and device-mapper.

-policy dmeventd does what lvm2's dmeventd does for a pool: nothing below
50% used, then one step each time usage reaches another 5%; warnings at
80, 85, 90 and 95% used; metadata as well as data (grown with -meta-file).

-demo makes a pool of 16MiB on loop devices over sparse files, writes
-demo-write to a thin volume in it while autoextend grows it (each growth
is logged), and removes everything again (also on Ctrl-C: exit status 130).

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
	fs.StringVar(&cfg.policy, "policy", policyLWM, "when to grow: lwm (at the threshold) or dmeventd (from 50% used, every 5% more; warnings from 80%; metadata too)")
	fs.DurationVar(&cfg.interval, "interval", defaultInterval, "-policy dmeventd: how often to read the pool's status (default 10s, as dmeventd; -demo: 1s)")
	fs.StringVar(&cfg.metaFile, "meta-file", "", "-policy dmeventd: the file behind the pool's metadata loop device, to grow metadata too")
	metaStep := &size.Flag{N: defaultMetaStep}
	fs.Var(metaStep, "meta-step", "-policy dmeventd -meta-file: how much to grow the metadata file by")
	fs.BoolVar(&cfg.demo, "demo", false, "make a small pool on loop devices, fill it past its threshold while growing it, tear it down")
	fs.StringVar(&cfg.name, "name", demoName, "-demo: prefix of the device and file names")
	write := &size.Flag{N: demoWrite}
	fs.Var(write, "demo-write", "-demo: how much to write to the volume (less than -max)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usageText)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
		}
		return cfg, err
	}
	cfg.step, cfg.max, cfg.metaStep, cfg.demoWrite = step.N, max.N, metaStep.N, write.N
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg.demo {
		// The demo's pool is small: so are its steps, unless asked.
		cfg.demoData = demoData
		if !set["step"] {
			cfg.step = demoStep
		}
		if !set["max"] {
			cfg.max = demoMax
		}
		if !set["interval"] {
			cfg.interval = demoInterval
		}
	}
	if cfg.policy == policyDmeventd && !cfg.threshold.set {
		// The pool's low water mark at 50% makes the kernel signal when
		// the policy starts to act.
		_ = cfg.threshold.Set("50%")
	}
	switch {
	case fs.NArg() > 0:
		return cfg, fmt.Errorf("unexpected argument %q (autoextend takes only flags)", fs.Arg(0))
	case cfg.policy != policyLWM && cfg.policy != policyDmeventd:
		return cfg, fmt.Errorf("-policy %q: want lwm or dmeventd", cfg.policy)
	case cfg.interval <= 0:
		return cfg, errors.New("-interval: must be more than zero")
	case cfg.metaFile != "" && cfg.policy != policyDmeventd:
		return cfg, errors.New("-meta-file: only -policy dmeventd grows metadata")
	case cfg.metaStep == 0:
		return cfg, errors.New("-meta-step: must be more than zero")
	case cfg.demo && (cfg.pool != "" || cfg.dataFile != "" || cfg.metaFile != ""):
		return cfg, errors.New("-demo makes its own pool: no -pool, -data-file or -meta-file")
	case cfg.demo:
		if err := cfg.validateDemo(); err != nil {
			return cfg, err
		}
	case cfg.pool == "":
		return cfg, errors.New("-pool is required (or -demo)")
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
	if cfg.demo {
		return runDemo(ctx, cfg, stdout, stderr)
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
