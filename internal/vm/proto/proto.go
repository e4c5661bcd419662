// Package proto is what the host side of the VM test tier and the guest's
// /init agree on: the plan the host packs into the initramfs, and the event
// lines the guest writes on its result port (the second serial port) for
// the host to read.
//
// Event lines look like
//
//	@thinp-vm@ {"e":"test","job":"github.com/thinp/thinp/dm","v":"PASS","name":"TestIntegrationCreate","sec":0.12}
//
// The marker may be preceded by noise on the same line (a kernel message
// that slipped in, a carriage return); everything before it is ignored, as
// are lines without it.
package proto

import (
	"encoding/json"
	"strconv"
	"strings"
)

// PlanPath is where the plan lies in the guest.
const PlanPath = "/thinp/plan.json"

// UdevParam is the kernel command line parameter that tells /init to start
// udevd ("thinp.udev=1"), so both boots share one initramfs.
const UdevParam = "thinp.udev"

// FromParam is the kernel command line parameter that makes /init start
// at job N of the plan ("thinp.from=2"), skipping the ones before: the host
// boots again past a job that crashed the kernel.
const FromParam = "thinp.from"

// ResultPort is the guest device that carries event lines to the host.
const ResultPort = "/dev/ttyS1"

// ControlPort is the guest device that carries control lines from the host
// (the third serial port): event lines of kind CtlSignal.
const ControlPort = "/dev/ttyS2"

// Marker starts every event line.
const Marker = "@thinp-vm@ "

// Plan tells /init what to do.
type Plan struct {
	// Modules are kernel module files to load, in order.
	Modules []Module `json:"modules"`
	// Jobs run one after another.
	Jobs []Job `json:"jobs"`
	// Udevd and Udevadm are the paths of systemd-udevd and udevadm in the
	// guest, empty when the image has none.
	Udevd   string `json:"udevd,omitempty"`
	Udevadm string `json:"udevadm,omitempty"`
	// Env is added to every job's environment ("KEY=value").
	Env []string `json:"env,omitempty"`
	// Heartbeat is the interval, in seconds, of "hb" events.
	Heartbeat int `json:"heartbeat,omitempty"`
}

// Module is one kernel module to load with finit_module.
type Module struct {
	Name string `json:"name"`
	Path string `json:"path"`
	// Compressed asks the kernel to decompress the file
	// (MODULE_INIT_COMPRESSED_FILE, for .ko.xz and .ko.zst).
	Compressed bool `json:"compressed,omitempty"`
	// Optional modules may fail to load.
	Optional bool `json:"optional,omitempty"`
}

// Job kinds.
const (
	// KindTest is a `go test -c` binary whose -test.v=test2json output /init
	// parses for verdicts.
	KindTest = "test"
	// KindRun is any program; only its exit status counts.
	KindRun = "run"
)

// Job is one program the guest runs.
type Job struct {
	// Name identifies the job in events: a package import path, or a
	// program name.
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Path is the binary in the guest.
	Path string `json:"path"`
	// Dir is the working directory (the package's copied source directory,
	// so that testdata/ resolves).
	Dir  string   `json:"dir"`
	Args []string `json:"args,omitempty"`
}

// Event kinds.
const (
	// EvHello: /init started (Text: kernel release; Udev: whether this is
	// the udev boot).
	EvHello = "hello"
	// EvHeartbeat: /init is alive (Sec: since it started; Idle: how long
	// the running job has shown no sign of progress).
	EvHeartbeat = "hb"
	// EvLog: a note from /init (module loaded, udevd started...).
	EvLog = "log"
	// EvError: /init could not do something it needed; the boot fails.
	EvError = "error"
	// EvStart: a job started (Job, Index: its place in the plan).
	EvStart = "start"
	// EvRun: a top-level test started (Job, Name), so that the host knows
	// which test was running if the kernel dies.
	EvRun = "run"
	// EvTest: a test or subtest finished (Verdict, Name, Sec).
	EvTest = "test"
	// EvEnd: a job exited (Code, Sec).
	EvEnd = "end"
	// EvDone: every job ran (Code: 0 when all exited 0); /init powers off next.
	EvDone = "done"
	// EvLeft: a run job exited, and /init looked for the dm and loop
	// devices it left behind (Job; Text: one a line, empty for none).
	EvLeft = "left"
	// EvSignaled: /init delivered a signal the host forwarded to the
	// running job's process group (Job, Code: the signal number; Text:
	// its name).
	EvSignaled = "signaled"
)

// CtlSignal is the one control line the host sends on the control port:
// deliver the signal Code (SIGINT or SIGTERM) to the running job's process
// group, as a terminal's Ctrl-C would.
const CtlSignal = "signal"

// Verdicts of EvTest.
const (
	Pass = "PASS"
	Fail = "FAIL"
	Skip = "SKIP"
)

// Event is one line on the result port. Which fields an event uses depends
// on its kind; the others are zero and left out of the JSON.
type Event struct {
	// E is the kind: EvHello, EvTest, ...
	E string `json:"e"`
	// Job is the job the event is about (a package import path).
	Job string `json:"job,omitempty"`
	// Verdict is Pass, Fail or Skip (EvTest, EvOutput).
	Verdict string `json:"v,omitempty"`
	// Name is a test's full name (EvTest, EvRun, EvOutput).
	Name string `json:"name,omitempty"`
	// Sec is a duration in seconds (EvTest, EvEnd, EvDone, EvHeartbeat).
	Sec float64 `json:"sec,omitempty"`
	// Code is an exit status (EvEnd, EvDone).
	Code int `json:"code,omitempty"`
	// Text is a message or a test's output (EvHello, EvLog, EvError, EvOutput).
	Text string `json:"text,omitempty"`
	// Udev reports the udev boot (EvHello).
	Udev bool `json:"udev,omitempty"`
	// Index is the job's place in the plan (EvStart).
	Index int `json:"index,omitempty"`
	// Idle is how many seconds the running job has gone without output
	// and without using CPU time (EvHeartbeat; 0 between jobs): a job
	// that is stuck, as opposed to one that is quietly working.
	Idle float64 `json:"idle,omitempty"`
}

// Line encodes e as one event line, with its newline.
func (e Event) Line() string {
	b, err := json.Marshal(e)
	if err != nil { // cannot happen: every field marshals
		b = []byte(`{"e":"error","text":"marshal"}`)
	}
	return Marker + string(b) + "\n"
}

// ParseEvent decodes an event line. ok is false for lines that carry no
// event, or whose event does not decode (a line cut by a dying guest).
func ParseEvent(line string) (e Event, ok bool) {
	i := strings.LastIndex(line, Marker)
	if i < 0 {
		return Event{}, false
	}
	rest := strings.TrimRight(line[i+len(Marker):], "\r\n \t")
	if err := json.Unmarshal([]byte(rest), &e); err != nil || e.E == "" {
		return Event{}, false
	}
	return e, true
}

// testFrame is the byte the testing package puts before its own framing
// lines ("=== RUN", "--- PASS: ...") in -test.v=test2json mode, so that a
// test's output cannot be mistaken for them.
const testFrame = '\x16'

// StripFrames removes test2json framing bytes from a line of test output,
// for showing it to people.
func StripFrames(line string) string {
	return strings.ReplaceAll(line, string(testFrame), "")
}

// ParseVerdict recognises a verdict line of `go test -v` output, framed
// (-test.v=test2json) or not:
//
//	--- PASS: TestX (0.01s)
//	    --- SKIP: TestX/sub (0.00s)
//
// It returns the verdict, the test's full name and its duration in seconds.
func ParseVerdict(line string) (verdict, name string, sec float64, ok bool) {
	if i := strings.LastIndexByte(line, testFrame); i >= 0 {
		line = line[i+1:]
	}
	line = strings.TrimRight(strings.TrimLeft(line, " \t"), "\r\n \t")
	rest, found := strings.CutPrefix(line, "--- ")
	if !found {
		return "", "", 0, false
	}
	verdict, rest, found = strings.Cut(rest, ": ")
	if !found || (verdict != Pass && verdict != Fail && verdict != Skip) {
		return "", "", 0, false
	}
	// The name may itself hold " (" once the testing package has
	// rewritten it, so take the duration from the end.
	open := strings.LastIndex(rest, " (")
	if open < 0 || !strings.HasSuffix(rest, "s)") {
		return "", "", 0, false
	}
	sec, err := strconv.ParseFloat(rest[open+2:len(rest)-2], 64)
	if err != nil {
		return "", "", 0, false
	}
	name = rest[:open]
	if name == "" {
		return "", "", 0, false
	}
	return verdict, name, sec, true
}
