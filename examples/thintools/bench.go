package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/thinp/thinp/thin/metadata"
)

// benchCmd builds a big metadata image with thin_restore and times the
// reader against the tools on it (see the package doc).
func benchCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("thintools -bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	devices := fs.Int("devices", 1000, "thin devices (half origins, half their snapshots)")
	mappings := fs.Int("mappings", 1000000, "mappings in all")
	dir := fs.String("dir", "", "work directory (default: a new temporary one, removed after)")
	iters := fs.Int("iters", 3, "runs of each operation per side; the median is reported")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "thintools-bench-")
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	img, snap1, snap2, err := benchImage(*dir, *devices, *mappings)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "bench: image %s: %d devices, %d mappings\n", img, *devices, *mappings)
	type op struct {
		name   string
		tool   []string
		reader func() error
	}
	ops := []op{
		{"meta-ls", []string{"thin_ls", "-o", "DEV,MAPPED_BLOCKS,TRANSACTION", img}, func() error {
			_, err := ls(img, false, true, []string{"DEV", "MAPPED_BLOCKS", "TRANSACTION"})
			return err
		}},
		{"meta-usage", []string{"thin_ls", "-o", allLsFields(), img}, func() error {
			_, err := ls(img, false, true, lsFields)
			return err
		}},
		{"meta-dump", []string{"thin_dump", img}, func() error {
			w := bufio.NewWriter(io.Discard)
			return dump(w, img, dumpFlags{format: "xml"})
		}},
		{"meta-delta", []string{"thin_delta", "--snap1", snap1, "--snap2", snap2, img}, func() error {
			s1, _ := strconv.ParseUint(snap1, 10, 64)
			s2, _ := strconv.ParseUint(snap2, 10, 64)
			return delta(bufio.NewWriter(io.Discard), img, metadata.Options{}, s1, s2, false)
		}},
	}
	for _, o := range ops {
		var rt, tt []time.Duration
		var toolRSS int64
		for i := 0; i < *iters; i++ {
			start := time.Now()
			if err := o.reader(); err != nil {
				fmt.Fprintf(stderr, "%s: reader: %v\n", o.name, err)
				return 1
			}
			rt = append(rt, time.Since(start))
			cmd := exec.Command(o.tool[0], o.tool[1:]...)
			cmd.Stdout = io.Discard
			start = time.Now()
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(stderr, "%s: %s: %v\n", o.name, o.tool[0], err)
				return 1
			}
			tt = append(tt, time.Since(start))
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				toolRSS = max(toolRSS, ru.Maxrss)
			}
		}
		var self syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &self)
		r, tl := median(rt), median(tt)
		fmt.Fprintf(stdout, "bench: %s reader=%.3g/s tool=%.3g/s ratio=%.2f peak-rss reader=%.0fMiB tool=%.0fMiB\n",
			o.name, 1/r.Seconds(), 1/tl.Seconds(), tl.Seconds()/r.Seconds(), float64(self.Maxrss)/1024, float64(toolRSS)/1024)
	}
	return 0
}

func allLsFields() string {
	s := ""
	for i, f := range lsFields {
		if i > 0 {
			s += ","
		}
		s += f
	}
	return s
}

func median(ds []time.Duration) time.Duration {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// benchImage writes the XML of a pool of n devices — origins with their
// own data blocks, each followed by a snapshot sharing them but for every
// tenth run, rewritten — with about m mappings in runs of 8, and restores
// it. It returns the image and an origin/snapshot pair for thin_delta.
func benchImage(dir string, n, m int) (img, snap1, snap2 string, err error) {
	xml := filepath.Join(dir, "bench.xml")
	f, err := os.Create(xml)
	if err != nil {
		return "", "", "", err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	per := max(m/max(n, 1), 8)
	runs := per / 8
	origins := (n + 1) / 2
	nrData := uint64(2*origins*per + 64)
	fmt.Fprintf(w, "<superblock uuid=\"\" time=\"1\" transaction=\"%d\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"%d\">\n", n, nrData)
	fresh := uint64(origins * per)
	for d := 0; d < n; d++ {
		o := d / 2
		base := uint64(o * per)
		fmt.Fprintf(w, "  <device dev_id=\"%d\" mapped_blocks=\"%d\" transaction=\"%d\" creation_time=\"%d\" snap_time=\"1\">\n", d, runs*8, d, d%2)
		for r := 0; r < runs; r++ {
			db := base + uint64(r*8)
			t := 0
			if d%2 == 1 && r%10 == 0 {
				db, t = fresh, 1
				fresh += 8
			}
			fmt.Fprintf(w, "    <range_mapping origin_begin=\"%d\" data_begin=\"%d\" length=\"8\" time=\"%d\"/>\n", r*16, db, t)
		}
		fmt.Fprintf(w, "  </device>\n")
	}
	fmt.Fprintf(w, "</superblock>\n")
	if err := w.Flush(); err != nil {
		return "", "", "", err
	}
	if err := f.Close(); err != nil {
		return "", "", "", err
	}
	img = filepath.Join(dir, "bench.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		return "", "", "", err
	}
	if err := os.Truncate(img, 1<<30); err != nil {
		return "", "", "", err
	}
	if out, err := exec.Command("thin_restore", "-q", "-i", xml, "-o", img).CombinedOutput(); err != nil {
		return "", "", "", fmt.Errorf("thin_restore: %v: %s", err, out)
	}
	os.Remove(xml)
	return img, "0", "1", nil
}
