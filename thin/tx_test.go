package thin

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/ioctl"
)

// failNth makes the kernel fail the message msg (exactly) with errno once.
func (e *env) failExact(msg string, errno unix.Errno) {
	var once sync.Once
	e.k.SetMessageHook(func(device string, _ ioctl.TargetSpec, argv []string) (string, bool, bool, error) {
		m := strings.Join(argv, " ")
		e.mu.Lock()
		e.msgs = append(e.msgs, m)
		e.mu.Unlock()
		fail := false
		if m == msg {
			once.Do(func() { fail = true })
		}
		if fail {
			return "", false, true, errno
		}
		return "", false, false, nil
	})
}

func TestTransaction(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	batch := func(tx *Tx) error {
		tx.CreateThin(1)
		tx.CreateThin(2)
		tx.CreateSnapshot(3, 1)
		tx.Delete(2)
		if tx.Len() != 4 {
			t.Errorf("Len %d", tx.Len())
		}
		return nil
	}
	e.reset()
	res, err := p.Transaction(ctx, 0, batch)
	ok(t, err)
	if res != (TxResult{From: 0, To: 1, Sent: 4}) {
		t.Errorf("result %+v", res)
	}
	want := []string{"create_thin 1", "create_thin 2", "create_snap 3 1", "delete 2", "set_transaction_id 0 1"}
	if m := e.messages(); !cmp.Equal(m, want) {
		t.Errorf("messages %q, want %q", m, want)
	}
	if tid, _ := p.TransactionID(ctx); tid != 1 {
		t.Errorf("tid %d", tid)
	}

	// Applying it again finds it applied and sends nothing.
	e.reset()
	res, err = p.Transaction(ctx, 0, batch)
	ok(t, err)
	if !res.AlreadyApplied || res.Sent != 0 {
		t.Errorf("second apply %+v", res)
	}
	if m := e.messages(); len(m) != 0 {
		t.Errorf("messages %q", m)
	}

	// The pool at another id: refused before any message.
	_, err = p.Transaction(ctx, 5, batch)
	is(t, err, ErrTransactionMismatch, dm.ErrInvalid, unix.EINVAL)
	if m := e.messages(); len(m) != 0 {
		t.Errorf("messages %q", m)
	}

	// An error from fn aborts before anything is sent.
	boom := errors.New("boom")
	e.reset()
	_, err = p.Transaction(ctx, 1, func(tx *Tx) error { tx.CreateThin(9); return boom })
	if err != boom {
		t.Errorf("fn error came back as %v", err)
	}
	e.noCalls("fn failed")

	// An empty batch just advances the id.
	res, err = p.Transaction(ctx, 1, func(*Tx) error { return nil })
	ok(t, err)
	if tid, _ := p.TransactionID(ctx); tid != 2 || res.To != 2 {
		t.Errorf("tid %d, result %+v", tid, res)
	}
}

// A batch that fails part-way leaves the first messages applied and the id
// unchanged; a replay finishes it.
func TestTransactionPartialAndReplay(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	batch := func(tx *Tx) error {
		tx.CreateThin(10)
		tx.CreateThin(11)
		tx.CreateThin(12)
		return nil
	}
	e.failExact("create_thin 11", unix.ENOSPC)
	res, err := p.Transaction(ctx, 0, batch)
	is(t, err, unix.ENOSPC)
	if !strings.Contains(err.Error(), "message 2 of 3 (create_thin 11)") {
		t.Errorf("error %q does not say which message failed", err)
	}
	if res.Sent != 1 || res.AlreadyApplied {
		t.Errorf("result %+v", res)
	}
	if tid, _ := p.TransactionID(ctx); tid != 0 {
		t.Errorf("tid %d after a partial batch", tid)
	}
	if m := e.messages(); !cmp.Equal(m, []string{"create_thin 10", "create_thin 11"}) {
		t.Errorf("messages %q", m)
	}

	// Without Replay, the applied create is an error.
	_, err = p.Transaction(ctx, 0, batch)
	is(t, err, ErrIDInUse)

	res, err = p.Transaction(ctx, 0, batch, Replay())
	ok(t, err)
	if res.Sent != 2 || res.Skipped != 1 || res.To != 1 {
		t.Errorf("replay %+v", res)
	}
	for _, id := range []DeviceID{10, 11, 12} {
		is(t, p.CreateThin(ctx, id), ErrIDInUse)
	}

	// Replay of deletes: the gone id counts as done.
	res, err = p.Transaction(ctx, 1, func(tx *Tx) error { tx.Delete(10); tx.Delete(99); return nil }, Replay())
	ok(t, err)
	if res.Sent != 1 || res.Skipped != 1 {
		t.Errorf("delete replay %+v", res)
	}
	// Without Replay a missing id fails.
	_, err = p.Transaction(ctx, 2, func(tx *Tx) error { tx.Delete(99); return nil })
	is(t, err, ErrUnknownID, dm.ErrNoData)
	// Replay of a snapshot that exists.
	_, err = p.Transaction(ctx, 2, func(tx *Tx) error { tx.CreateSnapshot(13, 11); return nil })
	ok(t, err)
	res, err = p.Transaction(ctx, 3, func(tx *Tx) error { tx.CreateSnapshot(13, 11); tx.CreateSnapshot(14, 11); return nil }, Replay())
	ok(t, err)
	if res.Sent != 1 || res.Skipped != 1 {
		t.Errorf("snapshot replay %+v", res)
	}
}

func TestTransactionActiveIDs(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	ok(t, p.CreateThin(ctx, 1))
	_, err := p.Activate(ctx, "vol", 1, 4096)
	ok(t, err)
	l := e.watchOrigin("vol")
	res, err := p.Transaction(ctx, 0, func(tx *Tx) error { tx.CreateSnapshot(2, 1); tx.CreateThin(3); return nil })
	ok(t, err)
	if res.Sent != 2 {
		t.Errorf("result %+v", res)
	}
	at, ev := l.get()
	if len(at) < 1 || !at[0] || !cmp.Equal(ev, []string{"suspend", "resume"}) {
		t.Errorf("origin at create_snap %v, events %v", at, ev)
	}
	// An active id is in use: refused without a message, unless replaying.
	e.k.SetBeforeIoctl(nil)
	e.reset()
	_, err = p.Transaction(ctx, 1, func(tx *Tx) error { tx.CreateThin(1); return nil })
	is(t, err, ErrIDInUse, unix.EEXIST)
	if m := e.messages(); len(m) != 0 {
		t.Errorf("messages %q", m)
	}
	res, err = p.Transaction(ctx, 1, func(tx *Tx) error { tx.CreateThin(1); tx.CreateSnapshot(1, 3); return nil }, Replay())
	ok(t, err)
	if res.Skipped != 2 || res.Sent != 0 {
		t.Errorf("replay of active ids %+v", res)
	}
}

// Once the first message is sent, cancelling the context does not stop the
// batch half-way.
func TestTransactionIgnoresLateCancel(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	e.k.SetBeforeIoctl(func(cmd ioctl.Cmd, _ *ioctl.Header) error {
		if cmd == ioctl.CmdTargetMsg {
			cancel()
		}
		return nil
	})
	res, err := p.Transaction(ctx, 0, func(tx *Tx) error {
		for i := DeviceID(0); i < 5; i++ {
			tx.CreateThin(i)
		}
		return nil
	})
	ok(t, err)
	if res.Sent != 5 {
		t.Errorf("result %+v", res)
	}
	e.k.SetBeforeIoctl(nil)
	if tid, _ := p.TransactionID(e.ctx); tid != 1 {
		t.Errorf("tid %d", tid)
	}
	// A context cancelled before anything is sent stops it.
	_, err = p.Transaction(ctx, 1, func(tx *Tx) error { tx.CreateThin(9); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled transaction: %v", err)
	}
}

// set_transaction_id failing (another process moved the id) leaves the
// batch applied and the id where the other process put it.
func TestTransactionLostCAS(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	e.failExact("set_transaction_id 0 1", unix.EINVAL)
	res, err := p.Transaction(e.ctx, 0, func(tx *Tx) error { tx.CreateThin(1); return nil })
	is(t, err, ErrTransactionMismatch, unix.EINVAL)
	if res.Sent != 1 {
		t.Errorf("result %+v", res)
	}
	is(t, p.CreateThin(e.ctx, 1), ErrIDInUse)
}

// A transaction runs beside an activation of an id it does not name, and
// waits for one of an id it does.
func TestTransactionBesideActivation(t *testing.T) {
	e := newEnv(t)
	p := e.pool()
	ctx := e.ctx
	ok(t, p.CreateThin(ctx, 1))
	release, activated := e.holdActivation(p, ioctl.CmdDevCreate, "vol1", 1)
	// Id 2 is free to change while vol1's activation is in the kernel.
	if _, err := p.Transaction(ctx, 0, func(tx *Tx) error { tx.CreateThin(2); return nil }); err != nil {
		t.Fatalf("transaction beside an activation: %+v", err)
	}
	// A snapshot of id 1 waits for its activation, then sees it active.
	snapped := make(chan error, 1)
	go func() {
		_, err := p.Transaction(ctx, 1, func(tx *Tx) error { tx.CreateSnapshot(3, 1); return nil })
		snapped <- err
	}()
	close(release)
	ok(t, <-activated)
	ok(t, <-snapped)
	e.k.SetBeforeIoctl(nil)
	// Had the snapshot not waited, it would have found id 1 inactive and
	// not suspended it (the origin is suspended by its device number).
	suspended := false
	for _, c := range e.k.Calls() {
		if c.Cmd == ioctl.CmdDevSuspend && c.Header.Name != "pool" && c.Header.Flags&ioctl.FlagSuspend != 0 && c.Err == nil {
			suspended = true
		}
	}
	if !suspended {
		t.Error("the snapshot of an origin being activated did not suspend it")
	}
}
