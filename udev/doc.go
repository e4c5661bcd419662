// Package udev synchronises device-mapper operations with udev the way
// libdevmapper does, without cgo and without ever hanging; it also receives
// uevents, detects whether udev can answer at all, and manages /dev nodes for
// systems without udev. It knows nothing of device-mapper ioctls: package dm
// puts the values it returns into dm_ioctl.event_nr.
//
// # Cookies
//
// A cookie is a SysV semaphore whose key is 0x0D4D<<16 plus a random 16-bit
// base. The resume (DM_DEV_SUSPEND without DM_SUSPEND_FLAG), remove and rename
// ioctls carry it in event_nr, with the udev Flags in the high 16 bits; every
// other ioctl sends event_nr 0 (DM_DEV_WAIT sends the real event number). The
// kernel copies event_nr into the uevent as DM_COOKIE, and lvm2's
// 95-dm-notify.rules runs `dmsetup udevcomplete $env{DM_COOKIE}` once the
// rules are done, which lowers the semaphore. The order for one operation:
//
//	c, err := udev.NewCookie()   // before any suspend: a failure changes nothing
//	defer c.Close()              // removes the semaphore on every path, panics included
//	c.Add()                      // once per ioctl that carries the cookie, right before it
//	dmi.EventNr = c.EventNr(flags)
//	err = ioctl(...)
//	if err != nil || dmi.Flags&DM_UEVENT_GENERATED_FLAG == 0 {
//		c.Done()             // no uevent will come for this ioctl
//	}
//	err = c.Wait(ctx)            // nodes and symlinks exist (or are gone) now
//
// One cookie may cover several ioctls (a resume, then a rollback remove) if
// each gets its own Add and, when it produces no uevent, its own Done. Wait
// honours ctx and removes the semaphore on cancellation, so a udev that never
// answers costs at most the deadline; it never blocks beyond DefaultWaitLimit.
//
// # Detection
//
// Waiting only makes sense when udev will answer. Detect checks everything
// that must hold (DM_DISABLE_UDEV unset, SysV semaphores, a live udevd, the same
// IPC namespace as udevd, the notify rule installed and the program it runs
// present) and says why sync is impossible. When Support.Sync is false, send
// EventNrWithoutCookie(FallbackFlags) instead of a cookie, so a running udevd
// leaves /dev/mapper alone, and manage the nodes with MakeNode, RemoveNode and
// RenameNode. The dm interface version (cookies need 4.15) is dm's check.
//
// # Housekeeping
//
// ListCookies, Complete and CompleteAll do what `dmsetup udevcookies`,
// `udevcomplete` and `udevcomplete_all [age]` do; Flags.String decodes flags
// like `dmsetup udevflags`.
//
// # Uevents
//
// Monitor reads NETLINK_KOBJECT_UEVENT through Go's runtime poller, so Close
// and context cancellation interrupt a blocked Receive. It receives the
// kernel's events (SourceKernel, no udevd needed) and udevd's processed events
// (SourceUdev, the libudev format, accepted only from root), filtered by
// subsystem and device; WaitDevice waits for one device's add, change or
// remove. ParseEvent decodes both formats and never panics on any input.
// WaitNode and Settle wait for a node, or for udevd's queue, by polling.
//
// # Architectures
//
// x/sys/unix has no SysV semaphore wrappers, so the syscalls are raw, with
// per-architecture numbers, timespec, union semun passing and struct semid64_ds
// layout in sysv_linux_<arch>.go: amd64, arm64, riscv64, loong64, s390x (big
// endian, Linux 5.1 or later), 386 (Linux 5.1 or later) and arm. Other
// architectures build, and every semaphore operation returns ErrNotSupported;
// sysv_others.go lists what adding one takes. Other operating systems build with
// stubs that return ErrNotSupported.
package udev
