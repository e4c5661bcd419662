package testenv

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer that goroutines may write and read at once: the
// log of a program under test that another goroutine watches. If OnWrite
// is set, it is called after each write with everything written so far.
type Buffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	OnWrite func(all string)
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	n, err := b.b.Write(p)
	var all string
	if b.OnWrite != nil {
		all = b.b.String()
	}
	b.mu.Unlock()
	if b.OnWrite != nil {
		b.OnWrite(all)
	}
	return n, err
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
