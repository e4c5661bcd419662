package loop

import (
	"context"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thinp/thinp/ioctl"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o  Options
		ok bool
	}{
		{Options{}, true},
		{Options{BlockSize: 512}, true},
		{Options{BlockSize: 1024}, true},
		{Options{BlockSize: 2048}, true},
		{Options{BlockSize: 4096}, true},
		{Options{BlockSize: 1}, false},
		{Options{BlockSize: 256}, false},
		{Options{BlockSize: 511}, false},
		{Options{BlockSize: 513}, false},
		{Options{BlockSize: 1000}, false},
		{Options{BlockSize: 3072}, false},
		{Options{BlockSize: 8192}, false},
		{Options{BlockSize: math.MaxUint32}, false},
		{Options{Offset: math.MaxInt64, SizeLimit: math.MaxInt64}, true},
		{Options{Offset: math.MaxInt64 + 1}, false},
		{Options{SizeLimit: math.MaxUint64}, false},
		{Options{ReadOnly: true, Autoclear: true, PartScan: true, DirectIO: true, BlockSize: 4096, Offset: 1 << 20, SizeLimit: 1 << 30}, true},
	} {
		err := tc.o.validate()
		if (err == nil) != tc.ok {
			t.Errorf("%+v: validate() = %v, want ok=%v", tc.o, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v does not match ErrInvalid", tc.o, err)
		}
	}
}

func TestOptionsCheckSize(t *testing.T) {
	for _, tc := range []struct {
		offset uint64
		size   int64
		ok     bool
	}{
		{0, 0, true}, // an empty file makes an empty device, which SetCapacity can grow
		{0, 1 << 20, true},
		{512, 1 << 20, true},
		{1<<20 - 1, 1 << 20, true},
		{1 << 20, 1 << 20, false},
		{1<<20 + 1, 1 << 20, false},
		{1, 0, false},
	} {
		o := Options{Offset: tc.offset}
		err := o.checkSize(tc.size)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("offset %d size %d: %v, want ok=%v", tc.offset, tc.size, err, tc.ok)
		}
	}
}

func TestErrorString(t *testing.T) {
	for _, tc := range []struct {
		e    *Error
		want string
	}{
		{&Error{Op: "attach", Path: "/f", Device: "/dev/loop1", Err: ErrBusy}, "loop: attach /f on /dev/loop1: loop: device busy"},
		{&Error{Op: "attach", Path: "/f", Err: newKinded(ErrInvalid, nil, "bad")}, "loop: attach /f: bad"},
		{&Error{Op: "detach", Device: "/dev/loop2", Err: newKinded(ErrBusy, context.Canceled, "still open")}, "loop: detach /dev/loop2: still open: context canceled"},
		{&Error{Op: "list"}, "loop: list"},
		{&Error{Op: "x", Err: newKinded(ErrInvalid, nil, "")}, "loop: x: loop: invalid argument"},
		{&Error{Op: "x", Err: newKinded(ErrInvalid, fs.ErrClosed, "")}, "loop: x: file already closed"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestKindedIs(t *testing.T) {
	cause := errors.New("cause")
	err := &Error{Op: "attach", Err: newKinded(ErrReadOnly, cause, "read-only")}
	for _, target := range []error{ErrReadOnly, cause} {
		if !errors.Is(err, target) {
			t.Errorf("%v does not match %v", err, target)
		}
	}
	for _, target := range []error{ErrInvalid, ErrBusy, ErrNotSupported, ErrClosed} {
		if errors.Is(err, target) {
			t.Errorf("%v matches %v", err, target)
		}
	}
	var e *Error
	if !errors.As(err, &e) || e.Op != "attach" {
		t.Errorf("errors.As: %v", e)
	}
}

// A closed Control shows where validation happens: bad input is reported
// as such, and only input that passes every check reaches the kernel,
// which here means ErrClosed. None of this needs root.
func TestAttachValidatesFirst(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := CreateSparseFile(file, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Control{fd: -1, closed: true}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		path string
		o    *Options
		want []error
	}{
		{"empty path", "", nil, []error{ErrInvalid}},
		{"bad block size", file, &Options{BlockSize: 1000}, []error{ErrInvalid}},
		{"missing", filepath.Join(dir, "missing"), nil, []error{fs.ErrNotExist}},
		{"directory", filepath.Join(dir, "d"), nil, []error{ErrInvalid}},
		{"offset past end", file, &Options{Offset: 1 << 21}, []error{ErrInvalid}},
		{"valid", file, &Options{ReadOnly: true}, []error{ErrClosed}},
	} {
		_, err := c.Attach(ctx, tc.path, tc.o)
		if !osSupported() {
			if !errors.Is(err, ErrNotSupported) && !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %v, want ErrNotSupported", tc.name, err)
			}
			continue
		}
		for _, w := range tc.want {
			if !errors.Is(err, w) {
				t.Errorf("%s: %v, want %v", tc.name, err, w)
			}
		}
		var e *Error
		if !errors.As(err, &e) || e.Op != "attach" {
			t.Errorf("%s: %v is not an attach *Error", tc.name, err)
		}
	}
	if _, err := c.AttachFile(ctx, nil, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("AttachFile(nil) = %v", err)
	}
}

func TestCreateSparseFileAndGrow(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sparse")
	if err := CreateSparseFile(p, 1<<30); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 1<<30 || fi.Mode().Perm() != 0o600 {
		t.Errorf("size %d mode %v", fi.Size(), fi.Mode())
	}
	if blocks, ok := allocatedBytes(fi); ok && blocks > 1<<20 {
		t.Errorf("1 GiB sparse file has %d bytes allocated", blocks)
	}
	if err := CreateSparseFile(p, 1); !errors.Is(err, fs.ErrExist) {
		t.Errorf("CreateSparseFile over an existing file = %v, want ErrExist", err)
	}
	if err := CreateSparseFile(filepath.Join(dir, "neg"), -1); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative size = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "neg")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("negative size left a file: %v", err)
	}
	if err := CreateSparseFile(filepath.Join(dir, "no", "such"), 1); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing directory = %v", err)
	}

	if err := Grow(p, 2<<30); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Size() != 2<<30 {
		t.Errorf("after Grow: %d", fi.Size())
	}
	if err := Grow(p, 2<<30); err != nil {
		t.Errorf("Grow to the same size = %v", err)
	}
	var e *Error
	if err := Grow(p, 1<<30); !errors.Is(err, ErrInvalid) || !errors.As(err, &e) || e.Op != "grow" || !strings.Contains(err.Error(), "smaller") {
		t.Errorf("shrinking Grow = %v", err)
	}
	if err := Grow(dir, 1<<30); !errors.Is(err, ErrInvalid) {
		t.Errorf("Grow(directory) = %v", err)
	}
	if err := Grow(filepath.Join(dir, "missing"), 1); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Grow(missing) = %v", err)
	}
}

func TestNilDevice(t *testing.T) {
	d := &Device{fd: -1, closed: true, path: "/dev/loop9", number: 9, dev: ioctl.Dev{Major: 7, Minor: 9}}
	if d.Path() != "/dev/loop9" || d.Number() != 9 || d.Dev().String() != "7:9" || d.String() != "/dev/loop9" {
		t.Errorf("accessors: %s %d %v", d.Path(), d.Number(), d.Dev())
	}
	if _, err := d.Status(); !errors.Is(err, ErrClosed) {
		t.Errorf("Status = %v", err)
	}
	if err := d.SetCapacity(); !errors.Is(err, ErrClosed) {
		t.Errorf("SetCapacity = %v", err)
	}
	if err := d.Detach(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Detach = %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if _, err := Open(-1); !errors.Is(err, ErrInvalid) {
		t.Errorf("Open(-1) = %v", err)
	}
}
