package loop

import (
	"errors"
	"fmt"
	"os"
)

// CreateSparseFile creates a new file of size bytes at path, without
// allocating its blocks, to back a loop device. It fails if path exists
// (the error matches fs.ErrExist), so it never clobbers data. The file gets
// mode 0600. A loop device over it sees the size rounded down to 512-byte
// sectors.
func CreateSparseFile(path string, size int64) error {
	if size < 0 {
		return &Error{Op: "create", Path: path, Err: newKinded(ErrInvalid, nil, fmt.Sprintf("negative size %d", size))}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return &Error{Op: "create", Path: path, Err: unwrapPathError(err)}
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return &Error{Op: "create", Path: path, Err: unwrapPathError(err)}
	}
	return nil
}

// Grow extends the regular file at path to size bytes, sparsely. It refuses
// to shrink the file (the error matches ErrInvalid), since that would
// destroy the data at its end; a size equal to the current one does
// nothing. A loop device over the file sees the new size after
// Device.SetCapacity.
func Grow(path string, size int64) error {
	fi, err := os.Stat(path)
	if err != nil {
		return &Error{Op: "grow", Path: path, Err: unwrapPathError(err)}
	}
	if !fi.Mode().IsRegular() {
		return &Error{Op: "grow", Path: path, Err: newKinded(ErrInvalid, nil, "not a regular file")}
	}
	if size < fi.Size() {
		return &Error{Op: "grow", Path: path, Err: newKinded(ErrInvalid, nil, fmt.Sprintf("new size %d is smaller than the current size %d", size, fi.Size()))}
	}
	if size == fi.Size() {
		return nil
	}
	if err := os.Truncate(path, size); err != nil {
		return &Error{Op: "grow", Path: path, Err: unwrapPathError(err)}
	}
	return nil
}

// unwrapPathError drops the *fs.PathError layer, whose path and operation
// our *Error already carries.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
