package main

import (
	"fmt"
	"strings"
)

// options are the switches of one invocation. Like dmsetup (GNU
// getopt_long), switches may come before or after the command and its
// arguments, long switches may be abbreviated to any unique prefix and take
// their argument as "--opt=value" or "--opt value", short switches may be
// bundled ("-cv", "-oname"), and "--" ends the switches.
type options struct {
	help       bool
	version    bool
	verbose    int
	force      bool
	readOnly   bool
	noFlush    bool
	noLockfs   bool
	inactive   bool
	noUdevSync bool
	yes        bool
	retry      bool
	deferred   bool
	columns    bool
	noHeadings bool
	noTable    bool
	setUUID    bool
	showKeys   bool
	tree       bool

	fields    string // -o
	hasFields bool
	separator string
	hasSep    bool
	target    string
	hasTarget bool
	table     string
	hasTable  bool
	uuid      string
	hasUUID   bool
	major     string
	hasMajor  bool
	minor     string
	hasMinor  bool
	majorNum  uint32 // -j and -m as C's atoi reads them
	minorNum  uint32
	concise   bool
	splitName bool   // splitname: its default report fields
	sort      string // -O
	hasSort   bool
	sel       string // -S
	hasSel    bool
	exec      string
	hasExec   bool
}

// atoi reads a number as C's atoi does: leading digits, 0 for none.
func atoi(s string) uint32 {
	s = strings.TrimLeft(s, " \t")
	var n uint32
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + uint32(s[i]-'0')
	}
	return n
}

// optSpec describes one switch: its long name, its short letter (0 if
// none) and whether it takes an argument.
type optSpec struct {
	long  string
	short byte
	arg   bool
	set   func(o *options, v string)
}

// optSpecs lists the switches this dmsetup understands, in the order of
// dmsetup's usage.
var optSpecs = []optSpec{
	{"help", 'h', false, func(o *options, _ string) { o.help = true }},
	{"version", 0, false, func(o *options, _ string) { o.version = true }},
	{"verbose", 'v', false, func(o *options, _ string) { o.verbose++ }},
	{"force", 'f', false, func(o *options, _ string) { o.force = true }},
	{"readonly", 'r', false, func(o *options, _ string) { o.readOnly = true }},
	{"noflush", 0, false, func(o *options, _ string) { o.noFlush = true }},
	{"nolockfs", 0, false, func(o *options, _ string) { o.noLockfs = true }},
	{"inactive", 0, false, func(o *options, _ string) { o.inactive = true }},
	{"noudevsync", 0, false, func(o *options, _ string) { o.noUdevSync = true }},
	{"yes", 'y', false, func(o *options, _ string) { o.yes = true }},
	{"retry", 0, false, func(o *options, _ string) { o.retry = true }},
	{"deferred", 0, false, func(o *options, _ string) { o.deferred = true }},
	{"columns", 'c', false, func(o *options, _ string) { o.columns = true }},
	{"", 'C', false, func(o *options, _ string) { o.columns = true }},
	{"options", 'o', true, func(o *options, v string) { o.fields, o.hasFields = v, true }},
	{"noheadings", 0, false, func(o *options, _ string) { o.noHeadings = true }},
	{"separator", 0, true, func(o *options, v string) { o.separator, o.hasSep = v, true }},
	{"target", 0, true, func(o *options, v string) { o.target, o.hasTarget = v, true }},
	{"table", 0, true, func(o *options, v string) { o.table, o.hasTable = v, true }},
	{"notable", 'n', false, func(o *options, _ string) { o.noTable = true }},
	{"uuid", 'u', true, func(o *options, v string) { o.uuid, o.hasUUID = v, true }},
	{"setuuid", 0, false, func(o *options, _ string) { o.setUUID = true }},
	{"showkeys", 0, false, func(o *options, _ string) { o.showKeys = true }},
	{"tree", 0, false, func(o *options, _ string) { o.tree = true }},
	{"major", 'j', true, func(o *options, v string) { o.major, o.hasMajor, o.majorNum = v, true, atoi(v) }},
	{"minor", 'm', true, func(o *options, v string) { o.minor, o.hasMinor, o.minorNum = v, true, atoi(v) }},
	{"concise", 0, false, func(o *options, _ string) { o.concise = true }},
	{"sort", 'O', true, func(o *options, v string) { o.sort, o.hasSort = v, true }},
	{"select", 'S', true, func(o *options, v string) { o.sel, o.hasSel = v, true }},
	{"exec", 'e', true, func(o *options, v string) { o.exec, o.hasExec = v, true }},
	// Accepted for compatibility; they change nothing here (see doc.go).
	{"addnodeoncreate", 0, false, func(o *options, _ string) {}},
	{"addnodeonresume", 0, false, func(o *options, _ string) {}},
	{"checks", 0, false, func(o *options, _ string) {}},
	{"manglename", 0, true, func(o *options, _ string) {}},
	{"nameprefixes", 0, false, func(o *options, _ string) {}},
	{"noopencount", 0, false, func(o *options, _ string) {}},
	{"noudevrules", 0, false, func(o *options, _ string) {}},
	{"readahead", 0, true, func(o *options, _ string) {}},
	{"udevcookie", 0, true, func(o *options, _ string) {}},
	{"verifyudev", 0, false, func(o *options, _ string) {}},
	{"uid", 'U', true, func(o *options, _ string) {}},
	{"gid", 'G', true, func(o *options, _ string) {}},
	{"mode", 'M', true, func(o *options, _ string) {}},
}

// parseArgs separates switches from operands (the command and its
// arguments), keeping the operands' order.
func parseArgs(args []string) (options, []string, error) {
	var o options
	var operands []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return o, append(operands, args[i+1:]...), nil
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			spec, err := findLong(name)
			if err != nil {
				return o, nil, err
			}
			switch {
			case spec.arg && !hasVal:
				if i+1 >= len(args) {
					return o, nil, fmt.Errorf("option '--%s' requires an argument", spec.long)
				}
				i++
				val = args[i]
			case !spec.arg && hasVal:
				return o, nil, fmt.Errorf("option '--%s' doesn't allow an argument", spec.long)
			}
			spec.set(&o, val)
		case len(a) > 1 && a[0] == '-':
			// A bundle of short switches; one that takes an argument
			// takes the rest of the bundle or the next word.
			for j := 1; j < len(a); j++ {
				spec := findShort(a[j])
				if spec == nil {
					return o, nil, fmt.Errorf("invalid option -- '%c'", a[j])
				}
				if !spec.arg {
					spec.set(&o, "")
					continue
				}
				val := a[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return o, nil, fmt.Errorf("option requires an argument -- '%c'", a[j])
					}
					i++
					val = args[i]
				}
				spec.set(&o, val)
				break
			}
		default:
			operands = append(operands, a)
		}
	}
	return o, operands, nil
}

// findLong finds a long switch by its name or a unique prefix of it.
func findLong(name string) (*optSpec, error) {
	var match *optSpec
	n := 0
	for i := range optSpecs {
		s := &optSpecs[i]
		if s.long == "" {
			continue
		}
		if s.long == name {
			return s, nil
		}
		if name != "" && strings.HasPrefix(s.long, name) {
			match = s
			n++
		}
	}
	switch n {
	case 0:
		return nil, fmt.Errorf("unrecognized option '--%s'", name)
	case 1:
		return match, nil
	}
	return nil, fmt.Errorf("option '--%s' is ambiguous", name)
}

// findShort finds a short switch by its letter.
func findShort(c byte) *optSpec {
	for i := range optSpecs {
		if optSpecs[i].short == c {
			return &optSpecs[i]
		}
	}
	return nil
}
