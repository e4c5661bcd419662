package dm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

// Control is an open device-mapper control node. Open it once per process;
// it is safe for concurrent use by many goroutines. An ioctl in flight
// cannot be cancelled: contexts bound the waits around them (udev cookies,
// EBUSY retries, event waits), not the ioctls themselves.
type Control struct {
	conn    ioctl.Conn
	closer  interface{ Close() error }
	path    string // the control node, for poll handles; empty for custom transports
	version Version
	cfg     config
	udev    udevSync
	// udevReason says why udev is not synchronised with, if it is not.
	udevReason string

	closed atomic.Bool
	mu     sync.Mutex // guards closing
}

type config struct {
	path         string
	transport    ioctl.Transport
	removeBudget time.Duration
	maxBuffer    int
	udev         UdevPolicy
	udevTimeout  time.Duration
	devDir       string
	sysDir       string
	procDir      string
}

// Option configures Open.
type Option func(*config)

// WithControlPath opens the control node at path instead of
// /dev/mapper/control.
func WithControlPath(path string) Option { return func(c *config) { c.path = path } }

// WithTransport makes the Control issue its ioctls through t instead of
// opening a control node: a fake kernel in tests, or a recorder. The
// Control does not close t.
func WithTransport(t ioctl.Transport) Option { return func(c *config) { c.transport = t } }

// WithRemoveRetry sets how long Remove keeps retrying a device that is busy
// (EBUSY), typically because udev is still scanning it after a close. The
// default is 5 seconds, like libdevmapper's 25 tries 200 ms apart; zero or
// less disables retrying.
func WithRemoveRetry(budget time.Duration) Option {
	return func(c *config) { c.removeBudget = budget }
}

// WithSysDir sets where sysfs is mounted (default /sys): the Control reads
// device sizes, holders and names there.
func WithSysDir(dir string) Option { return func(c *config) { c.sysDir = dir } }

// WithProcDir sets where procfs is mounted (default /proc): the Control
// reads every process's mountinfo there to find a busy device's mounts.
func WithProcDir(dir string) Option { return func(c *config) { c.procDir = dir } }

// WithMaxBuffer caps the reply buffer grown on DM_BUFFER_FULL_FLAG (default
// 1 GiB).
func WithMaxBuffer(n int) Option { return func(c *config) { c.maxBuffer = n } }

// DefaultRemoveRetry is the default EBUSY retry budget of Remove.
const DefaultRemoveRetry = 5 * time.Second

// minVersion is the oldest dm interface this package drives: udev cookies
// (4.15) and DM_QUERY_INACTIVE_TABLE_FLAG (4.16) are assumed.
var minVersion = ioctl.Version{4, 16, 0}

// Open opens the device-mapper control node and negotiates the interface
// version with DM_VERSION.
func Open(opts ...Option) (*Control, error) {
	cfg := config{
		removeBudget: DefaultRemoveRetry,
		udev:         UdevAuto,
		udevTimeout:  DefaultUdevTimeout,
		devDir:       "/dev",
		sysDir:       "/sys",
		procDir:      "/proc",
	}
	for _, o := range opts {
		o(&cfg)
	}
	c := &Control{cfg: cfg}
	if cfg.transport != nil {
		c.conn.T = cfg.transport
	} else {
		path := cfg.path
		if path == "" {
			path = ioctl.ControlPath
		}
		f, err := ioctl.Open(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				err = ensureControlNode(path, cfg.sysDir)
				if err == nil {
					f, err = ioctl.Open(path)
				}
			}
			if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO) {
				err = fmt.Errorf("%w (the kernel has no device-mapper: is the dm-mod module loaded?)", err)
			}
			if err != nil {
				return nil, newError("open", Ref{}, err)
			}
		}
		c.conn.T, c.closer, c.path = f, f, path
	}
	c.conn.MaxBuffer = cfg.maxBuffer
	v, err := c.KernelVersion(context.Background())
	if err != nil {
		c.Close()
		return nil, err
	}
	if v.Less(minVersion) || v[0] != 4 {
		c.Close()
		return nil, newError("open", Ref{}, &NotSupportedError{What: "this library", Need: minVersion, Kernel: v})
	}
	c.version = v
	if err := c.setupUdev(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the control node. It is idempotent.
func (c *Control) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Swap(true) {
		return nil
	}
	if c.closer != nil {
		return c.closer.Close()
	}
	return nil
}

// Version is the kernel's dm interface version, as negotiated by Open.
func (c *Control) Version() Version { return c.version }

// KernelVersion asks the kernel for its dm interface version (DM_VERSION).
func (c *Control) KernelVersion(ctx context.Context) (Version, error) {
	var v Version
	err := c.do(ctx, "version", Ref{}, &ioctl.Request{Cmd: ioctl.CmdVersion}, func(h *ioctl.Header, _ []byte) error {
		v = h.Version
		return nil
	})
	return v, err
}

// do issues r for op on ref after checking that the kernel has what r
// needs, and wraps any failure in *Error.
func (c *Control) do(ctx context.Context, op string, ref Ref, r *ioctl.Request, fn func(*ioctl.Header, []byte) error) error {
	if err := c.ready(ctx, r); err != nil {
		return newError(op, ref, err)
	}
	ref.put(&r.Header)
	if fn == nil {
		fn = func(*ioctl.Header, []byte) error { return nil }
	}
	if err := c.conn.Do(r, fn); err != nil {
		return newError(op, ref, closedErr(err))
	}
	return nil
}

// ready checks, before r is sent, that c is open, ctx is live and the
// kernel has what r needs.
func (c *Control) ready(ctx context.Context, r *ioctl.Request) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.version != (Version{}) {
		if need := r.Header.Flags.MinVersion(r.Cmd); c.version.Less(need) {
			return &NotSupportedError{What: r.Cmd.String() + " with flags " + r.Header.Flags.String(), Need: need, Kernel: c.version}
		}
	}
	return nil
}

// closedErr is err from the transport, ErrClosed when c was closed under
// it.
func closedErr(err error) error {
	if errors.Is(err, os.ErrClosed) {
		return ErrClosed
	}
	return err
}
