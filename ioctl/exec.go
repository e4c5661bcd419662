package ioctl

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
)

// Transport performs one ioctl: request number req on the buffer b, which
// holds a dm_ioctl header and its payload, in and out. It returns the
// kernel's errno (a unix.Errno) on failure, and ErrNoReply when the ioctl
// returned a positive value, which the kernel does without copying a reply
// back. This is the seam behind which tests put a fake kernel.
type Transport interface {
	Ioctl(req uint, b []byte) error
}

// Error is a failed control command: the command and the errno the kernel
// returned. The kernel copies nothing back on failure except, for a version
// mismatch, its own interface version, kept in Kernel.
type Error struct {
	Cmd    Cmd
	Err    error   // usually a unix.Errno
	Kernel Version // the kernel's version if it wrote it back, else zero
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %v", e.Cmd, e.Err) }

// Unwrap returns the errno.
func (e *Error) Unwrap() error { return e.Err }

// ErrNoReply: the ioctl "succeeded" with a positive return value and the
// kernel copied nothing back. DM_TARGET_MSG does this (returns 2) when the
// device has no live table, so no target took the message; libdevmapper
// mistakes it for success.
var ErrNoReply = errors.New("ioctl: the kernel returned no reply (a message to a device without a live table?)")

// Default buffer sizes: libdevmapper starts at 16 KiB and doubles on
// DM_BUFFER_FULL_FLAG, up to 1 GiB.
const (
	DefaultBufferSize = 16 << 10
	DefaultMaxBuffer  = 1 << 30
)

// Conn issues requests through a Transport, reusing buffers and growing them
// when the kernel reports DM_BUFFER_FULL_FLAG. It is safe for concurrent use
// if the Transport is.
type Conn struct {
	T Transport
	// MaxBuffer caps buffer growth; zero means DefaultMaxBuffer.
	MaxBuffer int

	mu        sync.Mutex
	pool      [][]byte // free buffers of DefaultBufferSize or more
	hintSizes [NumCmds]int
}

// Do packs r, issues it and calls fn with the reply header and the reply
// buffer (valid only during fn). Commands that return data start with a
// 16 KiB buffer (or the size that last sufficed for the same command) and
// double it while the kernel sets DM_BUFFER_FULL_FLAG, up to MaxBuffer.
func (c *Conn) Do(r *Request, fn func(h *Header, b []byte) error) error {
	size := r.Size()
	returns := r.Cmd.ReturnsData()
	if returns {
		c.mu.Lock()
		hint := c.hintSizes[r.Cmd]
		c.mu.Unlock()
		size = max(size, DefaultBufferSize, hint)
	}
	limit := c.MaxBuffer
	if limit <= 0 {
		limit = DefaultMaxBuffer
	}
	// The version actually sent, as MarshalTo fills it in: a kernel that
	// rejects it writes its own version over it.
	sent := r.Header.Version
	if sent == (Version{}) {
		sent = r.Cmd.MinVersion()
	}
	secure := r.Header.Flags&FlagSecureData != 0
	for {
		buf := c.getBuf(size)
		if _, err := r.MarshalTo(buf); err != nil {
			c.release(buf, secure)
			return err
		}
		if err := c.T.Ioctl(r.Cmd.Request(), buf); err != nil {
			ierr := &Error{Cmd: r.Cmd, Err: err}
			var h Header
			// The kernel writes its version back on every call; it only
			// explains an EINVAL when ours was one it refuses.
			if errors.Is(err, syscall.EINVAL) && h.UnmarshalBinary(buf) == nil && h.Version[0] != 0 &&
				(h.Version[0] != sent[0] || h.Version[1] < sent[1]) {
				ierr.Kernel = h.Version
			}
			c.release(buf, secure)
			return ierr
		}
		var h Header
		if err := h.UnmarshalBinary(buf); err != nil {
			c.release(buf, secure)
			return err
		}
		if returns && h.Flags&FlagBufferFull != 0 {
			c.release(buf, secure)
			if size >= limit {
				return &Error{Cmd: r.Cmd, Err: ErrBufferTooLarge}
			}
			size = min(size*2, limit)
			continue
		}
		if returns && size > DefaultBufferSize {
			c.mu.Lock()
			if size > c.hintSizes[r.Cmd] {
				c.hintSizes[r.Cmd] = size
			}
			c.mu.Unlock()
		}
		err := fn(&h, buf)
		c.release(buf, secure)
		return err
	}
}

// release returns buf to the pool, wiped first if it held DM_SECURE_DATA
// (a table or message with keys in it).
func (c *Conn) release(buf []byte, secure bool) {
	if secure {
		clear(buf)
	}
	c.putBuf(buf)
}

// getBuf returns a zeroed buffer of exactly n bytes, reusing a pooled one
// when it is large enough. Small requests (no reply data) get pooled buffers
// too, cut to size: the kernel copies data_size bytes, so the length matters,
// the capacity does not. Reused buffers are zeroed because the kernel copies
// the whole buffer in and back, and leaves some reply bytes unwritten (the
// flags slot of a 4.37-4.44 name list, padding): they must not hold an
// earlier reply.
func (c *Conn) getBuf(n int) []byte {
	c.mu.Lock()
	for i := len(c.pool) - 1; i >= 0; i-- {
		if b := c.pool[i]; cap(b) >= n {
			c.pool[i] = c.pool[len(c.pool)-1]
			c.pool = c.pool[:len(c.pool)-1]
			c.mu.Unlock()
			b = b[:n]
			clear(b)
			return b
		}
	}
	c.mu.Unlock()
	return make([]byte, n, max(n, DefaultBufferSize))
}

// maxPooled bounds how many idle buffers a Conn keeps, and maxPooledSize
// how large: a one-off 64 MiB list reply is not kept around.
const (
	maxPooled     = 16
	maxPooledSize = 1 << 20
)

func (c *Conn) putBuf(b []byte) {
	if cap(b) > maxPooledSize {
		return
	}
	c.mu.Lock()
	if len(c.pool) < maxPooled {
		c.pool = append(c.pool, b[:cap(b)])
	}
	c.mu.Unlock()
}
