package main

import (
	"bytes"
	"context"
	"log"
	"strings"
	"testing"

	"github.com/thinp/thinp/thin"
)

func TestNextCheckAndWarnStep(t *testing.T) {
	for _, tc := range []struct {
		pct  float64
		next float64
		warn int
	}{
		{0, 50, 0}, {49.9, 50, 0}, {50, 55, 0}, {54.99, 55, 0}, {55, 60, 0},
		{79.9, 80, 0}, {80, 85, 80}, {84.9, 85, 80}, {85, 90, 85}, {94, 95, 90}, {95, 100, 95}, {99.5, 100, 95}, {100, 105, 95},
	} {
		if got := nextCheck(tc.pct); got != tc.next {
			t.Errorf("nextCheck(%v) = %v, want %v", tc.pct, got, tc.next)
		}
		if got := warnStep(tc.pct); got != tc.warn {
			t.Errorf("warnStep(%v) = %v, want %v", tc.pct, got, tc.warn)
		}
	}
}

// TestUsageState walks one kind of space through dmeventd's steps: no
// action below 50%, then one per 5% step, a count started again after an
// extension, and each warning step once.
func TestUsageState(t *testing.T) {
	var s usageState
	type step struct {
		pct    float64
		act    bool
		warn   int
		growTo float64 // after acting: the usage the extension left; 0: none
	}
	for i, st := range []step{
		{10, false, 0, 0},
		{49, false, 0, 0},
		{50, true, 0, 30}, // grew: 30% used now
		{45, false, 0, 0},
		{50, true, 0, 0}, // at -max: did not grow, next at 55
		{53, false, 0, 0},
		{55, true, 0, 0},
		{81, true, 80, 0},
		{82, false, 0, 0},
		{86, true, 85, 0},
		{96, true, 95, 0},
		{97, false, 0, 0},
		{40, false, 0, 0}, // fell (discards): warnings and steps start again
		{50, true, 0, 0},
		{80, true, 80, 0},
	} {
		act, warn := s.observe(st.pct)
		if act != st.act || warn != st.warn {
			t.Errorf("step %d (%v%%): act %t warn %d, want %t %d (state %+v)", i, st.pct, act, warn, st.act, st.warn, s)
		}
		if act {
			after := st.pct
			if st.growTo != 0 {
				after = st.growTo
			}
			s.acted(after)
		}
	}
}

// TestPolicyMetadata: the dmeventd policy warns about metadata as about
// data, and without -meta-file says once that it cannot grow it; data
// below 50% is left alone.
func TestPolicyMetadata(t *testing.T) {
	var buf bytes.Buffer
	d := &daemon{cfg: config{pool: "p", policy: policyDmeventd}, log: log.New(&buf, "", 0)}
	st := thin.PoolStatus{Mode: thin.ModeReadWrite, UsedData: 10, TotalData: 100, UsedMeta: 85, TotalMeta: 100}
	for range 2 {
		if retry := d.policy(context.Background(), st, thin.PoolSpec{}); retry {
			t.Error("retry")
		}
	}
	st.UsedMeta = 91
	d.policy(context.Background(), st, thin.PoolSpec{})
	want := "warning: pool p metadata is now 85.00% full (85 of 100 blocks used)\n" +
		"pool p metadata is 85.00% full, but without -meta-file autoextend does not grow it\n" +
		"warning: pool p metadata is now 91.00% full (91 of 100 blocks used)\n"
	if buf.String() != want {
		t.Errorf("log:\n%s\nwant:\n%s", buf.String(), want)
	}
	if strings.Contains(buf.String(), "pool p data") || strings.Contains(buf.String(), "extended") {
		t.Error("data at 10% was acted on")
	}
}

func TestDemoFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-demo"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.step != demoStep || cfg.max != demoMax || cfg.interval != demoInterval || cfg.demoData != demoData || cfg.demoWrite != demoWrite || cfg.policy != policyLWM || cfg.threshold.set {
		t.Errorf("-demo: %+v", cfg)
	}
	cfg, err = parseFlags([]string{"-demo", "-policy", "dmeventd", "-step", "8MiB"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.step != 8<<20 || !cfg.threshold.set || cfg.threshold.text != "50%" {
		t.Errorf("-demo -policy dmeventd -step 8MiB: %+v", cfg)
	}
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"-demo", "-pool", "x"}, "-demo makes its own pool"},
		{[]string{"-demo", "-demo-write", "64MiB"}, "does not fit in -max 64MiB"},
		{[]string{"-demo", "-max", "8MiB"}, "below the demo pool's 16MiB"},
		{[]string{"-demo", "-name", "a/b"}, "-name"},
		{[]string{"-demo", "-policy", "lvm"}, `-policy "lvm"`},
		{[]string{"-pool", "p", "-data-file", "f", "-meta-file", "m"}, "only -policy dmeventd"},
		{[]string{"-demo", "-interval", "0s"}, "-interval"},
	} {
		if _, err := parseFlags(tc.args, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: %v, want an error with %q", tc.args, err, tc.err)
		}
	}
}
