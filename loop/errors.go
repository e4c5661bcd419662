package loop

import "strings"

// sentinel is the type of the package's error constants. Being a string
// type, the sentinels are constants: nothing in the package can reassign
// them.
type sentinel string

func (s sentinel) Error() string { return string(s) }

// Sentinel errors. Match them with [errors.Is]; every error returned by the
// package is a [*Error] that matches the sentinel naming its cause, whether
// the package detected the problem itself or the kernel answered with the
// corresponding errno.
const (
	// ErrNotSupported means the running kernel (or the backing file's
	// file system) cannot do what was asked, for example direct I/O on a
	// file system without O_DIRECT, or a loop device on a system other
	// than Linux. The kernel's errnos ENOTTY, EOPNOTSUPP and ENOSYS match
	// it.
	ErrNotSupported = sentinel("loop: not supported")

	// ErrInvalid means the input was rejected: a directory or other file
	// that is neither a regular file nor a block device, an offset past
	// the end of the file, a block size that is not a power of two in
	// 512..4096. EINVAL, EISDIR, ENOTBLK and EOVERFLOW match it.
	ErrInvalid = sentinel("loop: invalid argument")

	// ErrBusy means the device is in use: Attach ran out of attempts to
	// win a free device, or Detach was deferred because the device is
	// still open elsewhere. EBUSY matches it.
	ErrBusy = sentinel("loop: device busy")

	// ErrNotAttached means the loop device has no backing file. ENXIO,
	// the kernel's answer for an unbound device, matches it.
	ErrNotAttached = sentinel("loop: device not attached")

	// ErrReadOnly means the backing file cannot be written (a read-only
	// file system, a file without write permission, or an *os.File opened
	// read-only) and Options.ReadOnly was not set, or the kernel attached
	// the device read-only although read-write was asked for. EROFS
	// matches it.
	ErrReadOnly = sentinel("loop: read-only")

	// ErrPermission means the caller lacks the privilege for the
	// operation. EACCES and EPERM match it.
	ErrPermission = sentinel("loop: permission denied")

	// ErrClosed means a method was called on a Device or Control after
	// Close or Detach.
	ErrClosed = sentinel("loop: use of closed device")
)

// Error is the error type of every failure in the package.
type Error struct {
	// Op is the operation that failed: "attach", "detach", "open",
	// "status", "set-capacity", "list", "find", "create", "grow",
	// "control-add", "control-remove" or "close".
	Op string
	// Device is the loop device's path (/dev/loopN), if one was involved.
	Device string
	// Path is the backing file's path, if one was involved.
	Path string
	// Err is the cause: an errno (unix.Errno), a context error, or an
	// error that wraps one of the package's sentinels.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("loop: ")
	b.WriteString(e.Op)
	if e.Path != "" {
		b.WriteString(" ")
		b.WriteString(e.Path)
	}
	if e.Device != "" {
		if e.Path != "" {
			b.WriteString(" on")
		}
		b.WriteString(" ")
		b.WriteString(e.Device)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause, so that errors.Is and errors.As see the errno.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the package sentinel that corresponds to the
// errno in e's chain, so that an EBUSY from the kernel matches ErrBusy.
func (e *Error) Is(target error) bool {
	s, ok := target.(sentinel)
	if !ok {
		return false
	}
	k := errnoKind(e.Err)
	return k != "" && k == s
}

// kinded is an error the package detected itself, or an errno it
// reclassified: it carries a message, the sentinel naming the kind of
// failure, and optionally the underlying cause.
type kinded struct {
	kind sentinel
	msg  string
	err  error
}

func (k *kinded) Error() string {
	switch {
	case k.msg == "" && k.err == nil:
		return k.kind.Error()
	case k.msg == "":
		return k.err.Error()
	case k.err == nil:
		return k.msg
	}
	return k.msg + ": " + k.err.Error()
}

// Unwrap returns both the sentinel and the cause.
func (k *kinded) Unwrap() []error {
	if k.err == nil {
		return []error{k.kind}
	}
	return []error{k.kind, k.err}
}

func newKinded(kind sentinel, err error, msg string) error {
	return &kinded{kind: kind, msg: msg, err: err}
}
