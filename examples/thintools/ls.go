package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/thinp/thinp/thin/metadata"
)

// thin_ls's fields, in its order.
var lsFields = []string{
	"DEV",
	"MAPPED_BLOCKS", "EXCLUSIVE_BLOCKS", "SHARED_BLOCKS",
	"MAPPED_SECTORS", "EXCLUSIVE_SECTORS", "SHARED_SECTORS",
	"MAPPED_BYTES", "EXCLUSIVE_BYTES", "SHARED_BYTES",
	"MAPPED", "EXCLUSIVE", "SHARED",
	"TRANSACTION", "CREATE_TIME", "SNAP_TIME",
}

func lsUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: thin_ls [options] {metadata device}\n"+
		"Options:\n"+
		"  {-h|--help}\n"+
		"  {-m|--metadata-snap}\n"+
		"  {--no-headers}\n"+
		"  {-o|--format <fields>}\n"+
		"  {-V|--version}\n\n"+
		"where <fields> is a comma separated list from:\n")
	for _, f := range lsFields {
		fmt.Fprintf(w, "  %s\n", f)
	}
}

const toolsVersion = "0.9.0"

func lsCmd(args []string, stdout, stderr io.Writer) int {
	opts := []option{
		{long: "help", short: 'h', id: "h"},
		{long: "metadata-snap", short: 'm', id: "m"},
		{long: "version", short: 'V', id: "V"},
		{long: "format", short: 'o', arg: requiredArg, id: "o"},
		{long: "no-headers", id: "no-headers"},
	}
	found, operands, err := getopt(args, opts)
	if err != nil {
		fmt.Fprintf(stderr, "thin_ls: %v\n", err)
		lsUsage(stderr)
		return 1
	}
	fields := []string{"DEV", "MAPPED", "CREATE_TIME", "SNAP_TIME"}
	headers, snap := true, false
	for _, o := range found {
		switch o.id {
		case "h":
			lsUsage(stdout)
			return 0
		case "V":
			fmt.Fprintln(stdout, toolsVersion)
			return 0
		case "m":
			snap = true
		case "no-headers":
			headers = false
		case "o":
			fields = nil
			if o.value != "" {
				for _, f := range strings.Split(strings.TrimSuffix(o.value, ","), ",") {
					if !knownField(f) {
						fmt.Fprintln(stderr, "unknown field")
						return 1
					}
					fields = append(fields, f)
				}
			}
		}
	}
	if len(operands) == 0 {
		fmt.Fprintln(stderr, "No input file provided.")
		lsUsage(stderr)
		return 1
	}
	out, err := ls(operands[0], snap, headers, fields)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	_, err = io.WriteString(stdout, out)
	if err != nil {
		return 1
	}
	return 0
}

func knownField(f string) bool {
	for _, k := range lsFields {
		if k == f {
			return true
		}
	}
	return false
}

// openMetadata opens path read-only and reads its metadata.
func openMetadata(path string, opts metadata.Options) (*metadata.Metadata, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	dropCache(f)
	md, err := metadata.Open(f, opts)
	if err != nil {
		f.Close()
		if errors.Is(err, metadata.ErrNotMetadata) {
			return nil, nil, fmt.Errorf("%s: not thin-pool metadata: %w", path, err)
		}
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return md, func() { f.Close() }, nil
}

// ls renders thin_ls's grid: each field right-aligned to its column's
// widest cell and followed by a space, each row ended by a newline.
func ls(path string, snap, headers bool, fields []string) (string, error) {
	md, done, err := openMetadata(path, metadata.Options{MetadataSnap: snap})
	if err != nil {
		return "", err
	}
	defer done()
	devs, err := md.DeviceList()
	if err != nil {
		return "", err
	}
	excl := make([]uint64, len(devs))
	if needsUsage(fields) {
		us, err := md.Usage()
		if err != nil {
			return "", err
		}
		for i, u := range us {
			excl[i] = u.Exclusive
		}
	}
	var rows [][]string
	if headers {
		rows = append(rows, fields)
	}
	bs := uint64(md.DataBlockSize())
	for i, d := range devs {
		mapped, ex := d.MappedBlocks, excl[i]
		shared := mapped - ex
		row := make([]string, 0, len(fields))
		for _, f := range fields {
			var s string
			switch f {
			case "DEV":
				s = u64(uint64(d.ID))
			case "MAPPED_BLOCKS":
				s = u64(mapped)
			case "EXCLUSIVE_BLOCKS":
				s = u64(ex)
			case "SHARED_BLOCKS":
				s = u64(shared)
			case "MAPPED_SECTORS":
				s = u64(mapped * bs)
			case "EXCLUSIVE_SECTORS":
				s = u64(ex * bs)
			case "SHARED_SECTORS":
				s = u64(shared * bs)
			case "MAPPED_BYTES":
				s = u64(mapped * bs * 512)
			case "EXCLUSIVE_BYTES":
				s = u64(ex * bs * 512)
			case "SHARED_BYTES":
				s = u64(shared * bs * 512)
			case "MAPPED":
				s = diskUnit(mapped * bs)
			case "EXCLUSIVE":
				s = diskUnit(ex * bs)
			case "SHARED":
				s = diskUnit(shared * bs)
			case "TRANSACTION":
				s = u64(d.TransactionID)
			case "CREATE_TIME":
				s = u64(uint64(d.CreationTime))
			case "SNAP_TIME":
				s = u64(uint64(d.SnapshottedTime))
			}
			row = append(row, s)
		}
		rows = append(rows, row)
	}
	widths := make([]int, len(fields))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		if len(r) == 0 {
			continue
		}
		for i, c := range r {
			b.WriteString(strings.Repeat(" ", widths[i]-len(c)))
			b.WriteString(c)
			b.WriteByte(' ')
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

func needsUsage(fields []string) bool {
	for _, f := range fields {
		if strings.HasPrefix(f, "EXCLUSIVE") || strings.HasPrefix(f, "SHARED") {
			return true
		}
	}
	return false
}

func u64(v uint64) string { return strconv.FormatUint(v, 10) }

// diskUnit formats a number of sectors as thin_ls does: in bytes while at
// most 1 MiB, divided by 1024 (truncating) while above, and once more,
// rounding, if still above 8192.
func diskUnit(sectors uint64) string {
	n := sectors * 512
	i := 0
	for n > 1024*1024 {
		n /= 1024
		i++
	}
	if n > 8*1024 {
		n = uint64(math.Round(float64(n) / 1024))
		i++
	}
	ext := []string{"", "KiB", "MiB", "GiB", "TiB", "PiB"}
	if i >= len(ext) {
		return u64(n) + "?"
	}
	return u64(n) + ext[i]
}
