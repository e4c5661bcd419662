package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// rssMeter measures the peak resident set size of the library phases.
// Where the kernel lets a process reset its high-water mark (writing "5" to
// /proc/self/clear_refs, Linux 4.0 and later), reset does so before each
// phase and sample reads VmHWM from /proc/self/status after it; elsewhere
// it falls back to getrusage's ru_maxrss, the peak of the whole process
// life, which the floor's and set-up's memory may then dominate.
type rssMeter struct {
	resettable bool
	peak       int64 // KiB, over the phases since clearPeak
}

func newRSSMeter() rssMeter {
	m := rssMeter{resettable: resetHWM() == nil}
	if m.resettable {
		if _, ok := readHWM(); !ok {
			m.resettable = false
		}
	}
	return m
}

// source says how the peak was measured.
func (m *rssMeter) source() string {
	if m.resettable {
		return "VmHWM (/proc/self/status, reset through /proc/self/clear_refs before each library phase)"
	}
	return "getrusage ru_maxrss (whole process: /proc/self/clear_refs could not reset VmHWM)"
}

// clearPeak starts a new workload's peak.
func (m *rssMeter) clearPeak() { m.peak = 0 }

// reset starts a phase.
func (m *rssMeter) reset() {
	if m.resettable {
		_ = resetHWM()
	}
}

// sample ends a phase.
func (m *rssMeter) sample() {
	var kb int64
	if m.resettable {
		kb, _ = readHWM()
	} else {
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
			kb = int64(ru.Maxrss) // KiB on Linux
		}
	}
	m.peak = max(m.peak, kb)
}

// resetHWM sets VmHWM to the current RSS.
func resetHWM() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// readHWM returns VmHWM in KiB.
func readHWM() (int64, bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb, err == nil
		}
	}
	return 0, false
}
