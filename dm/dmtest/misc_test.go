package dmtest

import (
	"testing"

	"github.com/thinp/thinp/ioctl"
)

func TestOptions(t *testing.T) {
	f := newFixture(t, WithMajor(254), WithTargets(
		ioctl.TargetVersion{Name: "crypt", Version: ioctl.Version{1, 23, 0}},
		ioctl.TargetVersion{Name: "linear", Version: ioctl.Version{1, 4, 0}},
	))
	if h := f.create("base"); h.Dev != (ioctl.Dev{Major: 254, Minor: 0}.Encode()) {
		t.Errorf("dev %#x", h.Dev)
	}
	f.mustLoad("base", linear(0, 8, "7:2 0"))
	f.mustResume("base")
	// An unknown type is opaque: accepted, echoed, no status.
	f.activate("enc", ioctl.TargetSpec{Length: 8, Type: "crypt", Params: "aes-xts-plain64  key 0 254:0 0"})
	if got := f.line("enc", ioctl.FlagStatusTable); got != "aes-xts-plain64  key 0 254:0 0" {
		t.Errorf("opaque table %q", got)
	}
	if got := f.line("enc", 0); got != "" {
		t.Errorf("opaque status %q", got)
	}
	f.create("z")
	wantErrno(t, "unregistered zero", f.load("z", ioctl.TargetSpec{Length: 8, Type: "zero"}), 22)
	if err := f.k.AddBlockDevice(ioctl.Dev{Major: 254, Minor: 9}, 8); err == nil {
		t.Error("AddBlockDevice on the dm major")
	}
	if err := f.k.ResizeBlockDevice(ioctl.Dev{Major: 7, Minor: 99}, 8); errnoOf(err) != 6 {
		t.Errorf("resize missing: %v", err)
	}
}

func TestPoolModeString(t *testing.T) {
	for m, s := range map[PoolMode]string{PoolWrite: "rw", PoolOutOfDataSpace: "out_of_data_space",
		PoolOutOfMetadataSpace: "out_of_metadata_space", PoolReadOnly: "ro", PoolFail: "Fail", 9: "PoolMode(9)"} {
		if m.String() != s {
			t.Errorf("%d: %q", int(m), m.String())
		}
	}
}

func TestSplitArgs(t *testing.T) {
	for in, want := range map[string][]string{
		"":                nil,
		"  a  b\tc\n":     {"a", "b", "c"},
		`a\ b c\\d`:       {"a b", `c\d`},
		`trailing\`:       {`trailing\`},
		"nbsp\xa0split":   {"nbsp", "split"},
		"create_thin   1": {"create_thin", "1"},
	} {
		got := splitArgs(in)
		if len(got) != len(want) {
			t.Errorf("%q: %q", in, got)
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%q: %q", in, got)
			}
		}
	}
}
