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
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// config is what one run measures.
type config struct {
	// N is how many times the library and the floor run (a) and (b).
	N int
	// ExecN is how many times dmsetup runs (a) and (b).
	ExecN int
	// UdevN is how many cycles each method runs in (d).
	UdevN int
	// Volumes are the active volume counts of (c), ascending.
	Volumes []int
	// Scans is how many full status scans dmsetup makes per count in (c);
	// the library and the floor make twenty times as many, and then read
	// every device Scans times one by one.
	Scans int
	// EVolumes are the other active volume counts of (e), ascending; EN
	// is how many ops of each kind (e) times per count and method.
	EVolumes []int
	EN       int
	// FGoroutines are the parallelism levels of (f), FN and FExecN its
	// cycles per level for the library and for dmsetup.
	FGoroutines []int
	FN, FExecN  int
	// Workloads to run, a subset of "abcdef".
	Workloads string
	// Prefix names every device the run makes; it must be unique.
	Prefix string
	// Dir holds the pool's backing files; empty means a new directory in
	// os.TempDir, removed at the end.
	Dir string
	// VolumeSize is the virtual size of each thin volume, in sectors.
	VolumeSize uint64
	// DataSize and MetaSize are the sizes of the pool's backing files.
	DataSize, MetaSize int64
	// RawBuffer is data_size of the floor's status and message ioctls.
	RawBuffer int
	// Dmsetup is the dmsetup program; empty means look it up.
	Dmsetup string
	// CPUProfile, when set, is where the library phases' CPU profiles
	// go: FILE.<workload>, or "-" for base64 on Out.
	CPUProfile string

	// Out receives the results, Log the progress notes.
	Out, Log io.Writer
}

// quickConfig is the configuration of -quick, which the integration test
// also uses: every code path, in well under a minute under TCG.
func quickConfig(c config) config {
	c.N, c.ExecN, c.UdevN = 50, 10, 10
	c.Volumes = []int{50, 200}
	c.Scans = 2
	c.EVolumes, c.EN = []int{0, 50}, 20
	c.FGoroutines, c.FN, c.FExecN = []int{1, 4}, 16, 8
	return c
}

func defaultConfig() config {
	return config{
		N: 1000, ExecN: 200, UdevN: 100,
		Volumes:     []int{1000, 10000},
		Scans:       5,
		EVolumes:    []int{0, 1000, 10000},
		EN:          101,
		FGoroutines: []int{1, 4, 8, 16},
		FN:          96,
		FExecN:      48,
		Workloads:   "abcdef",
		VolumeSize:  2 << 20, // 1 GiB
		DataSize:    1 << 30,
		MetaSize:    256 << 20,
		RawBuffer:   1 << 10,
		Out:         os.Stdout, Log: os.Stderr,
	}
}

func main() {
	os.Exit(mainErr(os.Args[1:]))
}

func mainErr(args []string) int {
	cfg := defaultConfig()
	// -quick changes the defaults, so that flags given with it still win.
	if hasQuick(args) {
		cfg = quickConfig(cfg)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: bench [flags]

Measures thinp (package dm) against dmsetup run with os/exec and against a
raw-ioctl floor, on a thin pool over loop files, and prints one line per
workload:

  bench: <workload> lib=<ops/s> dmsetup=<ops/s> raw=<ops/s> lib/raw=<ratio> lib/dmsetup=<ratio>

Workloads: a (thin volume lifecycle), b (snapshot of an active origin),
both through package dm and through package thin, c (status of every
device at each -volumes count), d (lifecycle with udev sync, only where
udevd runs), e (package thin's create_thin, create_snap of an active origin
and delete with each -e-volumes count of other active volumes), f (the
lifecycle through package thin and dmsetup with each -f-goroutines count
of goroutines). Needs root and device-mapper; elsewhere run
it in the VM: go run ./internal/vm/cmd/vmrun run ./examples/bench -- [flags]

Flags:
`)
		fs.PrintDefaults()
	}
	fs.Bool("quick", false, "a short run: -n 50 -dmsetup-n 10 -udev-n 10 -volumes 50,200 -scans 2; flags given explicitly still apply")
	fs.IntVar(&cfg.N, "n", cfg.N, "iterations of (a) and (b) for the library and the floor")
	fs.IntVar(&cfg.ExecN, "dmsetup-n", cfg.ExecN, "iterations of (a) and (b) for dmsetup (fewer than -n: an exec costs the same each time)")
	fs.IntVar(&cfg.UdevN, "udev-n", cfg.UdevN, "iterations of (d) for each method")
	volumes := fs.String("volumes", formatCounts(cfg.Volumes), "active thin volume counts for (c), comma-separated")
	fs.IntVar(&cfg.Scans, "scans", cfg.Scans, "full status scans per volume count in (c): dmsetup makes this many, the library and the floor twenty times as many, and each reads every device this many times with StatusFunc")
	eVolumes := fs.String("e-volumes", "0,1000,10000", "other active thin volume counts for (e), comma-separated, ascending, from 0")
	fs.IntVar(&cfg.EN, "e-n", cfg.EN, "ops of each kind per count and method in (e)")
	fGoroutines := fs.String("f-goroutines", "1,4,8,16", "goroutine counts for (f), comma-separated, ascending")
	fs.IntVar(&cfg.FN, "f-n", cfg.FN, "lifecycles per goroutine count through package thin in (f)")
	fs.IntVar(&cfg.FExecN, "f-dmsetup-n", cfg.FExecN, "lifecycles per goroutine count through dmsetup in (f)")
	fs.StringVar(&cfg.Workloads, "workloads", "a,b,c,d,e,f", "workloads to run, comma-separated: a, b, c, d, e, f")
	fs.StringVar(&cfg.Prefix, "prefix", "", "device name prefix (default thinp-bench-<random>-)")
	fs.StringVar(&cfg.Dir, "dir", "", "directory for the pool's backing files (default a new one in $TMPDIR)")
	fs.Uint64Var(&cfg.VolumeSize, "volume-size", cfg.VolumeSize, "virtual size of each thin volume, in 512-byte sectors")
	fs.IntVar(&cfg.RawBuffer, "raw-buffer", cfg.RawBuffer, "data_size of the floor's status and message ioctls, in bytes (its device list starts at 16 KiB and doubles)")
	fs.StringVar(&cfg.Dmsetup, "dmsetup", "", "dmsetup program (default: looked up in PATH and the sbin directories)")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of each workload to `FILE`.<workload>, samples labelled method=lib, dmsetup or raw (\"-\": base64 on stdout)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	v, err := parseCounts(*volumes)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: -volumes: %v\n", err)
		return 2
	}
	cfg.Volumes = v
	if hasFlag(fs, "e-volumes") || !hasQuick(args) {
		if cfg.EVolumes, err = parseCountsFrom0(*eVolumes); err != nil {
			fmt.Fprintf(os.Stderr, "bench: -e-volumes: %v\n", err)
			return 2
		}
	}
	if hasFlag(fs, "f-goroutines") || !hasQuick(args) {
		if cfg.FGoroutines, err = parseCounts(*fGoroutines); err != nil {
			fmt.Fprintf(os.Stderr, "bench: -f-goroutines: %v\n", err)
			return 2
		}
	}
	w, err := parseWorkloads(cfg.Workloads)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: -workloads: %v\n", err)
		return 2
	}
	cfg.Workloads = w
	if cfg.Prefix == "" {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
		cfg.Prefix = "thinp-bench-" + hex.EncodeToString(b[:]) + "-"
	}
	if err := cfg.check(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %+v\n", err)
		return 1
	}
	return 0
}

// check rejects configurations that cannot run.
func (c *config) check() error {
	switch {
	case c.N < 1, c.ExecN < 1, c.UdevN < 1, c.Scans < 1, c.EN < 1, c.FN < 1, c.FExecN < 1:
		return errors.New("iteration counts must be at least 1")
	case c.VolumeSize < 1:
		return errors.New("-volume-size must be at least 1 sector")
	case c.RawBuffer < 512 || c.RawBuffer > 1<<20:
		return errors.New("-raw-buffer must be between 512 and 1048576")
	case c.Prefix == "" || len(c.Prefix) > 64 || strings.ContainsAny(c.Prefix, "/ \t\n"):
		return fmt.Errorf("prefix %q: want 1 to 64 bytes without '/' or spaces", c.Prefix)
	}
	return nil
}

// parseCounts parses "1000,10000" into ascending positive counts.
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 100000 {
			return nil, fmt.Errorf("%q is not a count between 1 and 100000", f)
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("counts must ascend: %s", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseCountsFrom0 is parseCounts that also takes 0.
func parseCountsFrom0(s string) ([]int, error) {
	if rest, ok := strings.CutPrefix(s, "0,"); ok {
		c, err := parseCounts(rest)
		return append([]int{0}, c...), err
	}
	if s == "0" {
		return []int{0}, nil
	}
	return parseCounts(s)
}

// hasFlag reports whether name was set on the command line.
func hasFlag(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parseWorkloads turns "a,b,d" into "abd".
func parseWorkloads(s string) (string, error) {
	var out []byte
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if len(f) != 1 || !strings.Contains("abcdef", f) {
			return "", fmt.Errorf("unknown workload %q (want a, b, c, d, e or f)", f)
		}
		if !strings.Contains(string(out), f) {
			out = append(out, f[0])
		}
	}
	return string(out), nil
}

// hasQuick reports whether args (up to "--") turn -quick on. The program
// takes no positional arguments, so every word before "--" is a flag or a
// flag's value.
func hasQuick(args []string) bool {
	quick := false
	for _, a := range args {
		if a == "--" {
			break
		}
		switch strings.TrimLeft(a, "-") {
		case "quick", "quick=true", "quick=1":
			quick = true
		case "quick=false", "quick=0":
			quick = false
		}
	}
	return quick
}

func formatCounts(c []int) string {
	s := make([]string, len(c))
	for i, n := range c {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
