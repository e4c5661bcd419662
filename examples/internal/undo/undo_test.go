package undo

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRunLastFirstGoesOnAndIgnoresCancel(t *testing.T) {
	var out strings.Builder
	s := New(&out)
	var order []string
	add := func(what string, err error) {
		s.Push(what, func(ctx context.Context) error {
			if ctx.Err() != nil {
				t.Errorf("%s ran with a done context: %v", what, ctx.Err())
			}
			order = append(order, what)
			return err
		})
	}
	boom := errors.New("boom")
	add("a", nil)
	add("b", boom)
	add("c", nil)
	add("not ours", nil)
	s.Pop()
	if s.Len() != 3 {
		t.Fatalf("Len %d after three pushes kept", s.Len())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Run(ctx, time.Minute)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "b: boom") {
		t.Errorf("Run: %v, want b's failure", err)
	}
	if got := strings.Join(order, ","); got != "c,b,a" {
		t.Errorf("ran %s, want c,b,a", got)
	}
	if want := "teardown: c\nteardown: b: FAILED\nteardown: a\n"; out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
	if s.Len() != 0 || s.Run(ctx, time.Minute) != nil {
		t.Error("a second Run found steps")
	}
}
