package loop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

// The kernel structures, as x/sys/unix mirrors them (sizes pinned in
// TestSizes):
//
//	struct loop_info64 {
//		__u64 lo_device;          /* ioctl r/o */
//		__u64 lo_inode;           /* ioctl r/o */
//		__u64 lo_rdevice;         /* ioctl r/o */
//		__u64 lo_offset;
//		__u64 lo_sizelimit;       /* bytes, 0 == max available */
//		__u32 lo_number;          /* ioctl r/o */
//		__u32 lo_encrypt_type;    /* obsolete, ignored */
//		__u32 lo_encrypt_key_size; /* ioctl w/o */
//		__u32 lo_flags;
//		__u8  lo_file_name[LO_NAME_SIZE];
//		__u8  lo_crypt_name[LO_NAME_SIZE];
//		__u8  lo_encrypt_key[LO_KEY_SIZE]; /* ioctl w/o */
//		__u64 lo_init[2];
//	};
//
//	struct loop_config {
//		__u32 fd;
//		__u32 block_size;         /* unix.LoopConfig calls it Size */
//		struct loop_info64 info;
//		__u64 __reserved[8];
//	};
const (
	sizeofLoopInfo64 = 232
	sizeofLoopConfig = 304
)

// Flags the kernel accepts in loop_config.info.lo_flags
// (LOOP_CONFIGURE_SETTABLE_FLAGS) and in LOOP_SET_STATUS64
// (LOOP_SET_STATUS_SETTABLE_FLAGS).
const (
	configureFlags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR | unix.LO_FLAGS_PARTSCAN | unix.LO_FLAGS_DIRECT_IO
	setStatusFlags = unix.LOOP_SET_STATUS_SETTABLE_FLAGS
)

// Retry budgets and waits. None of them is configurable state: they bound
// loops whose every iteration is someone else making progress.
const (
	clrAttempts      = 10                    // LOOP_CLR_FD answering EBUSY
	removeBusyWait   = 2 * time.Second       // LOOP_CTL_REMOVE of an unattached device answering EBUSY
	setStatusRetries = 10                    // LOOP_SET_STATUS64 answering EAGAIN (older kernels)
	nodeWait         = 2 * time.Second       // the kernel finishing a detach
	backoffBase      = 20 * time.Microsecond // first allocation back-off
	backoffMax       = 10 * time.Millisecond // longest allocation back-off
	pollMax          = 20 * time.Millisecond // longest poll interval while waiting
	sysBlock         = "/sys/block"          // sysfs view of block devices
	deletedSuffix    = " (deleted)"          // d_path's suffix for an unlinked file
	procSelfFD       = "/proc/self/fd/"      // reopen a file by descriptor
	noFD             = -1                    // a closed descriptor
	probeFD          = ^uint32(0)            // invalid fd for the LOOP_CONFIGURE probe
)

func openControl() (*Control, error) {
	fd, err := openFile(controlPath, unix.O_RDWR|unix.O_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			err = newKinded(ErrNotSupported, err, "no loop driver (is the loop module loaded?)")
		}
		return nil, &Error{Op: "open", Device: controlPath, Err: err}
	}
	return &Control{fd: fd}, nil
}

// withFD runs fn with the control descriptor, which Close cannot close
// meanwhile.
func (c *Control) withFD(fn func(fd int) error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return ErrClosed
	}
	return fn(c.fd)
}

func (c *Control) add(n int) (int, error) {
	var got int
	err := c.withFD(func(fd int) (err error) {
		got, err = ioctlRet(fd, unix.LOOP_CTL_ADD, uintptr(n))
		return err
	})
	if n < 0 && errors.Is(err, unix.EEXIST) {
		got, err = c.addNumbered()
	}
	if err != nil {
		e := &Error{Op: "control-add", Device: controlPath, Err: err}
		if n >= 0 {
			e.Device = devicePath(n)
		}
		return 0, e
	}
	return got, nil
}

// addNumbered is Add(-1) on kernels whose LOOP_CTL_ADD, given a negative
// number, looks for an unattached device first and answers EEXIST when it
// finds one instead of creating a device (Linux 5.10's loop_control_ioctl
// does, through loop_lookup; by 6.1 it always allocates a new number). It asks for the
// lowest numbers sysfs does not show, as the kernel's allocator would pick,
// moving on when another process takes one first.
func (c *Control) addNumbered() (int, error) {
	used := map[int]bool{}
	if ents, err := os.ReadDir(sysBlock); err == nil {
		for _, e := range ents {
			if v, ok := strings.CutPrefix(e.Name(), "loop"); ok {
				if k, err := strconv.Atoi(v); err == nil {
					used[k] = true
				}
			}
		}
	}
	var err error
	for n, tries := 0, 0; tries < 64; n++ {
		if used[n] {
			continue
		}
		tries++
		var got int
		err = c.withFD(func(fd int) (err error) {
			got, err = ioctlRet(fd, unix.LOOP_CTL_ADD, uintptr(n))
			return err
		})
		if !errors.Is(err, unix.EEXIST) {
			return got, err
		}
	}
	return 0, err
}

func (c *Control) remove(n int) error {
	if n < 0 {
		return &Error{Op: "control-remove", Err: newKinded(ErrInvalid, nil, "negative device number "+strconv.Itoa(n))}
	}
	deadline := time.Now().Add(removeBusyWait)
	for wait := time.Millisecond; ; wait = min(2*wait, pollMax) {
		err := c.withFD(func(fd int) error {
			_, err := ioctlRet(fd, unix.LOOP_CTL_REMOVE, uintptr(n))
			return err
		})
		if err == nil {
			return nil
		}
		// EBUSY on a device with no backing file means something has it
		// open: udevd probing a device that was just added, typically,
		// which lets go within milliseconds. An attached device stays
		// busy: say so at once.
		if !errors.Is(err, unix.EBUSY) || attached(n) || time.Now().After(deadline) {
			return &Error{Op: "control-remove", Device: devicePath(n), Err: err}
		}
		time.Sleep(wait)
	}
}

// attached reports whether /dev/loopN has a backing file, from sysfs (the
// kernel adds the loop/ directory of a device while it is bound); opening
// the device to ask would make it busy itself. Without sysfs it answers
// true, so that callers do not wait for what they cannot see.
func attached(n int) bool {
	if _, err := os.Stat(sysBlock + "/loop" + strconv.Itoa(n)); err != nil {
		return true
	}
	_, err := os.Stat(sysBlock + "/loop" + strconv.Itoa(n) + "/loop/backing_file")
	return err == nil
}

func (c *Control) getFree() (int, error) {
	var n int
	err := c.withFD(func(fd int) (err error) {
		n, err = ioctlRet(fd, unix.LOOP_CTL_GET_FREE, 0)
		return err
	})
	return n, err
}

// hasConfigure reports whether the kernel has LOOP_CONFIGURE, probing it on
// lfd, an open loop device, the first time.
func (c *Control) hasConfigure(lfd int) (bool, error) {
	switch c.probed.Load() {
	case probeConfigure:
		return true, nil
	case probeLegacy:
		return false, nil
	}
	cfg := unix.LoopConfig{Fd: probeFD}
	state, err := probeResult(ignoringEINTR(func() error { return unix.IoctlLoopConfigure(lfd, &cfg) }))
	if err != nil {
		return false, err
	}
	c.probed.Store(state)
	return state == probeConfigure, nil
}

// probeResult interprets the kernel's answer to LOOP_CONFIGURE with an
// invalid descriptor. A kernel with LOOP_CONFIGURE looks the descriptor up
// before anything else and answers EBADF; one without it rejects the
// unknown ioctl with ENOTTY (or EINVAL, which loop drivers before 5.8
// answered for unknown commands).
func probeResult(err error) (int32, error) {
	switch {
	case err == nil, errors.Is(err, unix.EBADF):
		return probeConfigure, nil
	case errors.Is(err, unix.ENOTTY), errors.Is(err, unix.EINVAL):
		return probeLegacy, nil
	}
	return probeUnknown, err
}

func (c *Control) attachPath(ctx context.Context, path string, o Options) (*Device, error) {
	// Look before opening: opening a FIFO read-only would block, and
	// opening a device node can have side effects. attachFD checks the
	// type again on the open file.
	var st unix.Stat_t
	if err := stat(path, &st); err != nil {
		return nil, &Error{Op: "attach", Path: path, Err: err}
	}
	if err := checkType(st.Mode); err != nil {
		return nil, &Error{Op: "attach", Path: path, Err: err}
	}
	flags := unix.O_RDWR
	if o.ReadOnly {
		flags = unix.O_RDONLY
	}
	bfd, err := openFile(path, flags|unix.O_CLOEXEC)
	if err != nil {
		return nil, &Error{Op: "attach", Path: path, Err: classifyBackingOpen(path, err, o)}
	}
	defer closeFD(bfd)
	return c.attachFD(ctx, bfd, path, o)
}

// classifyBackingOpen turns a failed open of the backing file into a
// precise error.
func classifyBackingOpen(path string, err error, o Options) error {
	switch {
	case errors.Is(err, unix.EISDIR):
		return newKinded(ErrInvalid, err, "not a regular file or block device")
	case !o.ReadOnly && (errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.ETXTBSY)):
		// If the file can be read, the problem is writing it.
		if rfd, rerr := openFile(path, unix.O_RDONLY|unix.O_CLOEXEC); rerr == nil {
			closeFD(rfd)
			return newKinded(ErrReadOnly, err, "cannot open the file for writing; set Options.ReadOnly to attach it read-only")
		}
	}
	return err
}

func (c *Control) attachOSFile(ctx context.Context, f *os.File, o Options) (*Device, error) {
	name := f.Name()
	fail := func(err error) (*Device, error) { return nil, &Error{Op: "attach", Path: name, Err: err} }
	rc, err := f.SyscallConn()
	if err != nil {
		return fail(err)
	}
	bfd := noFD
	var dupErr error
	if err := rc.Control(func(s uintptr) {
		bfd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return fail(err)
	}
	if dupErr != nil {
		return fail(dupErr)
	}
	defer func() { closeFD(bfd) }()
	fl, err := unix.FcntlInt(uintptr(bfd), unix.F_GETFL, 0)
	if err != nil {
		return fail(err)
	}
	switch fl & unix.O_ACCMODE {
	case unix.O_WRONLY:
		return fail(newKinded(ErrInvalid, nil, "file is open write-only; the loop driver must read it"))
	case unix.O_RDONLY:
		if !o.ReadOnly {
			return fail(newKinded(ErrReadOnly, nil, "file is open read-only; set Options.ReadOnly to attach it read-only"))
		}
	case unix.O_RDWR:
		if o.ReadOnly {
			// LOOP_SET_FD cannot make a device read-only over a writable
			// descriptor, so hand the kernel a read-only one.
			rfd, err := openFile(procSelfFD+strconv.Itoa(bfd), unix.O_RDONLY|unix.O_CLOEXEC|(fl&unix.O_DIRECT))
			if err != nil {
				return fail(fmt.Errorf("reopen read-only: %w", err))
			}
			closeFD(bfd)
			bfd = rfd
		}
	}
	return c.attachFD(ctx, bfd, name, o)
}

// attachFD checks the open backing file bfd and attaches it to a free
// device, retrying when it loses a device to another attacher.
func (c *Control) attachFD(ctx context.Context, bfd int, name string, o Options) (*Device, error) {
	fail := func(dev string, err error) (*Device, error) {
		return nil, &Error{Op: "attach", Path: name, Device: dev, Err: err}
	}
	size, err := backingSize(bfd)
	if err != nil {
		return fail("", err)
	}
	if err := o.checkSize(size); err != nil {
		return fail("", err)
	}
	attempts := c.attempts
	if attempts <= 0 {
		attempts = defaultAttempts
	}
	var lastErr error
	lastDev := ""
	for i := 0; i < attempts; i++ {
		if err := ctx.Err(); err != nil {
			return fail(lastDev, errors.Join(err, lastErr))
		}
		if i > 0 {
			if err := sleep(ctx, backoff(i)); err != nil {
				return fail(lastDev, errors.Join(err, lastErr))
			}
		}
		n, err := c.getFree()
		if err != nil {
			return fail(controlPath, err)
		}
		d, retry, err := c.tryAttach(n, bfd, name, o)
		if err == nil {
			return d, nil
		}
		if !retry {
			return fail(devicePath(n), err)
		}
		c.lostRaces.Add(1)
		lastErr, lastDev = err, devicePath(n)
	}
	return fail(lastDev, newKinded(ErrBusy, lastErr, fmt.Sprintf("no free loop device won in %d attempts", attempts)))
}

// backingSize returns the size of a regular file or block device, and
// rejects everything else.
func backingSize(bfd int) (int64, error) {
	var st unix.Stat_t
	if err := fstat(bfd, &st); err != nil {
		return 0, err
	}
	if err := checkType(st.Mode); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		return st.Size, nil
	}
	sz, err := ioctlGetUint64(bfd, unix.BLKGETSIZE64)
	if err != nil {
		return 0, err
	}
	return int64(sz), nil
}

// checkType accepts the file types the loop driver can use: regular files
// and block devices.
func checkType(mode uint32) error {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFBLK:
		return nil
	case unix.S_IFDIR:
		return newKinded(ErrInvalid, unix.EISDIR, "not a regular file or block device")
	}
	return newKinded(ErrInvalid, nil, "not a regular file or block device")
}

// tryAttach claims /dev/loopN exclusively, configures it and returns the
// device. retry reports that another attacher got there first.
func (c *Control) tryAttach(n, bfd int, name string, o Options) (d *Device, retry bool, err error) {
	path := devicePath(n)
	lfd, err := openFile(path, unix.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC)
	if err != nil {
		// EBUSY: someone else holds it. ENXIO: it is being torn down or
		// removed. ENOENT: LOOP_CTL_GET_FREE just created it and its
		// node is not there yet, or it was removed.
		return nil, errors.Is(err, unix.EBUSY) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENOENT), err
	}
	bound := false
	defer func() {
		if lfd == noFD {
			return
		}
		if bound {
			rollback(lfd, n)
			return
		}
		closeFD(lfd)
	}()
	bound, err = c.configure(lfd, bfd, name, o)
	if err != nil {
		// EBUSY before the device was bound: someone bound it between
		// LOOP_CTL_GET_FREE and our claim.
		return nil, !bound && errors.Is(err, unix.EBUSY), err
	}
	if err := verify(lfd, o); err != nil {
		return nil, false, err
	}
	fd, err := openDeviceFD(path)
	if err != nil {
		return nil, false, err
	}
	d, err = newDevice(fd, n)
	if err != nil {
		closeFD(fd)
		return nil, false, err
	}
	// Drop the exclusive claim so that device-mapper, mkfs or mount can
	// claim the device. d's descriptor keeps it open, so an autoclear
	// device is not torn down here.
	closeFD(lfd)
	lfd = noFD
	return d, false, nil
}

// configure binds bfd to the claimed device lfd with all of o. bound
// reports whether the device got bound, in which case a failure needs a
// rollback.
func (c *Control) configure(lfd, bfd int, name string, o Options) (bound bool, err error) {
	if !c.forceLegacy {
		ok, err := c.hasConfigure(lfd)
		if err != nil {
			return false, fmt.Errorf("probe LOOP_CONFIGURE: %w", err)
		}
		if ok {
			cfg := unix.LoopConfig{Fd: uint32(bfd), Size: o.BlockSize, Info: encodeInfo(name, o, configureFlags)}
			err := ignoringEINTR(func() error { return unix.IoctlLoopConfigure(lfd, &cfg) })
			return err == nil, err
		}
	}
	// Before Linux 5.8: bind, then set the status, the block size and
	// direct I/O one by one, as losetup does.
	if err := ioctlSet(lfd, unix.LOOP_SET_FD, uintptr(bfd)); err != nil {
		return false, err
	}
	info := encodeInfo(name, o, setStatusFlags)
	for i := 0; ; i++ {
		err = ignoringEINTR(func() error { return unix.IoctlLoopSetStatus64(lfd, &info) })
		// Kernels before 5.x answer EAGAIN while the page cache of the
		// device still holds pages after an offset change.
		if err == nil || !errors.Is(err, unix.EAGAIN) || i >= setStatusRetries {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err != nil {
		return true, fmt.Errorf("LOOP_SET_STATUS64: %w", err)
	}
	if o.BlockSize != 0 {
		if err := ioctlSet(lfd, unix.LOOP_SET_BLOCK_SIZE, uintptr(o.BlockSize)); err != nil {
			if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
				// Validated above, so EINVAL means the kernel predates
				// LOOP_SET_BLOCK_SIZE (4.14).
				err = newKinded(ErrNotSupported, err, "the kernel cannot set a loop device's block size")
			}
			return true, err
		}
	}
	if o.DirectIO {
		if err := ioctlSet(lfd, unix.LOOP_SET_DIRECT_IO, 1); err != nil {
			return true, directIOError(err)
		}
	}
	return true, nil
}

func directIOError(err error) error {
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) {
		return newKinded(ErrNotSupported, err, "direct I/O is not possible for this backing file (no O_DIRECT on its file system, or an offset or block size that does not match its alignment)")
	}
	return err
}

// encodeInfo builds the loop_info64 for o. The file name is informational
// only (the kernel keeps 63 bytes of it for LOOP_GET_STATUS64); the package
// reads the full path from sysfs.
func encodeInfo(name string, o Options, allowed uint32) unix.LoopInfo64 {
	var info unix.LoopInfo64
	info.Offset = o.Offset
	info.Sizelimit = o.SizeLimit
	info.Flags = encodeFlags(o) & allowed
	copy(info.File_name[:unix.LO_NAME_SIZE-1], name)
	return info
}

func encodeFlags(o Options) uint32 {
	var f uint32
	if o.ReadOnly {
		f |= unix.LO_FLAGS_READ_ONLY
	}
	if o.Autoclear {
		f |= unix.LO_FLAGS_AUTOCLEAR
	}
	if o.PartScan {
		f |= unix.LO_FLAGS_PARTSCAN
	}
	if o.DirectIO {
		f |= unix.LO_FLAGS_DIRECT_IO
	}
	return f
}

// decodeInfo returns the options a loop_info64 describes; BlockSize is left
// 0 since loop_info64 does not carry it.
func decodeInfo(info *unix.LoopInfo64) Options {
	return Options{
		ReadOnly:  info.Flags&unix.LO_FLAGS_READ_ONLY != 0,
		Autoclear: info.Flags&unix.LO_FLAGS_AUTOCLEAR != 0,
		PartScan:  info.Flags&unix.LO_FLAGS_PARTSCAN != 0,
		DirectIO:  info.Flags&unix.LO_FLAGS_DIRECT_IO != 0,
		Offset:    info.Offset,
		SizeLimit: info.Sizelimit,
	}
}

// verify reads the configuration back and fails if the kernel did not
// apply every option: older kernels ignore flags they do not know, and
// every kernel silently turns direct I/O off where it cannot do it.
func verify(lfd int, o Options) error {
	info, err := getStatus(lfd)
	if err != nil {
		return err
	}
	got := decodeInfo(info)
	if got.ReadOnly && !o.ReadOnly {
		return newKinded(ErrReadOnly, nil, "the kernel attached the device read-only (the backing file cannot be written)")
	}
	if o.DirectIO && !got.DirectIO {
		// LOOP_CONFIGURE drops direct I/O without a word; asking for it
		// separately makes the kernel say why.
		if err := ioctlSet(lfd, unix.LOOP_SET_DIRECT_IO, 1); err != nil {
			return directIOError(err)
		}
		if info, err = getStatus(lfd); err != nil {
			return err
		}
		got = decodeInfo(info)
	}
	if o.BlockSize != 0 {
		bs, err := unix.IoctlGetUint32(lfd, unix.BLKSSZGET)
		if err != nil {
			return err
		}
		got.BlockSize = bs
	}
	if missing := missingOptions(o, got); len(missing) > 0 {
		return newKinded(ErrNotSupported, nil, "the kernel did not apply "+strings.Join(missing, ", "))
	}
	return nil
}

// missingOptions lists the options in want that got lacks. Extra flags in
// got (direct I/O from an O_DIRECT descriptor, say) are not a failure.
func missingOptions(want, got Options) []string {
	var m []string
	if want.ReadOnly && !got.ReadOnly {
		m = append(m, "read-only")
	}
	if want.Autoclear && !got.Autoclear {
		m = append(m, "autoclear")
	}
	if want.PartScan && !got.PartScan {
		m = append(m, "partition scan")
	}
	if want.DirectIO && !got.DirectIO {
		m = append(m, "direct I/O")
	}
	if want.BlockSize != 0 && want.BlockSize != got.BlockSize {
		m = append(m, fmt.Sprintf("block size %d (got %d)", want.BlockSize, got.BlockSize))
	}
	if want.Offset != got.Offset {
		m = append(m, fmt.Sprintf("offset %d (got %d)", want.Offset, got.Offset))
	}
	if want.SizeLimit != got.SizeLimit {
		m = append(m, fmt.Sprintf("size limit %d (got %d)", want.SizeLimit, got.SizeLimit))
	}
	return m
}

// rollback detaches a device bound by a failed Attach, closes lfd and waits
// for the kernel to finish, so that the failure leaves nothing attached.
func rollback(lfd, n int) {
	seq, _ := diskSeq(lfd)
	id := attachmentOf(lfd, seq)
	_ = ioctlSet(lfd, unix.LOOP_CLR_FD, 0)
	closeFD(lfd)
	ctx, cancel := context.WithTimeout(context.Background(), nodeWait)
	defer cancel()
	_ = waitDetached(ctx, n, id)
}

// openDeviceFD opens a loop device read-write, or read-only where the
// kernel refuses write access to a read-only device.
func openDeviceFD(path string) (int, error) {
	fd, err := openFile(path, unix.O_RDWR|unix.O_CLOEXEC)
	if errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) {
		fd, err = openFile(path, unix.O_RDONLY|unix.O_CLOEXEC)
	}
	return fd, err
}

// newDevice wraps fd, an open /dev/loopN, in a Device that owns it.
func newDevice(fd, n int) (*Device, error) {
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil, newKinded(ErrInvalid, nil, devicePath(n)+" is not a block device")
	}
	seq, err := diskSeq(fd)
	if err != nil {
		return nil, err
	}
	return &Device{fd: fd, number: n, path: devicePath(n), dev: ioctl.DecodeDev(uint64(st.Rdev)), seq: seq}, nil
}

func openDevice(n int) (*Device, error) {
	path := devicePath(n)
	fd, err := openDeviceFD(path)
	if err != nil {
		return nil, &Error{Op: "open", Device: path, Err: err}
	}
	if _, err := getStatus(fd); err != nil {
		closeFD(fd)
		return nil, &Error{Op: "open", Device: path, Err: err}
	}
	d, err := newDevice(fd, n)
	if err != nil {
		closeFD(fd)
		return nil, &Error{Op: "open", Device: path, Err: err}
	}
	return d, nil
}

// deviceStatus reads the status of the open loop device fd.
func deviceStatus(fd, n int) (Status, error) {
	info, err := getStatus(fd)
	if err != nil {
		return Status{}, err
	}
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		return Status{}, err
	}
	bs, err := unix.IoctlGetUint32(fd, unix.BLKSSZGET)
	if err != nil {
		return Status{}, err
	}
	size, err := ioctlGetUint64(fd, unix.BLKGETSIZE64)
	if err != nil {
		return Status{}, err
	}
	seq, err := diskSeq(fd)
	if err != nil {
		return Status{}, err
	}
	s := Status{
		Number:       n,
		Path:         devicePath(n),
		Dev:          ioctl.DecodeDev(uint64(st.Rdev)),
		BackingFile:  backingFile(n, info),
		BackingDev:   ioctl.DecodeDev(uint64(info.Device)),
		BackingInode: info.Inode,
		BackingRdev:  ioctl.DecodeDev(uint64(info.Rdevice)),
		Options:      decodeInfo(info),
		Size:         size,
		DiskSeq:      seq,
	}
	s.BlockSize = bs
	return s, nil
}

// backingFile returns the backing file's full path from sysfs, or the
// kernel's truncated copy of the name given at attach time where sysfs is
// not mounted.
func backingFile(n int, info *unix.LoopInfo64) string {
	b, err := os.ReadFile(sysBlock + "/loop" + strconv.Itoa(n) + "/loop/backing_file")
	if err == nil {
		return strings.TrimSuffix(string(b), "\n")
	}
	name := info.File_name[:]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return string(name)
}

func setCapacity(fd int) error {
	return ioctlSet(fd, unix.LOOP_SET_CAPACITY, 0)
}

func (d *Device) detachLocked(ctx context.Context) error {
	id := attachmentOf(d.fd, d.seq)
	for i := 0; ; i++ {
		err := ioctlSet(d.fd, unix.LOOP_CLR_FD, 0)
		if err == nil {
			break
		}
		// Old kernels answer EBUSY while another opener (typically
		// udev's probe right after attach) has the device open.
		if !errors.Is(err, unix.EBUSY) || i+1 >= clrAttempts {
			return err
		}
		if serr := sleep(ctx, time.Duration(i+1)*5*time.Millisecond); serr != nil {
			return errors.Join(serr, err)
		}
	}
	d.closed = true
	fd := d.fd
	d.fd = noFD
	if err := closeFD(fd); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, nodeWait)
	defer cancel()
	if err := waitDetached(wctx, d.number, id); err != nil {
		return newKinded(ErrBusy, err, "the device is still open elsewhere; the kernel detaches it on the last close")
	}
	return nil
}

// attachID identifies one attachment of a loop device: its disk
// sequence number, which changes at every attach (Linux 5.15 on), or,
// where the kernel has none (seq 0: 5.10), the device and inode numbers of
// the backing file.
type attachID struct {
	seq      uint64
	dev, ino uint64
}

// attachmentOf identifies the attachment of the loop device open as fd.
func attachmentOf(fd int, seq uint64) attachID {
	id := attachID{seq: seq}
	if seq == 0 {
		if info, err := getStatus(fd); err == nil {
			id.dev, id.ino = info.Device, info.Inode
		}
	}
	return id
}

// waitDetached waits until /dev/loopN no longer carries the attachment id:
// the device is unbound, removed, or attached again by someone else (a new
// sequence number or, without one, another backing file; the same file
// attached again by someone else looks like the old attachment then).
func waitDetached(ctx context.Context, n int, id attachID) error {
	dir := sysBlock + "/loop" + strconv.Itoa(n)
	for i := 0; ; i++ {
		if !stillAttached(dir, id) {
			return nil
		}
		d := time.Duration(i+1) * 200 * time.Microsecond
		if d > pollMax {
			d = pollMax
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

func stillAttached(dir string, id attachID) bool {
	if _, err := os.Stat(dir + "/loop"); err != nil {
		return false
	}
	if id.seq == 0 {
		if id.ino == 0 {
			return true
		}
		b, err := os.ReadFile(dir + "/loop/backing_file")
		if err != nil {
			return true
		}
		var st unix.Stat_t
		if err := unix.Stat(strings.TrimSuffix(string(b), "\n"), &st); err != nil {
			return true
		}
		return st.Ino == id.ino && uint64(st.Dev) == id.dev
	}
	b, err := os.ReadFile(dir + "/diskseq")
	if err != nil {
		return true
	}
	cur, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return err != nil || cur == id.seq
}

// list returns the status of every attached loop device.
func list() ([]Status, error) {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, &Error{Op: "list", Err: unwrapPathError(err)}
	}
	var out []Status
	for _, e := range ents {
		n, ok := parseLoopName(e.Name())
		if !ok {
			continue
		}
		if _, err := os.Stat(sysBlock + "/" + e.Name() + "/loop"); err != nil {
			continue // not attached
		}
		fd, err := openFile(devicePath(n), unix.O_RDONLY|unix.O_CLOEXEC)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) {
				continue // detached or removed meanwhile, or no node
			}
			return nil, &Error{Op: "list", Device: devicePath(n), Err: err}
		}
		st, err := deviceStatus(fd, n)
		closeFD(fd)
		if err != nil {
			if errors.Is(err, unix.ENXIO) {
				continue // detached meanwhile
			}
			return nil, &Error{Op: "list", Device: devicePath(n), Err: err}
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Status) int { return a.Number - b.Number })
	return out, nil
}

// parseLoopName returns N for "loopN".
func parseLoopName(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "loop")
	if !ok || s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil {
		return 0, false
	}
	return int(n), true
}

func find(path string) ([]Status, error) {
	var want unix.Stat_t
	if err := stat(path, &want); err != nil {
		return nil, &Error{Op: "find", Path: path, Err: err}
	}
	all, err := list()
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Op, e.Path = "find", path
		}
		return nil, err
	}
	out := []Status{}
	for _, st := range all {
		if sameFile(st, &want) {
			out = append(out, st)
		}
	}
	return out, nil
}

// sameFile reports whether st's backing file is the file want describes.
// The kernel's lo_device and lo_inode come from the same getattr call as
// stat's, so they match on every file system; the sysfs path is a second
// chance for file systems that report a different device for the same
// inode through different paths.
func sameFile(st Status, want *unix.Stat_t) bool {
	if st.BackingDev == ioctl.DecodeDev(uint64(want.Dev)) && st.BackingInode == want.Ino {
		return true
	}
	if want.Mode&unix.S_IFMT == unix.S_IFBLK && !st.BackingRdev.IsZero() && st.BackingRdev == ioctl.DecodeDev(uint64(want.Rdev)) {
		return true
	}
	if st.BackingFile == "" || strings.HasSuffix(st.BackingFile, deletedSuffix) {
		return false
	}
	var got unix.Stat_t
	if err := stat(st.BackingFile, &got); err != nil {
		return false
	}
	return got.Dev == want.Dev && got.Ino == want.Ino && got.Ino == st.BackingInode
}

// errnoKind maps the errno in err's chain to the package sentinel it
// corresponds to, or "".
func errnoKind(err error) sentinel {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return ""
	}
	switch errno {
	case unix.EINVAL, unix.EISDIR, unix.ENOTBLK, unix.EOVERFLOW:
		return ErrInvalid
	case unix.EBUSY:
		return ErrBusy
	case unix.ENXIO:
		return ErrNotAttached
	case unix.ENOTTY, unix.EOPNOTSUPP, unix.ENOSYS:
		return ErrNotSupported
	case unix.EROFS:
		return ErrReadOnly
	case unix.EACCES, unix.EPERM:
		return ErrPermission
	}
	return ""
}

// backoff returns a randomised wait before allocation attempt i (i >= 1):
// exponential from backoffBase, capped at backoffMax, jittered so that
// losers of the same race do not meet again.
func backoff(i int) time.Duration {
	d := backoffBase << min(i-1, 16)
	if d > backoffMax || d <= 0 {
		d = backoffMax
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// The system-call helpers below retry EINTR and return bare errnos.

func ignoringEINTR(fn func() error) error {
	for {
		err := fn()
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func openFile(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if err == unix.EINTR {
			continue
		}
		return fd, err
	}
}

func closeFD(fd int) error {
	if fd < 0 {
		return nil
	}
	// Never retry close: the descriptor is gone even on EINTR.
	return unix.Close(fd)
}

func fstat(fd int, st *unix.Stat_t) error {
	return ignoringEINTR(func() error { return unix.Fstat(fd, st) })
}

func stat(path string, st *unix.Stat_t) error {
	return ignoringEINTR(func() error { return unix.Stat(path, st) })
}

// ioctlSet performs an ioctl whose argument is a value.
func ioctlSet(fd int, req uint, arg uintptr) error {
	_, err := ioctlRet(fd, req, arg)
	return err
}

// ioctlRet performs an ioctl whose argument is a value and whose result is
// the return value, as LOOP_CTL_GET_FREE's is.
func ioctlRet(fd int, req uint, arg uintptr) (int, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), arg)
		switch errno {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return 0, errno
	}
}

// ioctlGetUint64 performs an ioctl that stores a __u64, such as
// BLKGETSIZE64 (whose number encodes sizeof(size_t) on 32-bit systems but
// which always writes 8 bytes).
func ioctlGetUint64(fd int, req uint) (uint64, error) {
	var v uint64
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(&v)))
		runtime.KeepAlive(&v)
		switch errno {
		case 0:
			return v, nil
		case unix.EINTR:
			continue
		}
		return 0, errno
	}
}

func getStatus(fd int) (*unix.LoopInfo64, error) {
	for {
		info, err := unix.IoctlLoopGetStatus64(fd)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return info, err
	}
}

// diskSeq returns the device's disk sequence number, or 0 on kernels before
// 5.15, which do not have BLKGETDISKSEQ.
func diskSeq(fd int) (uint64, error) {
	seq, err := ioctlGetUint64(fd, unix.BLKGETDISKSEQ)
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
		return 0, nil
	}
	return seq, err
}
