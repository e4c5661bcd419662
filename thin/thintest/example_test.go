package thintest_test

import (
	"context"
	"os"
	"testing"

	"github.com/thinp/thinp/thin"
	"github.com/thinp/thinp/thin/thintest"
)

// A privileged test of code that writes to a thin volume: a pool on loop
// devices, a volume, and nothing left behind afterwards.
func Example() {
	var t *testing.T // the test's *testing.T
	ctl := thintest.Control(t)
	pool := thintest.NewPool(t, ctl, &thintest.Options{DataSize: 256 << 20})
	vol := pool.NewVolume(t, "", 1, thin.Size(128*thin.MiB))

	f, err := os.OpenFile(vol.DevPath(), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("data"), 0); err != nil {
		t.Fatal(err)
	}
	if err := vol.Snapshot(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
}
