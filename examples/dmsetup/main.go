// Command dmsetup is a pure-Go dmsetup built on package dm: no cgo, no
// libdevmapper, and it never runs the real dmsetup. It is meant as a drop-in
// for programs that exec dmsetup 1.02.185 and read what it prints:
//
//   - ls, info (also -c, -o, -O, simple -S field=value), table, status,
//     deps, splitname and the usage print the same bytes;
//   - a device argument may be a name, a /dev/mapper/NAME path, /dev/dm-N,
//     "mapper/NAME", or -u UUID / -j MAJOR -m MINOR, resolved as
//     libdevmapper resolves them;
//   - failures print libdevmapper's lines on stderr, "device-mapper: <task>
//     ioctl on <name> <uuid> failed: <strerror>" then "Command failed.", so
//     programs that take the errno from the text after "failed: " keep
//     working; usage mistakes print dmsetup's messages and usage on stderr,
//     and the exit statuses are dmsetup's;
//   - like dmsetup, a command on several devices stops at the first one
//     that fails.
//
// Where it deliberately differs ("dmsetup -h -v" lists it): the version
// command names thinp as the library; without a udev daemon that answers,
// create, rename and remove make and remove /dev/mapper nodes themselves
// (so paths work in that case too, where a libdevmapper built for udev
// refuses them); ls --tree draws neither compact nor inverted trees;
// --exec, create --concise, string lists ([a,b], {a,b}) and the selected
// field in -S selections, measure, stats, udevcreatecookie and
// udevreleasecookie are not implemented.
//
// table --concise prints dmsetup's concise device list; -S/--select takes
// libdevmapper's selection language (=, !=, =~, !~, <, <=, >, >= on number
// fields, &&, ",", ||, "#", "!(...)", parentheses) over the report fields
// and selects for info -c, table, status and deps (plain info and ls
// ignore it, as dmsetup does).
//
// By default the tool waits for udev after create, resume, rename and
// remove when udev can answer, exactly as libdevmapper does; --noudevsync
// never waits.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/thinp/thinp/dm"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit statuses.
const (
	exitOK   = 0
	exitFail = 1 // any failure, as with dmsetup
)

// app is one invocation of the tool.
type app struct {
	ctx    context.Context
	opts   options
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	sys    sysfs  // sysfs root
	devDir string // where device nodes live

	prog      string // argv[0], for the switch parser's messages
	command   string // the command being run
	curTarget string // target-version: the target being asked about

	ctl *dm.Control // opened on first use
}

// errFailed is returned by a command that already printed its errors (one per
// device, say) and only needs the exit status to say so.
var errFailed = errors.New("command failed")

// run runs the tool with args (without the program name), writing to
// stdout and stderr, and returns the exit status. It reads tables from
// os.Stdin when a command needs one and none was given.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &app{ctx: ctx, stdin: os.Stdin, stdout: stdout, stderr: stderr, sys: "/sys", devDir: "/dev", prog: os.Args[0]}
	if d := os.Getenv("DM_DEV_DIR"); d != "" {
		a.devDir = d
	}
	defer a.close()
	return a.main(args)
}

// close closes the control node, if it was opened.
func (a *app) close() {
	if a.ctl != nil {
		a.ctl.Close()
		a.ctl = nil
	}
}

// logf prints one line on stderr, as libdevmapper's log_error does.
func (a *app) logf(format string, args ...any) {
	fmt.Fprintf(a.stderr, format+"\n", args...)
}

// cmdLineFailed reports a command line dmsetup cannot process.
func (a *app) cmdLineFailed(msg string) int {
	if msg != "" {
		a.logf("%s", msg)
	}
	a.logf("Couldn't process command line.")
	return exitFail
}

// main parses args, runs the command and returns the exit status, with
// dmsetup's messages, streams and statuses for every mistake: usage on
// stderr, "Couldn't process command line." for bad switches, "Command
// failed." after a command's own error.
func (a *app) main(args []string) int {
	if a.prog == "" {
		a.prog = "dmsetup"
	}
	opts, operands, err := parseArgs(args)
	if err != nil {
		return a.cmdLineFailed(fmt.Sprintf("%s: %v", a.prog, err))
	}
	a.opts = opts
	if opts.hasMajor != opts.hasMinor {
		return a.cmdLineFailed("Please specify both major number and minor number.")
	}
	var cmd *command
	switch {
	case opts.help:
		cmd = findCommand("help")
		operands = nil
	case opts.version:
		cmd = findCommand("version")
		operands = nil
	case len(operands) == 0:
		io.WriteString(a.stderr, usageText)
		return exitFail
	default:
		if cmd = findCommand(operands[0]); cmd == nil {
			a.logf("Unknown command.")
			io.WriteString(a.stderr, usageText)
			return exitFail
		}
		operands = operands[1:]
		if len(operands) < cmd.min || (cmd.max >= 0 && len(operands) > cmd.max) {
			a.logf("Incorrect number of arguments.")
			io.WriteString(a.stderr, usageText)
			return exitFail
		}
	}
	a.command = cmd.name
	if cmd.name == "splitname" {
		a.opts.columns = true
	}
	if err := a.checkOptions(cmd); err != nil {
		return a.cmdLineFailed(err.Error())
	}
	code := exitOK
	if err := cmd.run(a, operands); err != nil {
		var se *selectionError
		if errors.As(err, &se) {
			// As dmsetup: its help, the complaint, no "Command failed.".
			io.WriteString(a.stderr, se.help)
			for _, l := range se.lines {
				a.logf("%s", l)
			}
			return exitFail
		}
		var bf *badFieldError
		if errors.As(err, &bf) {
			// As dmsetup: the field list, the complaint, no "Command failed.".
			io.WriteString(a.stderr, fieldHelpText)
			a.logf("%s", bf.msg)
			return exitFail
		}
		if !errors.Is(err, errFailed) {
			a.printError(err)
		}
		a.logf("Command failed.")
		code = exitFail
	}
	if opts.help || opts.version {
		return exitOK // as dmsetup: --help and --version always succeed
	}
	return code
}

// checkOptions refuses what dmsetup refuses before running a command.
func (a *app) checkOptions(cmd *command) error {
	o := &a.opts
	if o.tree && !o.columns {
		if _, err := parseTreeOptions(o.fields); err != nil {
			return err
		}
		return nil
	}
	if !o.columns && o.hasFields && !o.tree {
		if _, err := parseNameMode(o.fields); err != nil {
			return err
		}
	}
	return nil
}

// printError prints err as libdevmapper would (see libdmMessage); -vvv
// adds the library's own description with its stack.
func (a *app) printError(err error) {
	a.logf("%s", a.libdmMessage(err))
	if a.opts.verbose > 2 {
		fmt.Fprintf(a.stderr, "thinp: %+v\n", err)
	}
}

// control opens the device-mapper control node on first use.
func (a *app) control() (*dm.Control, error) {
	if a.ctl != nil {
		return a.ctl, nil
	}
	opts := []dm.Option{}
	if a.opts.noUdevSync {
		opts = append(opts, dm.WithUdev(dm.UdevOff))
	}
	if a.devDir != "/dev" {
		opts = append(opts, dm.WithDevDir(a.devDir))
	}
	ctl, err := dm.Open(opts...)
	if err != nil {
		return nil, err
	}
	a.ctl = ctl
	return ctl, nil
}

// libraryVersion names what stands in for libdevmapper: this module, with
// its version from the build information ("(devel)" in a plain go build of
// the repository).
func libraryVersion() string {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	return "thinp " + v + " (pure Go, no libdevmapper)"
}

// findCommand finds a command by name.
func findCommand(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}
