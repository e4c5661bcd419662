// Package dm drives Linux device-mapper through its control node,
// /dev/mapper/control, with typed requests and errors: create, load,
// suspend, resume, remove, rename, info, table, status, deps, list,
// messages and event waits. It is pure Go: no cgo, no libdevmapper, no
// dmsetup.
//
// # Control
//
// Open the control node once per process with [Open]; a [Control] is safe
// for concurrent use. Devices are named by a [Ref]: exactly one of
// [Name], [UUID] or [DevNum]. Tables are [Table] values that round-trip
// with the text `dmsetup table` prints; they refer to other block devices
// as "major:minor", never by path.
//
// # Safety
//
// Every request is validated before anything is sent: a bad name, uuid,
// table or flag gives an error matching [ErrInvalid] and the kernel never
// sees it. Multi-step operations do not leave half-done devices behind:
// [Control.Create] removes the device again if its load or resume fails,
// [Control.WithSuspended] always resumes, and [Control.Reload] restores the
// previous table when the kernel refuses the new one at resume.
//
// # Errors
//
// Every error is a [*Error] carrying the operation, the device, the ioctl
// and the errno. errors.Is matches both this package's sentinels
// ([ErrNotFound], [ErrBusy], [ErrExists], [ErrNoData], [ErrInvalid],
// [ErrPermission], [ErrNotSupported]) and the raw unix.Errno. Kernels too
// old for a command or flag give a [*NotSupportedError] naming the
// interface version needed. Printing an error with %+v adds the stack.
//
// # udev
//
// With the default policy, [UdevAuto], a Control waits for udev to process
// the events of create, resume, rename and remove, exactly as libdevmapper
// does, so /dev/mapper/<name> exists when Create returns; where udev cannot
// answer (no udevd, another IPC namespace, no dm rules), it manages the
// /dev/mapper nodes itself and never waits. See [WithUdev].
//
// # Contexts
//
// Methods that wait (udev, EBUSY retries, [Control.Wait]) honour their
// context. An ioctl already in the kernel cannot be interrupted.
package dm
