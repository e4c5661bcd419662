package catalog

import (
	"context"
	"slices"
	"time"

	"github.com/thinp/thinp/thin"
)

// SetMetadataOption replaces the reader of the pool's metadata from Open
// on (the fake kernel has no metadata device to read): usage lists the
// pool's thin devices, and the details of a few are taken from it.
func SetMetadataOption(usage func(context.Context) ([]thin.ThinUsage, error)) Option {
	return func(cfg *config) {
		cfg.meta.usage = usage
		cfg.meta.details = func(ctx context.Context, ids ...thin.DeviceID) ([]thin.ThinDetails, error) {
			us, err := usage(ctx)
			if err != nil {
				return nil, err
			}
			var out []thin.ThinDetails
			for _, u := range us {
				if len(ids) == 0 || slices.Contains(ids, u.ID) {
					out = append(out, u.ThinDetails)
				}
			}
			return out, nil
		}
	}
}

// WithClock fixes the catalog's clock.
func WithClock(now func() time.Time) Option { return func(cfg *config) { cfg.now = now } }

// Abandon drops c as a crashed process would: its files are closed, and
// nothing more is written.
func Abandon(c *Catalog) {
	c.j.f.Close()
	c.lock.Close()
	c.closed = true
}

// Pending reports whether an operation is unsettled.
func Pending(c *Catalog) bool { return len(c.open) > 0 }

// CompactEvery is the journal's compaction threshold.
const CompactEvery = compactEvery

// SetBeforeEnd installs a function run before each outcome record.
func SetBeforeEnd(c *Catalog, f func()) { c.beforeEnd = f }

// Queued is how many creations wait for a pool transaction.
func Queued(c *Catalog) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}
