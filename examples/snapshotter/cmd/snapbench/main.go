// Command snapbench measures the thinp containerd snapshotter (package
// thinsnap, on thinp's volume catalog) side by side with containerd's own
// devmapper snapshotter (plugins/snapshots/devmapper of containerd v2,
// which runs the dmsetup program for every device-mapper step), through
// the one interface both implement, snapshots.Snapshotter.
//
// It needs root, a kernel with device-mapper, thin provisioning and loop
// devices, dmsetup and mkfs.ext4. Where the host has none, run it in the VM
// test tier from the repository root, in the boot with udevd so that both
// snapshotters wait for udev as they would on a host:
//
//	go run ./internal/vm/cmd/vmrun run -udev=true ./examples/snapshotter/cmd/snapbench -- [flags]
//
// (THINP_VM_MEMORY=4096 and a THINP_VM_TIMEOUT above the run's length
// help; under TCG the defaults take about seven minutes in the guest,
// most of it devmapper's.) It also runs in the boot without udevd
// (-udev=false), where it sets DM_DISABLE_UDEV=1 for dmsetup.
//
// The results of a run under TCG, and what bounds them, are in the
// README's section on the containerd snapshotter.
//
// # Set-up
//
// Three thin pools of the same size, on loop devices over sparse files in
// a temporary directory (-data-size, -metadata-size; data blocks of 64
// KiB), made by package thin. One gets the thinp snapshotter (a catalog in
// the temporary directory, thinsnap.New), one containerd's devmapper
// snapshotter (devmapper.NewSnapshotter on the existing pool, which it
// finds by name with dmsetup). Both have the same base image size
// (-base-image-size, 64MiB by default) and ext4. The third holds the
// floor: the kernel calls of thinp's steps issued straight through
// package dm, with nothing above them (snapshots of one unformatted thin
// device of the base image's size: a create_snap message and the create,
// load and resume of the snapshot's device per Prepare or View, the
// device's removal per Commit, the removal if active and a delete message
// per Remove), which no snapshotter on this kernel can go below. Every dm
// device is named with one prefix, and everything is removed at the end:
// snapshots through their snapshotter (or the floor), then any device
// left, the pools, the loop devices and the files; also after an error,
// SIGINT or SIGTERM.
//
// # Measurements
//
// First, untimed, each snapshotter prepares a snapshot without parent (the
// one that makes the base file system with mkfs.ext4), commits it as the
// image, and prepares and removes one child of it. Then, with udevd settled
// before each phase:
//
//	prepare        Prepare of an active snapshot of the committed image
//	usage          Usage of one of those active snapshots
//	commit         Commit of one of them
//	remove         Remove of one of the committed snapshots
//	view           View of the committed image
//	remove-active  Remove of an active snapshot (the 100 of start-g1)
//	start-gN       Prepare of -containers active snapshots of the image
//	               by N goroutines (each of -goroutines); removed after,
//	               untimed except for remove-active
//
// Every phase but usage also runs on the floor. The serial phases (-n ops
// each) take turns op by op, thinp, devmapper and the floor, starting
// with the next one at each op, so that a change of the host's load
// weighs on all alike; their ops/s is ops over the sum of their op times.
// The start-gN phases run thinp's batch, then devmapper's, then the
// floor's; their ops/s is ops over the batch's wall time.
//
// # Output
//
// Progress notes go to standard error. Standard output gets, per
// measurement,
//
//	bench: snap <name> thinp n=<ops> ops/s=<rate> p50=<ms>ms p99=<ms>ms
//	bench: snap <name> devmapper n=<ops> ops/s=<rate> p50=<ms>ms p99=<ms>ms
//	bench: snap <name> thinp/devmapper = <ratio>x
//	bench: snap <name> floor n=<ops> ops/s=<rate> p50=<ms>ms p99=<ms>ms
//	bench: snap <name> thinp/floor = <ratio>x
//
// (the floor's two lines where it runs), where p50 and p99 are op
// latencies (nearest rank) and a ratio is of two rates: thinp/floor is
// the share of the kernel's rate thinp reaches (about 1.00x where thinp
// adds nothing of its own).
//
// # Signals
//
// The program re-runs itself as a child in a process group of its own and
// passes SIGINT and SIGTERM to that child alone: a Ctrl-C that reaches the
// whole foreground group would otherwise also kill the dmsetup and mkfs
// processes the snapshotters run, in mid-step, which can leave a udev
// cookie or a half-made device behind. The child finishes the op in
// progress, then cleans up and exits with status 130.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/thinp/thinp/examples/internal/tool"
	"github.com/thinp/thinp/udev"
)

// childEnv marks the re-run child, which does the work.
const childEnv = "SNAPBENCH_CHILD"

// exitInterrupted is the status after SIGINT or SIGTERM.
const exitInterrupted = 130

// config is what the flags set.
type config struct {
	N          int    // ops of each serial phase
	Containers int    // snapshots per start-gN phase
	Goroutines []int  // the N of each start-gN phase
	BaseSize   string // base image size, both snapshotters
	DataSize   int64  // bytes of each pool's data file
	MetaSize   int64  // bytes of each pool's metadata file
	Prefix     string // dm device name prefix
	Dir        string // parent of the run's temporary directory
	Verbose    bool   // the devmapper snapshotter's info logs
}

// parseFlags parses the arguments into a config; it writes usage and
// errors to out.
func parseFlags(args []string, out io.Writer) (config, error) {
	cfg := config{N: 20, Containers: 100, BaseSize: "64MiB", DataSize: 2 << 30, MetaSize: 64 << 20}
	fs := flag.NewFlagSet("snapbench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: snapbench [flags]

Measures the thinp containerd snapshotter against containerd's devmapper
snapshotter, each on a thin pool of its own over loop devices, and prints
"bench: snap ..." lines. Needs root and device-mapper; elsewhere run it in
the VM from the repository root:
  go run ./internal/vm/cmd/vmrun run -udev=true ./examples/snapshotter/cmd/snapbench -- [flags]

Flags:
`)
		fs.PrintDefaults()
	}
	fs.IntVar(&cfg.N, "n", cfg.N, "ops of each serial phase (prepare, usage, commit, remove, view)")
	fs.IntVar(&cfg.Containers, "containers", cfg.Containers, "active snapshots prepared in each start-gN phase")
	goroutines := fs.String("goroutines", "1,8,32", "goroutine counts of the start-gN phases, comma-separated, ascending")
	fs.StringVar(&cfg.BaseSize, "base-image-size", cfg.BaseSize, "base image size of both snapshotters (as containerd's base_image_size)")
	dataMiB := fs.Int64("data-size", cfg.DataSize>>20, "size of each pool's sparse data file, MiB")
	metaMiB := fs.Int64("metadata-size", cfg.MetaSize>>20, "size of each pool's metadata file, MiB")
	fs.StringVar(&cfg.Prefix, "prefix", "", "dm device name prefix (default snapbench-<random>-)")
	fs.StringVar(&cfg.Dir, "dir", "", "where to make the run's temporary directory (default $TMPDIR)")
	fs.BoolVar(&cfg.Verbose, "v", false, "show the devmapper snapshotter's info logs")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	var err error
	switch {
	case fs.NArg() != 0:
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	case cfg.N < 1:
		err = fmt.Errorf("-n %d: want at least 1", cfg.N)
	case cfg.Containers < 1:
		err = fmt.Errorf("-containers %d: want at least 1", cfg.Containers)
	case *dataMiB < 64 || *metaMiB < 2:
		err = fmt.Errorf("-data-size %d -metadata-size %d: want at least 64 and 2 MiB", *dataMiB, *metaMiB)
	}
	if err == nil {
		cfg.Goroutines, err = parseCounts(*goroutines)
		if err != nil {
			err = fmt.Errorf("-goroutines: %w", err)
		}
	}
	if err != nil {
		fmt.Fprintf(out, "snapbench: %v\n", err)
		return cfg, err
	}
	cfg.DataSize, cfg.MetaSize = *dataMiB<<20, *metaMiB<<20
	if cfg.Prefix == "" {
		var b [3]byte
		rand.Read(b[:])
		cfg.Prefix = "snapbench-" + hex.EncodeToString(b[:]) + "-"
	}
	return cfg, nil
}

func main() {
	if os.Getenv(childEnv) == "" {
		os.Exit(parent())
	}
	os.Exit(child(os.Args[1:]))
}

// parent runs the program again as a child in a process group of its own,
// passes it SIGINT and SIGTERM, and exits with its status.
func parent() int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "snapbench: %v\n", err)
		return 1
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// Pdeathsig: should the parent be killed, the child still cleans up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "snapbench: %v\n", err)
		return 1
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	signal.Stop(sigs)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "snapbench: %v\n", err)
		return 1
	}
	return 0
}

// child parses the flags and runs the benchmark.
func child(args []string) int {
	cfg, err := parseFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if !cfg.Verbose {
		log.SetLevel("warn")
	}
	for _, tool := range []string{"dmsetup", "mkfs.ext4"} {
		if err := ensurePath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "snapbench: %v\n", err)
			return 1
		}
	}
	if !udev.Detect().UdevRunning && os.Getenv("DM_DISABLE_UDEV") == "" {
		// Debian's dmsetup leaves /dev/mapper nodes to udev's rules unless
		// told otherwise: without udevd, the devmapper snapshotter's first
		// mkfs would find no node.
		os.Setenv("DM_DISABLE_UDEV", "1")
		fmt.Fprintln(os.Stderr, "snapbench: udevd is not running: DM_DISABLE_UDEV=1 for dmsetup")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopBeat := make(chan struct{})
	go heartbeat(os.Stderr, 20*time.Second, stopBeat)
	err = run(ctx, cfg, os.Stdout)
	close(stopBeat)
	switch {
	case ctx.Err() != nil && err == nil:
		fmt.Fprintf(os.Stderr, "snapbench: interrupted; cleaned up\n")
		return exitInterrupted
	case ctx.Err() != nil:
		fmt.Fprintf(os.Stderr, "snapbench: interrupted; clean-up: %+v\n", err)
		return exitInterrupted
	case err != nil:
		fmt.Fprintf(os.Stderr, "snapbench: %+v\n", err)
		return 1
	}
	return 0
}

// ensurePath makes sure the program name is found in PATH, as the
// devmapper snapshotter runs it by bare name: a PATH without the sbin
// directories gets the program's directory added.
func ensurePath(name string) error {
	if _, err := exec.LookPath(name); err == nil {
		return nil
	}
	p, err := tool.Look(name)
	if err != nil {
		return err
	}
	return os.Setenv("PATH", strings.Join([]string{os.Getenv("PATH"), filepath.Dir(p)}, string(os.PathListSeparator)))
}
