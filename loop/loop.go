package loop

import (
	"context"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/thinp/thinp/ioctl"
)

// Control is an open handle on /dev/loop-control, the kernel's allocator of
// loop devices. It remembers whether the running kernel has LOOP_CONFIGURE,
// probed on first use. A Control is safe for concurrent use; keep one for
// the life of the program rather than opening one per Attach.
type Control struct {
	mu     sync.RWMutex
	fd     int // -1 once closed
	closed bool

	// probed caches the LOOP_CONFIGURE probe: probeUnknown,
	// probeConfigure or probeLegacy.
	probed atomic.Int32
	// forceLegacy makes Attach use LOOP_SET_FD + LOOP_SET_STATUS64 even
	// where LOOP_CONFIGURE works. Tests set it to exercise the fallback.
	forceLegacy bool
	// attempts bounds the allocation retries of one Attach.
	attempts int
	// lostRaces counts the devices Attach was offered but another
	// attacher won; tests report it.
	lostRaces atomic.Int64
}

const (
	probeUnknown int32 = iota
	probeConfigure
	probeLegacy
)

// defaultAttempts bounds how many free devices one Attach tries before it
// gives up with ErrBusy. Each lost race means another attacher won a device,
// so this is only reached under extreme contention or when something holds
// a free device exclusively for a long time.
const defaultAttempts = 1000

// OpenControl opens /dev/loop-control.
func OpenControl() (*Control, error) {
	return openControl()
}

// Close closes the control handle. Devices attached through it stay
// attached. Close is idempotent.
func (c *Control) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	fd := c.fd
	c.fd = -1
	if err := closeFD(fd); err != nil {
		return &Error{Op: "close", Device: controlPath, Err: err}
	}
	return nil
}

// Attach attaches the file at path to a free loop device and returns the
// device, open. A nil opts means read-write with the kernel's defaults.
//
// Invalid options, a missing file, a directory, an offset past the end of
// the file, or a file that cannot be opened for writing without
// opts.ReadOnly fail before any device is touched. If the kernel accepts the
// configuration but does not honour an option, Attach detaches the device
// and fails with an error matching ErrNotSupported. On failure no device is
// left attached.
//
// Attach retries, with a fresh free device, when another process or
// goroutine wins the device it was offered; ctx bounds those retries.
func (c *Control) Attach(ctx context.Context, path string, opts *Options) (*Device, error) {
	o := optionsOrDefault(opts)
	if path == "" {
		return nil, &Error{Op: "attach", Err: newKinded(ErrInvalid, nil, "empty path")}
	}
	if err := o.validate(); err != nil {
		return nil, &Error{Op: "attach", Path: path, Err: err}
	}
	return c.attachPath(ctx, path, o)
}

// AttachFile is like Attach for a file the caller has already opened. The
// file is not closed and can be closed as soon as AttachFile returns: the
// kernel keeps its own reference. A file opened read-only is an error
// matching ErrReadOnly unless opts.ReadOnly is set. A file opened with
// O_DIRECT turns direct I/O on, as if opts.DirectIO were set.
func (c *Control) AttachFile(ctx context.Context, f *os.File, opts *Options) (*Device, error) {
	o := optionsOrDefault(opts)
	if f == nil {
		return nil, &Error{Op: "attach", Err: newKinded(ErrInvalid, nil, "nil file")}
	}
	if err := o.validate(); err != nil {
		return nil, &Error{Op: "attach", Path: f.Name(), Err: err}
	}
	return c.attachOSFile(ctx, f, o)
}

// Add asks the kernel to create /dev/loopN (LOOP_CTL_ADD) and returns N. A
// negative n creates a new device with the lowest free number. (Older
// kernels, 5.10 among them, answer a negative n with EEXIST while an
// unattached device exists; Add then picks the number itself and asks for
// that.)
// Attach does not need it: the kernel creates devices on demand.
func (c *Control) Add(n int) (int, error) {
	return c.add(n)
}

// Remove deletes the unattached device /dev/loopN (LOOP_CTL_REMOVE). It
// fails with an error matching ErrBusy at once while the device is
// attached, and after up to 2 seconds of retries while an unattached
// device is held open (udevd probes every device it sees added, so a
// Remove right after an Add meets EBUSY for a moment).
func (c *Control) Remove(n int) error {
	return c.remove(n)
}

// Attach attaches the file at path to a free loop device, using a Control
// opened for this call only. See Control.Attach; programs that attach
// devices repeatedly should keep a Control instead.
func Attach(ctx context.Context, path string, opts *Options) (*Device, error) {
	c, err := OpenControl()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Attach(ctx, path, opts)
}

// Device is an open loop device, /dev/loopN. It owns one file descriptor on
// the device. It is safe for concurrent use.
//
// Closing a Device does not detach it, unless it was attached with
// Options.Autoclear and nothing else has it open; Detach does.
type Device struct {
	mu     sync.RWMutex
	fd     int // -1 once closed
	closed bool

	number int
	path   string
	dev    ioctl.Dev
	// seq is the disk sequence number when the Device was opened, so
	// Detach can tell our attachment from a later one of the same device.
	seq uint64
}

// Path returns the device node, /dev/loopN.
func (d *Device) Path() string { return d.path }

// Number returns N in /dev/loopN.
func (d *Device) Number() int { return d.number }

// Dev returns the device number, which device-mapper tables use in the
// form "major:minor" (Dev.String).
func (d *Device) Dev() ioctl.Dev { return d.dev }

// String returns the device's path.
func (d *Device) String() string { return d.path }

// Status returns what the kernel reports about the device
// (LOOP_GET_STATUS64 and friends). It fails with ErrNotAttached if the
// device has been detached.
func (d *Device) Status() (Status, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return Status{}, &Error{Op: "status", Device: d.path, Err: ErrClosed}
	}
	st, err := deviceStatus(d.fd, d.number)
	if err != nil {
		return Status{}, &Error{Op: "status", Device: d.path, Err: err}
	}
	return st, nil
}

// SetCapacity makes the kernel re-read the backing file's size
// (LOOP_SET_CAPACITY, what "losetup --set-capacity" does), after the file
// was grown with Grow for example. The new size is visible in Status and
// through BLKGETSIZE64 when SetCapacity returns.
func (d *Device) SetCapacity() error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return &Error{Op: "set-capacity", Device: d.path, Err: ErrClosed}
	}
	if err := setCapacity(d.fd); err != nil {
		return &Error{Op: "set-capacity", Device: d.path, Err: err}
	}
	return nil
}

// Detach detaches the backing file (LOOP_CLR_FD, retried briefly while the
// kernel answers EBUSY), closes d and waits, bounded by ctx and about two
// seconds, for the kernel to finish. If another opener (a mount, a
// device-mapper table, a udev probe) keeps the device open, the kernel
// detaches it on the last close instead, and Detach returns an error
// matching ErrBusy. If LOOP_CLR_FD itself fails, d stays open so that Detach
// can be retried; otherwise d is closed when Detach returns.
func (d *Device) Detach(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return &Error{Op: "detach", Device: d.path, Err: ErrClosed}
	}
	if err := d.detachLocked(ctx); err != nil {
		return &Error{Op: "detach", Device: d.path, Err: err}
	}
	return nil
}

// Close closes d's file descriptor. The device stays attached unless it was
// attached with Options.Autoclear and d was its last opener, in which case
// the kernel detaches it. Close is idempotent.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	fd := d.fd
	d.fd = -1
	if err := closeFD(fd); err != nil {
		return &Error{Op: "close", Device: d.path, Err: err}
	}
	return nil
}

// Open opens the attached loop device /dev/loopN. It fails with an error
// matching ErrNotAttached if the device exists but has no backing file, and
// with one matching fs.ErrNotExist if there is no such device.
func Open(n int) (*Device, error) {
	if n < 0 {
		return nil, &Error{Op: "open", Err: newKinded(ErrInvalid, nil, "negative device number "+strconv.Itoa(n))}
	}
	return openDevice(n)
}

// List returns the status of every attached loop device, ordered by number.
// Devices that are detached while List runs are left out.
func List() ([]Status, error) {
	return list()
}

// Find returns the status of every loop device whose backing file is the
// file at path, matched by device and inode number, ordered by device
// number. It returns an empty slice if none is.
func Find(path string) ([]Status, error) {
	return find(path)
}

func optionsOrDefault(opts *Options) Options {
	if opts == nil {
		return Options{}
	}
	return *opts
}

// controlPath is the kernel's loop allocator.
const controlPath = "/dev/loop-control"

// devicePath returns /dev/loopN.
func devicePath(n int) string { return "/dev/loop" + strconv.Itoa(n) }
