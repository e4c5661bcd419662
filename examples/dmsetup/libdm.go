package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/ioctl"
)

// Programs that run dmsetup read its stderr: the first line of a failed
// ioctl is "device-mapper: <cmd> ioctl on <name> <uuid> failed: <strerror>"
// and they recover the errno from the text after "failed: " (EBUSY: retry;
// EEXIST, ENXIO, ENODATA: often ignored). This file turns the library's
// typed errors into exactly those lines.

// libdmError is an error whose text is already in libdevmapper's words; it
// is printed as is.
type libdmError struct{ msg string }

func (e *libdmError) Error() string { return e.msg }

func libdmf(format string, args ...any) error {
	return &libdmError{msg: fmt.Sprintf(format, args...)}
}

// errNoDevice is dmsetup's answer to info or status on a device that does
// not exist: the kernel's ENXIO is not printed as an ioctl failure.
var errNoDevice = libdmf("Device does not exist.")

// libdmCmd is libdevmapper's name of the task that failed: its names are
// those of its task types, not of the ioctls ("reload" for DM_TABLE_LOAD,
// "resume" and "suspend" for DM_DEV_SUSPEND, "table" and "status" for
// DM_TABLE_STATUS).
func libdmCmd(e *dm.Error, command string) string {
	if e.Sent {
		switch e.Cmd {
		case ioctl.CmdDevCreate:
			return "create"
		case ioctl.CmdTableLoad:
			return "reload"
		case ioctl.CmdDevRemove:
			return "remove"
		case ioctl.CmdRemoveAll:
			return "remove_all"
		case ioctl.CmdDevSuspend:
			if e.Op == "suspend" || (command == "suspend" && e.Op != "resume") {
				return "suspend"
			}
			return "resume"
		case ioctl.CmdDevStatus:
			if command == "mknodes" {
				return "mknodes"
			}
			if command == "wait" {
				return "waitevent" // the library checks the device first
			}
			return "info"
		case ioctl.CmdTableDeps:
			return "deps"
		case ioctl.CmdDevRename:
			return "rename"
		case ioctl.CmdVersion:
			return "version"
		case ioctl.CmdTableStatus:
			if e.Op == "table" || command == "table" {
				return "table"
			}
			return "status"
		case ioctl.CmdDevWait:
			return "waitevent"
		case ioctl.CmdListDevices:
			return "names"
		case ioctl.CmdTableClear:
			return "clear"
		case ioctl.CmdListVersions:
			return "versions"
		case ioctl.CmdTargetMsg:
			return "message"
		case ioctl.CmdDevSetGeometry:
			return "setgeometry"
		case ioctl.CmdGetTargetVersion:
			return "target-version"
		}
	}
	switch e.Op {
	case "load", "reload":
		return "reload"
	case "wait":
		return "waitevent"
	case "list":
		return "names"
	case "targets":
		return "versions"
	case "":
		return command
	}
	return e.Op
}

// strerror is the C library's text of errno: Go's, with the first letter
// capitalised as glibc writes it.
func strerror(errno unix.Errno) string {
	s := errno.Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// refText is the "<name> <uuid>(major:minor)" part of an ioctl failure line,
// as libdevmapper fills the request: the name, a space, the uuid, and the
// device number in brackets when one was given.
func refText(ref refDesc) string {
	s := ref.name + " " + ref.uuid
	if ref.hasDev {
		s += fmt.Sprintf("(%d:%d)", ref.dev.Major, ref.dev.Minor)
	}
	return s
}

// refDesc is how a device was named to the kernel.
type refDesc struct {
	name, uuid string
	dev        dm.Dev
	hasDev     bool
}

// libdmMessage is the line libdevmapper and dmsetup print for err.
func (a *app) libdmMessage(err error) string {
	var le *libdmError
	if errors.As(err, &le) {
		return le.msg
	}
	var de *dm.Error
	var ce *createError
	if errors.As(err, &ce) {
		de = ce.err
		if errno := de.Errno(); errno != 0 {
			r := refText(a.describe(de))
			r += fmt.Sprintf("(%d:%d)", ce.dev.Major, ce.dev.Minor)
			return fmt.Sprintf("device-mapper: %s ioctl on %s failed: %s", libdmCmd(de, a.command), r, strerror(errno))
		}
	}
	if errors.As(err, &de) {
		if de.Op == "open" {
			return fmt.Sprintf("%s: open failed: %s\nFailure to communicate with kernel device-mapper driver.\nCheck that device-mapper is available in the kernel.",
				filepath.Join(a.devDir, "mapper", "control"), strerror(de.Errno()))
		}
		if errno := de.Errno(); errno != 0 {
			return fmt.Sprintf("device-mapper: %s ioctl on %s failed: %s",
				libdmCmd(de, a.command), refText(a.describe(de)), strerror(errno))
		}
		if errors.Is(err, ioctl.ErrNoReply) {
			// A message to a device without a live table: libdevmapper
			// reports the kernel's positive return as a failure too.
			return fmt.Sprintf("device-mapper: message ioctl on %s failed: %s",
				refText(a.describe(de)), strerror(unix.EINVAL))
		}
		return "device-mapper: " + de.Reason()
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return strerror(errno)
	}
	return err.Error()
}

// describe recovers how the failed operation named its device, from the
// library's description of it ("vol", "uuid X", "dev 253:0").
func (a *app) describe(e *dm.Error) refDesc {
	d := e.Device
	switch {
	case strings.HasPrefix(d, "uuid "):
		return refDesc{uuid: strings.TrimPrefix(d, "uuid ")}
	case strings.HasPrefix(d, "dev "):
		if dev, err := dm.ParseDev(strings.TrimPrefix(d, "dev ")); err == nil {
			return refDesc{dev: dev, hasDev: true}
		}
	}
	if a.command == "target-version" {
		return refDesc{name: a.curTarget}
	}
	r := refDesc{name: d}
	var ce *createError
	if errors.As(e, &ce) {
		r.dev, r.hasDev = ce.dev, true
	}
	if a.command == "create" && a.opts.hasUUID && (!e.Sent || e.Cmd == ioctl.CmdDevCreate) {
		r.uuid = a.opts.uuid
	}
	return r
}

// createError is a failed load or resume of a device just created:
// libdevmapper names the new device's number in the failure line.
type createError struct {
	err *dm.Error
	dev dm.Dev
}

func (e *createError) Error() string { return e.err.Error() }
func (e *createError) Unwrap() error { return e.err }

// resolveName turns a device argument into the device-mapper name
// libdevmapper would use. A plain name is used as it is. An argument with a
// '/' is a path: if it exists and <devdir>/mapper/<last element> is the same
// device, that is the name; otherwise the first node in <devdir>/mapper with
// the same device number names it (so /dev/dm-3 works). A relative path with
// exactly one '/' that does not exist is tried under <devdir> ("mapper/vol").
func (a *app) resolveName(arg string, creating bool) (string, error) {
	i := strings.LastIndexByte(arg, '/')
	if i < 0 {
		return arg, nil
	}
	if creating {
		return "", libdmf("Name \"%s\" invalid. It contains \"/\".", arg)
	}
	base := arg[i+1:]
	mapper := filepath.Join(a.devDir, "mapper")
	var st1 unix.Stat_t
	if err := unix.Stat(arg, &st1); err == nil {
		var st2 unix.Stat_t
		if unix.Stat(filepath.Join(mapper, base), &st2) == nil && st1.Rdev == st2.Rdev {
			return base, nil
		}
	} else {
		if len(arg) < 3 || arg[0] == '/' || strings.Count(arg, "/") != 1 {
			return "", libdmf("Device %s not found", arg)
		}
		if unix.Stat(filepath.Join(mapper, "..", arg), &st1) != nil {
			return "", libdmf("Device %s not found", arg)
		}
	}
	if name, ok := findMapperNode(mapper, st1.Rdev); ok {
		return name, nil
	}
	return "", libdmf("Device %s not found", base)
}

// findMapperNode returns the name of the first entry of dir whose device
// number is rdev.
func findMapperNode(dir string, rdev uint64) (string, bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", false
	}
	for _, e := range ents {
		var st unix.Stat_t
		if unix.Stat(filepath.Join(dir, e.Name()), &st) == nil && st.Rdev == rdev {
			return e.Name(), true
		}
	}
	return "", false
}
