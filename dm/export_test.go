package dm

import "context"

// stuckUdev is a udevSync whose waits always time out, as when udevd stops
// answering after the Control decided to synchronise.
type stuckUdev struct{ waits int }

func (s *stuckUdev) begin() (uint32, udevWait, error) { return 0x0d4d0001, s, nil }
func (s *stuckUdev) end(ctx context.Context, generated bool) error {
	s.waits++
	return context.DeadlineExceeded
}
func (s *stuckUdev) abort() {}

// StickUdev makes every udev wait of c time out from now on, for external
// tests; the function it returns counts the waits so far.
func StickUdev(c *Control) func() int {
	s := &stuckUdev{}
	c.udev = s
	return func() int { return s.waits }
}
