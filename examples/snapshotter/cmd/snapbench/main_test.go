package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		// 100 down to 1 ms: unsorted input.
		hundred[i] = time.Duration(100-i) * time.Millisecond
	}
	for _, c := range []struct {
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(3, 1, 2), 50, 2 * time.Millisecond},
		{ms(4, 1, 3, 2), 50, 2 * time.Millisecond}, // nearest rank: the 2nd of 4
		{ms(4, 1, 3, 2), 99, 4 * time.Millisecond},
		{hundred, 50, 50 * time.Millisecond},
		{hundred, 99, 99 * time.Millisecond},
		{hundred, 100, 100 * time.Millisecond},
		{hundred, 1, 1 * time.Millisecond},
		{ms(5, 1000), 99, 1000 * time.Millisecond}, // a slow op shows in p99
	} {
		in := slices.Clone(c.ds)
		if got := percentile(c.ds, c.p); got != c.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", c.ds, c.p, got, c.want)
		}
		if !slices.Equal(in, c.ds) {
			t.Errorf("percentile changed its input: %v, was %v", c.ds, in)
		}
	}
}

func TestRate(t *testing.T) {
	var s sample
	if s.rate() != 0 {
		t.Errorf("rate of no ops = %v, want 0", s.rate())
	}
	s.add(100 * time.Millisecond)
	s.add(300 * time.Millisecond)
	if got := s.rate(); got != 5 {
		t.Errorf("2 ops in 400ms: rate %v, want 5", got)
	}
	// A parallel batch: the rate is over its wall time, not the op sum.
	p := sample{ops: []time.Duration{time.Second, time.Second, time.Second, time.Second}, span: time.Second}
	if got := p.rate(); got != 4 {
		t.Errorf("4 overlapping ops in 1s: rate %v, want 4", got)
	}
}

func TestReport(t *testing.T) {
	thinp := &sample{}
	dev := &sample{}
	for range 10 {
		thinp.add(2 * time.Millisecond)
		dev.add(250 * time.Millisecond)
	}
	var out bytes.Buffer
	report(&out, "prepare", thinp, dev)
	want := "bench: snap prepare thinp n=10 ops/s=500.0 p50=2.00ms p99=2.00ms\n" +
		"bench: snap prepare devmapper n=10 ops/s=4.0 p50=250.00ms p99=250.00ms\n" +
		"bench: snap prepare thinp/devmapper = 125.00x\n"
	if out.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", out.String(), want)
	}
	line := regexp.MustCompile(`^bench: snap \S+ (thinp|devmapper) n=\d+ ops/s=[0-9.]+ p50=[0-9.]+ms p99=[0-9.]+ms$|^bench: snap \S+ thinp/devmapper = ([0-9.]+x|n/a)$`)
	out.Reset()
	report(&out, "start-g8", &sample{}, &sample{})
	for l := range strings.Lines(out.String()) {
		if !line.MatchString(strings.TrimSuffix(l, "\n")) {
			t.Errorf("line %q is not in the bench: format", l)
		}
	}
	if !strings.Contains(out.String(), "= n/a") {
		t.Errorf("a devmapper rate of 0 gives %q, want a ratio of n/a", out.String())
	}

	floor := &sample{}
	for range 10 {
		floor.add(time.Millisecond)
	}
	out.Reset()
	report(&out, "start-g8", thinp, dev, floor)
	want += "bench: snap prepare floor n=10 ops/s=1000.0 p50=1.00ms p99=1.00ms\n" +
		"bench: snap prepare thinp/floor = 0.50x\n"
	if got := strings.ReplaceAll(out.String(), "start-g8", "prepare"); got != want {
		t.Errorf("report with a floor:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseCounts(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
	}{
		{"1,8,32", []int{1, 8, 32}},
		{"4", []int{4}},
		{" 1, 2 ", []int{1, 2}},
	} {
		got, err := parseCounts(c.in)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("parseCounts(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "8,1", "1,1", "a", "1,,2"} {
		if got, err := parseCounts(bad); err == nil {
			t.Errorf("parseCounts(%q) = %v, want an error", bad, got)
		}
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.N != 20 || cfg.Containers != 100 || !slices.Equal(cfg.Goroutines, []int{1, 8, 32}) ||
		cfg.BaseSize != "64MiB" || cfg.DataSize != 2<<30 || cfg.MetaSize != 64<<20 {
		t.Errorf("defaults: %+v", cfg)
	}
	if !regexp.MustCompile(`^snapbench-[0-9a-f]{6}-$`).MatchString(cfg.Prefix) {
		t.Errorf("default prefix %q, want snapbench-<6 hex digits>-", cfg.Prefix)
	}
	cfg, err = parseFlags([]string{"-n", "5", "-containers", "10", "-goroutines", "2,4",
		"-base-image-size", "128MiB", "-data-size", "1024", "-metadata-size", "16", "-prefix", "x-"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.N != 5 || cfg.Containers != 10 || !slices.Equal(cfg.Goroutines, []int{2, 4}) ||
		cfg.BaseSize != "128MiB" || cfg.DataSize != 1<<30 || cfg.MetaSize != 16<<20 || cfg.Prefix != "x-" {
		t.Errorf("flags: %+v", cfg)
	}
	for _, bad := range [][]string{
		{"-n", "0"}, {"-containers", "0"}, {"-goroutines", "8,1"}, {"-data-size", "1"}, {"extra"}, {"-nosuch"},
	} {
		var msg bytes.Buffer
		if _, err := parseFlags(bad, &msg); err == nil || msg.Len() == 0 {
			t.Errorf("parseFlags(%q) = %v with message %q, want an error and a message", bad, err, msg.String())
		}
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestHeartbeat(t *testing.T) {
	var out syncBuffer
	stop := make(chan struct{})
	done := make(chan struct{})
	setPhase("start-g%d %s", 8, "devmapper")
	go func() { heartbeat(&out, time.Millisecond, stop); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "snapbench: start-g8 devmapper (") && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	<-done
	if !strings.Contains(out.String(), "snapbench: start-g8 devmapper (") {
		t.Fatalf("heartbeat wrote %q, want the phase", out.String())
	}
	n := len(out.String())
	time.Sleep(20 * time.Millisecond)
	if len(out.String()) != n {
		t.Error("heartbeat wrote after stop")
	}
}
