package ioctl

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"
	"unsafe"
)

// fakeKernel is a Transport that records every ioctl and answers with fn,
// which sees the buffer as the kernel would.
type fakeKernel struct {
	mu    sync.Mutex
	calls []fakeCall
	fn    func(req uint, b []byte) error
}

type fakeCall struct {
	req  uint
	size int
	hdr  Header
	buf  []byte // the caller's buffer itself, to check what is left in it
}

func (k *fakeKernel) Ioctl(req uint, b []byte) error {
	var h Header
	if err := h.UnmarshalBinary(b); err != nil {
		return err
	}
	k.mu.Lock()
	k.calls = append(k.calls, fakeCall{req: req, size: len(b), hdr: h, buf: b})
	fn := k.fn
	k.mu.Unlock()
	if fn == nil {
		return nil
	}
	return fn(req, b)
}

func (k *fakeKernel) sizes() []int {
	k.mu.Lock()
	defer k.mu.Unlock()
	var s []int
	for _, c := range k.calls {
		s = append(s, c.size)
	}
	return s
}

func (k *fakeKernel) reset() {
	k.mu.Lock()
	k.calls = nil
	k.mu.Unlock()
}

func setFlags(b []byte, f Flags) {
	binary.NativeEndian.PutUint32(b[offFlags:], uint32(f))
}

func setDataSize(b []byte, n int) {
	binary.NativeEndian.PutUint32(b[offDataSize:], uint32(n))
}

// needPayload answers as the kernel does for a command whose reply needs n
// payload bytes: DM_BUFFER_FULL_FLAG (and success) while the buffer is too
// small, else the payload, filled with 'x'.
func needPayload(n int) func(uint, []byte) error {
	return func(req uint, b []byte) error {
		if len(b)-DataStart < n {
			setFlags(b, FlagBufferFull)
			setDataSize(b, DataOffset)
			return nil
		}
		setFlags(b, 0)
		for i := DataStart; i < DataStart+n; i++ {
			b[i] = 'x'
		}
		setDataSize(b, DataStart+n)
		return nil
	}
}

func TestDoBufferFullDoubles(t *testing.T) {
	k := &fakeKernel{fn: needPayload(100000)}
	c := &Conn{T: k}
	var got int
	err := c.Do(&Request{Cmd: CmdListDevices}, func(h *Header, b []byte) error {
		p, err := h.Payload(b)
		got = len(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != 100000 {
		t.Errorf("payload %d bytes, want 100000", got)
	}
	want := []int{16 << 10, 32 << 10, 64 << 10, 128 << 10}
	if s := k.sizes(); fmt.Sprint(s) != fmt.Sprint(want) {
		t.Errorf("buffer sizes %v, want %v", s, want)
	}
	for _, call := range k.calls {
		if call.req != CmdListDevices.Request() || call.hdr.DataSize != uint32(call.size) {
			t.Errorf("call %#x data_size %d for a %d-byte buffer", call.req, call.hdr.DataSize, call.size)
		}
	}

	// The size that sufficed is remembered for the same command...
	k.reset()
	if err := c.Do(&Request{Cmd: CmdListDevices}, func(*Header, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if s := k.sizes(); fmt.Sprint(s) != fmt.Sprint([]int{128 << 10}) {
		t.Errorf("second list: buffer sizes %v, want [131072]", s)
	}
	// ...and only for it.
	k.reset()
	k.fn = needPayload(100)
	if err := c.Do(&Request{Cmd: CmdTableStatus}, func(*Header, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if s := k.sizes(); fmt.Sprint(s) != fmt.Sprint([]int{16 << 10}) {
		t.Errorf("table status: buffer sizes %v, want [16384]", s)
	}
	// One smaller reply does not shrink the learned size.
	k.reset()
	if err := c.Do(&Request{Cmd: CmdListDevices}, func(*Header, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if s := k.sizes(); fmt.Sprint(s) != fmt.Sprint([]int{128 << 10}) {
		t.Errorf("third list: buffer sizes %v, want [131072]", s)
	}
}

// do issues one request of cmd on c and fails the test on error.
func do(t *testing.T, c *Conn, cmd Cmd) {
	t.Helper()
	if err := c.Do(&Request{Cmd: cmd}, func(*Header, []byte) error { return nil }); err != nil {
		t.Fatalf("%v: %v", cmd, err)
	}
}

// TestDoLearnsSmallBuffers: a command that only reads starts at 16 KiB,
// then at the size its replies need (a quarter more, rounded up to a power
// of two, at least 1 KiB); a reply that does not fit goes straight back to
// 16 KiB; the size shrinks only after a window of smaller replies.
func TestDoLearnsSmallBuffers(t *testing.T) {
	k := &fakeKernel{fn: needPayload(500)} // a pool status: 312 + 40 + ~150
	c := &Conn{T: k}
	do(t, c, CmdTableStatus)
	do(t, c, CmdTableStatus)
	if s := k.sizes(); fmt.Sprint(s) != fmt.Sprint([]int{16 << 10, 1 << 10}) {
		t.Fatalf("sizes %v, want [16384 1024]", s)
	}

	// 812 bytes used: 1015 with a quarter more still fits in 1 KiB;
	// 900 used (1125) needs 2 KiB.
	for _, tc := range []struct{ payload, want int }{{500, 1 << 10}, {900 - DataStart, 2 << 10}, {4000, 8 << 10}, {70000, 128 << 10}} {
		k := &fakeKernel{fn: needPayload(tc.payload)}
		c := &Conn{T: k}
		do(t, c, CmdListDevices)
		k.reset()
		do(t, c, CmdListDevices)
		if s := k.sizes(); len(s) != 1 || s[0] != tc.want {
			t.Errorf("payload %d: second call sizes %v, want [%d]", tc.payload, s, tc.want)
		}
	}

	// A larger reply: one 1 KiB try, then 16 KiB, then doubling.
	k.reset()
	k.fn = needPayload(20000)
	do(t, c, CmdTableStatus)
	if s := k.sizes(); fmt.Sprint(s) != fmt.Sprint([]int{1 << 10, 16 << 10, 32 << 10}) {
		t.Fatalf("sizes %v, want [1024 16384 32768]", s)
	}
	// The size that served is kept while the window lasts, although the
	// replies are small again: with one large reply in sixteen, a scan
	// does not pay a miss each time.
	k.reset()
	k.fn = needPayload(500)
	for i := 0; i < sizeWindow; i++ {
		do(t, c, CmdTableStatus)
	}
	for i, s := range k.sizes() {
		if s != 32<<10 {
			t.Fatalf("call %d of the window: size %d, want 32768 (sizes %v)", i, s, k.sizes())
		}
	}
	// After a whole window of small replies it shrinks.
	k.reset()
	for i := 0; i < sizeWindow+1; i++ {
		do(t, c, CmdTableStatus)
	}
	s := k.sizes()
	if s[len(s)-1] != 1<<10 {
		t.Errorf("after small replies: sizes %v, want a return to 1024", s)
	}
	// Other commands learn nothing from these.
	k.reset()
	do(t, c, CmdTableDeps)
	if s := k.sizes(); fmt.Sprint(s) != fmt.Sprint([]int{16 << 10}) {
		t.Errorf("deps: sizes %v, want [16384]", s)
	}
}

// TestDoNoLearningWithoutDataSize: when the kernel writes nothing (a
// status of a device without a table) it leaves data_size as sent, which
// says nothing about the size needed: the learned size stays.
func TestDoNoLearningWithoutDataSize(t *testing.T) {
	k := &fakeKernel{fn: needPayload(500)}
	c := &Conn{T: k}
	do(t, c, CmdTableStatus)
	k.fn = func(uint, []byte) error { return nil } // data_size untouched
	for i := 0; i < 3*sizeWindow; i++ {
		do(t, c, CmdTableStatus)
	}
	for _, s := range k.sizes()[1:] {
		if s != 1<<10 {
			t.Fatalf("sizes %v: want 1024 throughout", k.sizes())
		}
	}
}

// TestDoMessagesKeepDefaultBuffer: DM_TARGET_MSG and DM_DEV_WAIT do not
// start below 16 KiB however small their replies: a message resent after
// DM_BUFFER_FULL_FLAG runs twice.
func TestDoMessagesKeepDefaultBuffer(t *testing.T) {
	for _, cmd := range []Cmd{CmdTargetMsg, CmdDevWait} {
		k := &fakeKernel{fn: needPayload(10)}
		c := &Conn{T: k}
		for i := 0; i < 2*sizeWindow; i++ {
			if err := c.Do(&Request{Cmd: cmd, Message: "x"}, func(*Header, []byte) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range k.sizes() {
			if s != 16<<10 {
				t.Fatalf("%v: sizes %v, want 16384 throughout", cmd, k.sizes())
			}
		}
		// A size that had to grow is kept for good.
		k.reset()
		k.fn = needPayload(20000)
		if err := c.Do(&Request{Cmd: cmd, Message: "x"}, func(*Header, []byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
		k.fn = needPayload(10)
		for i := 0; i < 2*sizeWindow; i++ {
			if err := c.Do(&Request{Cmd: cmd, Message: "x"}, func(*Header, []byte) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
		if s := k.sizes(); s[0] != 16<<10 || s[1] != 32<<10 || s[len(s)-1] != 32<<10 {
			t.Errorf("%v: sizes %v, want 16384, then 32768 throughout", cmd, s)
		}
	}
}

// TestDoLearnedSizeUnderCap: a MaxBuffer below 16 KiB still allows the
// retry after a learned size falls short.
func TestDoLearnedSizeUnderCap(t *testing.T) {
	k := &fakeKernel{fn: needPayload(500)}
	c := &Conn{T: k, MaxBuffer: 4 << 10}
	do(t, c, CmdTableStatus) // starts at 16 KiB: the cap only bounds growth
	k.reset()
	k.fn = needPayload(3000)
	do(t, c, CmdTableStatus)
	if s := k.sizes(); fmt.Sprint(s) != fmt.Sprint([]int{1 << 10, 4 << 10}) {
		t.Errorf("sizes %v, want [1024 4096]", s)
	}
}

func TestDoEveryDataCommandRetries(t *testing.T) {
	for c := Cmd(0); c < NumCmds; c++ {
		k := &fakeKernel{fn: needPayload(20000)}
		conn := &Conn{T: k}
		calls := 0
		err := conn.Do(&Request{Cmd: c, Targets: []TargetSpec{{Type: "zero", Length: 8}}}, func(*Header, []byte) error {
			calls++
			return nil
		})
		if err != nil {
			t.Errorf("%v: %v", c, err)
			continue
		}
		sizes := k.sizes()
		if c.ReturnsData() {
			if fmt.Sprint(sizes) != fmt.Sprint([]int{16 << 10, 32 << 10}) {
				t.Errorf("%v: buffer sizes %v, want [16384 32768]", c, sizes)
			}
		} else {
			// Never retried, even though the fake set BUFFER_FULL, and
			// the buffer is just the request.
			r := Request{Cmd: c, Targets: []TargetSpec{{Type: "zero", Length: 8}}}
			if fmt.Sprint(sizes) != fmt.Sprint([]int{r.Size()}) {
				t.Errorf("%v: buffer sizes %v, want [%d]", c, sizes, r.Size())
			}
		}
		if calls != 1 {
			t.Errorf("%v: fn called %d times", c, calls)
		}
	}
}

func TestDoBufferCap(t *testing.T) {
	tests := []struct {
		max   int
		sizes []int
	}{
		{64 << 10, []int{16 << 10, 32 << 10, 64 << 10}},
		{40000, []int{16 << 10, 32 << 10, 40000}},
		{16 << 10, []int{16 << 10}},
	}
	for _, tt := range tests {
		k := &fakeKernel{fn: needPayload(1 << 20)}
		c := &Conn{T: k, MaxBuffer: tt.max}
		called := false
		err := c.Do(&Request{Cmd: CmdTableStatus}, func(*Header, []byte) error { called = true; return nil })
		if !errors.Is(err, ErrBufferTooLarge) {
			t.Fatalf("MaxBuffer %d: err %v, want ErrBufferTooLarge", tt.max, err)
		}
		var e *Error
		if !errors.As(err, &e) || e.Cmd != CmdTableStatus {
			t.Errorf("MaxBuffer %d: err %#v, want *Error for DM_TABLE_STATUS", tt.max, err)
		}
		if called {
			t.Error("fn called on a truncated reply")
		}
		if s := k.sizes(); fmt.Sprint(s) != fmt.Sprint(tt.sizes) {
			t.Errorf("MaxBuffer %d: sizes %v, want %v", tt.max, s, tt.sizes)
		}
	}
}

func TestDoDefaultCap(t *testing.T) {
	// The kernel always says BUFFER_FULL; the fake does not touch the
	// (large) buffers, so this stays cheap in memory that is never written.
	k := &fakeKernel{fn: func(req uint, b []byte) error { setFlags(b, FlagBufferFull); return nil }}
	c := &Conn{T: k}
	err := c.Do(&Request{Cmd: CmdListVersions}, func(*Header, []byte) error { return nil })
	if !errors.Is(err, ErrBufferTooLarge) {
		t.Fatalf("err %v", err)
	}
	s := k.sizes()
	if len(s) != 17 || s[0] != 16<<10 || s[len(s)-1] != DefaultMaxBuffer {
		t.Errorf("sizes %v: want 16 KiB doubling to 1 GiB in 17 steps", s)
	}
	// Large buffers are not pooled.
	for _, rb := range c.pool {
		b := rb.b
		if cap(b) > maxPooledSize {
			t.Errorf("pooled a %d-byte buffer", cap(b))
		}
	}
}

func TestDoErrno(t *testing.T) {
	k := &fakeKernel{fn: func(uint, []byte) error { return syscall.EBUSY }}
	c := &Conn{T: k}
	err := c.Do(&Request{Cmd: CmdDevRemove, Header: Header{Name: "pool"}}, func(*Header, []byte) error {
		t.Error("fn called on failure")
		return nil
	})
	if !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("err %v, want EBUSY", err)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err %T, want *Error", err)
	}
	if e.Cmd != CmdDevRemove || e.Err != syscall.EBUSY || e.Kernel != (Version{}) {
		t.Errorf("err %+v", e)
	}
	if got, want := err.Error(), "DM_DEV_REMOVE: "+syscall.EBUSY.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if errors.Is(err, syscall.ENXIO) {
		t.Error("errors.Is matched another errno")
	}
	// Errors are not retried, not even for commands that return data.
	k.reset()
	k.fn = func(uint, []byte) error { return syscall.ENXIO }
	err = c.Do(&Request{Cmd: CmdTableStatus}, nil)
	if !errors.Is(err, syscall.ENXIO) || len(k.sizes()) != 1 {
		t.Errorf("err %v after %d calls", err, len(k.sizes()))
	}
}

func TestDoKernelVersion(t *testing.T) {
	writeVersion := func(v Version, errno error) func(uint, []byte) error {
		return func(req uint, b []byte) error {
			if v != (Version{}) {
				for i, x := range v {
					binary.NativeEndian.PutUint32(b[offVersion+4*i:], x)
				}
			}
			return errno
		}
	}
	tests := []struct {
		name string
		sent Version // zero: the command's minimum
		cmd  Cmd
		fn   func(uint, []byte) error
		want Version
	}{
		{"kernel too old", Version{}, CmdGetTargetVersion, writeVersion(Version{4, 27, 0}, syscall.EINVAL), Version{4, 27, 0}},
		{"explicit version rejected", Version{4, 45, 0}, CmdListDevices, writeVersion(Version{4, 41, 0}, syscall.EINVAL), Version{4, 41, 0}},
		// The fake writes nothing back: the buffer still holds what was
		// sent, which is not the kernel's version.
		{"nothing written back", Version{}, CmdDevArmPoll, writeVersion(Version{}, syscall.EINVAL), Version{}},
		{"nothing written back, explicit", Version{4, 36, 0}, CmdDevArmPoll, writeVersion(Version{}, syscall.EINVAL), Version{}},
		{"other errno", Version{}, CmdDevRemove, writeVersion(Version{4, 47, 0}, syscall.EBUSY), Version{}},
		{"zero major", Version{}, CmdDevStatus, writeVersion(Version{0, 9, 0}, syscall.EINVAL), Version{}},
		// The kernel writes its version back on every call: an ordinary
		// EINVAL from a newer kernel is not a version mismatch.
		{"ordinary EINVAL", Version{}, CmdDevStatus, writeVersion(Version{4, 47, 0}, syscall.EINVAL), Version{}},
		{"other major", Version{}, CmdDevStatus, writeVersion(Version{5, 0, 0}, syscall.EINVAL), Version{5, 0, 0}},
	}
	for _, tt := range tests {
		c := &Conn{T: &fakeKernel{fn: tt.fn}}
		err := c.Do(&Request{Cmd: tt.cmd, Header: Header{Version: tt.sent}}, nil)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: err %v", tt.name, err)
			continue
		}
		if e.Kernel != tt.want {
			t.Errorf("%s: Kernel = %v, want %v", tt.name, e.Kernel, tt.want)
		}
	}
}

// TestDoSecureData: a request with DM_SECURE_DATA_FLAG leaves no copy of its
// bytes behind, whatever path Do takes.
func TestDoSecureData(t *testing.T) {
	const secret = "aes-xts-plain64 0123456789abcdef0123456789abcdef 0 7:0 0"
	load := func() *Request {
		return &Request{Cmd: CmdTableLoad, Header: Header{Name: "crypt", Flags: FlagSecureData},
			Targets: []TargetSpec{{Length: 8, Type: "crypt", Params: secret}}}
	}
	noSecret := func(t *testing.T, what string, b []byte) {
		t.Helper()
		if bytes.Contains(b[:cap(b)], []byte("0123456789abcdef")) {
			t.Errorf("%s still holds the key", what)
		}
	}
	checkPool := func(t *testing.T, c *Conn) {
		t.Helper()
		for i, rb := range c.pool {
			b := rb.b
			noSecret(t, fmt.Sprintf("pooled buffer %d", i), b)
		}
	}

	t.Run("success", func(t *testing.T) {
		k := &fakeKernel{}
		c := &Conn{T: k}
		saw := false
		err := c.Do(load(), func(h *Header, b []byte) error {
			// fn sees the buffer before it is wiped.
			saw = bytes.Contains(b, []byte(secret))
			return nil
		})
		if err != nil || !saw {
			t.Fatalf("err %v, fn saw the request: %v", err, saw)
		}
		noSecret(t, "the ioctl buffer", k.calls[0].buf)
		checkPool(t, c)
	})
	t.Run("errno", func(t *testing.T) {
		k := &fakeKernel{fn: func(uint, []byte) error { return syscall.EINVAL }}
		c := &Conn{T: k}
		if err := c.Do(load(), nil); !errors.Is(err, syscall.EINVAL) {
			t.Fatal(err)
		}
		noSecret(t, "the ioctl buffer", k.calls[0].buf)
		checkPool(t, c)
	})
	t.Run("fn error", func(t *testing.T) {
		k := &fakeKernel{}
		c := &Conn{T: k}
		boom := errors.New("boom")
		if err := c.Do(load(), func(*Header, []byte) error { return boom }); err != boom {
			t.Fatalf("err %v, want fn's error", err)
		}
		noSecret(t, "the ioctl buffer", k.calls[0].buf)
	})
	t.Run("buffer full retry", func(t *testing.T) {
		// A message with a key in it, to a target that answers with more
		// than 16 KiB the first time.
		k := &fakeKernel{fn: needPayload(20000)}
		c := &Conn{T: k}
		r := &Request{Cmd: CmdTargetMsg, Header: Header{Name: "crypt", Flags: FlagSecureData}, Message: "key set " + secret}
		if err := c.Do(r, func(*Header, []byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if len(k.calls) != 2 {
			t.Fatalf("%d calls", len(k.calls))
		}
		for i, call := range k.calls {
			noSecret(t, fmt.Sprintf("buffer of call %d", i), call.buf)
		}
		checkPool(t, c)
	})
	t.Run("marshal error", func(t *testing.T) {
		k := &fakeKernel{}
		c := &Conn{T: k}
		r := load()
		r.Targets = append(r.Targets, TargetSpec{Length: 8, Type: "crypt", Params: "bad\x00"})
		if err := c.Do(r, nil); err != ErrNUL {
			t.Fatalf("err %v, want ErrNUL", err)
		}
		if len(k.calls) != 0 {
			t.Error("a request that does not encode reached the transport")
		}
		if len(c.pool) == 0 {
			t.Fatal("buffer not returned to the pool")
		}
		checkPool(t, c)
	})
}

// TestDoReusedBufferZeroed: the kernel copies the whole buffer in and back
// and leaves some reply bytes unwritten, so a reused buffer must not carry
// an earlier reply.
func TestDoReusedBufferZeroed(t *testing.T) {
	k := &fakeKernel{}
	c := &Conn{T: k}
	k.fn = func(req uint, b []byte) error {
		for i := DataStart; i < len(b); i++ {
			b[i] = 0xff
		}
		return nil
	}
	if err := c.Do(&Request{Cmd: CmdTableStatus}, func(*Header, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	k.fn = func(req uint, b []byte) error {
		if i := bytes.IndexByte(b[DataStart:], 0xff); i >= 0 {
			return fmt.Errorf("stale byte at %d", DataStart+i)
		}
		return nil
	}
	for _, r := range []*Request{
		{Cmd: CmdListDevices},
		{Cmd: CmdDevRename, String: "x"},
		{Cmd: CmdTargetMsg, Message: "m"},
	} {
		if err := c.Do(r, func(*Header, []byte) error { return nil }); err != nil {
			t.Errorf("%v: %v", r.Cmd, err)
		}
	}
}

func TestDoMarshalError(t *testing.T) {
	k := &fakeKernel{}
	c := &Conn{T: k}
	err := c.Do(&Request{Cmd: CmdDevStatus, Header: Header{Name: strings.Repeat("n", NameLen)}}, nil)
	if !errors.Is(err, ErrNameTooLong) {
		t.Errorf("err %v", err)
	}
	if len(k.calls) != 0 {
		t.Error("an invalid request reached the transport")
	}
}

func TestDoReplyHeader(t *testing.T) {
	k := &fakeKernel{fn: func(req uint, b []byte) error {
		h := Header{Version: Version{4, 47, 0}, DataSize: DataOffset, DataStart: DataStart, TargetCount: 1,
			OpenCount: 2, Flags: FlagActivePresent | FlagUeventGenerated, EventNr: 9, Dev: Dev{Major: 253, Minor: 4}.Encode(),
			Name: "pool", UUID: "u"}
		return h.MarshalTo(b)
	}}
	c := &Conn{T: k}
	var got Header
	err := c.Do(&Request{Cmd: CmdDevSuspend, Header: Header{Name: "pool", EventNr: 0x0d4d0001}}, func(h *Header, b []byte) error {
		got = *h
		p, err := h.Payload(b)
		if err != nil || len(p) != 0 {
			t.Errorf("payload %d bytes, %v", len(p), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != (Version{4, 47, 0}) || got.Flags != FlagActivePresent|FlagUeventGenerated ||
		got.EventNr != 9 || got.OpenCount != 2 || got.Dev != (Dev{Major: 253, Minor: 4}.Encode()) || got.UUID != "u" {
		t.Errorf("reply header %+v", got)
	}
	if sent := k.calls[0].hdr; sent.EventNr != 0x0d4d0001 || sent.Version != v4_0 {
		t.Errorf("sent header %+v", sent)
	}
}

func TestDoPoolBounded(t *testing.T) {
	k := &fakeKernel{}
	c := &Conn{T: k}
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Do(&Request{Cmd: CmdListDevices}, func(*Header, []byte) error { return nil })
		}()
	}
	wg.Wait()
	if len(c.pool) > maxPooled {
		t.Errorf("pool holds %d buffers, max %d", len(c.pool), maxPooled)
	}
	// Sequential use reuses one buffer.
	c = &Conn{T: k}
	k.reset()
	var first *byte
	for i := 0; i < 10; i++ {
		_ = c.Do(&Request{Cmd: CmdDevStatus}, func(h *Header, b []byte) error {
			if first == nil {
				first = &b[0]
			} else if &b[0] != first {
				t.Errorf("call %d did not reuse the buffer", i)
			}
			return nil
		})
	}
}

// TestDoConcurrent runs many requests at once through one Conn: each reply
// must come back in its own buffer. Run with -race.
func TestDoConcurrent(t *testing.T) {
	k := &fakeKernel{fn: func(req uint, b []byte) error {
		var h Header
		if err := h.UnmarshalBinary(b); err != nil {
			return err
		}
		// Echo the name as the payload; some need a retry.
		need := len(h.Name) + 1
		if h.Name[len(h.Name)-1] == '7' {
			need = 20000
		}
		if int(h.DataSize)-DataStart < need {
			setFlags(b, FlagBufferFull)
			return nil
		}
		copy(b[DataStart:], h.Name)
		b[DataStart+len(h.Name)] = 0
		setDataSize(b, DataStart+need)
		return nil
	}}
	c := &Conn{T: k}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				name := fmt.Sprintf("dev-%d-%d", g, i)
				cmd := []Cmd{CmdTableStatus, CmdListDevices, CmdTargetMsg, CmdDevWait}[i%4]
				err := c.Do(&Request{Cmd: cmd, Header: Header{Name: name}, Message: "m"}, func(h *Header, b []byte) error {
					p, err := h.Payload(b)
					if err != nil {
						return err
					}
					s, err := ParseString(p)
					if err != nil {
						return err
					}
					if s != name {
						return fmt.Errorf("got reply %q for %q", s, name)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestDoReusedBufferDirtyTracking drives one Conn with requests of mixed
// commands and sizes through a transport that, like the kernel, writes
// garbage only up to the data_size it reports, and checks on every call
// that no byte past the request is left from an earlier one.
func TestDoReusedBufferDirtyTracking(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var reqSize int
	k := &fakeKernel{}
	k.fn = func(req uint, b []byte) error {
		for i := reqSize; i < len(b); i++ {
			if b[i] != 0 {
				return fmt.Errorf("stale byte %#x at %d of %d (request %d bytes)", b[i], i, len(b), reqSize)
			}
		}
		ds := len(b)
		if rng.IntN(3) > 0 {
			ds = DataStart + rng.IntN(len(b)-DataStart+1)
		}
		for i := DataStart; i < ds; i++ {
			b[i] = byte(1 + rng.IntN(255))
		}
		setDataSize(b, ds)
		if rng.IntN(8) == 0 {
			setFlags(b, FlagBufferFull)
		} else {
			setFlags(b, 0)
		}
		return nil
	}
	c := &Conn{T: k, MaxBuffer: 256 << 10}
	cmds := []Cmd{CmdTableStatus, CmdListDevices, CmdDevStatus, CmdTargetMsg, CmdDevRename, CmdTableLoad}
	for i := 0; i < 3000; i++ {
		r := &Request{Cmd: cmds[rng.IntN(len(cmds))]}
		switch r.Cmd {
		case CmdTargetMsg:
			r.Message = strings.Repeat("m", rng.IntN(3000))
		case CmdDevRename:
			r.String = strings.Repeat("n", 1+rng.IntN(100))
		case CmdTableLoad:
			for j := rng.IntN(40); j > 0; j-- {
				r.Targets = append(r.Targets, TargetSpec{Length: 8, Type: "zero", Params: strings.Repeat("p", rng.IntN(200))})
			}
		}
		reqSize = r.Size()
		err := c.Do(r, func(*Header, []byte) error { return nil })
		if err != nil && !errors.Is(err, ErrBufferTooLarge) {
			t.Fatalf("request %d (%v): %v; sizes %v; hints %+v", i, r.Cmd, err, k.sizes()[max(0, len(k.sizes())-5):], c.hints[r.Cmd])
		}
	}
}

// TestMarshalToWritesEveryByte: a Conn does not clear the part of a reused
// buffer that the request covers, because MarshalTo writes all of it,
// padding included.
func TestMarshalToWritesEveryByte(t *testing.T) {
	for _, r := range []*Request{
		{Cmd: CmdTableStatus, Header: Header{Name: "n"}},
		{Cmd: CmdDevRename, Header: Header{UUID: "u"}, String: "new-name"},
		{Cmd: CmdTargetMsg, Sector: 7, Message: "create_thin 1"},
		{Cmd: CmdDevSetGeometry, String: "1 2 3 4"},
		{Cmd: CmdTableLoad, Targets: []TargetSpec{{Length: 8, Type: "zero"}, {Start: 8, Length: 8, Type: "linear", Params: "7:0 0"}, {Start: 16, Length: 1, Type: "error", Params: "x"}}},
	} {
		clean := make([]byte, r.Size()+64)
		dirty := bytes.Repeat([]byte{0xaa}, len(clean))
		n1, err1 := r.MarshalTo(clean)
		n2, err2 := r.MarshalTo(dirty)
		if err1 != nil || err2 != nil || n1 != n2 || n1 != r.Size() {
			t.Fatalf("%v: %d %v, %d %v", r.Cmd, n1, err1, n2, err2)
		}
		if !bytes.Equal(clean[:n1], dirty[:n2]) {
			i := 0
			for clean[i] == dirty[i] {
				i++
			}
			t.Errorf("%v: byte %d of %d left as it was", r.Cmd, i, n1)
		}
	}
}

func TestCStringLike(t *testing.T) {
	field := func(s string) []byte { b := make([]byte, 8); copy(b, s); return b }
	for _, tc := range []struct {
		b          []byte
		like, want string
		same       bool
	}{
		{field("abc"), "abc", "abc", true},
		{field("abcd"), "abc", "abcd", false},
		{field("ab"), "abc", "ab", false},
		{field(""), "", "", true},
		{field("x"), "", "x", false},
		{[]byte("12345678"), "12345678", "12345678", false}, // no NUL in the field
		{field("abc"), "abd", "abc", false},
	} {
		for _, alias := range []bool{false, true} {
			got := cStringLike(tc.b, tc.like, alias)
			if got != tc.want {
				t.Errorf("cStringLike(%q, %q, %v) = %q, want %q", tc.b, tc.like, alias, got, tc.want)
			}
			if len(got) == 0 {
				continue
			}
			switch p := unsafe.StringData(got); {
			case tc.same && p != unsafe.StringData(tc.like):
				t.Errorf("cStringLike(%q, %q, %v) allocated a copy", tc.b, tc.like, alias)
			case !tc.same && alias && p != &tc.b[0]:
				t.Errorf("cStringLike(%q, %q, true) does not point into the field", tc.b, tc.like)
			case !tc.same && !alias && p == &tc.b[0]:
				t.Errorf("cStringLike(%q, %q, false) points into the field", tc.b, tc.like)
			}
		}
	}
}

// targetType returns the kernel's target names as constants and others as
// copies, or as views of the buffer when aliasing.
func TestTargetTypeNames(t *testing.T) {
	for _, name := range []string{"thin", "thin-pool", "linear", "striped", "zero", "error", "snapshot",
		"snapshot-origin", "snapshot-merge", "crypt", "cache", "writecache", "multipath", "raid", "mirror",
		"verity", "integrity", "delay", "flakey", "era", "vdo", "frobnicator", "", "fifteen-chars-x"} {
		b := make([]byte, MaxTypeName)
		copy(b, name)
		for _, alias := range []bool{false, true} {
			got := targetType(b, alias)
			if got != name {
				t.Errorf("targetType(%q, %v) = %q", name, alias, got)
			}
			if n := testing.AllocsPerRun(10, func() { targetType(b, alias) }); name != "frobnicator" && name != "fifteen-chars-x" && n != 0 || alias && n != 0 {
				t.Errorf("targetType(%q, %v): %v allocs", name, alias, n)
			}
		}
	}
	// A 16-byte field without a NUL is read whole.
	b := []byte("sixteen-bytes-xx")
	if got := targetType(b, false); got != "sixteen-bytes-xx" {
		t.Errorf("no NUL: %q", got)
	}
}

// TestDoEach: a run of requests on one buffer sends each request as Do
// would (no stale byte in the buffer, whatever the earlier replies wrote),
// grows the buffer for a reply that does not fit and goes on, hands each
// failure to each, which decides whether the run goes on, and learns the
// size from the run's largest reply.
func TestDoEach(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var reqSize int
	k := &fakeKernel{}
	need := map[string]int{} // payload each name's reply needs
	k.fn = func(req uint, b []byte) error {
		for i := reqSize; i < len(b); i++ {
			if b[i] != 0 {
				return fmt.Errorf("stale byte %#x at %d of %d", b[i], i, len(b))
			}
		}
		name := cString(b[offName : offName+NameLen])
		if name == "gone" {
			return syscall.ENXIO
		}
		return needPayload(need[name])(req, b)
	}
	c := &Conn{T: k}
	for run := 0; run < 200; run++ {
		var names []string
		for i := rng.IntN(20); i > 0; i-- {
			name := fmt.Sprintf("dev%d", rng.IntN(50))
			if rng.IntN(10) == 0 {
				name = "gone"
			}
			need[name] = rng.IntN(40000)
			names = append(names, name)
		}
		r := &Request{Cmd: CmdTableStatus}
		reqSize = r.Size()
		i, seen, failed := 0, 0, 0
		err := c.DoEach(r, func(r *Request) bool {
			if i == len(names) {
				return false
			}
			r.Header.Name = names[i]
			i++
			return true
		}, func(h *Header, b []byte, err error) error {
			name := names[i-1]
			if name == "gone" {
				if !errors.Is(err, syscall.ENXIO) || h != nil || b != nil {
					t.Errorf("gone: %v, %v", h, err)
				}
				failed++
				return nil
			}
			p, perr := h.Payload(b)
			if err != nil || perr != nil || len(p) != need[name] || h.Name != name {
				t.Errorf("%s: %d payload bytes, want %d; %v %v", name, len(p), need[name], err, perr)
			}
			seen++
			return nil
		})
		if err != nil || seen+failed != len(names) {
			t.Fatalf("run %d: %v after %d of %d", run, err, seen+failed, len(names))
		}
	}

	// each's error stops the run; a changed command is refused.
	stop := errors.New("enough")
	n := 0
	err := c.DoEach(&Request{Cmd: CmdTableStatus}, func(r *Request) bool { r.Header.Name = "dev1"; return true },
		func(*Header, []byte, error) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("each's error: %v after %d", err, n)
	}
	n = 0
	err = c.DoEach(&Request{Cmd: CmdTableStatus}, func(r *Request) bool { r.Cmd = CmdTableDeps; return true },
		func(*Header, []byte, error) error { n++; return nil })
	if err == nil || n != 0 {
		t.Errorf("changed command: %v after %d", err, n)
	}
	// The buffers came back to the pool, and the size was learned.
	if len(c.pool) == 0 || c.hints[CmdTableStatus].size == 0 {
		t.Errorf("pool %d buffers, learned %+v", len(c.pool), c.hints[CmdTableStatus])
	}
}

// transportFunc is a Transport that allocates nothing itself.
type transportFunc func(req uint, b []byte) error

func (f transportFunc) Ioctl(req uint, b []byte) error { return f(req, b) }

// A run's replies allocate nothing per request.
func TestDoEachAllocations(t *testing.T) {
	c := &Conn{T: transportFunc(needPayload(100))}
	run := func(n int) float64 {
		r := &Request{Cmd: CmdTableStatus}
		return testing.AllocsPerRun(20, func() {
			i := 0
			if err := c.DoEach(r, func(r *Request) bool { r.Header.Name = "dev"; i++; return i <= n },
				func(*Header, []byte, error) error { return nil }); err != nil {
				t.Fatal(err)
			}
		})
	}
	if a, b := run(1), run(50); a != b {
		t.Errorf("%v allocations for one request, %v for 50", a, b)
	}
}
