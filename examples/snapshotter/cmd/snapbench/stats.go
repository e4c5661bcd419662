package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sample is what one snapshotter did in one measurement: the time of each
// op, and the time over which the ops ran (the sum of the op times for a
// serial run, the wall time for a parallel one).
type sample struct {
	ops  []time.Duration
	span time.Duration
}

// add records one op of a serial run.
func (s *sample) add(d time.Duration) {
	s.ops = append(s.ops, d)
	s.span += d
}

// rate is ops per second over the span; 0 for an empty sample.
func (s *sample) rate() float64 {
	if len(s.ops) == 0 || s.span <= 0 {
		return 0
	}
	return float64(len(s.ops)) / s.span.Seconds()
}

// percentile returns the p-th percentile (0 < p <= 100) of ds by the
// nearest-rank method: the smallest op time that at least p percent of the
// ops do not exceed. It does not change ds; it is 0 for no ops.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
}

// report prints a measurement's line for each snapshotter and the ratio of
// their rates, and, with a floor sample, the floor's line and the ratio of
// thinp's rate to the floor's:
//
//	bench: snap <name> thinp n=<ops> ops/s=<rate> p50=<ms>ms p99=<ms>ms
//	bench: snap <name> devmapper n=<ops> ops/s=<rate> p50=<ms>ms p99=<ms>ms
//	bench: snap <name> thinp/devmapper = <ratio>x
//	bench: snap <name> floor n=<ops> ops/s=<rate> p50=<ms>ms p99=<ms>ms
//	bench: snap <name> thinp/floor = <ratio>x
//
// res holds thinp's sample, devmapper's, and the floor's if any.
func report(w io.Writer, name string, res ...*sample) {
	line := func(who string, s *sample) {
		fmt.Fprintf(w, "bench: snap %s %s n=%d ops/s=%.1f p50=%s p99=%s\n", name, who,
			len(s.ops), s.rate(), ms(percentile(s.ops, 50)), ms(percentile(s.ops, 99)))
	}
	ratio := func(who string, a, b *sample) {
		r := "n/a"
		if d := b.rate(); d > 0 {
			r = strconv.FormatFloat(a.rate()/d, 'f', 2, 64) + "x"
		}
		fmt.Fprintf(w, "bench: snap %s %s = %s\n", name, who, r)
	}
	line("thinp", res[0])
	line("devmapper", res[1])
	ratio("thinp/devmapper", res[0], res[1])
	if len(res) > 2 {
		line("floor", res[2])
		ratio("thinp/floor", res[0], res[2])
	}
}

// parseCounts parses a comma-separated list of positive counts, in
// ascending order without repeats ("1,8,32").
func parseCounts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want positive integers separated by commas", s)
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("%q: want ascending counts", s)
		}
		out = append(out, n)
	}
	return out, nil
}
