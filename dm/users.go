package dm

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Users is what uses a block device, as far as the host can tell: the
// devices stacked on it, its mounts in every mount namespace, whether the
// kernel has it claimed exclusively, and, for a dm device, its open count.
// Control.Users reads it; a BusyError carries it.
type Users struct {
	Dev Dev
	// Holders are the devices stacked directly on Dev (its holders/
	// directory in sysfs): dm devices by their dm name, others by their
	// kernel name ("md0").
	Holders []string
	// Mounts are the places Dev is mounted, one per mount namespace and
	// mount point, found in /proc/<pid>/mountinfo of every process.
	Mounts []Mount
	// Claimed: the kernel refused an exclusive open of Dev (EBUSY), so
	// something holds it exclusively (a mount, a device-mapper table, md,
	// swap, a program's O_EXCL open), whether or not it shows above.
	Claimed bool
	// OpenCount is the dm device's open count, or -1 for a device that is
	// not a dm device.
	OpenCount int32
}

// Mount is one mount of a device.
type Mount struct {
	Point     string // the mount point, as that namespace sees it
	PID       int    // a process in that mount namespace
	ReadWrite bool   // mounted read-write
}

// InUse reports whether anything uses the device.
func (u Users) InUse() bool {
	return len(u.Holders) > 0 || len(u.Mounts) > 0 || u.Claimed || u.OpenCount > 0
}

// String says who uses the device in one phrase: "7:1 is held by dm
// device pool1, mounted at /mnt (pid 412), open 2 times", or "7:1 is not
// in use".
func (u Users) String() string {
	var parts []string
	for _, h := range u.Holders {
		parts = append(parts, "held by dm device "+h)
	}
	for _, m := range u.Mounts {
		s := "mounted at " + m.Point
		if m.PID > 0 {
			s += " (in the mount namespace of pid " + strconv.Itoa(m.PID) + ")"
		}
		parts = append(parts, s)
	}
	if u.OpenCount > 0 {
		parts = append(parts, "open "+strconv.Itoa(int(u.OpenCount))+" time"+plural(int(u.OpenCount)))
	}
	if len(parts) == 0 && u.Claimed {
		parts = append(parts, "claimed exclusively by the kernel (by something that is not a mount or a stacked device)")
	}
	if len(parts) == 0 {
		return u.Dev.String() + " is not in use"
	}
	return u.Dev.String() + " is " + strings.Join(parts, ", ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// BusyError is the cause of a failure because a device is in use (EBUSY),
// with what uses it. It matches unix.EBUSY, and through *Error ErrBusy.
type BusyError struct {
	Users Users
}

// Error says who uses the device.
func (e *BusyError) Error() string { return e.Users.String() + " (EBUSY)" }

// Unwrap returns unix.EBUSY.
func (e *BusyError) Unwrap() error { return unix.EBUSY }

// Users reports what uses the block device dev (any block device, dm or
// not): the devices stacked on it, its mounts in every mount namespace,
// whether the kernel has it claimed, and a dm device's open count. It
// reads sysfs and procfs (see WithSysDir, WithProcDir) and, for a dm
// device, sends one DM_DEV_STATUS. Processes and namespaces that vanish
// while it looks are skipped.
func (c *Control) Users(ctx context.Context, dev Dev) (Users, error) {
	if err := dev.Valid(); err != nil {
		return Users{}, newError("users", DevNum(dev), invalid("device number", "%s is not a device the kernel can have", dev))
	}
	u := Users{Dev: dev, OpenCount: -1}
	var err error
	if u.Holders, err = c.holders(dev); err != nil {
		return Users{}, newError("users", DevNum(dev), err)
	}
	u.Mounts = c.mounts(dev)
	u.Claimed = c.claimed(dev)
	if c.isDM(dev) {
		info, err := c.Info(ctx, DevNum(dev))
		switch {
		case errors.Is(err, ErrNotFound): // gone meanwhile
		case err != nil:
			return Users{}, err
		default:
			u.OpenCount = info.OpenCount
		}
	}
	return u, nil
}

// busy adds what uses the device to err, an EBUSY from the kernel about
// ref; err is returned unchanged when that cannot be found.
func (c *Control) busy(ctx context.Context, ref Ref, err error) error {
	var e *Error
	if !errors.As(err, &e) || e.Errno() != unix.EBUSY {
		return err
	}
	dev := ref.dev
	if ref.kind != refDev {
		info, ierr := c.Info(context.WithoutCancel(ctx), ref)
		if ierr != nil {
			return err
		}
		dev = info.Dev
	}
	u, uerr := c.Users(context.WithoutCancel(ctx), dev)
	if uerr != nil {
		return err
	}
	e.Err = &BusyError{Users: u}
	return err
}
