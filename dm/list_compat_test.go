package dm_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/dm/dmtest"
	"github.com/thinp/thinp/ioctl"
)

// TestListOnOldKernels: below dm interface 4.45 the kernel neither filters
// DM_LIST_DEVICES by prefix nor reports uuids (and below 4.37 no event
// counters); List gives the same answer on every version.
func TestListOnOldKernels(t *testing.T) {
	ctx := context.Background()
	var want map[string][]dm.Device
	for _, v := range []ioctl.Version{dmtest.DefaultVersion, {4, 45, 0}, {4, 43, 0}, {4, 37, 0}, {4, 36, 0}, {4, 20, 0}} {
		t.Run(v.String(), func(t *testing.T) {
			k := dmtest.New(dmtest.WithVersion(v))
			ctl, err := dm.Open(dm.WithTransport(k), dm.WithRemoveRetry(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer ctl.Close()
			for i, n := range []string{"a-one", "a-two", "b-three", "a-four"} {
				var opts []dm.CreateOption
				if i != 1 {
					opts = append(opts, dm.WithUUID(fmt.Sprintf("U-%d-%s", i%2, n)))
				}
				if _, err := ctl.Create(ctx, n, dm.Table{{Length: 8, Type: "zero"}}, opts...); err != nil {
					t.Fatal(err)
				}
			}
			// Move one event counter so the lists differ from zero.
			if _, err := ctl.Message(ctx, dm.Name("a-four"), 0, "x"); err == nil {
				t.Log("zero target took a message")
			}
			got := map[string][]dm.Device{}
			for name, opts := range map[string][]dm.ListOption{
				"all":         nil,
				"name a-":     {dm.WithNamePrefix("a-")},
				"uuid U-0":    {dm.WithUUIDPrefix("U-0")},
				"name+uuid":   {dm.WithNamePrefix("a-"), dm.WithUUIDPrefix("U-0-a")},
				"no match":    {dm.WithNamePrefix("zz")},
				"uuid U-":     {dm.WithUUIDPrefix("U-")},
				"name exact":  {dm.WithNamePrefix("b-three")},
				"name longer": {dm.WithNamePrefix("b-three-")},
			} {
				devs, err := ctl.List(ctx, opts...)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				for _, d := range devs {
					info, err := ctl.Info(ctx, dm.Name(d.Name))
					if err != nil {
						t.Fatal(err)
					}
					if d.Dev != info.Dev || d.UUID != info.UUID || !d.HasEventNr || d.EventNr != info.EventNr {
						t.Errorf("%s: entry %+v, info %+v", name, d, info)
					}
				}
				got[name] = devs
			}
			if want == nil {
				want = got
				if n := len(got["name a-"]); n != 3 {
					t.Errorf("name prefix a-: %d devices, want 3", n)
				}
				if n := len(got["uuid U-0"]); n != 2 {
					t.Errorf("uuid prefix U-0: %d devices, want 2", n)
				}
				if n := len(got["name+uuid"]); n != 1 {
					t.Errorf("both prefixes: %d devices, want 1", n)
				}
				return
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("List on %s differs from %s (-newest +this):\n%s", v, dmtest.DefaultVersion, d)
			}
		})
	}
}
