package thin

import (
	"errors"
	"fmt"
	"io"

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
// carries the device, the ioctl and the errno, or the validation failure).
type Error struct {
	Op   string // "create_thin 5", "activate vol", "resize", ...
	Pool string // the pool's name, if known
	Kind error  // the thin sentinel classifying the failure, or nil
	Err  error  // the cause, a *dm.Error

	also  []error // further sentinels that match (ErrPoolReadOnly with ErrNeedsCheck)
	stack error
}

// Error describes the failure: the pool, the operation, the sentinel and
// the cause.
func (e *Error) Error() string {
	s := "thin"
	if e.Pool != "" {
		s += " pool " + e.Pool
	}
	s += " " + e.Op + ": "
	if e.Kind != nil {
		s += e.Kind.Error() + ": "
	}
	if e.Err != nil {
		s += e.Err.Error()
	}
	return s
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

type stackMarker struct{}

func (stackMarker) Error() string { return "" }

func newError(op, pool string, kind, err error) *Error {
	return &Error{Op: op, Pool: pool, Kind: kind, Err: err, stack: pkgerrors.WithStack(stackMarker{})}
}

// invalid is a request refused before anything reached the kernel: a
// *dm.Error around a *dm.InvalidError, so it matches dm.ErrInvalid and
// unix.EINVAL is never claimed.
func invalid(op, pool string, kind error, field, format string, args ...any) *Error {
	return newError(op, pool, kind, &dm.Error{
		Op:     op,
		Device: poolDevice(pool),
		Err:    &dm.InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)},
	})
}

// refused is a request this package did not send because the kernel would
// refuse it with errno: it matches errno and its dm sentinel too.
func refused(op, pool string, kind error, errno unix.Errno, format string, args ...any) *Error {
	return newError(op, pool, kind, &dm.Error{
		Op:     op,
		Device: poolDevice(pool),
		Err:    fmt.Errorf(format+": %w", append(args, errno)...),
	})
}

func poolDevice(pool string) string {
	if pool == "" {
		return ""
	}
	return dm.Name(pool).String()
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
