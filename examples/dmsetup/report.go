package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// reportField is one column `dmsetup info -c` can show: dmsetup's field
// id, its heading, its minimum width, and whether it is a number (numbers
// are right-aligned, everything else left-aligned).
type reportField struct {
	id      string
	heading string
	width   int
	number  bool
	desc    string
	value   func(d *deviceInfo) string
}

// yesNo picks yes or no by b.
func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

// reportFields are the device fields of dmsetup's report, with its ids,
// headings and widths.
var reportFields = []reportField{
	{"name", "Name", 16, false, "Name of mapped device.", func(d *deviceInfo) string { return d.Name }},
	{"uuid", "UUID", 32, false, "Unique (optional) identifier for mapped device.", func(d *deviceInfo) string { return d.UUID }},
	{"read_ahead", "RAhead", 6, true, "Read ahead value.", func(d *deviceInfo) string {
		return strconv.FormatUint(uint64(d.ReadAhead), 10)
	}},
	{"blkdevname", "BlkDevName", 16, false, "Name of block device.", func(d *deviceInfo) string { return d.BlkDevName }},
	{"attr", "Stat", 4, false, "(L)ive, (I)nactive, (s)uspended, (r)ead-only, read-(w)rite.", func(d *deviceInfo) string {
		return yesNo(d.LivePresent, "L", "-") + yesNo(d.InactivePresent, "I", "-") +
			yesNo(d.Suspended, "s", "-") + yesNo(d.ReadOnly, "r", "w")
	}},
	{"tables_loaded", "Tables", 6, false, "Which of the live and inactive table slots are filled.", func(d *deviceInfo) string {
		switch {
		case d.LivePresent && d.InactivePresent:
			return "Both"
		case d.LivePresent:
			return "Live"
		case d.InactivePresent:
			return "Inactive"
		}
		return "None"
	}},
	{"suspended", "Suspended", 9, false, "Whether the device is suspended.", func(d *deviceInfo) string {
		return yesNo(d.Suspended, "Suspended", "Active")
	}},
	{"readonly", "Read-only", 9, false, "Whether the device is read-only or writeable.", func(d *deviceInfo) string {
		return yesNo(d.ReadOnly, "Read-only", "Writeable")
	}},
	{"devno", "DevNo", 5, false, "Device major and minor numbers", func(d *deviceInfo) string { return d.Dev.String() }},
	{"major", "Maj", 3, true, "Block device major number.", func(d *deviceInfo) string {
		return strconv.FormatUint(uint64(d.Dev.Major), 10)
	}},
	{"minor", "Min", 3, true, "Block device minor number.", func(d *deviceInfo) string {
		return strconv.FormatUint(uint64(d.Dev.Minor), 10)
	}},
	{"open", "Open", 4, true, "Number of references to open device, if requested.", func(d *deviceInfo) string {
		return strconv.FormatInt(int64(d.OpenCount), 10)
	}},
	{"segments", "Targ", 4, true, "Number of segments in live table, if present.", func(d *deviceInfo) string {
		return strconv.FormatUint(uint64(d.TargetCount), 10)
	}},
	{"events", "Event", 6, true, "Number of most recent event.", func(d *deviceInfo) string {
		return strconv.FormatUint(uint64(d.EventNr), 10)
	}},
	{"device_count", "#Devs", 5, true, "", func(d *deviceInfo) string { return strconv.Itoa(len(d.Deps)) }},
	{"devs_used", "DevNamesUsed", 16, false, "", func(d *deviceInfo) string { return strings.Join(d.DepNames, ",") }},
	{"devnos_used", "DevNosUsed", 16, false, "", func(d *deviceInfo) string {
		s := make([]string, len(d.Deps))
		for i, dev := range d.Deps {
			s[i] = dev.String()
		}
		return strings.Join(s, ",")
	}},
	{"blkdevs_used", "BlkDevNamesUsed", 16, false, "", func(d *deviceInfo) string { return strings.Join(d.DepBlkNames, ",") }},
	{"subsystem", "Subsys", 6, false, "", func(d *deviceInfo) string { return d.Split.Subsystem }},
	{"vg_name", "VG", 4, false, "", func(d *deviceInfo) string { return d.Split.VG }},
	{"lv_name", "LV", 4, false, "", func(d *deviceInfo) string { return d.Split.LV }},
	{"lv_layer", "LVLayer", 7, false, "", func(d *deviceInfo) string { return d.Split.Layer }},
}

// depsFields are the fields that need the device's dependencies.
var depsFields = map[string]bool{"device_count": true, "devs_used": true, "devnos_used": true, "blkdevs_used": true}

// needsDeps says whether a field of the report needs the dependencies.
func (rf *reportFormat) needsDeps() bool {
	for _, f := range rf.fields {
		if depsFields[f.id] {
			return true
		}
	}
	return false
}

// defaultReportFields are the columns of a plain `dmsetup info -c`.
const defaultReportFields = "name,major,minor,attr,open,segments,events,uuid"

// reportFormat is how `info -c` lays out its table.
type reportFormat struct {
	fields   []*reportField
	aligned  bool   // pad every column to its width
	headings bool   // print a heading line
	sep      string // between columns
	sort     []sortKey
}

// canonicalField folds a field name as libdevmapper's report does:
// case-insensitive, underscores ignored.
func canonicalField(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), "_", ""))
}

// newReportFormat builds the layout from -o (fields; "+f,..." adds to the
// defaults), --noheadings (which, as in dmsetup, also switches to ':'
// between unaligned columns) and --separator (unaligned columns).
func newReportFormat(o *options) (*reportFormat, error) {
	rf := &reportFormat{aligned: true, headings: true, sep: " "}
	if o.noHeadings {
		rf.aligned, rf.headings, rf.sep = false, false, ":"
	}
	if o.hasSep {
		rf.aligned, rf.sep = false, o.separator
	}
	spec := defaultReportFields
	if o.splitName {
		spec = "vg_name,lv_name,lv_layer"
	}
	if o.hasFields {
		if strings.HasPrefix(o.fields, "+") {
			spec += "," + o.fields[1:]
		} else {
			spec = o.fields
		}
	}
	for _, name := range strings.Split(spec, ",") {
		c := canonicalField(name)
		if c == "" {
			continue
		}
		if groups, ok := fieldGroups[c]; ok {
			for i := range reportFields {
				if strings.Contains(groups, " "+reportFields[i].id+" ") {
					rf.fields = append(rf.fields, &reportFields[i])
				}
			}
			continue
		}
		f := findField(c)
		if f == nil {
			return nil, &badFieldError{"Unrecognised field: " + strings.TrimSpace(name)}
		}
		rf.fields = append(rf.fields, f)
	}
	if len(rf.fields) == 0 {
		return nil, libdmf("No fields given to -o.")
	}
	if o.hasSort {
		if err := rf.setSort(o.sort); err != nil {
			return nil, err
		}
	}
	return rf, nil
}

// write prints the report of devs as dmsetup does: nothing at all for no
// devices; otherwise, if aligned, each column as wide as its widest value
// or its minimum width, headings and strings left-aligned, numbers
// right-aligned, with trailing padding kept.
func (rf *reportFormat) write(w io.Writer, devs []deviceInfo) {
	if len(devs) == 0 {
		return
	}
	if len(rf.sort) > 0 {
		sort.SliceStable(devs, func(i, j int) bool { return rf.less(&devs[i], &devs[j]) })
	}
	cells := make([][]string, len(devs))
	widths := make([]int, len(rf.fields))
	for j, f := range rf.fields {
		widths[j] = f.width
	}
	for i := range devs {
		cells[i] = make([]string, len(rf.fields))
		for j, f := range rf.fields {
			v := f.value(&devs[i])
			cells[i][j] = v
			if len(v) > widths[j] {
				widths[j] = len(v)
			}
		}
	}
	var b strings.Builder
	if rf.headings {
		for j, f := range rf.fields {
			if j > 0 {
				b.WriteString(rf.sep)
			}
			if rf.aligned {
				h := f.heading
				if len(h) > widths[j] {
					h = h[:widths[j]]
				}
				fmt.Fprintf(&b, "%-*s", widths[j], h)
			} else {
				b.WriteString(f.heading)
			}
		}
		b.WriteByte('\n')
	}
	for i := range cells {
		for j, f := range rf.fields {
			if j > 0 {
				b.WriteString(rf.sep)
			}
			switch {
			case !rf.aligned:
				b.WriteString(cells[i][j])
			case f.number:
				fmt.Fprintf(&b, "%*s", widths[j], cells[i][j])
			default:
				fmt.Fprintf(&b, "%-*s", widths[j], cells[i][j])
			}
		}
		b.WriteByte('\n')
	}
	io.WriteString(w, b.String())
}

// fieldGroups are the "<type>_all" selections and the fields they stand
// for (those this dmsetup computes).
var fieldGroups = map[string]string{
	"all":          " name uuid read_ahead blkdevname attr tables_loaded suspended readonly devno major minor open segments events device_count devs_used devnos_used blkdevs_used subsystem vg_name lv_name lv_layer ",
	"nameall":      " name uuid read_ahead ",
	"infoall":      " blkdevname attr tables_loaded suspended readonly devno major minor open segments events ",
	"depsall":      " device_count devs_used devnos_used blkdevs_used ",
	"splitnameall": " subsystem vg_name lv_name lv_layer ",
}

// setSort sorts the report by -O: comma-separated fields, each ascending
// or, prefixed with '-', descending ('+' is ascending too).
func (rf *reportFormat) setSort(spec string) error {
	for _, name := range strings.Split(spec, ",") {
		name = strings.TrimSpace(name)
		desc := false
		switch {
		case strings.HasPrefix(name, "-"):
			desc, name = true, name[1:]
		case strings.HasPrefix(name, "+"):
			name = name[1:]
		}
		f := findField(canonicalField(name))
		if f == nil {
			return libdmf("Unrecognised field: %s", name)
		}
		rf.sort = append(rf.sort, sortKey{f, desc})
	}
	return nil
}

// sortKey is one field of -O.
type sortKey struct {
	f    *reportField
	desc bool
}

// findField finds a field by its canonical name, with or without its
// type's prefix.
func findField(c string) *reportField {
	for i := range reportFields {
		f := &reportFields[i]
		id := canonicalField(f.id)
		if c == id || c == "name"+id || c == "info"+id || c == "deps"+id || c == "splitname"+id {
			return f
		}
	}
	return nil
}

// less compares two rows by the sort keys: numbers as numbers, the rest
// as strings.
func (rf *reportFormat) less(x, y *deviceInfo) bool {
	for _, k := range rf.sort {
		a, b := k.f.value(x), k.f.value(y)
		if a == b {
			continue
		}
		var lt bool
		if k.f.number {
			na, _ := strconv.ParseUint(a, 10, 64)
			nb, _ := strconv.ParseUint(b, 10, 64)
			lt = na < nb
		} else {
			lt = a < b
		}
		if k.desc {
			return !lt
		}
		return lt
	}
	return false
}
