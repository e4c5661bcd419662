package dm

import (
	"context"
	"errors"
	"strings"

	"github.com/thinp/thinp/ioctl"
)

// listEmulated is List on kernels older than dm interface 4.45, done as
// libdevmapper does it there: the kernel's DM_LIST_DEVICES ignores the
// name and uuid prefixes (filtering came with 4.45, together with the
// uuids in the reply) and, before 4.37, sends no event counters. So it
// lists every device, drops those whose name lacks the prefix, and asks
// each remaining one for its uuid and event counter with DM_DEV_STATUS by
// device number (which a concurrent rename cannot change), then filters by
// uuid. A device removed in between is left out, as a later list would; a
// device renamed in between is reported, and filtered, under its new name.
// That costs one ioctl per listed device, and the result is a snapshot
// taken over several ioctls rather than one.
func (c *Control) listEmulated(ctx context.Context, namePrefix, uuidPrefix string) ([]Device, error) {
	all, err := c.listDevices(ctx, &ioctl.Request{Cmd: ioctl.CmdListDevices})
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, d := range all {
		if !strings.HasPrefix(d.Name, namePrefix) {
			continue
		}
		info, err := c.Info(ctx, DevNum(d.Dev))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(info.Name, namePrefix) || !strings.HasPrefix(info.UUID, uuidPrefix) {
			continue
		}
		d.Name, d.UUID = info.Name, info.UUID
		d.EventNr, d.HasEventNr = info.EventNr, true
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, nil // as listDevices
	}
	return out, nil
}
