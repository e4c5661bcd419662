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
// # Reading many devices
//
// [Control.Status] returns copies; [Control.StatusFunc] hands out each
// target's status line where the kernel wrote it, allocating nothing, for
// a device read often (a pool a monitor watches). [Control.StatusAll] is
// the scan of every device, or of every one a name or uuid prefix selects,
// as `dmsetup status` makes it: one list, then one status read per
// device, on buffers held for the whole scan. It allocates nothing per
// device and pays the per-call checks, locks and buffer bookkeeping of a
// lone read once per scan; what it adds per device is decoding and
// checking each reply. Its cost per device does not grow with the number
// of devices, where `dmsetup status` grows six-fold from 1,000 to 10,000.
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
// # Kernel versions
//
// [Open] needs dm interface 4.16 or newer; [Control.Version]
// is what the kernel reports. Where an older interface lacks something that
// libdevmapper emulates, this package emulates it the same way:
//
//   - [Control.List] with [WithNamePrefix] or [WithUUIDPrefix]: the kernel
//     filters from 4.45 on; before, List lists every device and
//     filters itself.
//   - uuids in [Control.List]: reported by the kernel from 4.45 on; before,
//     List asks each listed device with DM_DEV_STATUS (one ioctl per device,
//     and a device removed meanwhile is left out).
//   - event counters in [Control.List]: from 4.37 (Linux 4.14) on; before,
//     from the same DM_DEV_STATUS.
//   - [Control.TargetVersion]: DM_GET_TARGET_VERSION from 4.41 on; before,
//     a search of DM_LIST_VERSIONS (which only knows loaded targets).
//
// What cannot be emulated fails before any ioctl with an error matching
// [ErrNotSupported], a [*NotSupportedError] naming the version needed:
// [Control.Wait] (DM_DEV_ARM_POLL, 4.36, Linux 4.13), [Deferred] removal
// (4.27), [Control.SetUUID] (4.19), [SecureData] (4.20) and IMA measurements
// (4.45).
//
// Kernels also differ in behaviour the interface version does not show.
// Debian's 6.1 kernels (dm interface 4.47) intermittently double-free in
// dm-ima when one device sees DM_TABLE_CLEAR, then a rename, then its
// removal: the guest oopses in dm_ima_measure_on_device_remove. Avoid
// clearing the inactive table of a device that is renamed later, or remove
// and recreate it instead of renaming, on those kernels.
//
// # Contexts
//
// Methods that wait (udev, EBUSY retries, [Control.Wait]) honour their
// context. An ioctl already in the kernel cannot be interrupted.
package dm
