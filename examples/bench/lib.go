package main

import (
	"context"
	"strconv"

	"github.com/thinp/thinp/dm"
)

// libRunner is the library path: package dm, used as an application
// would, with its validation and policy.
type libRunner struct {
	ctl  *dm.Control
	pool dm.Ref
	// poolDev is the pool as thin tables name it, "253:0".
	poolDev string
	size    dm.Sectors
	// sink is the StatusFunc callback of (c): it reads the status line,
	// as the floor does.
	sink func(dm.TargetStatus) error
	seen int
}

func newLibRunner(e *env, ctl *dm.Control) *libRunner {
	l := &libRunner{ctl: ctl, pool: dm.Name(e.pool), poolDev: e.poolDev.String(), size: dm.Sectors(e.cfg.VolumeSize)}
	l.sink = func(st dm.TargetStatus) error {
		l.seen += len(st.Status)
		return nil
	}
	return l
}

// scan is one op of (c): the status of every device through StatusAll,
// each status line read as the floor reads it. It returns how many devices
// it saw.
func (l *libRunner) scan(ctx context.Context) (int, error) {
	n := 0
	err := l.ctl.StatusAll(ctx, 0, func(_ dm.Device, st []dm.TargetStatus) error {
		n++
		for _, s := range st {
			l.seen += len(s.Status)
		}
		return nil
	})
	return n, err
}

// message sends a thin-pool message.
func (l *libRunner) message(ctx context.Context, msg string) error {
	_, err := l.ctl.Message(ctx, l.pool, 0, msg)
	return err
}

// createThin makes thin device id in the pool and activates it as name.
func (l *libRunner) createThin(ctx context.Context, name string, id uint64) error {
	ids := strconv.FormatUint(id, 10)
	if err := l.message(ctx, "create_thin "+ids); err != nil {
		return err
	}
	_, err := l.ctl.Create(ctx, name, dm.Table{{Length: l.size, Type: "thin", Params: l.poolDev + " " + ids}})
	return err
}

// destroyThin removes the volume name and deletes its thin device id.
func (l *libRunner) destroyThin(ctx context.Context, name string, id uint64) error {
	if err := l.ctl.Remove(ctx, dm.Name(name)); err != nil {
		return err
	}
	return l.message(ctx, "delete "+strconv.FormatUint(id, 10))
}

// lifecycle is one cycle of (a) and (d).
func (l *libRunner) lifecycle(ctx context.Context, name string, id uint64) error {
	if err := l.createThin(ctx, name, id); err != nil {
		return err
	}
	return l.destroyThin(ctx, name, id)
}

// snapshot is one op of (b): create_snap with the active origin suspended,
// and resumed whatever happens.
func (l *libRunner) snapshot(ctx context.Context, origin string, originID, id uint64) error {
	msg := "create_snap " + strconv.FormatUint(id, 10) + " " + strconv.FormatUint(originID, 10)
	return l.ctl.WithSuspended(ctx, dm.Name(origin), func() error {
		return l.message(ctx, msg)
	})
}
