package dmtest

import (
	"github.com/thinp/thinp/dm"
)

// NewControl opens a *dm.Control whose ioctls go to k instead of
// /dev/mapper/control. udev is not used (the fake raises no uevents) and
// device nodes are not made; opts may override either, or set anything
// else dm.Open takes. Close the Control when done.
func NewControl(k *Kernel, opts ...dm.Option) (*dm.Control, error) {
	base := []dm.Option{dm.WithTransport(k), dm.WithUdev(dm.UdevNone)}
	return dm.Open(append(base, opts...)...)
}
