// Package loop attaches regular files (and block devices) to Linux loop
// devices, the usual way to back a device-mapper thin pool with sparse files
// on a single machine.
//
// The common case takes a few lines:
//
//	if err := loop.CreateSparseFile("/var/lib/pool/data", 10<<30); err != nil {
//		return err
//	}
//	dev, err := loop.Attach(ctx, "/var/lib/pool/data", nil) // read-write, no flags
//	if err != nil {
//		return err
//	}
//	defer dev.Detach(ctx)
//	fmt.Println(dev.Path(), dev.Dev()) // "/dev/loop3 7:3"
//
// Everything here needs the right to open /dev/loop-control and /dev/loopN
// read-write, which in practice means root or membership of the "disk" group.
//
// # Attaching
//
// [Control.Attach] (and the convenience [Attach], which opens a [Control]
// for the one call) configures a free loop device in one step with the
// LOOP_CONFIGURE ioctl (Linux 5.8). Whether the running kernel has it is
// found once per [Control] by probing: LOOP_CONFIGURE with an invalid file
// descriptor answers EBADF on kernels that know the ioctl and ENOTTY or
// EINVAL on kernels that do not. On older kernels the package falls back to
// LOOP_SET_FD followed by LOOP_SET_STATUS64, LOOP_SET_BLOCK_SIZE and
// LOOP_SET_DIRECT_IO. No kernel version string is parsed.
//
// Every option in [Options] is checked after the kernel has accepted the
// configuration, by reading the device's status back. An option the kernel
// silently dropped (direct I/O on a file system that cannot do it, for
// example) detaches the device again and fails with an error that matches
// [ErrNotSupported]. Invalid input is rejected before any device is touched
// and matches [ErrInvalid] (or [ErrReadOnly] for a file that cannot be
// written without [Options.ReadOnly]); in no failure case is a device left
// attached.
//
// # Race-free allocation
//
// LOOP_CTL_GET_FREE only names a device that was free when the kernel
// looked; it reserves nothing. Attach therefore opens the device it was
// given with O_EXCL, which makes this process the device's exclusive holder
// (a second O_EXCL open, a mount, or device-mapper claiming it fails with
// EBUSY), configures it while holding that claim, and only then reopens it
// without O_EXCL so that device-mapper, mkfs or mount can claim it later. A
// process that configures devices without claiming them first (older
// losetup) still cannot take a device from under Attach: the kernel refuses
// to configure a device that is bound or exclusively held with EBUSY. When
// Attach loses such a race it asks for a new free device and retries, with a
// short randomised back-off, until it wins, the attempt budget runs out, or
// the context is done.
//
// # Detaching, closing and autoclear
//
// A [Device] owns one open file descriptor on /dev/loopN. [Device.Close]
// only closes that descriptor: the device stays attached, unless it was
// attached with [Options.Autoclear], in which case the kernel detaches it
// when its last opener closes it. [Device.Detach] asks the kernel to detach
// (LOOP_CLR_FD, retried briefly on EBUSY), closes the descriptor and waits a
// short while for the kernel to finish. Linux defers the detach while anyone
// else (a mount, a device-mapper table, udev's blkid probe) still has the
// device open; Detach then reports [ErrBusy] and the kernel completes the
// detach on the last close.
//
// # Finding devices
//
// [List] reports every attached loop device with its [Status]; [Find]
// reports the devices that back a given file. Find matches the backing
// file's device and inode numbers from LOOP_GET_STATUS64, not the 64-byte
// file name the kernel keeps, which is truncated and may be stale.
//
// # Errors
//
// Every error is a [*Error] carrying the operation, the device and the
// backing file. [errors.Is] matches both the raw errno (unix.EBUSY, or
// [io/fs.ErrNotExist] for a missing file) and the package's sentinels, such
// as [ErrBusy], [ErrInvalid], [ErrNotSupported], [ErrNotAttached],
// [ErrReadOnly] and [ErrClosed].
//
// # Contexts
//
// Methods that can wait (Attach's allocation retries, Detach's EBUSY retry
// and its wait for the kernel) honour the context's deadline and
// cancellation. An ioctl that is already in flight cannot be cancelled.
//
// # Other systems
//
// The package builds everywhere; on systems other than Linux every
// operation that needs the kernel fails with [ErrNotSupported].
package loop
