package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/udev"
)

// command is one dmsetup command: its name, its arguments as the usage
// shows them, how many operands it takes (max -1: any number), what it
// does, and its implementation.
type command struct {
	name     string
	args     string
	min, max int
	desc     string
	run      func(a *app, args []string) error
}

// commands lists the commands in the order of the usage. It is set in
// init because the help command refers to it.
var commands []command

func init() {
	commands = []command{
		{"help", "[-c|-C|--columns] [<command>]", 0, 1,
			"Prints the usage, the usage of one command, or with -c the fields of info -c.", (*app).help},
		{"create", "<dev_name> [-u|--uuid <uuid>] [-r|--readonly] [-j|--major <major> -m|--minor <minor>]\n\t    [-n|--notable | --table <table> | <table_file>]", 1, 2,
			"Creates a device, loads its table and resumes it. The table comes from --table,\n" +
				"from <table_file>, or from stdin; with --notable the device has no table.", (*app).create},
		{"remove", "[--deferred] [-f|--force] [--retry] <device>...", 0, -1,
			"Removes devices. --retry retries a device that is busy for a few seconds (udev\n" +
				"may hold it briefly); --deferred removes a device in use at its last close;\n" +
				"--force first replaces the table with one that fails all I/O.", (*app).remove},
		{"remove_all", "[-f|--force] [--deferred]", 0, 0,
			"Removes every device that is not in use, then makes /dev/mapper match the kernel.\n" +
				"--force first replaces the tables of devices in use with the error target.", (*app).removeAll},
		{"suspend", "[--noflush] [--nolockfs] <device>...", 0, -1,
			"Suspends devices: I/O is queued until resume. --noflush does not flush I/O in\n" +
				"flight; --nolockfs does not freeze the filesystem on top.", (*app).suspend},
		{"resume", "[--noflush] [--nolockfs] <device>...", 0, -1,
			"Resumes devices, making a loaded (inactive) table live.", (*app).resume},
		{"load", "<device> [-r|--readonly] [--table <table> | <table_file>]", 0, 2,
			"Loads a table as the device's inactive table; resume makes it live.", (*app).load},
		{"reload", "<device> [-r|--readonly] [--table <table> | <table_file>]", 0, 2,
			"The same as load.", (*app).load},
		{"clear", "<device>...", 0, -1,
			"Drops the inactive table of devices.", (*app).clear},
		{"rename", "<device> [--setuuid] <new_name_or_uuid>", 1, 2,
			"Renames a device, or with --setuuid sets the uuid of a device that has none.", (*app).rename},
		{"message", "<device> <sector> <message>", 2, -1,
			"Sends a message to the target that maps <sector>, and prints its answer.\n" +
				"Messages starting with '@' go to device-mapper itself.", (*app).message},
		{"ls", "[--target <target_type>] [-o devno|devname|blkdevname]", 0, 0,
			"Lists the devices, in the kernel's order.", (*app).ls},
		{"info", "[-c|-C|--columns [-o <fields>] [--noheadings] [--separator <sep>]] [--inactive] [<device>...]", 0, -1,
			"Shows the state of devices, all of them if none is named.", (*app).info},
		{"deps", "[-o devno|devname|blkdevname] [--inactive] [<device>...]", 0, -1,
			"Shows the block devices each device's table uses.", (*app).deps},
		{"status", "[--noflush] [--inactive] [--target <target_type>] [<device>...]", 0, -1,
			"Shows the status of each target of devices. --noflush keeps a thin pool from\n" +
				"committing its metadata first.", (*app).status},
		{"table", "[--inactive] [--target <target_type>] [--showkeys] [<device>...]", 0, -1,
			"Shows the tables of devices. Crypt and integrity keys are shown as zeros unless\n" +
				"--showkeys.", (*app).table},
		{"wait", "[--noflush] <device> [<event_nr>]", 0, 2,
			"Waits until the device's event counter differs from <event_nr> (default 0).", (*app).wait},
		{"mknodes", "[<device>...]", 0, -1,
			"Makes /dev/mapper match the kernel, for all devices or the named ones.", (*app).mknodes},
		{"udevflags", "<cookie>", 1, 1,
			"Decodes the udev flags of a cookie (DM_COOKIE) for lvm2's udev rules.", (*app).udevflags},
		{"udevcomplete", "<cookie>", 1, 1,
			"Tells the process waiting on a udev cookie that udev is done with one event.", (*app).udevcomplete},
		{"udevcomplete_all", "[-y|--yes] [<age_in_minutes>]", 0, 1,
			"Destroys every device-mapper udev cookie idle for at least <age_in_minutes>\n" +
				"(default: all), releasing stuck waiters. Asks first unless --yes.", (*app).udevcompleteAll},
		{"udevcookies", "", 0, 0,
			"Lists the device-mapper udev cookies (SysV semaphores) in use.", (*app).udevcookies},
		{"target-version", "<target>...", 1, -1,
			"Shows the version of target types, loading their modules if needed.", (*app).targetVersion},
		{"targets", "", 0, 0,
			"Lists the target types the kernel has loaded, with their versions.", (*app).targets},
		{"version", "", 0, 0,
			"Shows this tool's version and the kernel's device-mapper interface version.", (*app).version},
	}
}

func (a *app) help(args []string) error {
	if len(args) == 1 {
		c := findCommand(args[0])
		if c == nil {
			return usagef("unknown command %q", args[0])
		}
		writeCommandUsage(a.stdout, c)
		return nil
	}
	if a.opts.columns {
		writeFieldHelp(a.stdout)
		return nil
	}
	writeUsage(a.stdout)
	return nil
}

// singleRef returns the device named by -u or -j/-m, if any.
func (a *app) singleRef() (dm.Ref, bool, error) {
	switch {
	case a.opts.hasUUID:
		return dm.UUID(a.opts.uuid), true, nil
	case a.opts.hasMajor:
		d, err := dm.ParseDev(a.opts.major + ":" + a.opts.minor)
		if err != nil {
			return dm.Ref{}, false, usagef("bad --major/--minor: %v", err)
		}
		return dm.DevNum(d), true, nil
	}
	return dm.Ref{}, false, nil
}

// oneDevice splits off the device a single-device command works on: the
// first operand, or -u / -j -m when given.
func (a *app) oneDevice(args []string) (dm.Ref, []string, error) {
	if ref, ok, err := a.singleRef(); ok || err != nil {
		return ref, args, err
	}
	if len(args) == 0 {
		return dm.Ref{}, nil, usagef("please specify a device")
	}
	return dm.Name(args[0]), args[1:], nil
}

// eachDevice runs fn for each named device (or the one of -u / -j -m),
// printing each failure and carrying on; it fails if any did.
func (a *app) eachDevice(args []string, fn func(ctl *dm.Control, ref dm.Ref) error) error {
	var refs []dm.Ref
	if len(args) == 0 {
		ref, ok, err := a.singleRef()
		if err != nil {
			return err
		}
		if !ok {
			return usagef("please specify a device")
		}
		refs = append(refs, ref)
	}
	for _, n := range args {
		refs = append(refs, dm.Name(n))
	}
	ctl, err := a.control()
	if err != nil {
		return err
	}
	failed := false
	for _, ref := range refs {
		if err := fn(ctl, ref); err != nil {
			a.printError(err)
			failed = true
		}
	}
	if failed {
		return errFailed
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
// does for anything but exactly one device. none is true when there are no
// devices at all.
func (a *app) reportTargets(ctl *dm.Control, args []string) (ts []target, multiple, none bool, err error) {
	if len(args) > 0 {
		for _, n := range args {
			ts = append(ts, target{dm.Name(n), n})
		}
		return ts, len(args) != 1, false, nil
	}
	if ref, ok, err := a.singleRef(); ok || err != nil {
		return []target{{ref: ref}}, false, false, err
	}
	devs, err := ctl.List(a.ctx)
	if err != nil {
		return nil, false, false, err
	}
	for _, d := range devs {
		ts = append(ts, target{dm.Name(d.Name), d.Name})
	}
	return ts, true, len(devs) == 0, nil
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
			return nil, fmt.Errorf("couldn't open table file: %w", err)
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

// parseTableText parses table lines as dmsetup does (dm.ParseTable: blank
// lines skipped, '#' starts a comment), naming the source on error.
func parseTableText(text, source string) (dm.Table, error) {
	t, err := dm.ParseTable(text)
	if err != nil {
		return nil, fmt.Errorf("invalid format in table %s: %v", source, err)
	}
	return t, nil
}

func (a *app) create(args []string) error {
	name := args[0]
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
		m, err := strconv.ParseUint(a.opts.minor, 10, 32)
		if err != nil {
			return usagef("bad --minor %q", a.opts.minor)
		}
		copts = append(copts, dm.WithMinor(uint32(m)))
	}
	var table dm.Table
	if !a.opts.noTable {
		var err error
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
		_, err = ctl.Create(a.ctx, name, table, copts...)
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
		return usagef("--notable only available when creating new device")
	}
	ref, rest, err := a.oneDevice(args)
	if err != nil {
		return err
	}
	if len(rest) > 1 {
		return usagef("too many arguments")
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
		return err
	}
	size := t.Size()
	if size == 0 {
		return nil
	}
	if err := ctl.Load(a.ctx, ref, dm.Table{{Start: 0, Length: size, Type: "error"}}); err != nil {
		return err
	}
	if _, err := ctl.Resume(a.ctx, ref, dm.NoFlush, dm.SkipLockfs); err != nil {
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
	var ref dm.Ref
	switch len(args) {
	case 2:
		ref = dm.Name(args[0])
	default:
		r, ok, err := a.singleRef()
		if err != nil {
			return err
		}
		if !ok {
			return usagef("please specify a device and its new name")
		}
		ref = r
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
	if len(rest) < 2 {
		return usagef("no message supplied")
	}
	sector, err := strconv.ParseUint(rest[0], 10, 64)
	if err != nil {
		return usagef("invalid sector %q", rest[0])
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
		return usagef("--tree is not supported by this dmsetup")
	}
	mode := nameDevNo
	if a.opts.hasFields {
		m, err := parseNameMode(a.opts.fields)
		if err != nil {
			return usagef("%v", err)
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
	info, err := ctl.Info(a.ctx, ref, a.inactiveFlags()...)
	if err != nil {
		return deviceInfo{}, err
	}
	d := deviceInfo{Info: info}
	d.ReadAhead, d.HasReadAhead = a.sys.readAhead(info.Dev)
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
		if a.opts.hasFields && canonicalField(a.opts.fields) == "help" {
			writeFieldHelp(a.stdout)
			return nil
		}
		if rf, err = newReportFormat(&a.opts); err != nil {
			return usagef("%v", err)
		}
	}
	ctl, err := a.control()
	if err != nil {
		return err
	}
	ts, _, none, err := a.reportTargets(ctl, args)
	if err != nil {
		return err
	}
	if none {
		io.WriteString(a.stdout, "No devices found\n")
		return nil
	}
	var rows []deviceInfo
	failed := false
	for _, t := range ts {
		d, err := a.deviceInfo(ctl, t.ref)
		if err != nil {
			a.printError(err)
			failed = true
			continue
		}
		if rf != nil {
			rows = append(rows, d)
		} else {
			writeInfo(a.stdout, d)
		}
	}
	if rf != nil {
		rf.write(a.stdout, rows)
	}
	if failed {
		return errFailed
	}
	return nil
}

// targetLinesFunc reads the table or the status of one device, as lines.
type targetLinesFunc func(ctl *dm.Control, ref dm.Ref) ([]targetLine, error)

func (a *app) table(args []string) error {
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
		return statusLines(st), err
	})
}

// showTargets prints table or status lines for devices.
func (a *app) showTargets(args []string, isTable bool, get targetLinesFunc) error {
	ctl, err := a.control()
	if err != nil {
		return err
	}
	ts, multiple, none, err := a.reportTargets(ctl, args)
	if err != nil {
		return err
	}
	if none {
		io.WriteString(a.stdout, "No devices found\n")
		return nil
	}
	verbose := a.opts.verbose > 0
	failed := false
	for _, t := range ts {
		lines, err := get(ctl, t.ref)
		if err != nil {
			a.printError(err)
			failed = true
			continue
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
				continue
			}
			if err := a.showInfo(ctl, t.ref); err != nil {
				a.printError(err)
				failed = true
			}
			io.WriteString(a.stdout, buf.String())
			if multiple {
				io.WriteString(a.stdout, "\n")
			}
			continue
		}
		writeTargets(a.stdout, lines, o)
	}
	if failed {
		return errFailed
	}
	return nil
}

func (a *app) deps(args []string) error {
	mode := nameDevNo
	if a.opts.hasFields {
		m, err := parseNameMode(a.opts.fields)
		if err != nil {
			return usagef("%v", err)
		}
		mode = m
	}
	ctl, err := a.control()
	if err != nil {
		return err
	}
	ts, multiple, none, err := a.reportTargets(ctl, args)
	if err != nil {
		return err
	}
	if none {
		io.WriteString(a.stdout, "No devices found\n")
		return nil
	}
	verbose := a.opts.verbose > 0
	failed := false
	for _, t := range ts {
		deps, err := ctl.Deps(a.ctx, t.ref, a.inactiveFlags()...)
		if err != nil {
			a.printError(err)
			failed = true
			continue
		}
		prefix := ""
		if verbose {
			if err := a.showInfo(ctl, t.ref); err != nil {
				a.printError(err)
				failed = true
			}
		} else if multiple {
			prefix = t.name + ": "
		}
		writeDeps(a.stdout, prefix, deps, mode, a.sys.name)
		if multiple && verbose {
			io.WriteString(a.stdout, "\n")
		}
	}
	if failed {
		return errFailed
	}
	return nil
}

func (a *app) wait(args []string) error {
	ref, rest, err := a.oneDevice(args)
	if err != nil {
		return err
	}
	var last uint64
	switch len(rest) {
	case 0:
	case 1:
		if last, err = strconv.ParseUint(rest[0], 10, 32); err != nil {
			return usagef("invalid event number %q", rest[0])
		}
	default:
		return usagef("too many arguments")
	}
	ctl, err := a.control()
	if err != nil {
		return err
	}
	var flags []dm.Flag
	if a.opts.noFlush {
		flags = append(flags, dm.NoFlush)
	}
	if _, err := ctl.Wait(a.ctx, ref, uint32(last), flags...); err != nil {
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
		return usagef("%v", err)
	}
	writeUdevFlags(a.stdout, cookie)
	return nil
}

func (a *app) udevcomplete(args []string) error {
	cookie, err := parseCookie(args[0])
	if err != nil {
		return usagef("%v", err)
	}
	io.WriteString(a.stdout, completedLine(cookie))
	return udev.Complete(cookie)
}

func (a *app) udevcompleteAll(args []string) error {
	var minutes uint64
	if len(args) == 1 {
		var err error
		if minutes, err = strconv.ParseUint(args[0], 10, 32); err != nil {
			return usagef("failed to read age_in_minutes parameter %q", args[0])
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
		v, err := ctl.TargetVersion(a.ctx, name)
		if err != nil {
			a.printError(err)
			failed = true
			continue
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
