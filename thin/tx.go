package thin

import (
	"context"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// Tx collects the messages of one transaction; see Pool.Transaction. Its
// methods only record: nothing is sent until the function given to
// Transaction returns.
type Tx struct {
	ops []txOp
}

type txKind uint8

const (
	txCreateThin txKind = iota
	txCreateSnap
	txDelete
)

type txOp struct {
	kind       txKind
	id, origin DeviceID
}

func (o txOp) msg() string {
	switch o.kind {
	case txCreateThin:
		return createThinMsg(o.id)
	case txCreateSnap:
		return createSnapMsg(o.id, o.origin)
	}
	return deleteMsg(o.id)
}

// CreateThin adds create_thin id to the transaction.
func (tx *Tx) CreateThin(id DeviceID) { tx.ops = append(tx.ops, txOp{kind: txCreateThin, id: id}) }

// CreateSnapshot adds create_snap id origin to the transaction; an active
// origin is suspended around it, as by Pool.CreateSnapshot.
func (tx *Tx) CreateSnapshot(id, origin DeviceID) {
	tx.ops = append(tx.ops, txOp{kind: txCreateSnap, id: id, origin: origin})
}

// Delete adds delete id to the transaction.
func (tx *Tx) Delete(id DeviceID) { tx.ops = append(tx.ops, txOp{kind: txDelete, id: id}) }

// Len is the number of messages recorded.
func (tx *Tx) Len() int { return len(tx.ops) }

// TxOption configures Pool.Transaction.
type TxOption func(*txConfig)

type txConfig struct{ replay bool }

// Replay marks a transaction that may have been partly applied before (the
// process crashed, or an earlier attempt failed half-way, and the pool is
// still at the expected transaction id): a create whose id exists (EEXIST)
// and a delete whose id is gone (ENODATA) count as already done. This is
// right only if nothing but this transaction touched those ids since the
// first attempt; the protocol assumes the caller owns the pool's ids.
func Replay() TxOption { return func(c *txConfig) { c.replay = true } }

// TxResult says what a Transaction did.
type TxResult struct {
	// From and To are the transaction ids before and after: To is From+1.
	From, To uint64
	// AlreadyApplied: the pool was already at To, so the batch had been
	// applied in full before and nothing was sent.
	AlreadyApplied bool
	// Sent is how many messages succeeded in this call; Skipped how many
	// counted as done under Replay.
	Sent, Skipped int
}

// Transaction applies a batch of thin-device changes and advances the
// pool's transaction id from tid to tid+1, so that after a crash the
// caller can tell whether the batch was applied.
//
// The protocol, for a caller keeping a journal of its own:
//
//  1. Write the intent to the journal: "batch B takes the pool from tid
//     to tid+1".
//  2. Call Transaction(ctx, tid, B).
//  3. On success, record in the journal that the pool is at tid+1.
//
// On restart, with an intent in the journal, read the pool's transaction
// id (Pool.TransactionID):
//
//   - tid+1: B was applied in full (set_transaction_id is sent last).
//     Calling Transaction(ctx, tid, B) again is harmless: it reports
//     AlreadyApplied and sends nothing.
//   - tid: B was not applied, or only partly. Call Transaction(ctx, tid,
//     B, Replay()) to finish it: messages already applied are skipped.
//   - anything else: someone else changed the pool; ErrTransactionMismatch.
//
// fn records the batch on tx; it must not send anything itself. An error
// from fn aborts the transaction before anything is sent, and is returned
// as is. Ids are checked, and the pool's mode too (ErrPoolReadOnly,
// ErrPoolFailed, ErrNeedsCheck), before any message; then the messages are
// sent in order and set_transaction_id tid tid+1 last.
//
// A failure part-way leaves exactly this: the first Sent+Skipped messages
// applied and committed (the kernel commits after each message), the
// failing one not applied (a failed message changes nothing), the rest not
// sent, and the transaction id still tid. The error says which message
// failed. Once the first message is sent the batch runs to its end or to
// its first failure even if ctx is cancelled, so that a cancellation does
// not itself leave a half-applied batch. If set_transaction_id itself
// fails (another process moved the id: ErrTransactionMismatch), the whole
// batch is applied but the id is not advanced.
//
// Transactions of one Pool value run one at a time, and each excludes the
// other operations on the thin ids it names (a snapshot's origin among
// them); operations on other ids, activations say, go on beside it. Other
// processes are detected through the transaction id only.
func (p *Pool) Transaction(ctx context.Context, tid uint64, fn func(*Tx) error, opts ...TxOption) (TxResult, error) {
	op := "transaction " + strconv.FormatUint(tid, 10)
	var c txConfig
	for _, o := range opts {
		o(&c)
	}
	res := TxResult{From: tid, To: tid + 1}
	if tid == ^uint64(0) {
		return res, invalid(op, p.name, nil, "transaction id", "%d cannot be advanced", tid)
	}
	tx := &Tx{}
	if err := fn(tx); err != nil {
		return res, err
	}
	for i, o := range tx.ops {
		if err := validateID("device id", o.id); err != nil {
			return res, invalidFrom(fmt.Sprintf("%s: message %d (%s)", op, i, o.msg()), p.name, err)
		}
		if o.kind == txCreateSnap {
			if err := validateID("origin id", o.origin); err != nil {
				return res, invalidFrom(fmt.Sprintf("%s: message %d (%s)", op, i, o.msg()), p.name, err)
			}
			if o.id == o.origin {
				return res, invalid(fmt.Sprintf("%s: message %d (%s)", op, i, o.msg()), p.name, ErrIDInUse, "device id", "a snapshot needs a new id, not its origin's")
			}
		}
	}

	var ids []DeviceID
	for _, o := range tx.ops {
		ids = append(ids, o.id)
		if o.kind == txCreateSnap {
			ids = append(ids, o.origin)
		}
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	p.tmu.Lock()
	defer p.tmu.Unlock()
	defer p.ids.lock(ids...)()
	st, err := p.checkMessages(ctx, op)
	if err != nil {
		return res, err
	}
	switch st.TransactionID {
	case tid + 1:
		res.AlreadyApplied = true
		return res, nil
	case tid:
	default:
		return res, refused(op, p.name, ErrTransactionMismatch, unix.EINVAL, "the pool is at transaction %d, not %d", st.TransactionID, tid)
	}
	var active thinDevices
	var created []DeviceID // the ids whose activity decides a message
	for _, o := range tx.ops {
		switch o.kind {
		case txCreateThin:
			created = append(created, o.id)
		case txCreateSnap:
			created = append(created, o.id, o.origin)
		}
	}
	if len(created) > 0 {
		if active, err = p.activeThins(ctx, op, created...); err != nil {
			return res, err
		}
	}
	if err := ctx.Err(); err != nil {
		return res, failed(op, p.name, nil, p.ref(), err)
	}
	// From here on the batch runs to its end or its first failure.
	bg := context.WithoutCancel(ctx)
	for i, o := range tx.ops {
		mop := fmt.Sprintf("%s: message %d of %d (%s)", op, i+1, len(tx.ops), o.msg())
		var err error
		skipped := false
		switch o.kind {
		case txCreateThin:
			if d, ok := active.find(o.id); ok {
				if c.replay {
					skipped = true
					break
				}
				err = idActive(mop, p.name, o.id, d)
				break
			}
			err = p.message(bg, mop, o.msg(), createKinds)
			if c.replay && errnoOf(err) == unix.EEXIST {
				err, skipped = nil, true
			}
		case txCreateSnap:
			skipped, err = p.snapshot(bg, mop, o.id, o.origin, snapConfig{}, active, c.replay)
		case txDelete:
			err = p.message(bg, mop, o.msg(), deleteKinds)
			if c.replay && errnoOf(err) == unix.ENODATA {
				err, skipped = nil, true
			}
			if err == nil {
				p.forgetOrigin(o.id)
			}
		}
		if err != nil {
			return res, err
		}
		if skipped {
			res.Skipped++
		} else {
			res.Sent++
		}
	}
	msg := "set_transaction_id " + strconv.FormatUint(tid, 10) + " " + strconv.FormatUint(tid+1, 10)
	if err := p.message(bg, op+": "+msg, msg, setTIDKinds); err != nil {
		return res, err
	}
	return res, nil
}
