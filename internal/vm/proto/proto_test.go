package proto

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEventRoundTrip(t *testing.T) {
	for _, e := range []Event{
		{E: EvHello, Text: "6.1.0-56-amd64", Udev: true},
		{E: EvTest, Job: "github.com/thinp/thinp/dm", Verdict: Fail, Name: "TestIntegrationX/sub_with \"quotes\" and\ttab", Sec: 1.25},
		{E: EvOutput, Job: "j", Name: "TestY", Text: "line 1\nline 2\n\x16--- FAIL\n"},
		{E: EvDone, Code: 3},
	} {
		line := e.Line()
		if !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 {
			t.Errorf("Line(%+v) = %q: want exactly one newline, at the end", e, line)
		}
		got, ok := ParseEvent(line)
		if !ok {
			t.Errorf("ParseEvent(%q): not ok", line)
			continue
		}
		if diff := cmp.Diff(e, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestParseEventNoise(t *testing.T) {
	line := Event{E: EvEnd, Job: "p", Code: 2}.Line()
	for _, noisy := range []string{
		"\r" + line,
		"[   12.345] dm: some kernel chatter" + line,
		strings.TrimSuffix(line, "\n") + "\r\n",
		"junk" + Marker + "{broken" + line, // the last marker wins
	} {
		e, ok := ParseEvent(noisy)
		if !ok || e.E != EvEnd || e.Code != 2 {
			t.Errorf("ParseEvent(%q) = %+v, %v", noisy, e, ok)
		}
	}
	for _, bad := range []string{
		"",
		"--- PASS: TestX (0.00s)",
		Marker,
		Marker + "{}",                     // no kind
		Marker + `{"e":"test","code":"x"`, // cut short
		Marker + "not json",
	} {
		if e, ok := ParseEvent(bad); ok {
			t.Errorf("ParseEvent(%q) = %+v, want not ok", bad, e)
		}
	}
}

func TestParseVerdict(t *testing.T) {
	for _, c := range []struct {
		line          string
		verdict, name string
		sec           float64
		ok            bool
	}{
		{"--- PASS: TestX (0.01s)\n", Pass, "TestX", 0.01, true},
		{"\x16--- FAIL: TestX (12.50s)\n", Fail, "TestX", 12.5, true},
		{"    --- SKIP: TestX/sub_case (0.00s)", Skip, "TestX/sub_case", 0, true},
		{"some output without newline\x16--- PASS: TestY (1.00s)\n", Pass, "TestY", 1, true},
		{"--- PASS: TestX/name_(with)_parens (0.20s)\r\n", Pass, "TestX/name_(with)_parens", 0.2, true},
		{"--- BENCH: BenchmarkX", "", "", 0, false},
		{"--- PASS: TestX", "", "", 0, false},
		{"--- PASS: TestX (fast)", "", "", 0, false},
		{"--- PASS:  (0.00s)", "", "", 0, false},
		{"=== RUN   TestX", "", "", 0, false},
		{"PASS", "", "", 0, false},
		{"ok  \tpkg\t0.1s", "", "", 0, false},
	} {
		v, name, sec, ok := ParseVerdict(c.line)
		if v != c.verdict || name != c.name || sec != c.sec || ok != c.ok {
			t.Errorf("ParseVerdict(%q) = %q, %q, %v, %v; want %q, %q, %v, %v",
				c.line, v, name, sec, ok, c.verdict, c.name, c.sec, c.ok)
		}
	}
}

func TestParseFrame(t *testing.T) {
	for _, c := range []struct {
		line, action, name string
		ok                 bool
	}{
		{"\x16=== RUN   TestX/sub\n", "RUN", "TestX/sub", true},
		{"=== PAUSE TestX", "PAUSE", "TestX", true},
		{"=== CONT  TestX\n", "CONT", "TestX", true},
		{"\x16=== NAME  \n", "NAME", "", true},
		{"=== BOGUS TestX", "", "", false},
		{"    logs: === RUN", "", "", false},
	} {
		a, n, ok := ParseFrame(c.line)
		if a != c.action || n != c.name || ok != c.ok {
			t.Errorf("ParseFrame(%q) = %q, %q, %v", c.line, a, n, ok)
		}
	}
}

// feed runs lines through a Tracker and collects the events.
func feed(tr *Tracker, out string) []Event {
	var evs []Event
	for _, l := range strings.SplitAfter(out, "\n") {
		if l != "" {
			evs = append(evs, tr.Line(l)...)
		}
	}
	return evs
}

func TestTracker(t *testing.T) {
	out := "\x16=== RUN   TestA\n" +
		"    a_test.go:1: hello from A\n" +
		"\x16=== RUN   TestA/sub\n" +
		"\x16    --- PASS: TestA/sub (0.00s)\n" +
		"\x16--- PASS: TestA (0.10s)\n" +
		"\x16=== RUN   TestB\n" +
		"    b_test.go:2: B is broken\n" +
		"\x16--- FAIL: TestB (0.20s)\n" +
		"\x16=== RUN   TestC\n" +
		"    c_test.go:3: needs something\n" +
		"\x16--- SKIP: TestC (0.00s)\n" +
		"\x16=== RUN   TestD\n" +
		"    d_test.go:4: about to hang\n" +
		"panic: test timed out after 1m0s\n"
	tr := NewTracker("pkg")
	got := append(feed(tr, out), tr.End(2)...)
	want := []Event{
		{E: EvRun, Job: "pkg", Name: "TestA"},
		{E: EvTest, Job: "pkg", Verdict: Pass, Name: "TestA/sub"},
		{E: EvTest, Job: "pkg", Verdict: Pass, Name: "TestA", Sec: 0.1},
		{E: EvRun, Job: "pkg", Name: "TestB"},
		{E: EvTest, Job: "pkg", Verdict: Fail, Name: "TestB", Sec: 0.2},
		{E: EvOutput, Job: "pkg", Verdict: Fail, Name: "TestB",
			Text: "=== RUN   TestB\n    b_test.go:2: B is broken\n--- FAIL: TestB (0.20s)\n"},
		{E: EvRun, Job: "pkg", Name: "TestC"},
		{E: EvTest, Job: "pkg", Verdict: Skip, Name: "TestC"},
		{E: EvOutput, Job: "pkg", Verdict: Skip, Name: "TestC",
			Text: "=== RUN   TestC\n    c_test.go:3: needs something\n--- SKIP: TestC (0.00s)\n"},
		{E: EvRun, Job: "pkg", Name: "TestD"},
		// TestD never got a verdict: the exit makes it a failure.
		{E: EvTest, Job: "pkg", Verdict: Fail, Name: "TestD"},
		{E: EvOutput, Job: "pkg", Verdict: Fail, Name: "TestD",
			Text: "=== RUN   TestD\n    d_test.go:4: about to hang\npanic: test timed out after 1m0s\n"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestTrackerExitWithoutTests(t *testing.T) {
	tr := NewTracker("pkg")
	got := append(feed(tr, "panic in init\n"), tr.End(2)...)
	want := []Event{
		{E: EvTest, Job: "pkg", Verdict: Fail, Name: "[exit status 2]"},
		{E: EvOutput, Job: "pkg", Verdict: Fail, Name: "[exit status 2]", Text: "panic in init\n"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	// A failing binary whose failures were all reported owes nothing more.
	tr = NewTracker("pkg")
	feed(tr, "=== RUN   TestX\n--- FAIL: TestX (0.00s)\nFAIL\n")
	if evs := tr.End(1); len(evs) != 0 {
		t.Errorf("End after reported failure: %+v", evs)
	}
	if evs := NewTracker("pkg").End(0); len(evs) != 0 {
		t.Errorf("End(0): %+v", evs)
	}
}

func TestTrackerKeepsTail(t *testing.T) {
	tr := NewTracker("pkg")
	tr.Line("=== RUN   TestBig\n")
	big := strings.Repeat("x", 1000) + "\n"
	for i := 0; i < 200; i++ {
		tr.Line(big)
	}
	evs := tr.Line("--- FAIL: TestBig (1.00s)\n")
	if len(evs) != 2 || len(evs[1].Text) > maxOutput+10 || !strings.HasSuffix(evs[1].Text, "--- FAIL: TestBig (1.00s)\n") {
		t.Errorf("output of %d bytes, events %d", len(evs[len(evs)-1].Text), len(evs))
	}
}
