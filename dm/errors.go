package dm

import (
	"context"
	"errors"
	"fmt"
	"io"

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
// device, and why. Err is either a validation error (errors.Is ErrInvalid)
// or the kernel's errno; Cmd is the ioctl that failed, if one was sent.
type Error struct {
	Op     string    // the operation: "create", "load", "remove", ...
	Device string    // the device as given, "name vol", "uuid ...", "dev 253:0"; empty if none
	Cmd    ioctl.Cmd // the failing ioctl; meaningful only if Sent
	Sent   bool      // whether the failure came from the kernel
	Err    error     // the cause: a unix.Errno, a validation error, ...
	// Applied: the kernel carried the operation out; only what came after
	// it failed, typically the wait for udev to process its event. The
	// device is in the state the operation asked for.
	Applied bool

	stack error // pkg/errors stack, printed by %+v
}

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
	b = append(b, e.Err.Error()...)
	return string(b)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errno returns the kernel's errno, or 0 if the failure did not come from
// the kernel.
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
	switch target {
	case ErrNotFound:
		return errno == unix.ENXIO || errno == unix.ENODEV || errno == unix.ENOENT
	case ErrBusy:
		return errno == unix.EBUSY
	case ErrExists:
		return errno == unix.EEXIST || (errno == unix.EBUSY && (e.Op == "create" || e.Op == "rename"))
	case ErrNoData:
		return errno == unix.ENODATA
	case ErrInvalid:
		return errno == unix.EINVAL
	case ErrPermission:
		return errno == unix.EACCES || errno == unix.EPERM
	case ErrNotSupported:
		return errno == unix.ENOTTY || errno == unix.EOPNOTSUPP
	case ErrTimeout:
		return errno == unix.ETIMEDOUT
	}
	return false
}

// Format prints the error; %+v adds the stack where it was created.
func (e *Error) Format(s fmt.State, verb rune) {
	switch {
	case verb == 'v' && s.Flag('+'):
		io.WriteString(s, e.Error())
		if e.stack != nil {
			fmt.Fprintf(s, "%+v", e.stack)
		}
	case verb == 'q':
		fmt.Fprintf(s, "%q", e.Error())
	default:
		io.WriteString(s, e.Error())
	}
}

func newError(op string, ref Ref, err error) *Error {
	e := &Error{Op: op, Err: err, stack: pkgerrors.WithStack(errStackMarker)}
	if !ref.IsZero() {
		e.Device = ref.String()
	}
	var ie *ioctl.Error
	if errors.As(err, &ie) {
		e.Cmd, e.Sent, e.Err = ie.Cmd, true, ie.Err
	}
	return e
}

// errStackMarker is the message-less error pkg/errors wraps to record a
// stack; only its stack is ever printed.
var errStackMarker = stackMarker{}

type stackMarker struct{}

func (stackMarker) Error() string { return "" }

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

func (e *InvalidError) Error() string { return e.Field + ": " + e.Reason }

// Is reports whether target is ErrInvalid.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

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
