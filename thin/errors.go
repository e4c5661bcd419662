package thin

import (
	"errors"
	"fmt"
	"io"
	"strings"

	pkgerrors "github.com/pkg/errors"
	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
)

// Sentinel errors. Every error the pool and volume operations return is an
// *Error wrapping a *dm.Error, so errors.Is answers true for the thin
// sentinel that classifies it, for the dm sentinel (dm.ErrExists,
// dm.ErrNoData, dm.ErrBusy, dm.ErrInvalid, dm.ErrNotSupported, ...) and
// for the raw unix.Errno, whether the kernel refused the request or this
// package refused it first because the kernel would have.
var (
	// ErrNotPool: the device is not a thin-pool (its live table is not a
	// single thin-pool target).
	ErrNotPool = errors.New("not a thin-pool device")
	// ErrNotThin: the device is not a thin device of this pool.
	ErrNotThin = errors.New("not a thin device of this pool")

	// ErrPoolReadOnly: the pool is read-only (the read_only feature, out
	// of metadata space, or a metadata error); it refuses every message
	// (EOPNOTSUPP).
	ErrPoolReadOnly = errors.New("pool is read-only")
	// ErrPoolFailed: the pool is in Fail mode, or its status reads Error;
	// it refuses every message (EOPNOTSUPP) and every new thin device.
	ErrPoolFailed = errors.New("pool has failed")
	// ErrNeedsCheck: the pool's metadata is flagged needs_check; run
	// thin_check (and thin_repair) on the deactivated pool. The kernel
	// keeps such a pool read-only and will not grow it.
	ErrNeedsCheck = errors.New("pool metadata needs checking")
	// ErrPoolSuspended: thin devices cannot be activated while their pool
	// is suspended (EINVAL).
	ErrPoolSuspended = errors.New("pool is suspended")

	// ErrIDInUse: create_thin or create_snap of an id the pool already
	// has (EEXIST).
	ErrIDInUse = errors.New("thin device id in use")
	// ErrUnknownID: the pool has no thin device with that id (ENODATA),
	// from delete, create_snap's origin, or activation.
	ErrUnknownID = errors.New("no thin device with that id")
	// ErrInUse: the device is in use (EBUSY): an open thin device cannot
	// be deleted, a pool with active thin devices cannot be removed, and a
	// metadata or data device another pool uses cannot back a new one.
	ErrInUse = errors.New("in use")
	// ErrTransactionMismatch: set_transaction_id named a current
	// transaction id the pool does not have (EINVAL), or a Transaction
	// found the pool at an unexpected id.
	ErrTransactionMismatch = errors.New("transaction id mismatch")
	// ErrMetadataSnapHeld: reserve_metadata_snap while one is held (EBUSY).
	ErrMetadataSnapHeld = errors.New("metadata snapshot already held")
	// ErrNoMetadataSnap: release_metadata_snap without one held (EINVAL).
	ErrNoMetadataSnap = errors.New("no metadata snapshot held")

	// ErrShrink: a pool's data size can only grow; the kernel refuses a
	// smaller table at resume (EINVAL).
	ErrShrink = errors.New("pool data cannot shrink")
	// ErrImmutable: a change the kernel refuses on a live pool: another
	// metadata or data device, another block size, or turning discard
	// support (ignore_discard) on or off.
	ErrImmutable = errors.New("cannot change on a live pool")
	// ErrOriginMismatch: a snapshot of an external-origin device must be
	// activated with the same external origin as its ancestors.
	ErrOriginMismatch = errors.New("external origin mismatch")
	// ErrHasMetadata: asked to format a metadata device that already holds
	// a thin-pool superblock (use ForceFormatMetadata to overwrite it).
	ErrHasMetadata = errors.New("metadata device already holds a pool")

	// ErrSyntax: a table or status line does not parse.
	ErrSyntax = errors.New("malformed thin line")
)

// Error is a failed thin-pool or thin-device operation: what was attempted,
// on which pool, how it is classified, and the underlying *dm.Error (which
// carries the device, the ioctl and the errno, or the validation failure,
// and the stack that %+v prints).
//
// Its text names the pool and the operation once, then the reason, in the
// words of the thin sentinel when there is one:
//
//	thin pool pool: create_thin 1: thin device id in use (EEXIST)
//	thin pool pool: create_thin 1: thin device id in use: thin id 1 is active as vol
//	thin pool pool: activate vol: create (DM_TABLE_LOAD): invalid argument (EINVAL)
type Error struct {
	Op   string // "create_thin 5", "activate vol", "resize", ...
	Pool string // the pool's name, if known
	Kind error  // the thin sentinel classifying the failure, or nil
	Err  error  // the cause, a *dm.Error

	also []error // further sentinels that match (ErrPoolReadOnly with ErrNeedsCheck)
}

// Error describes the failure in one sentence.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("thin ")
	if e.Pool != "" {
		b.WriteString("pool ")
		b.WriteString(e.Pool)
		b.WriteString(": ")
	}
	b.WriteString(e.Op)
	b.WriteString(": ")
	b.WriteString(e.reason())
	return b.String()
}

// reason is the cause without what Error already said.
func (e *Error) reason() string {
	kind := ""
	if e.Kind != nil {
		kind = e.Kind.Error()
	}
	de, ok := e.Err.(*dm.Error)
	if !ok {
		switch {
		case e.Err == nil:
			return kind
		case kind == "":
			return e.Err.Error()
		}
		return kind + ": " + e.Err.Error()
	}
	var b strings.Builder
	// The dm operation and device, unless the thin operation already
	// says them: a message to the pool is the thin operation itself.
	if de.Op != "message" && de.Op != e.Op {
		b.WriteString(de.Op)
		if de.Device != "" && de.Device != e.Pool && !strings.Contains(e.Op, de.Device) {
			b.WriteString(" " + de.Device)
		}
		if de.Sent {
			b.WriteString(" (" + de.Cmd.String() + ")")
		}
		b.WriteString(": ")
	}
	errno, sent := de.Err.(unix.Errno)
	switch {
	case kind != "" && sent:
		b.WriteString(kind + " (" + unix.ErrnoName(errno) + ")")
	case kind != "" && !strings.Contains(de.Reason(), kind):
		b.WriteString(kind + ": " + de.Reason())
	default:
		b.WriteString(de.Reason())
	}
	return b.String()
}

// Unwrap returns the cause, a *dm.Error.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel that classifies e.
func (e *Error) Is(target error) bool {
	if target == nil {
		return false
	}
	if target == e.Kind {
		return true
	}
	for _, k := range e.also {
		if target == k {
			return true
		}
	}
	return false
}

// Errno is the kernel's errno behind e, or the errno the kernel would have
// returned for a request refused before it was sent; 0 if none.
func (e *Error) Errno() unix.Errno {
	var errno unix.Errno
	if errors.As(e.Err, &errno) {
		return errno
	}
	return 0
}

// StackTrace is the stack of the *dm.Error inside, in the form of
// github.com/pkg/errors; %+v prints it.
func (e *Error) StackTrace() pkgerrors.StackTrace {
	var de *dm.Error
	if errors.As(e.Err, &de) {
		return de.StackTrace()
	}
	return nil
}

// Format prints the error; %+v adds the stack where it was created.
func (e *Error) Format(s fmt.State, verb rune) {
	switch {
	case verb == 'v' && s.Flag('+'):
		io.WriteString(s, e.Error())
		e.StackTrace().Format(s, verb)
	case verb == 'q':
		fmt.Fprintf(s, "%q", e.Error())
	default:
		io.WriteString(s, e.Error())
	}
}

// newError classifies err (a *dm.Error, or errors joined around some)
// as a failure of op on pool.
func newError(op, pool string, kind, err error) *Error {
	return &Error{Op: op, Pool: pool, Kind: kind, Err: err}
}

// invalid is a request refused before anything reached the kernel: a
// *dm.Error around a *dm.InvalidError, so it matches dm.ErrInvalid and
// unix.EINVAL is never claimed.
func invalid(op, pool string, kind error, field, format string, args ...any) *Error {
	return newError(op, pool, kind, dm.NewError(op, poolRef(pool), dm.Invalid(field, format, args...)))
}

// refused is a request this package did not send because the kernel would
// refuse it with errno: it matches errno and its dm sentinel too.
func refused(op, pool string, kind error, errno unix.Errno, format string, args ...any) *Error {
	return newError(op, pool, kind, dm.NewError(op, poolRef(pool), dm.Refusal(errno, format, args...)))
}

// failed is a failure found by this package after the kernel answered (a
// table that is not a pool's, a status that does not parse), about the
// device ref.
func failed(op, pool string, kind error, ref dm.Ref, err error) *Error {
	return newError(op, pool, kind, dm.NewError(op, ref, err))
}

// invalidFrom wraps a validation error (a *dm.InvalidError) from Validate.
func invalidFrom(op, pool string, err error) *Error {
	return newError(op, pool, nil, dm.NewError(op, poolRef(pool), err))
}

func poolRef(pool string) dm.Ref {
	if pool == "" {
		return dm.Ref{}
	}
	return dm.Name(pool)
}

// wrap classifies a failure from package dm: kinds maps the kernel's errno
// to a thin sentinel for this operation. Errors that are already *Error
// pass through.
func wrap(op, pool string, err error, kinds map[unix.Errno]error) error {
	if err == nil {
		return nil
	}
	var te *Error
	if errors.As(err, &te) {
		return err
	}
	var kind error
	var de *dm.Error
	if errors.As(err, &de) && de.Sent {
		kind = kinds[de.Errno()]
	}
	return newError(op, pool, kind, err)
}

// errnoOf returns the kernel errno inside err, or 0.
func errnoOf(err error) unix.Errno {
	var de *dm.Error
	if errors.As(err, &de) && de.Sent {
		return de.Errno()
	}
	return 0
}

// SyntaxError is a table or status line that does not parse. It matches
// ErrSyntax.
type SyntaxError struct {
	What   string // "pool table", "pool status", "thin table", "thin status"
	Line   string
	Reason string
}

// Error describes what did not parse.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s %q: %s", e.What, e.Line, e.Reason)
}

// Is reports whether target is ErrSyntax.
func (e *SyntaxError) Is(target error) bool { return target == ErrSyntax }

func syntaxErr(what, line, reason string) error {
	return &SyntaxError{What: what, Line: line, Reason: reason}
}
