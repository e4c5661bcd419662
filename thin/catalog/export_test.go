package catalog

import (
	"context"
	"time"

	"github.com/thinp/thinp/thin"
)

// SetIDSource replaces the reader of the pool's thin ids (the fake kernel
// has no metadata device to read).
func SetIDSource(c *Catalog, f func(context.Context) ([]thin.ThinUsage, error)) { c.ids = f }

// SetIDSourceOption does the same from Open on.
func SetIDSourceOption(f func(context.Context) ([]thin.ThinUsage, error)) Option {
	return func(cfg *config) { cfg.ids = f }
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
func Pending(c *Catalog) bool { return c.pending != nil }

// CompactEvery is the journal's compaction threshold.
const CompactEvery = compactEvery

// SetBeforeEnd installs a function run before each outcome record.
func SetBeforeEnd(c *Catalog, f func()) { c.beforeEnd = f }
