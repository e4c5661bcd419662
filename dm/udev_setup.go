package dm

import (
	"context"
	"fmt"

	"github.com/thinp/thinp/ioctl"
	"github.com/thinp/thinp/udev"
)

// setupUdev decides, once at Open, whether this Control waits for udev.
func (c *Control) setupUdev() error {
	switch c.cfg.udev {
	case UdevOff, UdevNone:
		return nil
	}
	reason := ""
	switch {
	case c.cfg.transport != nil:
		reason = "a custom transport has no udev behind it"
	case !c.version.Has(ioctl.FeatureUdevCookies):
		reason = fmt.Sprintf("dm interface %s predates udev cookies (4.15)", c.version)
	default:
		s := udev.Detect()
		if s.Sync {
			c.udev = cookieSync{}
			c.udevReason = ""
			return nil
		}
		reason = s.Reason
	}
	c.udevReason = reason
	if c.cfg.udev == UdevRequired {
		return newError("open", Ref{}, fmt.Errorf("udev synchronisation required but not possible: %s: %w", reason, ErrNotSupported))
	}
	return nil
}

// UdevStatus says whether this Control waits for udev and, if not, why.
func (c *Control) UdevStatus() (sync bool, reason string) {
	return c.udev != nil, c.udevReason
}

// cookieSync waits for udev with libdevmapper's SysV semaphore cookies, so
// that lvm2's udev rules (95-dm-notify.rules) complete them.
type cookieSync struct{}

func (cookieSync) begin() (uint32, udevWait, error) {
	ck, err := udev.NewCookie()
	if err != nil {
		return 0, nil, err
	}
	if err := ck.Add(); err != nil {
		ck.Close()
		return 0, nil, err
	}
	return ck.EventNr(0), cookieWait{ck}, nil
}

type cookieWait struct{ ck *udev.Cookie }

func (w cookieWait) end(ctx context.Context, generated bool) error {
	defer w.ck.Close()
	if !generated {
		// No uevent, so no udev rule will count this ioctl down.
		if err := w.ck.Done(); err != nil {
			return err
		}
	}
	return w.ck.Wait(ctx)
}

func (w cookieWait) abort() { w.ck.Close() }

// fallbackEventNr is the event_nr sent on resume, remove and rename when
// not synchronising but managing nodes ourselves: the udev flags tell a
// udevd that may be running to leave /dev/mapper to us.
func fallbackEventNr() uint32 { return udev.EventNrWithoutCookie(udev.FallbackFlags) }
