package catalog

import (
	"errors"
	"fmt"
)

var (
	// ErrLocked: another Catalog, in this process or another, has the
	// directory open.
	ErrLocked = errors.New("catalog directory is in use by another catalog")
	// ErrNotFound: no volume has that key.
	ErrNotFound = errors.New("no volume with that key")
	// ErrExists: a volume already has that key.
	ErrExists = errors.New("a volume with that key exists")
	// ErrInvalid: a key, size or option the catalog refuses before doing
	// anything.
	ErrInvalid = errors.New("invalid argument")
	// ErrLowSpace: the pool's free data or metadata space is below the
	// catalog's minimum (WithMinFreeSpace); no new volume is made.
	ErrLowSpace = errors.New("pool is below its minimum free space")
	// ErrDrift: the pool was changed behind the catalog's back (its
	// transaction id is not the one the catalog recorded), or an
	// interrupted operation could not be settled. Changes are refused
	// until Repair has run.
	ErrDrift = errors.New("catalog and pool disagree; run Repair")
	// ErrClosed: the catalog was closed.
	ErrClosed = errors.New("catalog is closed")
	// ErrCorrupt: the catalog's files cannot be read as a catalog.
	ErrCorrupt = errors.New("catalog files are corrupt")
)

// Error is a failed catalog operation: which one, on which key, and why.
// It unwraps to the cause, so errors.Is matches this package's sentinels
// and those of packages thin and dm (and the kernel's errno) alike.
type Error struct {
	Op  string // "create", "snapshot", "activate", ...
	Key string // the volume's key, if the operation has one
	Err error
}

func (e *Error) Error() string {
	if e.Key == "" {
		return "catalog: " + e.Op + ": " + e.Err.Error()
	}
	return fmt.Sprintf("catalog: %s %q: %v", e.Op, e.Key, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// JournalError is a failure to read or write the catalog's files.
type JournalError struct {
	Op   string // "open", "read", "write", "sync", ...
	Path string
	Err  error
}

func (e *JournalError) Error() string { return e.Op + " " + e.Path + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *JournalError) Unwrap() error { return e.Err }

// SpaceError says which space of the pool is below the minimum: it
// matches ErrLowSpace.
type SpaceError struct {
	Space       string // "data" or "metadata"
	Free, Total uint64 // in the pool's data blocks, or 4 KiB metadata blocks
	MinPercent  int
}

func (e *SpaceError) Error() string {
	return fmt.Sprintf("%s: %d of %d %s blocks free, minimum %d%%", ErrLowSpace, e.Free, e.Total, e.Space, e.MinPercent)
}

// Is reports whether target is ErrLowSpace.
func (e *SpaceError) Is(target error) bool { return target == ErrLowSpace }
