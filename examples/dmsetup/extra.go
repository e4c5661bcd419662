package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
)

// thinpDifferences is printed by "dmsetup -h -v": where this dmsetup
// deliberately differs from dmsetup 1.02.185.
const thinpDifferences = `
This is thinp's pure-Go dmsetup (no libdevmapper). It differs from dmsetup:
  - version prints thinp's version as the library version;
  - without a udev daemon that answers, create, rename and remove make and
    remove the /dev/mapper nodes themselves (libdevmapper does the same
    unless it is built to rely on udev only);
  - ls --tree draws no compact or inverted trees;
  - not implemented: ls --exec, create --concise, string lists and the
    selected field in -S selections, measure, stats, udevcreatecookie,
    udevreleasecookie, and the report fields of statistics, mangling and
    the device tree (names_using_dev and the like); --manglename,
    --readahead, -U/-G/-M, --udevcookie, --noudevrules, --verifyudev,
    --checks and --noopencount are accepted and ignored;
  - -vvv adds thinp's own description of a failure after libdevmapper's.
`

// splitName is a device-mapper name split as LVM names its devices:
// "vg-lv-layer", with "--" standing for a '-' inside a part.
type splitName struct {
	Subsystem, VG, LV, Layer string
}

// splitLVMName splits name at single dashes into the volume group, the
// logical volume and the layer, turning "--" back into '-'.
func splitLVMName(name string) (vg, lv, layer string) {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(name); i++ {
		if name[i] != '-' {
			cur.WriteByte(name[i])
			continue
		}
		if i+1 < len(name) && name[i+1] == '-' {
			cur.WriteByte('-')
			i++
			continue
		}
		parts = append(parts, cur.String())
		cur.Reset()
		if len(parts) == 3 {
			break // what follows the layer is not shown
		}
	}
	if len(parts) < 3 {
		parts = append(parts, cur.String())
	}
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return parts[0], parts[1], parts[2]
}

// newSplitName splits a device's name by its subsystem: only LVM's names
// have parts.
func newSplitName(subsystem, name string) splitName {
	s := splitName{Subsystem: subsystem}
	if subsystem == "LVM" {
		s.VG, s.LV, s.Layer = splitLVMName(name)
	}
	return s
}

// uuidSubsystem is the subsystem of a device: its uuid up to the first
// '-' ("LVM-..." is LVM's), or nothing.
func uuidSubsystem(uuid string) string {
	if i := strings.IndexByte(uuid, '-'); i >= 0 {
		return uuid[:i]
	}
	return ""
}

func (a *app) splitname(args []string) error {
	subsystem := "LVM"
	if len(args) == 2 {
		subsystem = args[1]
	}
	a.opts.splitName = true
	rf, err := newReportFormat(&a.opts)
	if err != nil {
		return err
	}
	if a.opts.hasFields && strings.Contains(a.opts.fields, "help") {
		io.WriteString(a.stderr, fieldHelpText)
		return nil
	}
	d := deviceInfo{Split: newSplitName(subsystem, args[0])}
	d.Name = args[0]
	rf.write(a.stdout, []deviceInfo{d})
	return nil
}

// fillDeps sets the dependencies and their names in d, for the deps fields
// of info -c and of selections, once.
func (a *app) fillDeps(ctl *dm.Control, d *deviceInfo) {
	if d.Deps != nil {
		return
	}
	deps, err := ctl.Deps(a.ctx, dm.DevNum(d.Dev), a.inactiveFlags()...)
	if err != nil {
		return
	}
	if deps == nil {
		deps = []dm.Dev{}
	}
	d.Deps = deps
	for _, dev := range deps {
		if n, ok := a.sys.blockName(dev); ok {
			d.DepBlkNames = append(d.DepBlkNames, n)
		}
		if n, ok := a.sys.name(dev, nameMapper); ok && strings.HasPrefix(mustBlockName(a.sys, dev), "dm-") {
			d.DepNames = append(d.DepNames, n)
		}
	}
}

func mustBlockName(s sysfs, dev dm.Dev) string {
	n, _ := s.blockName(dev)
	return n
}

// wipeTable replaces each device's table with the error target (dmsetup
// wipe_table): whoever holds it gets I/O errors instead of its data.
func (a *app) wipeTable(args []string) error {
	if len(args) == 0 && !a.opts.hasUUID && !a.opts.hasMajor {
		return errNoDeviceSpecified
	}
	return a.eachDevice(args, func(ctl *dm.Control, ref dm.Ref) error { return a.wipe(ctl, ref) })
}

func (a *app) setGeometry(args []string) error {
	ref, rest, err := a.oneDevice(args)
	if err != nil {
		return err
	}
	g := dm.Geometry{Cylinders: atoi(rest[0]), Heads: atoi(rest[1]), Sectors: atoi(rest[2]), Start: uint64(atoi(rest[3]))}
	ctl, err := a.control()
	if err != nil {
		return err
	}
	return ctl.SetGeometry(a.ctx, ref, g)
}

// mangle checks device names and uuids for characters udev would mangle.
// Names made of the characters libdevmapper leaves alone need nothing; this
// dmsetup renames nothing and says so for the others.
func (a *app) mangle(args []string) error {
	ctl, err := a.control()
	if err != nil {
		return err
	}
	var names []string
	if len(args) > 0 {
		for _, n := range args {
			name, err := a.resolveName(n, false)
			if err != nil {
				return err
			}
			names = append(names, name)
		}
	} else {
		devs, err := ctl.List(a.ctx)
		if err != nil {
			return err
		}
		for _, d := range devs {
			names = append(names, d.Name)
		}
	}
	for _, n := range names {
		info, err := ctl.Info(a.ctx, dm.Name(n))
		if err != nil {
			return notExist(err)
		}
		if !wellFormed(info.Name) || !wellFormed(info.UUID) {
			return libdmf("%s: name or uuid needs mangling; not supported by this dmsetup (thinp).", n)
		}
		and := ""
		if info.UUID != "" {
			and = "and UUID "
		}
		fmt.Fprintf(a.stdout, "%s: %s: name %salready in correct form\n", info.Name, info.UUID, and)
	}
	return nil
}

// wellFormed says whether s uses only the characters udev keeps in device
// names: letters, digits and "#+-.:=@_".
func wellFormed(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || strings.IndexByte("#+-.:=@_", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// treeOpts are the -o switches of ls --tree this dmsetup draws.
type treeOpts struct {
	device, blkdevname, active, open, uuid, rw bool
	noTrunc                                    bool
	sym                                        treeSymbols
}

// treeSymbols are the drawing strings: empty, branch, vertical, last.
type treeSymbols [4]string

var (
	treeASCII = treeSymbols{"  ", "|-", "| ", "`-"}
	treeUTF   = treeSymbols{"  ", "\u251c\u2500", "\u2502 ", "\u2514\u2500"}
	treeVT100 = treeSymbols{"  ", "\033(0\017tq\033(B", "\033(0\017x\033(B ", "\033(0\017mq\033(B"}
)

// utf8Locale says whether the locale's character set is UTF-8, as the
// environment names it.
func utf8Locale() bool {
	for _, v := range []string{"LC_ALL", "LC_CTYPE", "LANG"} {
		if l := os.Getenv(v); l != "" {
			l = strings.ToLower(l)
			return strings.Contains(l, "utf-8") || strings.Contains(l, "utf8")
		}
	}
	return false
}

// parseTreeOptions reads the -o of ls --tree; each word may be a prefix of
// its option, as in dmsetup. compact, inverted, status and table are
// accepted but not drawn differently (see doc.go).
func parseTreeOptions(s string) (treeOpts, error) {
	o := treeOpts{device: true, sym: treeASCII}
	if utf8Locale() {
		o.sym = treeUTF
	}
	if s == "" {
		return o, nil
	}
	words := strings.Split(s, ",")
	for k, w := range words {
		switch {
		case strings.HasPrefix("device", w):
			o.device = true
		case strings.HasPrefix("blkdevname", w):
			o.blkdevname = true
		case strings.HasPrefix("nodevice", w):
			o.device = false
		case strings.HasPrefix("status", w), strings.HasPrefix("table", w):
		case strings.HasPrefix("active", w):
			o.active = true
		case strings.HasPrefix("open", w):
			o.open = true
		case strings.HasPrefix("uuid", w):
			o.uuid = true
		case strings.HasPrefix("rw", w):
			o.rw = true
		case strings.HasPrefix("utf", w):
			o.sym = treeUTF
		case strings.HasPrefix("vt100", w):
			o.sym = treeVT100
		case strings.HasPrefix("ascii", w):
			o.sym = treeASCII
		case strings.HasPrefix("inverted", w), strings.HasPrefix("compact", w):
		case strings.HasPrefix("notrunc", w):
			o.noTrunc = true
		default:
			return o, libdmf("Tree options not recognised: %s.", strings.Join(words[k:], ","))
		}
	}
	return o, nil
}

// treeNode is a device in the dependency tree of ls --tree.
type treeNode struct {
	dev      dm.Dev
	name     string // "" for devices that are not mapped devices
	info     dm.Info
	isDM     bool
	children []*treeNode
	parent   bool
}

// lsTree draws every device with the devices it uses below it, as dmsetup
// ls --tree does: the devices nothing uses at the top, in the kernel's
// order, each one's dependencies in the order the kernel lists them.
func (a *app) lsTree() error {
	opts, err := parseTreeOptions(a.opts.fields)
	if err != nil {
		return err
	}
	ctl, err := a.control()
	if err != nil {
		return err
	}
	devs, err := ctl.List(a.ctx)
	if err != nil {
		return err
	}
	names := make(map[dm.Dev]string, len(devs))
	for _, d := range devs {
		names[d.Dev] = d.Name
	}
	nodes := map[dm.Dev]*treeNode{}
	var order []*treeNode
	var add func(dev dm.Dev) (*treeNode, error)
	add = func(dev dm.Dev) (*treeNode, error) {
		if n, ok := nodes[dev]; ok {
			return n, nil
		}
		n := &treeNode{dev: dev}
		nodes[dev] = n
		order = append(order, n)
		name, isDM := names[dev]
		if !isDM {
			return n, nil
		}
		n.name, n.isDM = name, true
		info, err := ctl.Info(a.ctx, dm.DevNum(dev))
		if err != nil {
			return nil, err
		}
		n.info = info
		deps, err := ctl.Deps(a.ctx, dm.DevNum(dev))
		if err != nil {
			return nil, err
		}
		for _, dep := range deps {
			c, err := add(dep)
			if err != nil {
				return nil, err
			}
			c.parent = true
			n.children = append(n.children, c)
		}
		return n, nil
	}
	for _, d := range devs {
		if _, err := add(d.Dev); err != nil {
			return err
		}
	}
	var top []*treeNode
	for _, n := range order {
		if !n.parent {
			top = append(top, n)
		}
	}
	var b strings.Builder
	more := map[int]bool{}
	var walk func(ns []*treeNode, depth int)
	walk = func(ns []*treeNode, depth int) {
		for i, n := range ns {
			if n.name == "" && !opts.device && !opts.blkdevname {
				continue
			}
			more[depth] = i < len(ns)-1
			for d := 0; d < depth; d++ {
				b.WriteByte(' ')
				switch {
				case d == depth-1 && more[depth]:
					b.WriteString(opts.sym[1])
				case d == depth-1:
					b.WriteString(opts.sym[3])
				case more[d+1]:
					b.WriteString(opts.sym[2])
				default:
					b.WriteString(opts.sym[0])
				}
			}
			b.WriteString(n.name)
			if opts.blkdevname {
				if bn, ok := a.sys.blockName(n.dev); ok {
					b.WriteString(" <" + bn + ">")
				}
			}
			if opts.device {
				fmt.Fprintf(&b, " (%d:%d)", n.dev.Major, n.dev.Minor)
			}
			if n.isDM && (opts.active || opts.rw || opts.open || opts.uuid) {
				var attrs []string
				if opts.active {
					attrs = append(attrs, yesNo(n.info.Suspended, "SUSPENDED", "ACTIVE"))
				}
				if opts.rw {
					attrs = append(attrs, yesNo(n.info.ReadOnly, "RO", "RW"))
				}
				if opts.open {
					attrs = append(attrs, fmt.Sprint(n.info.OpenCount))
				}
				if opts.uuid {
					attrs = append(attrs, n.info.UUID)
				}
				b.WriteString(" [" + strings.Join(attrs, ", ") + "]")
			}
			b.WriteByte('\n')
			walk(n.children, depth+1)
		}
	}
	walk(top, 0)
	out := b.String()
	if !opts.noTrunc {
		width := 80
		if f, ok := a.stdout.(*os.File); ok && opts.sym != treeVT100 {
			if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 3 {
				width = int(ws.Col) - 3
			}
		}
		out = truncateTree(out, width)
	}
	io.WriteString(a.stdout, out)
	return nil
}

// truncateTree cuts each line of a tree at width columns (a UTF-8
// character is one column) as dmsetup does: a line one column too long
// keeps its last character, a longer one ends in "...".
func truncateTree(text string, width int) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(text, "\n") {
		if line == "" {
			continue
		}
		body := strings.TrimSuffix(line, "\n")
		x, last := 1, byte(0)
		for i := 0; i < len(body); i++ {
			c := body[i]
			if c&0xc0 != 0x80 {
				x++
			}
			if x <= width {
				b.WriteByte(c)
			}
			if x == width+1 && c&0xc0 != 0x80 {
				if last != 0 || c&0x80 != 0 {
					b.WriteString("...")
				} else {
					last = c
					x--
				}
			}
		}
		if len(body) < len(line) {
			if last != 0 && x == width {
				b.WriteByte(last)
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// badFieldError is an unknown report field: dmsetup answers with the list
// of fields.
type badFieldError struct{ msg string }

func (e *badFieldError) Error() string { return e.msg }
