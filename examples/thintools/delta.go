package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/thinp/thinp/thin/metadata"
)

func deltaUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: thin_delta [options] <device or file>\n"+
		"Options:\n"+
		"  {--thin1, --snap1}\n"+
		"  {--thin2, --snap2}\n"+
		"  {-m, --metadata-snap} [block#]\n"+
		"  {--verbose}\n"+
		"  {-h|--help}\n"+
		"  {-V|--version}\n")
}

func deltaCmd(args []string, stdout, stderr io.Writer) int {
	opts := []option{
		{long: "help", short: 'h', id: "h"},
		{long: "version", short: 'V', id: "V"},
		{long: "thin1", arg: requiredArg, id: "1"},
		{long: "snap1", arg: requiredArg, id: "1"},
		{long: "thin2", arg: requiredArg, id: "2"},
		{long: "snap2", arg: requiredArg, id: "2"},
		{long: "metadata-snap", short: 'm', arg: optionalArg, id: "m"},
		{long: "verbose", id: "verbose"},
	}
	die := func(msg string) int {
		fmt.Fprintln(stderr, msg)
		deltaUsage(stderr)
		return 1
	}
	found, operands, err := getopt(args, opts)
	if err != nil {
		fmt.Fprintf(stderr, "thin_delta: %v\n", err)
		deltaUsage(stderr)
		return 1
	}
	var (
		snap1, snap2 *uint64
		verbose      bool
		mopts        metadata.Options
	)
	for _, o := range found {
		switch o.id {
		case "h":
			deltaUsage(stdout)
			return 0
		case "V":
			fmt.Fprintln(stdout, toolsVersion)
			return 0
		case "1", "2":
			v, err := strconv.ParseUint(o.value, 10, 64)
			if err != nil {
				return die(fmt.Sprintf("Couldn't parse thin id %s: '%s'", o.id, o.value))
			}
			if o.id == "1" {
				snap1 = &v
			} else {
				snap2 = &v
			}
		case "m":
			mopts.MetadataSnap = true
			if o.hasVal {
				v, err := strconv.ParseUint(o.value, 10, 64)
				if err != nil {
					return die(fmt.Sprintf("Couldn't parse metadata snapshot block: '%s'", o.value))
				}
				mopts.SnapBlock = v
			}
		case "verbose":
			verbose = true
		}
	}
	switch {
	case len(operands) == 0:
		return die("No input device provided.")
	case snap1 == nil:
		return die("--snap1 not specified.")
	case snap2 == nil:
		return die("--snap2 not specified.")
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	err = delta(w, operands[0], mopts, *snap1, *snap2, verbose)
	if err != nil {
		// Nothing is printed before both devices are found and the whole
		// diff is known to be readable, as with thin_delta.
		return die(err.Error())
	}
	if err := w.Flush(); err != nil {
		return 1
	}
	return 0
}

// delta writes thin_delta's output. thin_delta reads both devices' mappings
// before printing anything, so a damaged tree produces no partial output:
// the diff is walked once to check it, then again to print it.
func delta(w *bufio.Writer, path string, opts metadata.Options, id1, id2 uint64, verbose bool) error {
	md, done, err := openMetadata(path, opts)
	if err != nil {
		return err
	}
	defer done()
	if id1 > 0xffffffff {
		return fmt.Errorf("Unable to find mapping tree for snap1 (%d)", id1)
	}
	if id2 > 0xffffffff {
		return fmt.Errorf("Unable to find mapping tree for snap2 (%d)", id2)
	}
	for _, err := range md.Diff(uint32(id1), uint32(id2)) {
		if err != nil {
			var de *metadata.DeviceError
			if errors.As(err, &de) {
				n := "1"
				if uint64(de.ID) != id1 {
					n = "2"
				}
				return fmt.Errorf("Unable to find mapping tree for snap%s (%d)", n, de.ID)
			}
			return err
		}
	}
	sb := md.Superblock()
	var nr uint64
	if !md.Snapshot() {
		nr = md.NrDataBlocks()
	}
	fmt.Fprintf(w, `<superblock uuid="" time="%d" transaction="%d" data_block_size="%d" nr_data_blocks="%d`,
		sb.Time, sb.TransactionID, sb.DataBlockSize, nr)
	if sb.HeldRoot != 0 {
		fmt.Fprintf(w, `" metadata_snap="%d`, sb.HeldRoot)
	}
	fmt.Fprintf(w, "\">\n  <diff left=\"%d\" right=\"%d\">\n", id1, id2)

	var (
		open    bool
		cur     metadata.Delta // simple: the range being joined; verbose: the open block's kind
		started bool
	)
	for d := range md.Diff(uint32(id1), uint32(id2)) {
		if verbose {
			if !started || cur.Kind != d.Kind {
				if started {
					fmt.Fprintf(w, "    </%s>\n", d2s(cur.Kind))
				}
				fmt.Fprintf(w, "    <%s>\n", d2s(d.Kind))
				cur, started = d, true
			}
			switch d.Kind {
			case metadata.Different:
				fmt.Fprintf(w, "      <range begin=\"%d\" left_data_begin=\"%d\" right_data_begin=\"%d\" length=\"%d\"/>\n",
					d.VBegin, d.LeftData, d.RightData, d.Len)
			case metadata.RightOnly:
				fmt.Fprintf(w, "      <range begin=\"%d\" data_begin=\"%d\" length=\"%d\"/>\n", d.VBegin, d.RightData, d.Len)
			default:
				fmt.Fprintf(w, "      <range begin=\"%d\" data_begin=\"%d\" length=\"%d\"/>\n", d.VBegin, d.LeftData, d.Len)
			}
			continue
		}
		if open && cur.Kind == d.Kind && d.VBegin == cur.VBegin+cur.Len {
			cur.Len += d.Len
			continue
		}
		if open {
			fmt.Fprintf(w, "    <%s begin=\"%d\" length=\"%d\"/>\n", d2s(cur.Kind), cur.VBegin, cur.Len)
		}
		cur, open = d, true
	}
	if verbose && started {
		fmt.Fprintf(w, "    </%s>\n", d2s(cur.Kind))
	}
	if !verbose && open {
		fmt.Fprintf(w, "    <%s begin=\"%d\" length=\"%d\"/>\n", d2s(cur.Kind), cur.VBegin, cur.Len)
	}
	fmt.Fprint(w, "  </diff>\n</superblock>\n")
	return nil
}

func d2s(k metadata.DeltaKind) string { return k.String() }
