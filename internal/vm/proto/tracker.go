package proto

import (
	"fmt"
	"strings"
)

// EvOutput carries the output of a top-level test that failed or skipped
// (Name, Verdict, Text), so the host can show it next to the verdict.
const EvOutput = "output"

// maxOutput bounds the output kept per test; the end is kept.
const maxOutput = 32 << 10

// Tracker follows the -test.v=test2json output of one test binary, line by
// line, and turns it into events: the start of each top-level test, a
// verdict for every test and subtest, the
// output of each top-level test that failed or skipped, and, when the
// binary exits non-zero, failures for tests that never got a verdict (a
// timeout or a panic) so that no failure goes uncounted.
type Tracker struct {
	job     string
	cur     string                      // top-level test the output belongs to
	out     map[string]*strings.Builder // top-level test -> its output
	started []string                    // top-level tests in the order they started
	ended   map[string]bool
	failed  bool
}

// NewTracker returns a Tracker for the job named job.
func NewTracker(job string) *Tracker {
	return &Tracker{job: job, out: map[string]*strings.Builder{}, ended: map[string]bool{}}
}

// topLevel is the top-level test of a test or subtest name.
func topLevel(name string) string {
	top, _, _ := strings.Cut(name, "/")
	return top
}

// ParseFrame recognises the testing package's framing lines
// ("=== RUN   TestX/sub", "=== PAUSE", "=== CONT", "=== NAME  TestX"),
// framed for test2json or not, returning the action and the test's name
// (empty for "=== NAME" lines that switch back to no test).
func ParseFrame(line string) (action, name string, ok bool) {
	if i := strings.LastIndexByte(line, testFrame); i >= 0 {
		line = line[i+1:]
	}
	rest, found := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "=== ")
	if !found {
		return "", "", false
	}
	action, name, _ = strings.Cut(rest, " ")
	switch action {
	case "RUN", "PAUSE", "CONT", "NAME":
		return action, strings.TrimSpace(name), true
	}
	return "", "", false
}

// Line consumes one line of output (with or without its newline) and
// returns the events it gives rise to.
func (tr *Tracker) Line(line string) []Event {
	if action, name, ok := ParseFrame(line); ok {
		top := topLevel(name)
		var evs []Event
		if action == "RUN" && name == top && tr.out[top] == nil {
			tr.started = append(tr.started, top)
			evs = append(evs, Event{E: EvRun, Job: tr.job, Name: top})
		}
		tr.cur = top
		tr.buffer(top).WriteString(StripFrames(line))
		return evs
	}
	verdict, name, sec, ok := ParseVerdict(line)
	if !ok {
		tr.buffer(tr.cur).WriteString(StripFrames(line))
		return nil
	}
	top := topLevel(name)
	b := tr.buffer(top)
	b.WriteString(StripFrames(line))
	evs := []Event{{E: EvTest, Job: tr.job, Verdict: verdict, Name: name, Sec: sec}}
	if verdict == Fail {
		tr.failed = true
	}
	if name == top {
		tr.ended[top] = true
		if verdict != Pass {
			evs = append(evs, Event{E: EvOutput, Job: tr.job, Verdict: verdict, Name: top, Text: tail(b.String())})
		}
		delete(tr.out, top)
	}
	return evs
}

// End returns the events owed when the binary exited with code: a failure
// with its output for every top-level test that started and got no
// verdict, or, when nothing failed at all, one failure for the exit
// status itself.
func (tr *Tracker) End(code int) []Event {
	if code == 0 {
		return nil
	}
	var evs []Event
	for _, top := range tr.started {
		if tr.ended[top] {
			continue
		}
		tr.ended[top] = true
		text := ""
		if b := tr.out[top]; b != nil {
			text = b.String()
		}
		evs = append(evs,
			Event{E: EvTest, Job: tr.job, Verdict: Fail, Name: top},
			Event{E: EvOutput, Job: tr.job, Verdict: Fail, Name: top, Text: tail(text)})
		tr.failed = true
	}
	if !tr.failed {
		name := fmt.Sprintf("[exit status %d]", code)
		text := ""
		if b := tr.out[""]; b != nil {
			text = b.String()
		}
		evs = append(evs,
			Event{E: EvTest, Job: tr.job, Verdict: Fail, Name: name},
			Event{E: EvOutput, Job: tr.job, Verdict: Fail, Name: name, Text: tail(text)})
		tr.failed = true
	}
	return evs
}

func (tr *Tracker) buffer(top string) *strings.Builder {
	b := tr.out[top]
	if b == nil {
		b = &strings.Builder{}
		tr.out[top] = b
	}
	if b.Len() > 2*maxOutput {
		s := tail(b.String())
		b.Reset()
		b.WriteString(s)
	}
	return b
}

// tail keeps the last maxOutput bytes of s.
func tail(s string) string {
	if len(s) <= maxOutput {
		return s
	}
	return "[...]\n" + s[len(s)-maxOutput:]
}
