package thintest_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/loop"
	"github.com/thinp/thinp/thin"
	"github.com/thinp/thinp/thin/thintest"
)

// The fixture makes what it says and removes all of it: after the subtest,
// no dm device of the pool and no loop device over its files.
func TestIntegrationFixture(t *testing.T) {
	ctl := thintest.Control(t)
	var p *thintest.Pool
	var vol *thin.Volume
	t.Run("use", func(t *testing.T) {
		p = thintest.NewPool(t, ctl, &thintest.Options{Edit: func(s *thin.PoolSpec) { s.LowWaterMark = 16 }})
		if p.Spec.LowWaterMark != 16 || p.Spec.Data != p.Data.Dev() || p.Spec.Metadata != p.Meta.Dev() {
			t.Errorf("spec %+v", p.Spec)
		}
		vol = p.NewVolume(t, "", 1, thin.Size(16*thin.MiB))
		if _, err := os.Stat(vol.DevPath()); err != nil {
			t.Error(err)
		}
		// A volume the test deactivates itself is fine at cleanup.
		v2 := p.NewVolume(t, "", 2, thin.Size(16*thin.MiB))
		if err := v2.Deactivate(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	ctx := context.Background()
	for _, name := range []string{p.Name(), vol.Name()} {
		if _, err := ctl.Info(ctx, dm.Name(name)); !errors.Is(err, dm.ErrNotFound) {
			t.Errorf("%s after the subtest: %v", name, err)
		}
	}
	sts, err := loop.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if strings.HasPrefix(st.BackingFile, p.MetaFile) || strings.HasPrefix(st.BackingFile, p.DataFile) {
			t.Errorf("loop device %s over %s after the subtest", st.Path, st.BackingFile)
		}
	}
}
