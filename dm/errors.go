package dm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	pkgerrors "github.com/pkg/errors"
	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

// Sentinel errors. Every error this package returns is a *Error whose
// errors.Is answers true for the sentinel that classifies it and for the raw
// unix.Errno the kernel returned.
var (
	// ErrNotFound: no such device (ENXIO, ENODEV, ENOENT).
	ErrNotFound = errors.New("device not found")
	// ErrBusy: the device is open or in use (EBUSY), even after retries.
	ErrBusy = errors.New("device busy")
	// ErrExists: a device with that name or uuid exists, or the id is taken
	// (EEXIST, and EBUSY from create and rename).
	ErrExists = errors.New("already exists")
	// ErrNoData: the object named does not exist inside the target (ENODATA),
	// for example a thin device id unknown to its pool.
	ErrNoData = errors.New("no such data")
	// ErrInvalid: the request is malformed (EINVAL), or failed validation
	// before anything was sent to the kernel.
	ErrInvalid = errors.New("invalid argument")
	// ErrPermission: not allowed (EACCES, EPERM); device-mapper needs
	// CAP_SYS_ADMIN.
	ErrPermission = errors.New("permission denied")
	// ErrNotSupported: the kernel lacks the command, flag or target
	// (ENOTTY, EOPNOTSUPP, or an interface version older than needed).
	// A *NotSupportedError says which version is needed.
	ErrNotSupported = errors.New("not supported")
	// ErrClosed: the Control was closed.
	ErrClosed = errors.New("control closed")
	// ErrTimeout: a wait (udev cookie, busy retry) ran out of time.
	ErrTimeout = errors.New("timed out")
)

// Error is a failed device-mapper operation: what was attempted, on which
// device, and why. Err is either a validation error (errors.Is ErrInvalid),
// a refusal made before sending because the kernel would refuse (see
// Refusal), or the kernel's errno; Cmd is the ioctl that failed, if one was
// sent.
//
// Its text is one sentence: the operation and the device once, then the
// reason in the words of the sentinel it matches, with the errno's name:
//
//	dm remove vol: device busy (EBUSY)
//	dm create vol (DM_TABLE_LOAD): invalid argument (EINVAL)
//	dm create: invalid name: "a/b" contains '/'
type Error struct {
	Op     string    // the operation: "create", "load", "remove", ...
	Device string    // the device as given: a name, "uuid ...", "dev 253:0"; empty if none
	Cmd    ioctl.Cmd // the failing ioctl; meaningful only if Sent
	Sent   bool      // whether the failure came from the kernel
	Err    error     // the cause: a unix.Errno, a validation error, ...
	// Applied: the kernel carried the operation out; only what came after
	// it failed, typically the wait for udev to process its event. The
	// device is in the state the operation asked for.
	Applied bool

	stack pkgerrors.StackTrace // where the error was made, printed by %+v
}

// Error is the one-sentence description: "dm OP DEVICE (CMD): REASON".
func (e *Error) Error() string {
	var b []byte
	b = append(b, "dm "...)
	b = append(b, e.Op...)
	if e.Device != "" {
		b = append(b, ' ')
		b = append(b, e.Device...)
	}
	if e.Sent {
		b = append(b, " ("...)
		b = append(b, e.Cmd.String()...)
		b = append(b, ')')
	}
	b = append(b, ": "...)
	b = append(b, e.Reason()...)
	return string(b)
}

// Reason is the cause alone, without the operation and device: "device
// busy (EBUSY)", "invalid name: ...". Packages above dm use it to say what
// failed once in their own words.
func (e *Error) Reason() string {
	if e.Err == nil {
		return "failed"
	}
	if errno, ok := e.Err.(unix.Errno); ok {
		return ErrnoText(errno)
	}
	return e.Err.Error()
}

// ErrnoText describes a kernel errno in the words of the sentinel it
// matches, with its name: "device not found (ENXIO)", "device busy
// (EBUSY)"; an errno no sentinel covers keeps the C library's text.
func ErrnoText(errno unix.Errno) string {
	name := unix.ErrnoName(errno)
	if name == "" {
		name = "errno " + strconv.Itoa(int(errno))
	}
	if s := sentinelOf(errno); s != nil {
		return s.Error() + " (" + name + ")"
	}
	return errno.Error() + " (" + name + ")"
}

func sentinelOf(errno unix.Errno) error {
	switch errno {
	case unix.ENXIO, unix.ENODEV, unix.ENOENT:
		return ErrNotFound
	case unix.EBUSY:
		return ErrBusy
	case unix.EEXIST:
		return ErrExists
	case unix.ENODATA:
		return ErrNoData
	case unix.EINVAL:
		return ErrInvalid
	case unix.EACCES, unix.EPERM:
		return ErrPermission
	case unix.ENOTTY, unix.EOPNOTSUPP:
		return ErrNotSupported
	case unix.ETIMEDOUT:
		return ErrTimeout
	}
	return nil
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errno returns the kernel's errno, or the errno a Refusal stands for; 0
// if there is none.
func (e *Error) Errno() unix.Errno {
	var errno unix.Errno
	if errors.As(e.Err, &errno) {
		return errno
	}
	return 0
}

// Is classifies the errno into this package's sentinels.
func (e *Error) Is(target error) bool {
	if target == ErrTimeout && errors.Is(e.Err, context.DeadlineExceeded) {
		return true
	}
	if target == ErrInvalid && errors.Is(e.Err, ioctl.ErrNoReply) {
		// A message to a device with no live table.
		return true
	}
	errno := e.Errno()
	if errno == 0 {
		return false
	}
	if target == ErrExists && errno == unix.EBUSY {
		// DM_DEV_CREATE and DM_DEV_RENAME answer EBUSY for a name or uuid
		// that is taken; EBUSY from any other step (a table load whose
		// device is held, a remove) is ErrBusy only.
		return e.Sent && (e.Cmd == ioctl.CmdDevCreate || e.Cmd == ioctl.CmdDevRename)
	}
	if target == ErrBusy && errno == unix.EBUSY && e.Sent && (e.Cmd == ioctl.CmdDevCreate || e.Cmd == ioctl.CmdDevRename) {
		return false
	}
	return sentinelOf(errno) == target
}

// StackTrace is where the error was made, in the form of
// github.com/pkg/errors; %+v prints it.
func (e *Error) StackTrace() pkgerrors.StackTrace { return e.stack }

// Format prints the error; %+v adds the stack where it was created.
func (e *Error) Format(s fmt.State, verb rune) {
	switch {
	case verb == 'v' && s.Flag('+'):
		io.WriteString(s, e.Error())
		e.stack.Format(s, verb)
	case verb == 'q':
		fmt.Fprintf(s, "%q", e.Error())
	default:
		io.WriteString(s, e.Error())
	}
}

// NewError makes the *Error for operation op on the device ref (the zero
// Ref for none) failing with err: a *InvalidError (see Invalid), a
// Refusal, an error from package ioctl (which says which ioctl failed and
// the errno), or any other cause. Packages built on dm use it so that
// every failure below them is one *Error with one stack.
func NewError(op string, ref Ref, err error) *Error {
	e := &Error{Op: op, Err: err, stack: callers()}
	if !ref.IsZero() {
		e.Device = ref.String()
	}
	var ie *ioctl.Error
	if errors.As(err, &ie) {
		e.Cmd, e.Sent, e.Err = ie.Cmd, true, ie.Err
	}
	return e
}

func newError(op string, ref Ref, err error) *Error { return NewError(op, ref, err) }

// callers records the stack above the constructor that calls it.
func callers() pkgerrors.StackTrace {
	type tracer interface{ StackTrace() pkgerrors.StackTrace }
	st := pkgerrors.WithStack(errStackMarker).(tracer).StackTrace()
	if len(st) > 2 {
		st = st[2:] // callers and the constructor
	}
	return st
}

// errStackMarker is the message-less error pkg/errors wraps to record a
// stack; only its stack is ever printed.
var errStackMarker = stackMarker{}

type stackMarker struct{}

func (stackMarker) Error() string { return "" }

// Refusal is the cause of an operation refused before anything was sent
// because the kernel would refuse it with errno: reason says why in a
// user's words, and errors.Is matches errno (and so, through *Error, the
// sentinel errno maps to).
func Refusal(errno unix.Errno, format string, args ...any) error {
	return &refusal{reason: fmt.Sprintf(format, args...), errno: errno}
}

type refusal struct {
	reason string
	errno  unix.Errno
}

func (r *refusal) Error() string { return r.reason }

func (r *refusal) Unwrap() error { return r.errno }

// Applied reports whether err is a *Error whose operation the kernel
// carried out even though the call failed afterwards (see Error.Applied).
func Applied(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Applied
}

// InvalidError is a request refused before anything reached the kernel.
// It matches ErrInvalid.
type InvalidError struct {
	Field  string // what was wrong: "name", "uuid", "table", "target 2", ...
	Reason string
}

func (e *InvalidError) Error() string { return "invalid " + e.Field + ": " + e.Reason }

// Is reports whether target is ErrInvalid.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Invalid is a request refused before anything reached the kernel because
// field is wrong; reason says how. It matches ErrInvalid but no errno.
func Invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

func invalid(field, format string, args ...any) error { return Invalid(field, format, args...) }

// NotSupportedError says the running kernel's dm interface is older than
// what a request needs. It matches ErrNotSupported.
type NotSupportedError struct {
	What   string
	Need   ioctl.Version
	Kernel ioctl.Version
}

func (e *NotSupportedError) Error() string {
	return fmt.Sprintf("%s needs dm interface %s, kernel has %s", e.What, e.Need, e.Kernel)
}

// Is reports whether target is ErrNotSupported.
func (e *NotSupportedError) Is(target error) bool { return target == ErrNotSupported }
