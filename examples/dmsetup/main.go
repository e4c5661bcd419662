// Command dmsetup is a pure-Go dmsetup for the commands people use, built
// on package dm: no cgo, no libdevmapper, and it never runs the real
// dmsetup. The output of ls, info (also -c), table, status and deps is
// byte for byte that of dmsetup 1.02.185.
//
// Usage:
//
//	dmsetup [-v] [--noudevsync] <command> [options] [args]
//	dmsetup help [<command>]
//	dmsetup <command> -h
//
// Commands: create, load (reload), clear, suspend, resume, remove,
// remove_all, rename, message, wait, ls, info, table, status, deps,
// targets, target-version, version, mknodes, udevcookies, udevcomplete,
// udevcomplete_all, udevflags. Options may come anywhere on the command
// line, as with dmsetup. Errors are printed on stderr (-v adds where they
// happened) and make the exit status 1.
//
// By default the tool waits for udev after create, resume, rename and
// remove when udev can answer, exactly as libdevmapper does, and manages
// /dev/mapper nodes itself when it cannot; --noudevsync never waits.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
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

	ctl *dm.Control // opened on first use
}

// usageError is a mistake on the command line: it is printed with a hint
// to the usage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
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
	a := &app{ctx: ctx, stdin: os.Stdin, stdout: stdout, stderr: stderr, sys: "/sys", devDir: "/dev"}
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

// main parses args, runs the command and returns the exit status.
func (a *app) main(args []string) int {
	opts, operands, err := parseArgs(args)
	if err != nil {
		fmt.Fprintf(a.stderr, "dmsetup: %v\n", err)
		fmt.Fprintln(a.stderr, "Run 'dmsetup --help' for usage.")
		return exitFail
	}
	a.opts = opts
	if opts.version && len(operands) == 0 {
		operands = []string{"version"}
	}
	if len(operands) == 0 {
		if opts.help {
			writeUsage(a.stdout)
			return exitOK
		}
		writeUsage(a.stderr)
		return exitFail
	}
	cmd := findCommand(operands[0])
	if cmd == nil {
		fmt.Fprintf(a.stderr, "dmsetup: unknown command %q\n", operands[0])
		fmt.Fprintln(a.stderr, "Run 'dmsetup --help' for usage.")
		return exitFail
	}
	args = operands[1:]
	if opts.help {
		if cmd.name == "help" && opts.columns {
			writeFieldHelp(a.stdout)
		} else {
			writeCommandUsage(a.stdout, cmd)
		}
		return exitOK
	}
	if len(args) < cmd.min || (cmd.max >= 0 && len(args) > cmd.max) {
		fmt.Fprintf(a.stderr, "dmsetup %s: incorrect number of arguments\n", cmd.name)
		writeCommandUsage(a.stderr, cmd)
		return exitFail
	}
	if err := a.checkOptions(); err != nil {
		a.printError(err)
		return exitFail
	}
	if err := cmd.run(a, args); err != nil {
		if !errors.Is(err, errFailed) {
			a.printError(err)
		}
		var ue *usageError
		if errors.As(err, &ue) {
			writeCommandUsage(a.stderr, cmd)
		}
		return exitFail
	}
	return exitOK
}

// checkOptions refuses combinations dmsetup refuses.
func (a *app) checkOptions() error {
	o := &a.opts
	if o.hasMajor != o.hasMinor {
		return usagef("please specify both major number and minor number")
	}
	if o.hasTable && o.noTable {
		return usagef("--table and --notable are incompatible")
	}
	return nil
}

// printError prints err on stderr: %v, or %+v (with the stack of a
// *dm.Error) under -v.
func (a *app) printError(err error) {
	if a.opts.verbose > 0 {
		fmt.Fprintf(a.stderr, "dmsetup: %+v\n", err)
		return
	}
	fmt.Fprintf(a.stderr, "dmsetup: %v\n", err)
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

// libraryVersion names what stands in for libdevmapper: this module.
func libraryVersion() string {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	return "thinp " + v + " (pure Go, no libdevmapper)"
}

// writeUsage prints the overall usage.
func writeUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString(`Usage:

dmsetup
        [--version] [-h|--help [-c|-C|--columns]]
        [-v|--verbose] [-f|--force] [-r|--readonly]
        [--noflush] [--nolockfs] [--inactive] [--noudevsync]
        [-y|--yes] [--retry] [--deferred]
        [-c|-C|--columns] [-o <fields>] [--noheadings] [--separator <separator>]

`)
	for _, c := range commands {
		fmt.Fprintf(&b, "\t%s %s\n", c.name, c.args)
	}
	b.WriteString(`
<device> is a device name or, where one device is meant and no name is
given, -u|--uuid <uuid> or -j|--major <major> -m|--minor <minor>.
<fields> are comma-separated. Use 'help -c' for the list.
Table_file contents may be supplied on stdin.
ls and deps -o options are: devno, devname, blkdevname.
'dmsetup <command> -h' describes one command.
`)
	io.WriteString(w, b.String())
}

// writeCommandUsage prints one command's usage and description.
func writeCommandUsage(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: dmsetup %s %s\n\n%s\n", c.name, c.args, c.desc)
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
