package dmtest

import (
	"github.com/thinp/thinp/dm"
)

// nowhere is where a Control on the fake looks for sysfs, procfs and /dev:
// the fake has none, and the host's, whose devices share numbers with the
// fake's (7:0 is a loop device on both), must never be looked at.
const nowhere = "/nonexistent/dmtest"

// NewControl opens a *dm.Control whose ioctls go to k instead of
// /dev/mapper/control. udev is not used (the fake raises no uevents), and
// the Control sees no sysfs, procfs or /dev (so device sizes are unknown:
// give a pool its Length; no device shows holders, mounts or nodes). opts
// may override any of these, or set anything else dm.Open takes. Close the
// Control when done.
func NewControl(k *Kernel, opts ...dm.Option) (*dm.Control, error) {
	base := []dm.Option{
		dm.WithTransport(k), dm.WithUdev(dm.UdevNone),
		dm.WithSysDir(nowhere + "/sys"), dm.WithProcDir(nowhere + "/proc"), dm.WithDevDir(nowhere + "/dev"),
	}
	return dm.Open(append(base, opts...)...)
}
