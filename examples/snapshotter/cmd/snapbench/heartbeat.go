package main

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// phase names what the run is doing, for the heartbeat.
var phase atomic.Pointer[string]

// setPhase records what the run does now.
func setPhase(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	phase.Store(&s)
}

// heartbeat writes a line naming the current phase to w every period
// until stop is closed. Under TCG a devmapper phase runs for minutes
// without a result line; the note shows it is alive (the VM tier kills a
// guest that stays silent while its program's process group, which the
// child left, uses no CPU).
func heartbeat(w io.Writer, period time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(period)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			what := "starting"
			if p := phase.Load(); p != nil {
				what = *p
			}
			fmt.Fprintf(w, "snapbench: %s (%v in)\n", what, time.Since(start).Round(time.Second))
		}
	}
}
