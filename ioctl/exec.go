package ioctl

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
)

// Transport performs one ioctl: request number req on the buffer b, which
// holds a dm_ioctl header and its payload, in and out. Like the kernel, it
// writes nothing in b past the data_size it leaves in b's header (a Conn
// relies on that to clear reused buffers only as far as needed). It returns the
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

// Reply buffer sizes. libdevmapper starts every command that returns data
// at 16 KiB and doubles on DM_BUFFER_FULL_FLAG, up to 1 GiB; so does a Conn
// until it has seen a reply of the command.
//
// The kernel allocates and copies in the whole data_size on every ioctl,
// and a Conn zeroes it first, so a buffer much larger than the reply costs:
// a table status of a thin volume or a pool needs under 1 KiB, and reading
// it with 16 KiB took four times as long as with 1 KiB (65 µs against 17 µs
// in the VM benchmark, examples/bench). For the commands that are safe to
// send twice (they only read: DM_LIST_DEVICES, DM_TABLE_STATUS,
// DM_TABLE_DEPS, DM_LIST_VERSIONS, DM_GET_TARGET_VERSION) a Conn therefore
// learns the size to start with from the replies: the largest reply of the
// last sizeWindow, plus a quarter, rounded up to a power of two, and at
// least MinBufferSize. A reply that outgrows it raises it at once; one that
// does not fit costs one more ioctl, which starts again from
// DefaultBufferSize. DM_TARGET_MSG and DM_DEV_WAIT never start below
// DefaultBufferSize: resending a message runs it again.
const (
	DefaultBufferSize = 16 << 10
	DefaultMaxBuffer  = 1 << 30
	MinBufferSize     = 1 << 10
)

// sizeWindow is how many replies a learned size remembers: it shrinks
// only when that many replies in a row needed less.
const sizeWindow = 16

// sizeHint is what a Conn learned about one command's replies.
type sizeHint struct {
	size   int // the buffer to start with; 0 before the first reply
	winMax int // the largest need in the current window
	n      int // replies in the current window
}

// Conn issues requests through a Transport, reusing buffers and growing them
// when the kernel reports DM_BUFFER_FULL_FLAG. It is safe for concurrent use
// if the Transport is.
type Conn struct {
	T Transport
	// MaxBuffer caps buffer growth; zero means DefaultMaxBuffer.
	MaxBuffer int

	mu    sync.Mutex
	pool  []*replyBuf // free buffers, kept at their capacity
	hints [NumCmds]sizeHint
}

// replyBuf is a pooled buffer and the header decoded from it, pooled
// together so that handing the header to a callback does not allocate.
type replyBuf struct {
	b []byte
	h Header
	// dirty is how many bytes from the start may be non-zero: the reuse
	// clears only those.
	dirty int
}

// resendable reports whether c only reads, so that a Conn may start it with
// a learned buffer smaller than DefaultBufferSize and send it again when
// the reply does not fit.
func resendable(c Cmd) bool {
	switch c {
	case CmdListDevices, CmdTableStatus, CmdTableDeps, CmdListVersions, CmdGetTargetVersion:
		return true
	}
	return false
}

// startSizeLocked is the buffer a command that returns data starts with.
func (c *Conn) startSizeLocked(cmd Cmd) int {
	learned := c.hints[cmd].size
	if learned == 0 || !resendable(cmd) {
		return max(learned, DefaultBufferSize)
	}
	return learned
}

// need is the buffer a reply of a resendable command asks for: it fitted
// in a size-byte buffer, of which the kernel says it used dataSize bytes.
func (c *Conn) need(size int, dataSize uint32) int {
	used := int(dataSize)
	if used <= 0 || used >= size {
		// The kernel set data_size to the end of what it wrote; when it
		// wrote nothing (a status of a device without a table) it left
		// data_size alone, and the size that served is all there is to go
		// by.
		return size
	}
	need := MinBufferSize
	for need < used+used/4 {
		need *= 2
	}
	// Never past the cap on growth (a request larger than the cap has
	// been sent at its own size and stays that).
	return min(need, max(c.limit(), size))
}

// learnLocked records that replies of cmd needed a need-byte buffer.
func (c *Conn) learnLocked(cmd Cmd, need int) {
	h := &c.hints[cmd]
	if !resendable(cmd) {
		if need > DefaultBufferSize && need > h.size {
			h.size = need
		}
		return
	}
	h.size = max(h.size, need)
	h.winMax = max(h.winMax, need)
	if h.n++; h.n >= sizeWindow {
		h.size, h.winMax, h.n = h.winMax, 0, 0
	}
}

func (c *Conn) limit() int {
	if c.MaxBuffer <= 0 {
		return DefaultMaxBuffer
	}
	return c.MaxBuffer
}

// Do packs r, issues it and calls fn with the reply header and the reply
// buffer, both valid only during fn. Commands that return data start with
// the buffer size described at DefaultBufferSize and double it while the
// kernel sets DM_BUFFER_FULL_FLAG, up to MaxBuffer.
func (c *Conn) Do(r *Request, fn func(h *Header, b []byte) error) error {
	var x exchange
	c.begin(&x, r)
	h, err := x.send(r)
	if err == nil {
		err = fn(h, x.rb.b)
		x.replied(r, h)
	}
	x.end()
	return err
}

// DoEach is Do for a run of requests of one command: it issues r once for
// every call of next that returns true, next readying r for its request (a
// new device name, say, with r.Cmd unchanged). It calls each with every
// reply, valid only during each (the header's name and uuid too: they
// point into b unless they are the request's), or with the request's
// error (h and b nil): each returns nil to go on with the next request,
// or an error, which stops the run and is returned. The run holds one
// buffer and takes the Conn's lock twice in all, where a Do per request
// takes it twice per request; buffer sizes are learned from the run's
// largest reply.
func (c *Conn) DoEach(r *Request, next func(*Request) bool, each func(h *Header, b []byte, err error) error) error {
	cmd := r.Cmd
	var x exchange
	c.begin(&x, r)
	x.alias = true
	defer x.end()
	for next(r) {
		if r.Cmd != cmd {
			return fmt.Errorf("ioctl: DoEach of %s changed the command to %s", cmd, r.Cmd)
		}
		x.ready(r)
		h, err := x.send(r)
		if err == nil {
			err = each(h, x.rb.b, nil)
			x.replied(r, h)
		} else {
			err = each(nil, nil, err)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// exchange is one Do or DoEach: the buffer it holds and what it learned.
type exchange struct {
	c       *Conn
	cmd     Cmd
	returns bool // the command returns data: sizes are learned
	secure  bool
	alias   bool // the reply header's strings point into the buffer
	size    int  // the size the next request starts with
	need    int  // the largest buffer a reply needed; 0 before one
	rb      *replyBuf
}

// begin starts x with a buffer for r from the pool.
func (c *Conn) begin(x *exchange, r *Request) {
	*x = exchange{c: c, cmd: r.Cmd, returns: r.Cmd.ReturnsData(), secure: r.Header.Flags&FlagSecureData != 0}
	n := r.Size()
	x.size = n
	c.mu.Lock()
	if x.returns {
		x.size = max(n, c.startSizeLocked(r.Cmd))
	}
	x.rb = c.getLocked(x.size, n)
	c.mu.Unlock()
}

// ready readies the held buffer for the next request of a run.
func (x *exchange) ready(r *Request) {
	n := r.Size()
	size := max(x.size, n)
	if cap(x.rb.b) < size {
		x.swap(size, n)
		return
	}
	x.rb.reset(size, n)
}

// swap trades the held buffer for one of size bytes.
func (x *exchange) swap(size, skip int) {
	x.c.mu.Lock()
	x.c.putLocked(x.rb)
	x.rb = x.c.getLocked(size, skip)
	x.c.mu.Unlock()
}

// send packs r into the held buffer and issues it, growing the buffer
// while the kernel reports it full. On failure the buffer is marked
// written throughout.
func (x *exchange) send(r *Request) (*Header, error) {
	c, rb := x.c, x.rb
	// The version actually sent, as MarshalTo fills it in: a kernel that
	// rejects it writes its own version over it.
	sent := r.Header.Version
	if sent == (Version{}) {
		sent = r.Cmd.MinVersion()
	}
	for {
		if _, err := r.MarshalTo(rb.b); err != nil {
			rb.retire(x.secure, len(rb.b))
			return nil, err
		}
		if err := c.T.Ioctl(r.Cmd.Request(), rb.b); err != nil {
			ierr := &Error{Cmd: r.Cmd, Err: err}
			// The kernel writes its version back on every call; it only
			// explains an EINVAL when ours was one it refuses.
			if errors.Is(err, syscall.EINVAL) && rb.h.UnmarshalBinary(rb.b) == nil && rb.h.Version[0] != 0 &&
				(rb.h.Version[0] != sent[0] || rb.h.Version[1] < sent[1]) {
				ierr.Kernel = rb.h.Version
			}
			rb.retire(x.secure, len(rb.b))
			return nil, ierr
		}
		h := &rb.h
		if err := h.unmarshalLike(rb.b, &r.Header, x.alias); err != nil {
			rb.retire(x.secure, len(rb.b))
			return nil, err
		}
		if !x.returns || h.Flags&FlagBufferFull == 0 {
			return h, nil
		}
		size := len(rb.b)
		if size >= c.limit() {
			rb.retire(x.secure, len(rb.b))
			return nil, &Error{Cmd: r.Cmd, Err: ErrBufferTooLarge}
		}
		if size < DefaultBufferSize {
			// A learned size fell short: this reply is unlike the
			// recent ones, so go on as if nothing had been learned.
			size = min(DefaultBufferSize, c.limit())
		} else {
			size = min(size*2, c.limit())
		}
		x.size = size
		rb.retire(x.secure, len(rb.b))
		x.swap(size, r.Size())
		rb = x.rb
	}
}

// replied notes a reply that has been read: the bytes it may have written,
// and the buffer it needed.
func (x *exchange) replied(r *Request, h *Header) {
	// The kernel wrote back data_size bytes at most; the request took
	// r.Size().
	rb := x.rb
	extent := max(r.Size(), min(int(h.DataSize), len(rb.b)))
	switch {
	case !x.returns:
	case resendable(x.cmd):
		x.need = max(x.need, x.c.need(len(rb.b), h.DataSize))
	default:
		x.need = max(x.need, len(rb.b)) // the size that served
	}
	rb.retire(x.secure, extent)
}

// end returns the buffer to the pool and records what the replies needed.
func (x *exchange) end() {
	x.c.mu.Lock()
	if x.need > 0 {
		x.c.learnLocked(x.cmd, x.need)
	}
	x.c.putLocked(x.rb)
	x.c.mu.Unlock()
}

// retire readies rb for the pool: wiped if it held DM_SECURE_DATA (a table
// or message with keys in it), its header dropped, and its dirty extent
// widened to the extent bytes this use may have written.
func (rb *replyBuf) retire(secure bool, extent int) {
	if secure {
		clear(rb.b)
		extent = 0
	}
	rb.dirty = max(rb.dirty, extent)
	rb.h = Header{}
}

// getLocked returns a zeroed buffer of exactly n bytes, reusing a pooled
// one when it is large enough. Small requests (no reply data) get pooled
// buffers too, cut to size: the kernel copies data_size bytes, so the
// length matters, the capacity does not. Reused buffers are zeroed because
// the kernel copies the whole buffer in and back, and leaves some reply
// bytes unwritten (the flags slot of a 4.37-4.44 name list, the last byte
// of a target type, padding): they must not hold an earlier reply. Only the
// bytes an earlier use may have written are cleared, which the Transport
// contract bounds (nothing past the data_size the reply reports), and not
// the first skip bytes, which the caller is about to overwrite whole
// (Request.MarshalTo writes every byte up to Size).
func (c *Conn) getLocked(n, skip int) *replyBuf {
	for i := len(c.pool) - 1; i >= 0; i-- {
		if rb := c.pool[i]; cap(rb.b) >= n {
			c.pool[i] = c.pool[len(c.pool)-1]
			c.pool = c.pool[:len(c.pool)-1]
			rb.reset(n, skip)
			return rb
		}
	}
	return &replyBuf{b: make([]byte, n, max(n, DefaultBufferSize))}
}

// reset cuts rb to n bytes, zeroed but for the first skip; cap(rb.b) must
// be at least n.
func (rb *replyBuf) reset(n, skip int) {
	rb.b = rb.b[:n]
	if end := min(n, rb.dirty); end > skip {
		clear(rb.b[skip:end])
	}
	if rb.dirty <= n {
		rb.dirty = 0
	}
}

// maxPooled bounds how many idle buffers a Conn keeps, and maxPooledSize
// how large: a one-off 64 MiB list reply is not kept around.
const (
	maxPooled     = 16
	maxPooledSize = 1 << 20
)

func (c *Conn) putLocked(rb *replyBuf) {
	if cap(rb.b) > maxPooledSize || len(c.pool) >= maxPooled {
		return
	}
	rb.b = rb.b[:cap(rb.b)]
	c.pool = append(c.pool, rb)
}
