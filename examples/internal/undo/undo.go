// Package undo is the teardown of the example programs: each thing a
// program makes pushes the step that takes it away, and Run takes them
// away last first, printing each, going on after a failure.
package undo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Stack holds the teardown steps. The zero value is empty and prints
// nothing; New gives one that prints.
type Stack struct {
	steps []step
	out   io.Writer
}

type step struct {
	what string // "remove device x", printed once done
	fn   func(ctx context.Context) error
}

// New returns an empty Stack that prints "teardown: WHAT" on out for each
// step run (with ": FAILED" after a failed one).
func New(out io.Writer) *Stack { return &Stack{out: out} }

// Push adds the step that undoes what was just made.
func (s *Stack) Push(what string, fn func(context.Context) error) {
	s.steps = append(s.steps, step{what: what, fn: fn})
}

// Pop drops the last step, for a creation that turned out not to be the
// program's to undo.
func (s *Stack) Pop() { s.steps = s.steps[:len(s.steps)-1] }

// Len is the number of steps waiting.
func (s *Stack) Len() int { return len(s.steps) }

// Run runs the steps, last first, goes on after a failure, and returns
// every failure joined; the stack is empty afterwards. It ignores ctx's
// cancellation (a Ctrl-C must not stop the cleanup it asked for) and
// gives the whole teardown at most timeout.
func (s *Stack) Run(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	var errs []error
	for i := len(s.steps) - 1; i >= 0; i-- {
		st := s.steps[i]
		err := st.fn(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", st.what, err))
		}
		if s.out != nil {
			if err != nil {
				fmt.Fprintf(s.out, "teardown: %s: FAILED\n", st.what)
			} else {
				fmt.Fprintf(s.out, "teardown: %s\n", st.what)
			}
		}
	}
	s.steps = nil
	return errors.Join(errs...)
}
