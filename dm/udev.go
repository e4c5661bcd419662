package dm

import (
	"context"
	"time"

	"github.com/thinp/thinp/ioctl"
)

// UdevPolicy says how a Control cooperates with udev on create, resume,
// rename and remove.
type UdevPolicy int

const (
	// UdevAuto synchronises with udev when it can answer (udevd running in
	// our IPC namespace with lvm2's dm rules installed), and otherwise
	// manages the /dev/mapper nodes itself without waiting.
	UdevAuto UdevPolicy = iota
	// UdevRequired synchronises with udev, and Open fails if it cannot.
	UdevRequired
	// UdevOff never waits for udev and manages /dev/mapper nodes itself.
	UdevOff
	// UdevNone neither waits for udev nor touches /dev: for callers that
	// manage nodes some other way.
	UdevNone
)

// String names the policy.
func (p UdevPolicy) String() string {
	switch p {
	case UdevAuto:
		return "auto"
	case UdevRequired:
		return "required"
	case UdevOff:
		return "off"
	case UdevNone:
		return "none"
	}
	return "unknown"
}

// DefaultUdevTimeout bounds each wait for udev to process an event. udev
// normally answers within a fraction of a second; a wait that runs out
// returns ErrTimeout and leaves no semaphore behind.
const DefaultUdevTimeout = 30 * time.Second

// WithUdev sets the udev policy (default UdevAuto).
func WithUdev(p UdevPolicy) Option { return func(c *config) { c.udev = p } }

// WithUdevTimeout bounds each wait for udev (default 30 s); the ctx passed
// to each call bounds it too.
func WithUdevTimeout(d time.Duration) Option { return func(c *config) { c.udevTimeout = d } }

// WithDevDir sets where device nodes live (default /dev): nodes are managed
// in <dir>/mapper. For tests and chroots.
func WithDevDir(dir string) Option { return func(c *config) { c.devDir = dir } }

// udevSync is one way of waiting for udev: the SysV cookie protocol of
// libdevmapper.
type udevSync interface {
	// begin prepares a wait and returns the value for dm_ioctl.event_nr.
	begin() (eventNr uint32, w udevWait, err error)
}

// udevWait is one pending wait.
type udevWait interface {
	// end finishes the wait after the ioctl: generated says whether the
	// kernel sent the uevent (DM_UEVENT_GENERATED_FLAG).
	end(ctx context.Context, generated bool) error
	// abort releases everything without waiting.
	abort()
}

// DevDir is where this Control's devices have their nodes (see
// WithDevDir): /dev/mapper/<name> and /dev/dm-<minor> under it.
func (c *Control) DevDir() string { return c.cfg.devDir }

// SysDir is where this Control reads sysfs (see WithSysDir).
func (c *Control) SysDir() string { return c.cfg.sysDir }

// managesNodes reports whether this Control creates and removes
// /dev/mapper nodes itself.
func (c *Control) managesNodes() bool {
	return c.udev == nil && c.cfg.udev != UdevNone && c.cfg.transport == nil
}

// withCookie issues r, carrying a udev cookie when syncing, and waits for
// udev to finish with the event the ioctl generated.
func (c *Control) withCookie(ctx context.Context, op string, ref Ref, r *ioctl.Request, fn func(*ioctl.Header, []byte) error) error {
	if c.udev == nil {
		if c.managesNodes() {
			r.Header.EventNr = fallbackEventNr()
		}
		return c.do(ctx, op, ref, r, fn)
	}
	ev, w, err := c.udev.begin()
	if err != nil {
		// No cookie (semaphore limits reached, say): still issue the
		// ioctl, unsynchronised, rather than fail. A resume that ends a
		// suspend must never be skipped because udev bookkeeping failed;
		// the nodes still come from udev's rules, just not waited for.
		return c.do(ctx, op, ref, r, fn)
	}
	r.Header.EventNr = ev
	generated := false
	err = c.do(ctx, op, ref, r, func(h *ioctl.Header, b []byte) error {
		generated = h.Flags&ioctl.FlagUeventGenerated != 0
		if fn != nil {
			return fn(h, b)
		}
		return nil
	})
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.udevTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	if werr := w.end(wctx, err == nil && generated); werr != nil && err == nil {
		e := newError(op, ref, werr)
		e.Applied = true
		return e
	}
	return err
}
