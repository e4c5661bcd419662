package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/udev"
)

// command is one dmsetup command: its name, how many operands it takes
// (max -1: any number) and its implementation. The usage text is dmsetup's
// (usageText).
type command struct {
	name     string
	min, max int
	run      func(a *app, args []string) error
}

// commands lists the commands in the order of dmsetup's usage, with its
// argument counts. It is set in init because the help command refers to it.
var commands []command

func init() {
	commands = []command{
		{"help", 0, 0, (*app).help},
		{"create", 0, 2, (*app).create},
		{"remove", 0, -1, (*app).remove},
		{"remove_all", 0, 0, (*app).removeAll},
		{"suspend", 0, -1, (*app).suspend},
		{"resume", 0, -1, (*app).resume},
		{"load", 0, 2, (*app).load},
		{"clear", 0, -1, (*app).clear},
		{"reload", 0, 2, (*app).load},
		{"wipe_table", 0, -1, (*app).wipeTable},
		{"rename", 1, 2, (*app).rename},
		{"measure", 0, -1, (*app).unsupported},
		{"message", 2, -1, (*app).message},
		{"ls", 0, 0, (*app).ls},
		{"info", 0, -1, (*app).info},
		{"deps", 0, -1, (*app).deps},
		{"stats", 1, -1, (*app).unsupported},
		{"status", 0, -1, (*app).status},
		{"table", 0, -1, (*app).table},
		{"wait", 0, 2, (*app).wait},
		{"mknodes", 0, -1, (*app).mknodes},
		{"mangle", 0, -1, (*app).mangle},
		{"udevcreatecookie", 0, 0, (*app).unsupported},
		{"udevreleasecookie", 0, 1, (*app).unsupported},
		{"udevflags", 1, 1, (*app).udevflags},
		{"udevcomplete", 1, 1, (*app).udevcomplete},
		{"udevcomplete_all", 0, 1, (*app).udevcompleteAll},
		{"udevcookies", 0, 0, (*app).udevcookies},
		{"target-version", 1, -1, (*app).targetVersion},
		{"targets", 0, 0, (*app).targets},
		{"version", 0, 0, (*app).version},
		{"setgeometry", 5, 5, (*app).setGeometry},
		{"splitname", 1, 2, (*app).splitname},
	}
}

// help prints the usage on stderr, with -c the report fields too, as
// dmsetup does for help and -h.
func (a *app) help(args []string) error {
	io.WriteString(a.stderr, usageText)
	if a.opts.columns {
		io.WriteString(a.stderr, fieldHelpText)
	}
	if a.opts.verbose > 0 {
		io.WriteString(a.stderr, thinpDifferences)
	}
	return nil
}

// unsupported is the answer for the commands thinp's dmsetup leaves out.
func (a *app) unsupported(args []string) error {
	return libdmf("%s: not supported by this dmsetup (thinp); use the real dmsetup for it.", a.command)
}

// errNoDevice is dmsetup's answer when no device was named.
var errNoDeviceSpecified = libdmf("No device specified.")

// devRef names a device argument (a name or a path) or, without one, the
// device of -u or -j/-m, as dmsetup's tasks do: a name given wins over
// -u and -j/-m.
func (a *app) devRef(arg string, hasArg bool) (dm.Ref, string, error) {
	if hasArg {
		name, err := a.resolveName(arg, false)
		if err != nil {
			return dm.Ref{}, "", err
		}
		return dm.Name(name), name, nil
	}
	switch {
	case a.opts.hasUUID:
		return dm.UUID(a.opts.uuid), "", nil
	case a.opts.hasMajor:
		return dm.DevNum(dm.Dev{Major: a.opts.majorNum, Minor: a.opts.minorNum}), "", nil
	}
	return dm.Ref{}, "", errNoDeviceSpecified
}

// oneDevice splits off the device a single-device command works on: the
// first operand, or -u / -j -m when there is none.
func (a *app) oneDevice(args []string) (dm.Ref, []string, error) {
	if len(args) > 0 {
		ref, _, err := a.devRef(args[0], true)
		return ref, args[1:], err
	}
	ref, _, err := a.devRef("", false)
	return ref, nil, err
}

// eachDevice runs fn for each named device (or the one of -u / -j -m). As
// dmsetup does, it stops at the first device that fails.
func (a *app) eachDevice(args []string, fn func(ctl *dm.Control, ref dm.Ref) error) error {
	ctl, err := a.control()
	if err != nil {
		return err
	}
	if len(args) == 0 {
		ref, _, err := a.devRef("", false)
		if err != nil {
			return err
		}
		return fn(ctl, ref)
	}
	for _, n := range args {
		ref, _, err := a.devRef(n, true)
		if err != nil {
			return err
		}
		if err := fn(ctl, ref); err != nil {
			return err
		}
	}
	return nil
}

// target is a device to report on, and the name to prefix its lines with
// when several are reported.
type target struct {
	ref  dm.Ref
	name string
}

// reportTargets resolves the devices of info, table, status and deps: the
// named ones, the one of -u / -j -m, or all of them (in the kernel's
// order). multiple says whether lines get a "name: " prefix, as dmsetup
// does for anything but exactly one device. all is true when every device
// is reported (then a failing one does not stop the others), none when
// there are no devices at all.
func (a *app) reportTargets(ctl *dm.Control, args []string) (ts []target, multiple, all, none bool, err error) {
	if len(args) > 0 {
		for _, n := range args {
			ts = append(ts, target{name: n})
		}
		return ts, len(args) != 1, false, false, nil
	}
	if a.opts.hasUUID || a.opts.hasMajor {
		ref, _, err := a.devRef("", false)
		return []target{{ref: ref}}, false, false, false, err
	}
	devs, err := ctl.List(a.ctx)
	if err != nil {
		return nil, false, false, false, err
	}
	for _, d := range devs {
		ts = append(ts, target{dm.Name(d.Name), d.Name})
	}
	return ts, true, true, len(devs) == 0, nil
}

// resolve fills in t.ref for a device named on the command line.
func (a *app) resolve(t *target) error {
	if t.ref != (dm.Ref{}) {
		return nil
	}
	ref, name, err := a.devRef(t.name, true)
	if err != nil {
		return err
	}
	t.ref = ref
	t.name = name
	return nil
}

func (a *app) inactiveFlags() []dm.Flag {
	if a.opts.inactive {
		return []dm.Flag{dm.Inactive}
	}
	return nil
}

// readTable reads the table of create and load: --table, the file, or
// stdin.
func (a *app) readTable(file string) (dm.Table, error) {
	var text, source string
	switch {
	case a.opts.hasTable:
		text, source = a.opts.table, "--table"
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, libdmf("Couldn't open '%s' for reading.", file)
		}
		text, source = string(b), file
	default:
		b, err := io.ReadAll(a.stdin)
		if err != nil {
			return nil, fmt.Errorf("reading the table from stdin: %w", err)
		}
		text, source = string(b), "on stdin"
	}
	return parseTableText(text, source)
}

// parseTableText parses table lines as dmsetup does (blank lines skipped,
// '#' starts a comment), naming the line and the source on error in
// dmsetup's words.
func parseTableText(text, source string) (dm.Table, error) {
	t, err := dm.ParseTable(text)
	if err == nil {
		return t, nil
	}
	for i, line := range strings.Split(text, "\n") {
		l := strings.TrimSpace(line)
		if l == "" || l[0] == '#' {
			continue
		}
		if _, err := dm.ParseTarget(l); err != nil {
			return nil, libdmf("Invalid format on line %d of table %s.", i+1, source)
		}
	}
	return nil, libdmf("Invalid format in table %s: %v", source, err)
}

func (a *app) create(args []string) error {
	if a.opts.concise {
		return a.unsupported(args)
	}
	if len(args) == 0 {
		return libdmf("Please provide a name for the new device.")
	}
	name, err := a.resolveName(args[0], true)
	if err != nil {
		return err
	}
	file := ""
	if len(args) == 2 {
		file = args[1]
	}
	var copts []dm.CreateOption
	if a.opts.hasUUID {
		copts = append(copts, dm.WithUUID(a.opts.uuid))
	}
	if a.opts.readOnly {
		copts = append(copts, dm.WithReadOnly())
	}
	if a.opts.hasMinor {
		copts = append(copts, dm.WithMinor(a.opts.minorNum))
	}
	var table dm.Table
	if !a.opts.noTable {
		if table, err = a.readTable(file); err != nil {
			return err
		}
	}
	ctl, err := a.control()
	if err != nil {
		return err
	}
	if len(table) == 0 {
		// dmsetup creates a table-less device when the table is empty.
		_, err = ctl.CreateDevice(a.ctx, name, copts...)
	} else {
		err = a.createLoaded(ctl, name, table, copts)
	}
	if err != nil {
		return err
	}
	if a.opts.verbose > 0 {
		return a.showInfo(ctl, dm.Name(name))
	}
	return nil
}

func (a *app) load(args []string) error {
	if a.opts.noTable {
		return libdmf("--notable only available when creating new device.")
	}
	ref, rest, err := a.oneDevice(args)
	if err != nil {
		return err
	}
	file := ""
	if len(rest) == 1 {
		file = rest[0]
	}
	table, err := a.readTable(file)
	if err != nil {
		return err
	}
	ctl, err := a.control()
	if err != nil {
		return err
	}
	var flags []dm.Flag
	if a.opts.readOnly {
		flags = append(flags, dm.ReadOnly)
	}
	if err := ctl.Load(a.ctx, ref, table, flags...); err != nil {
		return err
	}
	if a.opts.verbose > 0 {
		return a.showInfo(ctl, ref)
	}
	return nil
}

func (a *app) suspendFlags() []dm.Flag {
	var f []dm.Flag
	if a.opts.noFlush {
		f = append(f, dm.NoFlush)
	}
	if a.opts.noLockfs {
		f = append(f, dm.SkipLockfs)
	}
	return f
}

func (a *app) suspend(args []string) error {
	return a.eachDevice(args, func(ctl *dm.Control, ref dm.Ref) error {
		if err := ctl.Suspend(a.ctx, ref, a.suspendFlags()...); err != nil {
			return err
		}
		if a.opts.verbose > 0 {
			return a.showInfo(ctl, ref)
		}
		return nil
	})
}

func (a *app) resume(args []string) error {
	return a.eachDevice(args, func(ctl *dm.Control, ref dm.Ref) error {
		if _, err := ctl.Resume(a.ctx, ref, a.suspendFlags()...); err != nil {
			return err
		}
		if a.opts.verbose > 0 {
			return a.showInfo(ctl, ref)
		}
		return nil
	})
}

func (a *app) clear(args []string) error {
	return a.eachDevice(args, func(ctl *dm.Control, ref dm.Ref) error { return ctl.Clear(a.ctx, ref) })
}

// wipe replaces a device's table with an error target of the same size
// and resumes it without flushing, so that whoever holds it open gets I/O
// errors instead of hanging (dmsetup's remove --force and wipe_table).
func (a *app) wipe(ctl *dm.Control, ref dm.Ref) error {
	t, err := ctl.Table(a.ctx, ref)
	if err != nil {
		// dmsetup goes on to load an empty error table, which fails the
		// same way: print both lines as it does.
		var de *dm.Error
		if errors.As(err, &de) && de.Errno() != 0 {
			a.printError(err)
			return libdmf("device-mapper: reload ioctl on %s failed: %s", refText(a.describe(de)), strerror(de.Errno()))
		}
		return err
	}
	size := t.Size()
	if size == 0 {
		// dmsetup loads an empty error table, which the kernel refuses.
		return libdmf("device-mapper: reload ioctl on %s failed: %s",
			refText(a.describe(dm.NewError("reload", ref, nil))), strerror(unix.EINVAL))
	}
	if err := ctl.Load(a.ctx, ref, dm.Table{{Start: 0, Length: size, Type: "error"}}); err != nil {
		return err
	}
	var rflags []dm.Flag
	if a.opts.force || a.command == "remove" {
		rflags = []dm.Flag{dm.NoFlush, dm.SkipLockfs}
	} else {
		rflags = a.suspendFlags()
	}
	if _, err := ctl.Resume(a.ctx, ref, rflags...); err != nil {
		_ = ctl.Clear(a.ctx, ref)
		return err
	}
	return nil
}

func (a *app) removeFlags() []dm.Flag {
	var f []dm.Flag
	if a.opts.deferred {
		f = append(f, dm.Deferred)
	}
	if !a.opts.retry {
		f = append(f, dm.NoRetry)
	}
	return f
}

func (a *app) remove(args []string) error {
	return a.eachDevice(args, func(ctl *dm.Control, ref dm.Ref) error {
		if a.opts.force {
			if err := a.wipe(ctl, ref); err != nil {
				a.printError(err)
			}
		}
		return ctl.Remove(a.ctx, ref, a.removeFlags()...)
	})
}

func (a *app) removeAll(args []string) error {
	ctl, err := a.control()
	if err != nil {
		return err
	}
	var flags []dm.Flag
	if a.opts.deferred {
		flags = append(flags, dm.Deferred)
	}
	removeAll := func() error {
		if err := ctl.RemoveAll(a.ctx, flags...); err != nil {
			return err
		}
		// DM_REMOVE_ALL generates no udev events we could wait on.
		return ctl.MakeNodes(a.ctx)
	}
	if err := removeAll(); err != nil {
		return err
	}
	if !a.opts.force {
		return nil
	}
	devs, err := ctl.List(a.ctx)
	if err != nil || len(devs) == 0 {
		return err
	}
	for _, d := range devs {
		if err := a.wipe(ctl, dm.Name(d.Name)); err != nil {
			a.printError(err)
		}
	}
	if err := removeAll(); err != nil {
		return err
	}
	devs, err = ctl.List(a.ctx)
	if err != nil {
		return err
	}
	if len(devs) > 0 {
		return fmt.Errorf("unable to remove %d device(s)", len(devs))
	}
	return nil
}

func (a *app) rename(args []string) error {
	ref, _, err := a.devRef(args[0], len(args) == 2)
	if err != nil {
		return err
	}
	ctl, err := a.control()
	if err != nil {
		return err
	}
	to := args[len(args)-1]
	if a.opts.setUUID {
		return ctl.SetUUID(a.ctx, ref, to)
	}
	return ctl.Rename(a.ctx, ref, to)
}

func (a *app) message(args []string) error {
	ref, rest, err := a.oneDevice(args)
	if err != nil {
		return err
	}
	if len(rest) < 1 {
		return libdmf("Invalid sector.")
	}
	sector, err := strconv.ParseUint(rest[0], 10, 64)
	if err != nil {
		return libdmf("Invalid sector.")
	}
	if len(rest) < 2 {
		return libdmf("No message supplied.")
	}
	ctl, err := a.control()
	if err != nil {
		return err
	}
	resp, err := ctl.Message(a.ctx, ref, dm.Sectors(sector), strings.Join(rest[1:], " "))
	if err != nil {
		return err
	}
	writeMessageResponse(a.stdout, resp)
	return nil
}

func (a *app) ls(args []string) error {
	if a.opts.tree {
		return a.lsTree()
	}
	mode := nameDevNo
	if a.opts.hasFields {
		m, err := parseNameMode(a.opts.fields)
		if err != nil {
			return err
		}
		mode = m
	}
	ctl, err := a.control()
	if err != nil {
		return err
	}
	devs, err := ctl.List(a.ctx)
	if err != nil {
		return err
	}
	if !a.opts.hasTarget {
		writeLs(a.stdout, devs, mode, a.sys.name)
		return nil
	}
	if len(devs) == 0 {
		io.WriteString(a.stdout, "No devices found\n")
		return nil
	}
	failed := false
	for _, d := range devs {
		st, err := ctl.Status(a.ctx, dm.Name(d.Name), dm.NoFlush)
		if err != nil {
			a.printError(err)
			failed = true
			continue
		}
		for _, s := range st {
			if s.Type == a.opts.target {
				writeLsTarget(a.stdout, d.Name, d.Dev)
				break
			}
		}
	}
	if failed {
		return errFailed
	}
	return nil
}

// deviceInfo gathers what info shows about one device.
func (a *app) deviceInfo(ctl *dm.Control, ref dm.Ref) (deviceInfo, error) {
	return a.gatherInfo(ctl, ref, a.opts.columns)
}

// gatherInfo gathers what info shows about one device; quiet leaves out
// the complaint of a plain info about a device without a node.
func (a *app) gatherInfo(ctl *dm.Control, ref dm.Ref, quiet bool) (deviceInfo, error) {
	info, err := ctl.Info(a.ctx, ref, a.inactiveFlags()...)
	if err != nil {
		return deviceInfo{}, notExist(err)
	}
	d := deviceInfo{Info: info, Split: newSplitName(uuidSubsystem(info.UUID), info.Name)}
	d.ReadAhead, d.HasReadAhead = a.sys.readAhead(info.Dev)
	if !d.HasReadAhead && !quiet {
		// libdevmapper then asks the device node, and says when there is
		// none (a device without a table has no node under udev).
		node := filepath.Join(a.devDir, "mapper", info.Name)
		if _, err := os.Stat(node); err != nil {
			var errno unix.Errno
			if errors.As(err, &errno) {
				a.logf("%s: open failed: %s", node, strerror(errno))
			}
		}
	}
	d.BlkDevName, _ = a.sys.blockName(info.Dev)
	return d, nil
}

// showInfo prints the info block of one device (for -v).
func (a *app) showInfo(ctl *dm.Control, ref dm.Ref) error {
	d, err := a.deviceInfo(ctl, ref)
	if err != nil {
		return err
	}
	writeInfo(a.stdout, d)
	return nil
}

func (a *app) info(args []string) error {
	var rf *reportFormat
	if a.opts.columns {
		var err error
		if a.opts.hasFields && strings.Contains(a.opts.fields, "help") {
			io.WriteString(a.stderr, fieldHelpText)
			return nil
		}
		if rf, err = newReportFormat(&a.opts); err != nil {
			return err
		}
	}
	ctl, err := a.control()
	if err != nil {
		return err
	}
	ts, _, all, none, err := a.reportTargets(ctl, args)
	if err != nil {
		return err
	}
	if none {
		if rf == nil {
			io.WriteString(a.stdout, "No devices found\n")
		}
		return nil
	}
	// As dmsetup, only the report (-c) selects; a plain info shows all.
	var sel *selection
	if rf != nil {
		if sel, err = a.selection(); err != nil {
			return err
		}
	}
	var rows []deviceInfo
	err = a.forTargets(ts, all, func(t target) error {
		d, err := a.deviceInfo(ctl, t.ref)
		if err != nil {
			return err
		}
		if sel != nil {
			if sel.deps {
				a.fillDeps(ctl, &d)
			}
			if !sel.match(&d) {
				return nil
			}
		}
		if rf != nil {
			if rf.needsDeps() {
				a.fillDeps(ctl, &d)
			}
			rows = append(rows, d)
		} else {
			writeInfo(a.stdout, d)
		}
		return nil
	})
	if rf != nil {
		rf.write(a.stdout, rows)
	}
	return err
}

// forTargets runs fn for each device. Devices named on the command line
// stop at the first failure, as in dmsetup; when every device is reported,
// each failure is printed and the others are still shown.
func (a *app) forTargets(ts []target, all bool, fn func(t target) error) error {
	failed := false
	for _, t := range ts {
		err := a.resolve(&t)
		if err == nil {
			err = fn(t)
		}
		if err != nil {
			if !all {
				return err
			}
			a.printError(err)
			failed = true
		}
	}
	if failed {
		return errFailed
	}
	return nil
}

// notExist turns the kernel's "no such device" for info and status into
// dmsetup's "Device does not exist.": libdevmapper does not report ENXIO
// from those two as an ioctl failure.
func notExist(err error) error {
	var de *dm.Error
	if errors.As(err, &de) && de.Errno() == unix.ENXIO {
		return errNoDevice
	}
	return err
}

// targetLinesFunc reads the table or the status of one device, as lines.
type targetLinesFunc func(ctl *dm.Control, ref dm.Ref) ([]targetLine, error)

func (a *app) table(args []string) error {
	if a.opts.concise {
		return a.tableConcise(args)
	}
	return a.showTargets(args, true, func(ctl *dm.Control, ref dm.Ref) ([]targetLine, error) {
		t, err := ctl.Table(a.ctx, ref, a.inactiveFlags()...)
		return tableLines(t), err
	})
}

func (a *app) status(args []string) error {
	flags := a.inactiveFlags()
	if a.opts.noFlush {
		flags = append(flags, dm.NoFlush)
	}
	return a.showTargets(args, false, func(ctl *dm.Control, ref dm.Ref) ([]targetLine, error) {
		st, err := ctl.Status(a.ctx, ref, flags...)
		return statusLines(st), notExist(err)
	})
}

// showTargets prints table or status lines for devices.
func (a *app) showTargets(args []string, isTable bool, get targetLinesFunc) error {
	ctl, err := a.control()
	if err != nil {
		return err
	}
	ts, multiple, all, none, err := a.reportTargets(ctl, args)
	if err != nil {
		return err
	}
	if none {
		io.WriteString(a.stdout, "No devices found\n")
		return nil
	}
	sel, err := a.selection()
	if err != nil {
		return err
	}
	// A selection names each device it shows, as a list does.
	multiple = multiple || sel != nil
	verbose := a.opts.verbose > 0
	return a.forTargets(ts, all, func(t target) error {
		if ok, err := a.passes(ctl, sel, t.ref); err != nil || !ok {
			return err
		}
		lines, err := get(ctl, t.ref)
		if err != nil {
			return err
		}
		o := targetsOutput{HideKeys: isTable && !a.opts.showKeys}
		if a.opts.hasTarget {
			o.Target = a.opts.target
		}
		if multiple && !verbose {
			o.Prefix = t.name + ": "
		}
		if verbose {
			// dmsetup -v shows the info block before a device's first
			// matching line, and an empty line after the device.
			var buf strings.Builder
			if !writeTargets(&buf, lines, o) {
				return nil
			}
			if err := a.showInfo(ctl, t.ref); err != nil {
				return err
			}
			io.WriteString(a.stdout, buf.String())
			if multiple {
				io.WriteString(a.stdout, "\n")
			}
			return nil
		}
		writeTargets(a.stdout, lines, o)
		return nil
	})
}

func (a *app) deps(args []string) error {
	mode := nameDevNo
	if a.opts.hasFields {
		m, err := parseNameMode(a.opts.fields)
		if err != nil {
			return err
		}
		mode = m
	}
	ctl, err := a.control()
	if err != nil {
		return err
	}
	ts, multiple, all, none, err := a.reportTargets(ctl, args)
	if err != nil {
		return err
	}
	if none {
		io.WriteString(a.stdout, "No devices found\n")
		return nil
	}
	sel, err := a.selection()
	if err != nil {
		return err
	}
	multiple = multiple || sel != nil
	verbose := a.opts.verbose > 0
	return a.forTargets(ts, all, func(t target) error {
		if ok, err := a.passes(ctl, sel, t.ref); err != nil || !ok {
			return err
		}
		deps, err := ctl.Deps(a.ctx, t.ref, a.inactiveFlags()...)
		if err != nil {
			return err
		}
		prefix := ""
		if verbose {
			if err := a.showInfo(ctl, t.ref); err != nil {
				return err
			}
		} else if multiple {
			prefix = t.name + ": "
		}
		writeDeps(a.stdout, prefix, deps, mode, a.sys.name)
		if multiple && verbose {
			io.WriteString(a.stdout, "\n")
		}
		return nil
	})
}

func (a *app) wait(args []string) error {
	ref, rest, err := a.oneDevice(args)
	if err != nil {
		return err
	}
	var last uint32
	if len(rest) > 0 {
		last = atoi(rest[len(rest)-1])
	}
	ctl, err := a.control()
	if err != nil {
		return err
	}
	var flags []dm.Flag
	if a.opts.noFlush {
		flags = append(flags, dm.NoFlush)
	}
	if _, err := ctl.Wait(a.ctx, ref, last, flags...); err != nil {
		return err
	}
	if a.opts.verbose > 0 {
		return a.showInfo(ctl, ref)
	}
	return nil
}

func (a *app) mknodes(args []string) error {
	ctl, err := a.control()
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return ctl.MakeNodes(a.ctx)
	}
	// dm has no per-device MakeNodes: make or remove the named nodes here.
	dir := filepath.Join(a.devDir, "mapper")
	failed := false
	for _, name := range args {
		info, err := ctl.Info(a.ctx, dm.Name(name))
		switch {
		case errors.Is(err, dm.ErrNotFound):
			err = udev.RemoveNode(dir, name)
		case err == nil:
			err = udev.MakeNode(dir, info.Name, info.Dev, 0o600)
		}
		if err != nil {
			a.printError(err)
			failed = true
		}
	}
	if failed {
		return errFailed
	}
	return nil
}

func (a *app) udevflags(args []string) error {
	cookie, err := parseCookie(args[0])
	if err != nil {
		return libdmf("Incorrect cookie value.")
	}
	writeUdevFlags(a.stdout, cookie)
	return nil
}

func (a *app) udevcomplete(args []string) error {
	cookie, err := parseCookie(args[0])
	if err != nil {
		return libdmf("Incorrect cookie value.")
	}
	io.WriteString(a.stdout, completedLine(cookie))
	return udev.Complete(cookie)
}

func (a *app) udevcompleteAll(args []string) error {
	var minutes uint64
	if len(args) == 1 {
		var err error
		if minutes, err = strconv.ParseUint(args[0], 10, 32); err != nil {
			return libdmf("Failed to read age_in_minutes parameter.")
		}
	}
	if !a.opts.yes {
		io.WriteString(a.stderr, completeAllWarning(minutes))
		if !a.confirm("Do you really want to continue? [y/n]: ") {
			fmt.Fprintf(a.stdout, "Semaphores with keys prefixed by %d (0x%x) NOT destroyed.\n", udev.CookieMagic, udev.CookieMagic)
			return nil
		}
	}
	age := time.Duration(minutes) * time.Minute
	cookies, err := udev.ListCookies()
	if err != nil {
		return err
	}
	skipped := 0
	now := time.Now()
	for _, c := range cookies {
		if c.Age(now) < age {
			skipped++
		}
	}
	n, err := udev.CompleteAll(age)
	io.WriteString(a.stdout, completeAllSummary(n, skipped))
	return err
}

// confirm asks a yes/no question on stdout and reads the answer from
// stdin as dmsetup does: the last 'y' or 'n' on a line decides, a line
// without either asks again, and end of input means no.
func (a *app) confirm(prompt string) bool {
	r := bufio.NewReader(a.stdin)
	var answer, c byte
	for {
		if c == 0 || c == '\n' {
			io.WriteString(a.stdout, prompt)
		}
		b, err := r.ReadByte()
		if err != nil {
			answer, c = 'n', 0
			break
		}
		c = b | 0x20 // ASCII lower case; other bytes are never 'y' or 'n'
		if c == 'y' || c == 'n' {
			answer = c
		} else if b == '\n' {
			c = '\n'
		}
		if answer != 0 && c == '\n' {
			break
		}
	}
	if c != '\n' {
		io.WriteString(a.stdout, "\n")
	}
	return answer == 'y'
}

func (a *app) udevcookies(args []string) error {
	cookies, err := udev.ListCookies()
	if err != nil {
		return err
	}
	for _, c := range cookies {
		if c.Value < 0 {
			fmt.Fprintf(a.stderr, "dmsetup: semid %d: cannot read the value of cookie %#x\n", c.SemID, c.Cookie)
		}
	}
	writeCookies(a.stdout, cookies, time.Local)
	return nil
}

func (a *app) targetVersion(args []string) error {
	ctl, err := a.control()
	if err != nil {
		return err
	}
	failed := false
	for _, name := range args {
		a.curTarget = name
		v, err := ctl.TargetVersion(a.ctx, name)
		if err != nil {
			return err // dmsetup stops at the first unknown target
		}
		writeTargetVersion(a.stdout, name, v)
	}
	if failed {
		return errFailed
	}
	return nil
}

func (a *app) targets(args []string) error {
	ctl, err := a.control()
	if err != nil {
		return err
	}
	ts, err := ctl.Targets(a.ctx)
	if err != nil {
		return err
	}
	for _, t := range ts {
		writeTargetVersion(a.stdout, t.Name, t.Version)
	}
	return nil
}

func (a *app) version(args []string) error {
	fmt.Fprintf(a.stdout, "Library version:   %s\n", libraryVersion())
	ctl, err := a.control()
	if err != nil {
		return err
	}
	v, err := ctl.KernelVersion(a.ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "Driver version:    %s\n", v)
	return nil
}

// createLoaded creates a device with a table as libdevmapper does, so that
// a failure names what it does: create, load (on failure the new device is
// removed again, and the failure line names its number), resume.
func (a *app) createLoaded(ctl *dm.Control, name string, table dm.Table, copts []dm.CreateOption) error {
	info, err := ctl.CreateDevice(a.ctx, name, copts...)
	if err != nil {
		return err
	}
	var flags []dm.Flag
	if a.opts.readOnly {
		flags = append(flags, dm.ReadOnly)
	}
	undo := func(err error) error {
		_ = ctl.Remove(context.Background(), dm.Name(name))
		var de *dm.Error
		if errors.As(err, &de) {
			return &createError{err: de, dev: info.Dev}
		}
		return err
	}
	if err := ctl.Load(a.ctx, dm.Name(name), table, flags...); err != nil {
		return undo(err)
	}
	if _, err := ctl.Resume(a.ctx, dm.Name(name)); err != nil {
		return undo(err)
	}
	return nil
}
