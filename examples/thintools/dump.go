package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/thinp/thinp/thin/metadata"
)

func dumpUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: thin_dump [options] {device|file}\n"+
		"Options:\n"+
		"  {-h|--help}\n"+
		"  {-f|--format} {xml|human_readable|custom}\n"+
		"  {-r|--repair}\n"+
		"  {-m|--metadata-snap} [block#]\n"+
		"  {-o <xml file>}\n"+
		"  {--dev-id} <dev-id>\n"+
		"  {--skip-mappings}\n"+
		"  {-V|--version}\n")
}

// dumpFlags are thin_dump's options.
type dumpFlags struct {
	format       string
	snap         bool
	snapBlock    uint64
	output       string
	devs         map[uint64]bool // nil: all
	skipMappings bool
	tid, dbs, nr *uint64 // overrides
}

func dumpCmd(args []string, stdout, stderr io.Writer) int {
	opts := []option{
		{long: "help", short: 'h', id: "h"},
		{long: "metadata-snap", short: 'm', arg: optionalArg, id: "m"},
		{long: "output", short: 'o', arg: requiredArg, id: "o"},
		{long: "format", short: 'f', arg: requiredArg, id: "f"},
		{long: "repair", short: 'r', id: "r"},
		{long: "dev-id", arg: requiredArg, id: "dev-id"},
		{long: "skip-mappings", id: "skip-mappings"},
		{long: "transaction-id", arg: requiredArg, id: "tid"},
		{long: "data-block-size", arg: requiredArg, id: "dbs"},
		{long: "nr-data-blocks", arg: requiredArg, id: "nr"},
		{long: "version", short: 'V', id: "V"},
	}
	found, operands, err := getopt(args, opts)
	if err != nil {
		fmt.Fprintf(stderr, "thin_dump: %v\n", err)
		dumpUsage(stderr)
		return 1
	}
	fl := dumpFlags{format: "xml"}
	for _, o := range found {
		switch o.id {
		case "h":
			dumpUsage(stdout)
			return 0
		case "V":
			fmt.Fprintln(stdout, toolsVersion)
			return 0
		case "f":
			fl.format = o.value
		case "r":
			fmt.Fprintln(stderr, "thintools dump: --repair is not implemented")
			return 1
		case "m":
			fl.snap = true
			if o.hasVal {
				v, ok := leadingUint(o.value)
				if !ok {
					fmt.Fprintln(stderr, "couldn't parse <metadata-snap>")
					dumpUsage(stderr)
					return 1
				}
				fl.snapBlock = v
			}
		case "o":
			fl.output = o.value
		case "dev-id":
			v, ok := leadingUint(o.value)
			if !ok {
				fmt.Fprint(stderr, "couldn't parse <dev-id>\n")
				dumpUsage(stderr)
				return 1
			}
			if fl.devs == nil {
				fl.devs = map[uint64]bool{}
			}
			fl.devs[v] = true
		case "skip-mappings":
			fl.skipMappings = true
		case "tid", "dbs", "nr":
			v, err := strconv.ParseUint(o.value, 10, 64)
			if err != nil {
				fmt.Fprintf(stderr, "couldn't parse %s: '%s'\n", o.id, o.value)
				return 1
			}
			switch o.id {
			case "tid":
				fl.tid = &v
			case "dbs":
				v = uint64(uint32(v))
				fl.dbs = &v
			default:
				fl.nr = &v
			}
		}
	}
	if len(operands) == 0 {
		fmt.Fprintln(stderr, "No input file provided.")
		dumpUsage(stderr)
		return 1
	}
	if fl.format != "xml" && fl.format != "human_readable" {
		fmt.Fprintf(stderr, "unknown format '%s'\n", fl.format)
		return 1
	}
	out := stdout
	if fl.output != "" {
		f, err := os.Create(fl.output)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer f.Close()
		out = f
	}
	w := bufio.NewWriterSize(out, 64<<10)
	err = dump(w, operands[0], fl)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// leadingUint parses a number as strtoull(s, &end, 10) does when only
// end != s is checked: leading digits, the rest ignored.
func leadingUint(s string) (uint64, bool) {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	j := i
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j == i {
		return 0, false
	}
	v, err := strconv.ParseUint(s[i:j], 10, 64)
	if err != nil {
		return ^uint64(0), true
	}
	return v, true
}

// emitter writes thin_dump's xml or human_readable format.
type emitter struct {
	w   *bufio.Writer
	xml bool
	buf []byte
}

func (e *emitter) str(s string) { e.w.WriteString(s) }
func (e *emitter) num(v uint64) {
	e.buf = strconv.AppendUint(e.buf[:0], v, 10)
	e.w.Write(e.buf)
}

func (e *emitter) beginSuperblock(time uint32, tid uint64, flags, version, dbs uint32, nr uint64) {
	if e.xml {
		e.str(`<superblock uuid="" time="`)
		e.num(uint64(time))
		e.str(`" transaction="`)
		e.num(tid)
		e.str(`" flags="`)
		e.num(uint64(flags))
		e.str(`" version="`)
		e.num(uint64(version))
		e.str(`" data_block_size="`)
		e.num(uint64(dbs))
		e.str(`" nr_data_blocks="`)
		e.num(nr)
		e.str("\">\n")
		return
	}
	e.str(`begin superblock: "", `)
	for i, v := range []uint64{uint64(time), tid, uint64(flags), uint64(version), uint64(dbs), nr} {
		if i > 0 {
			e.str(", ")
		}
		e.num(v)
	}
	e.str("\n")
}

func (e *emitter) endSuperblock() {
	if e.xml {
		e.str("</superblock>\n")
	} else {
		e.str("end superblock\n")
	}
}

func (e *emitter) beginDevice(d metadata.Device) {
	if e.xml {
		e.str(`  <device dev_id="`)
		e.num(uint64(d.ID))
		e.str(`" mapped_blocks="`)
		e.num(d.MappedBlocks)
		e.str(`" transaction="`)
		e.num(d.TransactionID)
		e.str(`" creation_time="`)
		e.num(uint64(d.CreationTime))
		e.str(`" snap_time="`)
		e.num(uint64(d.SnapshottedTime))
		e.str("\">\n")
		return
	}
	e.str("device: ")
	e.num(uint64(d.ID))
	e.str("\nmapped_blocks: ")
	e.num(d.MappedBlocks)
	e.str("\ntransaction: ")
	e.num(d.TransactionID)
	e.str("\ncreation time: ")
	e.num(uint64(d.CreationTime))
	e.str("\nsnap time: ")
	e.num(uint64(d.SnapshottedTime))
	e.str("\n")
}

func (e *emitter) endDevice() {
	if e.xml {
		e.str("  </device>\n")
	} else {
		e.str("\n")
	}
}

func (e *emitter) mapping(m metadata.Mapping) {
	if e.xml {
		if m.Len == 1 {
			e.str(`    <single_mapping origin_block="`)
			e.num(m.VBegin)
			e.str(`" data_block="`)
			e.num(m.DBegin)
		} else {
			e.str(`    <range_mapping origin_begin="`)
			e.num(m.VBegin)
			e.str(`" data_begin="`)
			e.num(m.DBegin)
			e.str(`" length="`)
			e.num(m.Len)
		}
		e.str(`" time="`)
		e.num(uint64(m.Time))
		e.str("\"/>\n")
		return
	}
	e.str("    ")
	if m.Len == 1 {
		e.num(m.VBegin)
		e.str(" -> ")
		e.num(m.DBegin)
	} else {
		e.str("(")
		e.num(m.VBegin)
		e.str("..")
		e.num(m.VBegin + m.Len - 1)
		e.str(") -> (")
		e.num(m.DBegin)
		e.str("..")
		e.num(m.DBegin + m.Len - 1)
		e.str(")")
	}
	e.str(", ")
	e.num(uint64(m.Time))
	e.str("\n")
}

// dump writes thin_dump's output: the superblock, then each device of the
// mapping tree that the device details tree also holds, in id order, with
// its mappings joined into ranges.
func dump(w *bufio.Writer, path string, fl dumpFlags) error {
	md, done, err := openMetadata(path, metadata.Options{MetadataSnap: fl.snap, SnapBlock: fl.snapBlock})
	if err != nil {
		return err
	}
	defer done()
	details := map[uint32]metadata.Device{}
	for d, err := range md.Devices() {
		if err != nil {
			return err
		}
		if fl.devs == nil || fl.devs[uint64(d.ID)] {
			details[d.ID] = d
		}
	}
	sb := md.Superblock()
	// thin_dump takes the data device's size from the live space map, and
	// knows none through a metadata snapshot.
	var nr uint64
	if !md.Snapshot() {
		nr = md.NrDataBlocks()
	}
	tid, dbs := sb.TransactionID, sb.DataBlockSize
	if fl.tid != nil {
		tid = *fl.tid
	}
	if fl.dbs != nil {
		dbs = uint32(*fl.dbs)
	}
	if fl.nr != nil {
		nr = *fl.nr
	}
	e := &emitter{w: w, xml: fl.format == "xml"}
	e.beginSuperblock(sb.Time, tid, sb.Flags, sb.Version, dbs, nr)
	for id, err := range md.MappedDevices() {
		if err != nil {
			return err
		}
		if fl.devs != nil && !fl.devs[uint64(id)] {
			continue
		}
		d, ok := details[id]
		if !ok {
			return fmt.Errorf("mappings present for device %d, but it isn't present in device tree", id)
		}
		e.beginDevice(d)
		if !fl.skipMappings {
			for m, err := range md.Mappings(id) {
				if err != nil {
					e.endDevice()
					return err
				}
				e.mapping(m)
			}
		}
		e.endDevice()
	}
	e.endSuperblock()
	return nil
}
