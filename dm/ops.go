package dm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/thinp/thinp/ioctl"
	"golang.org/x/sys/unix"
)

// CreateOption configures Create and CreateDevice.
type CreateOption func(*createConfig)

type createConfig struct {
	uuid     string
	minor    uint32
	hasMinor bool
	flags    Flag
}

// WithUUID gives the new device a uuid (at most 128 bytes). A uuid can only
// be set once: at creation, or later with SetUUID if none was given.
func WithUUID(uuid string) CreateOption { return func(c *createConfig) { c.uuid = uuid } }

// WithMinor asks for a specific minor number (DM_PERSISTENT_DEV_FLAG).
func WithMinor(minor uint32) CreateOption {
	return func(c *createConfig) { c.minor, c.hasMinor = minor, true }
}

// WithReadOnly makes the table of Create read-only.
func WithReadOnly() CreateOption { return func(c *createConfig) { c.flags |= ReadOnly } }

// WithSecureData marks the table of Create as holding secrets: the kernel
// and this package wipe their copies.
func WithSecureData() CreateOption { return func(c *createConfig) { c.flags |= SecureData } }

func (cc *createConfig) validate(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := ValidateUUID(cc.uuid); err != nil {
		return err
	}
	if cc.hasMinor && cc.minor > 0xfffff {
		return invalid("minor", "%d does not fit dev_t", cc.minor)
	}
	return nil
}

// CreateDevice creates a device with no table (DM_DEV_CREATE). It cannot do
// I/O until a table is loaded and resumed; most callers want Create.
func (c *Control) CreateDevice(ctx context.Context, name string, opts ...CreateOption) (Info, error) {
	var cc createConfig
	for _, o := range opts {
		o(&cc)
	}
	if err := cc.validate(name); err != nil {
		return Info{}, newError("create", Name(name), err)
	}
	return c.createDevice(ctx, name, &cc)
}

func (c *Control) createDevice(ctx context.Context, name string, cc *createConfig) (Info, error) {
	r := &ioctl.Request{Cmd: ioctl.CmdDevCreate}
	r.Header.UUID = cc.uuid
	if cc.hasMinor {
		r.Header.Flags |= ioctl.FlagPersistentDev
		// Only the minor is used; the major is dm's own.
		r.Header.Dev = ioctl.Dev{Minor: cc.minor}.Encode()
	}
	var info Info
	err := c.do(ctx, "create", Name(name), r, func(h *ioctl.Header, _ []byte) error {
		info = infoFromHeader(h)
		return nil
	})
	if err != nil {
		return Info{}, err
	}
	if err := c.nodeAdd(name, info.Dev); err != nil {
		_ = c.removeOnce(context.WithoutCancel(ctx), Name(name), 0)
		return Info{}, newError("create", Name(name), err)
	}
	return info, nil
}

// Create creates a device, loads table into it and resumes it, so that it
// is ready for I/O when Create returns: the three steps of `dmsetup create`.
// Everything is validated before anything reaches the kernel. If the load
// or the resume fails, the device is removed again, so a failed Create
// leaves nothing behind; the error is that of the failing step.
func (c *Control) Create(ctx context.Context, name string, table Table, opts ...CreateOption) (Info, error) {
	var cc createConfig
	for _, o := range opts {
		o(&cc)
	}
	ref := Name(name)
	if err := cc.validate(name); err != nil {
		return Info{}, newError("create", ref, err)
	}
	if err := table.Validate(); err != nil {
		return Info{}, newError("create", ref, err)
	}
	if _, err := c.createDevice(ctx, name, &cc); err != nil {
		return Info{}, err
	}
	rollback := func(cause error) error {
		// The rollback must run even if ctx is already cancelled.
		if rerr := c.removeOnce(context.WithoutCancel(ctx), ref, 0); rerr != nil {
			var e *Error
			if errors.As(cause, &e) {
				e.Err = errors.Join(e.Err, fmt.Errorf("rollback: %w", rerr))
			}
		}
		return cause
	}
	if err := c.load(ctx, "create", ref, table, cc.flags); err != nil {
		return Info{}, rollback(err)
	}
	info, err := c.resume(ctx, "create", ref, 0)
	if err != nil {
		return Info{}, rollback(err)
	}
	return info, nil
}

// Load loads table as the device's inactive table (DM_TABLE_LOAD); Resume
// makes it live. Flags: ReadOnly, SecureData.
func (c *Control) Load(ctx context.Context, ref Ref, table Table, flags ...Flag) error {
	f, err := collect("load", ReadOnly|SecureData, flags)
	if err == nil {
		err = ref.validate()
	}
	if err == nil {
		err = table.Validate()
	}
	if err != nil {
		return newError("load", ref, err)
	}
	return c.load(ctx, "load", ref, table, f)
}

func (c *Control) load(ctx context.Context, op string, ref Ref, table Table, f Flag) error {
	r := &ioctl.Request{Cmd: ioctl.CmdTableLoad, Targets: table.specs()}
	r.Header.Flags = f.wire()
	return c.do(ctx, op, ref, r, nil)
}

// Clear drops the device's inactive table (DM_TABLE_CLEAR).
func (c *Control) Clear(ctx context.Context, ref Ref) error {
	if err := ref.validate(); err != nil {
		return newError("clear", ref, err)
	}
	return c.do(ctx, "clear", ref, &ioctl.Request{Cmd: ioctl.CmdTableClear}, nil)
}

// Suspend suspends the device: new I/O is queued and, unless NoFlush, I/O
// in flight is flushed first; unless SkipLockfs, the filesystem on top is
// frozen. Suspending a suspended device does nothing. Flags: NoFlush,
// SkipLockfs. Whoever suspends must resume: see WithSuspended.
func (c *Control) Suspend(ctx context.Context, ref Ref, flags ...Flag) error {
	f, err := collect("suspend", NoFlush|SkipLockfs, flags)
	if err == nil {
		err = ref.validate()
	}
	if err != nil {
		return newError("suspend", ref, err)
	}
	r := &ioctl.Request{Cmd: ioctl.CmdDevSuspend}
	r.Header.Flags = f.wire() | ioctl.FlagSuspend
	return c.do(ctx, "suspend", ref, r, nil)
}

// Resume makes the inactive table live if one is loaded, and resumes I/O
// (DM_DEV_SUSPEND without DM_SUSPEND_FLAG). It waits for udev to process
// the change event when udev synchronisation is on. Flags: NoFlush,
// SkipLockfs (used for the implicit suspend when a new table is swapped in
// on a running device).
func (c *Control) Resume(ctx context.Context, ref Ref, flags ...Flag) (Info, error) {
	f, err := collect("resume", NoFlush|SkipLockfs, flags)
	if err == nil {
		err = ref.validate()
	}
	if err != nil {
		return Info{}, newError("resume", ref, err)
	}
	return c.resume(ctx, "resume", ref, f)
}

func (c *Control) resume(ctx context.Context, op string, ref Ref, f Flag) (Info, error) {
	r := &ioctl.Request{Cmd: ioctl.CmdDevSuspend}
	r.Header.Flags = f.wire()
	var info Info
	err := c.withCookie(ctx, op, ref, r, func(h *ioctl.Header, _ []byte) error {
		info = infoFromHeader(h)
		return nil
	})
	return info, err
}

// WithSuspended suspends the device, runs fn, and resumes the device
// whatever fn returns or however it panics, so that the device is never
// left suspended because of us. The resume runs even if ctx is cancelled.
// Flags: NoFlush, SkipLockfs.
func (c *Control) WithSuspended(ctx context.Context, ref Ref, fn func() error, flags ...Flag) (err error) {
	if err := c.Suspend(ctx, ref, flags...); err != nil {
		return err
	}
	f, _ := collect("resume", NoFlush|SkipLockfs, flags)
	defer func() {
		_, rerr := c.resume(context.WithoutCancel(ctx), "resume", ref, f)
		switch {
		case rerr == nil:
		case err == nil:
			err = rerr
		default:
			// Both failed: the caller must hear that the device may
			// still be suspended.
			err = joinCause(err, rerr)
		}
	}()
	return fn()
}

// Reload replaces the live table of a running device: load table, then
// resume. If the resume fails (a thin-pool refusing to shrink, for
// instance, leaves the device suspended with the new table live), the
// previous table is loaded and resumed again, so the device ends up running
// its old table; the error is the resume's. Flags: NoFlush, SkipLockfs for
// the swap, ReadOnly for the new table.
func (c *Control) Reload(ctx context.Context, ref Ref, table Table, flags ...Flag) error {
	f, err := collect("reload", NoFlush|SkipLockfs|ReadOnly, flags)
	if err == nil {
		err = ref.validate()
	}
	if err == nil {
		err = table.Validate()
	}
	if err != nil {
		return newError("reload", ref, err)
	}
	old, err := c.Table(ctx, ref)
	if err != nil {
		return err
	}
	oldInfo, err := c.Info(ctx, ref)
	if err != nil {
		return err
	}
	if err := c.load(ctx, "reload", ref, table, f&ReadOnly); err != nil {
		return err
	}
	swap := f &^ ReadOnly
	if _, err := c.resume(ctx, "reload", ref, swap); err != nil {
		if Applied(err) {
			// The new table is live and the device running; only the
			// wait for udev failed. Rolling back now would try to load
			// the old table into a device that has outgrown it.
			return err
		}
		bg := context.WithoutCancel(ctx)
		var rf Flag
		if oldInfo.ReadOnly {
			rf = ReadOnly
		}
		if len(old) > 0 {
			if lerr := c.load(bg, "reload", ref, old, rf); lerr != nil {
				return joinCause(err, fmt.Errorf("restoring the previous table: %w", lerr))
			}
		}
		if _, rerr := c.resume(bg, "reload", ref, swap); rerr != nil {
			return joinCause(err, fmt.Errorf("resuming the previous table: %w", rerr))
		}
		return err
	}
	return nil
}

func joinCause(err, more error) error {
	var e *Error
	if errors.As(err, &e) {
		e.Err = errors.Join(e.Err, more)
		return err
	}
	return errors.Join(err, more)
}

// Remove removes the device (DM_DEV_REMOVE). A device that is open fails
// with EBUSY; Remove retries it for the Control's retry budget (5 s by
// default, bounded by ctx) because the opener is usually udev's scan of a
// just-closed device. Flags: Deferred (remove at last close instead of
// failing; the call returns at once), NoRetry. A device that does not exist
// gives ErrNotFound; one still busy gives ErrBusy with a *BusyError that
// says what uses it (its open count, the devices stacked on it, its mounts
// in every mount namespace).
func (c *Control) Remove(ctx context.Context, ref Ref, flags ...Flag) error {
	return c.busy(ctx, ref, c.remove(ctx, ref, flags))
}

func (c *Control) remove(ctx context.Context, ref Ref, flags []Flag) error {
	f, err := collect("remove", Deferred|NoRetry, flags)
	if err == nil {
		err = ref.validate()
	}
	if err != nil {
		return newError("remove", ref, err)
	}
	budget := c.cfg.removeBudget
	if f&NoRetry != 0 || f&Deferred != 0 {
		budget = 0
	}
	deadline := time.Now().Add(budget)
	delay := 10 * time.Millisecond
	for {
		err := c.removeOnce(ctx, ref, f&Deferred)
		if err == nil || !errors.Is(err, ErrBusy) || budget <= 0 {
			return err
		}
		if time.Now().Add(delay).After(deadline) {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return joinCause(err, ctx.Err())
		case <-t.C:
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

func (c *Control) removeOnce(ctx context.Context, ref Ref, f Flag) error {
	r := &ioctl.Request{Cmd: ioctl.CmdDevRemove}
	r.Header.Flags = f.wire()
	var name string
	var deferred bool
	err := c.withCookie(ctx, "remove", ref, r, func(h *ioctl.Header, _ []byte) error {
		name = h.Name
		// With DM_DEFERRED_REMOVE on an open device the kernel returns 0
		// and leaves the device in place with the flag still set; a real
		// removal clears it.
		deferred = h.Flags&ioctl.FlagDeferredRemove != 0
		return nil
	})
	if err != nil {
		return err
	}
	if !deferred && name != "" {
		if err := c.nodeRemove(name); err != nil {
			return newError("remove", ref, err)
		}
	}
	return nil
}

// CancelDeferredRemove cancels a deferred removal still waiting for the
// device's last close (the "@cancel_deferred_remove" message to dm core).
func (c *Control) CancelDeferredRemove(ctx context.Context, ref Ref) error {
	if err := ref.validate(); err != nil {
		return newError("cancel deferred remove", ref, err)
	}
	if !c.version.Has(ioctl.FeatureDeferredRemove) {
		return newError("cancel deferred remove", ref, &NotSupportedError{What: "deferred remove", Need: ioctl.FeatureDeferredRemove.MinVersion(), Kernel: c.version})
	}
	r := &ioctl.Request{Cmd: ioctl.CmdTargetMsg, Message: "@cancel_deferred_remove"}
	return c.do(ctx, "cancel deferred remove", ref, r, nil)
}

// RemoveAll removes every device that is not in use (DM_REMOVE_ALL); with
// Deferred, devices in use are marked for removal at their last close. It
// manages no /dev/mapper nodes: run it only where udev does, or clean up
// with MakeNodes.
func (c *Control) RemoveAll(ctx context.Context, flags ...Flag) error {
	f, err := collect("remove all", Deferred, flags)
	if err != nil {
		return newError("remove all", Ref{}, err)
	}
	r := &ioctl.Request{Cmd: ioctl.CmdRemoveAll}
	r.Header.Flags = f.wire()
	return c.do(ctx, "remove all", Ref{}, r, nil)
}

// Rename gives the device a new name (DM_DEV_RENAME).
func (c *Control) Rename(ctx context.Context, ref Ref, newName string) error {
	err := ref.validate()
	if err == nil {
		err = ValidateName(newName)
	}
	if err != nil {
		return newError("rename", ref, err)
	}
	r := &ioctl.Request{Cmd: ioctl.CmdDevRename, String: newName}
	var oldName string
	var dev Dev
	err = c.withCookie(ctx, "rename", ref, r, func(h *ioctl.Header, _ []byte) error {
		dev = ioctl.DecodeDev(h.Dev)
		return nil
	})
	if err != nil {
		return err
	}
	if ref.kind == refName {
		oldName = ref.s
	}
	if err := c.nodeRename(oldName, newName, dev); err != nil {
		return newError("rename", ref, err)
	}
	return nil
}

// SetUUID sets the uuid of a device that has none (DM_DEV_RENAME with
// DM_UUID_FLAG); the kernel refuses to change an existing uuid (EINVAL).
func (c *Control) SetUUID(ctx context.Context, ref Ref, uuid string) error {
	err := ref.validate()
	if err == nil {
		if uuid == "" {
			err = invalid("uuid", "empty")
		} else {
			err = ValidateUUID(uuid)
		}
	}
	if err != nil {
		return newError("set uuid", ref, err)
	}
	r := &ioctl.Request{Cmd: ioctl.CmdDevRename, String: uuid}
	r.Header.Flags = ioctl.FlagUUID
	return c.withCookie(ctx, "set uuid", ref, r, nil)
}

// Info reports the device's state (DM_DEV_STATUS). Flags: Inactive (the
// target count and read-only flag describe the inactive table).
func (c *Control) Info(ctx context.Context, ref Ref, flags ...Flag) (Info, error) {
	f, err := collect("info", Inactive, flags)
	if err == nil {
		err = ref.validate()
	}
	if err != nil {
		return Info{}, newError("info", ref, err)
	}
	r := &ioctl.Request{Cmd: ioctl.CmdDevStatus}
	r.Header.Flags = f.wire()
	var info Info
	err = c.do(ctx, "info", ref, r, func(h *ioctl.Header, _ []byte) error {
		info = infoFromHeader(h)
		return nil
	})
	return info, err
}

// Table returns the device's live table as loaded, in the kernel's
// canonical form (DM_TABLE_STATUS with DM_STATUS_TABLE_FLAG). Flags:
// Inactive. A device without such a table gives an empty Table.
func (c *Control) Table(ctx context.Context, ref Ref, flags ...Flag) (Table, error) {
	f, err := collect("table", Inactive, flags)
	if err == nil {
		err = ref.validate()
	}
	if err != nil {
		return nil, newError("table", ref, err)
	}
	var t Table
	err = c.tableStatus(ctx, "table", ref, f.wire()|ioctl.FlagStatusTable, false, func(n int, s ioctl.TargetSpec) error {
		if t == nil {
			t = make(Table, 0, n)
		}
		t = append(t, Target{Start: Sectors(s.Start), Length: Sectors(s.Length), Type: s.Type, Params: s.Params})
		return nil
	})
	return t, err
}

// Status returns each target's status line (DM_TABLE_STATUS). Flags:
// NoFlush (a thin-pool does not commit its metadata first: use it for
// monitoring), Inactive.
func (c *Control) Status(ctx context.Context, ref Ref, flags ...Flag) ([]TargetStatus, error) {
	f, err := collect("status", NoFlush|Inactive, flags)
	if err == nil {
		err = ref.validate()
	}
	if err != nil {
		return nil, newError("status", ref, err)
	}
	var st []TargetStatus
	err = c.tableStatus(ctx, "status", ref, f.wire(), false, func(n int, s ioctl.TargetSpec) error {
		if st == nil {
			st = make([]TargetStatus, 0, n)
		}
		st = append(st, targetStatus(s))
		return nil
	})
	return st, err
}

// StatusFunc is Status without allocating: fn sees each target's status
// in turn, with Type and Status pointing into the reply buffer, valid only
// during the call (strings.Clone keeps one). It is for reading a few
// devices often, such as the pools a monitor watches; StatusAll reads
// every device (or every one of a prefix) in one scan. An error from fn
// stops the walk and is returned, wrapped in a *Error. Flags as for
// Status.
func (c *Control) StatusFunc(ctx context.Context, ref Ref, fn func(TargetStatus) error, flags ...Flag) error {
	f, err := collect("status", NoFlush|Inactive, flags)
	if err == nil {
		err = ref.validate()
	}
	if err == nil && fn == nil {
		err = invalid("status", "nil function")
	}
	if err != nil {
		return newError("status", ref, err)
	}
	return c.tableStatus(ctx, "status", ref, f.wire(), true, func(_ int, s ioctl.TargetSpec) error {
		return fn(targetStatus(s))
	})
}

// StatusAll reads the status of every device, or of every one that opts
// select as they select List's, and calls fn with each device and its
// targets' statuses, in the order the kernel lists them (see List). It is
// the scan that `dmsetup status` makes: one DM_LIST_DEVICES, then one
// DM_TABLE_STATUS per device, all on buffers held for the whole scan,
// allocating nothing per device. The Device and the statuses fn sees
// point into those buffers and are valid only during the call
// (strings.Clone keeps one).
//
// Each Device is as its status read found it: name, uuid, device number
// and event counter (HasEventNr is set), on every kernel, without the
// extra ioctl per device that List needs below dm interface 4.45. A device
// removed or renamed between the list and its status read is left out, as
// a scan a moment later would leave it out. A device without a table is
// reported with no statuses. Flags: NoFlush (a thin-pool does not commit
// its metadata for the read: use it for monitoring), Inactive.
//
// An error from fn stops the scan and is returned, wrapped in a *Error
// naming the device; so is a status read that fails for another reason
// than the device having gone, and ctx being done.
func (c *Control) StatusAll(ctx context.Context, flags Flag, fn func(Device, []TargetStatus) error, opts ...ListOption) error {
	f, err := collect("status", NoFlush|Inactive, []Flag{flags})
	var lf listFilter
	for _, o := range opts {
		o(&lf)
	}
	if err == nil {
		err = lf.check()
	}
	if err == nil && fn == nil {
		err = invalid("status", "nil function")
	}
	if err != nil {
		return newError("status", Ref{}, err)
	}
	sr := &ioctl.Request{Cmd: ioctl.CmdTableStatus}
	sr.Header.Flags = f.wire()
	if err := c.ready(ctx, sr); err != nil {
		return newError("status", Ref{}, err)
	}
	lr := &ioctl.Request{Cmd: ioctl.CmdListDevices}
	filtered := lf != (listFilter{})
	if filtered && c.version.Has(ioctl.FeatureNameListUUID) {
		// The kernel filters; the prefixes are checked again below, on
		// what each status read found.
		lr.Header.Name, lr.Header.UUID = lf.name, lf.uuid
		lr.Header.Flags |= ioctl.FlagUUID
	}
	var devErr *Error // a failure of one device's read, or of fn
	var st []TargetStatus
	err = c.do(ctx, "status", Ref{}, lr, func(h *ioctl.Header, b []byte) error {
		p, err := h.Payload(b)
		if err != nil {
			return err
		}
		var nl ioctl.NameListReader
		nl.ResetAliased(p, h.Version)
		var name string
		next := func(r *ioctl.Request) bool {
			for nl.Next() {
				if name = nl.Entry().Name; strings.HasPrefix(name, lf.name) {
					r.Header.Name = name
					return true
				}
			}
			return false
		}
		done := ctx.Done()
		err = c.conn.DoEach(sr, next, func(h *ioctl.Header, b []byte, err error) error {
			if err == nil {
				select { // cheaper than ctx.Err, which may take a lock
				case <-done:
					err = ctx.Err()
				default:
				}
			}
			if errors.Is(err, unix.ENXIO) {
				return nil // gone since the list
			}
			if err == nil {
				if filtered && (!strings.HasPrefix(h.Name, lf.name) || !strings.HasPrefix(h.UUID, lf.uuid)) {
					return nil
				}
				st = st[:0]
				var tr ioctl.TargetReader
				for tr.ResetAliased(h, b); tr.Next(); {
					s := tr.Spec()
					st = append(st, targetStatus(s))
				}
				if err = tr.Err(); err == nil {
					err = fn(Device{Name: h.Name, UUID: h.UUID, Dev: ioctl.DecodeDev(h.Dev), EventNr: h.EventNr, HasEventNr: true}, st)
				}
			}
			if err != nil {
				devErr = newError("status", Name(strings.Clone(name)), closedErr(err))
			}
			return err
		})
		if err == nil {
			err = nl.Err()
		}
		return err
	})
	if devErr != nil {
		return devErr
	}
	return err
}

// tableStatus issues DM_TABLE_STATUS and calls each with every target's
// spec and the number of targets the kernel reports, stopping at each's
// first error. With alias, the spec's strings point into the reply buffer.
func (c *Control) tableStatus(ctx context.Context, op string, ref Ref, f ioctl.Flags, alias bool, each func(n int, s ioctl.TargetSpec) error) error {
	r := &ioctl.Request{Cmd: ioctl.CmdTableStatus}
	r.Header.Flags = f
	return c.do(ctx, op, ref, r, func(h *ioctl.Header, b []byte) error {
		var tr ioctl.TargetReader
		if alias {
			tr.ResetAliased(h, b)
		} else {
			tr.Reset(h, b)
		}
		n := int(min(h.TargetCount, 1<<16)) // a capacity hint only
		for tr.Next() {
			if err := each(n, tr.Spec()); err != nil {
				return err
			}
		}
		return tr.Err()
	})
}

// Deps lists the block devices the device's table uses (DM_TABLE_DEPS).
// Flags: Inactive.
func (c *Control) Deps(ctx context.Context, ref Ref, flags ...Flag) ([]Dev, error) {
	f, err := collect("deps", Inactive, flags)
	if err == nil {
		err = ref.validate()
	}
	if err != nil {
		return nil, newError("deps", ref, err)
	}
	r := &ioctl.Request{Cmd: ioctl.CmdTableDeps}
	r.Header.Flags = f.wire()
	var devs []Dev
	err = c.do(ctx, "deps", ref, r, func(h *ioctl.Header, b []byte) error {
		p, err := h.Payload(b)
		if err != nil {
			return err
		}
		raw, err := ioctl.ParseDeps(p)
		for _, d := range raw {
			devs = append(devs, ioctl.DecodeDev(d))
		}
		return err
	})
	return devs, err
}

// Device is one entry of List.
type Device struct {
	Name string
	UUID string // from DM_LIST_DEVICES on dm interface 4.45 on, from DM_DEV_STATUS before
	Dev  Dev
	// EventNr is the device's event counter (in DM_LIST_DEVICES from
	// interface 4.37 on, from DM_DEV_STATUS before; HasEventNr says
	// whether List has it).
	EventNr    uint32
	HasEventNr bool
}

// ListOption filters List: WithNamePrefix, WithUUIDPrefix.
type ListOption func(*listFilter)

type listFilter struct{ name, uuid string }

// check refuses prefixes the wire format cannot carry.
func (f listFilter) check() error {
	if err := checkPrefix(f.name, ioctl.NameLen); err != nil {
		return err
	}
	return checkPrefix(f.uuid, ioctl.UUIDLen)
}

// WithNamePrefix lists only devices whose name starts with prefix (the
// kernel filters from dm interface 4.45 on, List itself before).
func WithNamePrefix(prefix string) ListOption { return func(f *listFilter) { f.name = prefix } }

// WithUUIDPrefix lists only devices whose uuid starts with prefix (the
// kernel filters from dm interface 4.45 on, List itself before).
func WithUUIDPrefix(prefix string) ListOption { return func(f *listFilter) { f.uuid = prefix } }

// List lists the devices (DM_LIST_DEVICES) in the order the kernel lists
// them (by name on recent kernels, such as 6.1; in hash order on older
// ones, such as 5.10), with their uuids and event counters. Kernels older than dm
// interface 4.45 neither filter nor report uuids: List then filters
// itself and asks each device for its uuid (see listEmulated).
func (c *Control) List(ctx context.Context, opts ...ListOption) ([]Device, error) {
	var f listFilter
	for _, o := range opts {
		o(&f)
	}
	r := &ioctl.Request{Cmd: ioctl.CmdListDevices}
	r.Header.Name, r.Header.UUID = f.name, f.uuid
	if err := f.check(); err != nil {
		return nil, newError("list", Ref{}, err)
	}
	if !c.version.Has(ioctl.FeatureNameListUUID) {
		return c.listEmulated(ctx, r.Header.Name, r.Header.UUID)
	}
	r.Header.Flags |= ioctl.FlagUUID
	return c.listDevices(ctx, r)
}

// listDevices runs DM_LIST_DEVICES.
func (c *Control) listDevices(ctx context.Context, r *ioctl.Request) ([]Device, error) {
	var out []Device
	err := c.do(ctx, "list", Ref{}, r, func(h *ioctl.Header, b []byte) error {
		p, err := h.Payload(b)
		if err != nil {
			return err
		}
		nl := ioctl.NewNameListReader(p, h.Version)
		for nl.Next() {
			e := nl.Entry()
			out = append(out, Device{Name: e.Name, UUID: e.UUID, Dev: ioctl.DecodeDev(e.Dev), EventNr: e.EventNr, HasEventNr: e.HasEventNr})
		}
		return nl.Err()
	})
	return out, err
}

func checkPrefix(p string, size int) error {
	if len(p) > size-1 {
		return invalid("prefix", "longer than %d bytes", size-1)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return invalid("prefix", "contains a NUL byte")
	}
	return nil
}

// TargetType is a target type the kernel has loaded, with its version.
type TargetType struct {
	Name    string
	Version Version
}

// Targets lists the target types the kernel has loaded (DM_LIST_VERSIONS).
// Types in modules not yet loaded are missing.
func (c *Control) Targets(ctx context.Context) ([]TargetType, error) {
	var out []TargetType
	err := c.do(ctx, "targets", Ref{}, &ioctl.Request{Cmd: ioctl.CmdListVersions}, func(h *ioctl.Header, b []byte) error {
		p, err := h.Payload(b)
		if err != nil {
			return err
		}
		vr := ioctl.NewVersionReader(p)
		for vr.Next() {
			e := vr.Entry()
			out = append(out, TargetType{Name: e.Name, Version: e.Version})
		}
		return vr.Err()
	})
	return out, err
}

// TargetVersion returns the version of one target type
// (DM_GET_TARGET_VERSION, which also loads the target's module; on kernels
// before 4.41 it searches DM_LIST_VERSIONS). An unknown type gives
// ErrNotSupported.
func (c *Control) TargetVersion(ctx context.Context, name string) (Version, error) {
	ref := Ref{}
	if name == "" || len(name) > ioctl.MaxTypeName-1 {
		return Version{}, newError("target version", ref, invalid("target type", "%q is not a target type name", name))
	}
	if !c.version.Has(ioctl.FeatureTargetVersion) {
		ts, err := c.Targets(ctx)
		if err != nil {
			return Version{}, err
		}
		for _, t := range ts {
			if t.Name == name {
				return t.Version, nil
			}
		}
		return Version{}, newError("target version", ref, fmt.Errorf("target type %q: %w", name, ErrNotSupported))
	}
	r := &ioctl.Request{Cmd: ioctl.CmdGetTargetVersion}
	r.Header.Name = name
	var v Version
	found := false
	err := c.do(ctx, "target version", ref, r, func(h *ioctl.Header, b []byte) error {
		p, err := h.Payload(b)
		if err != nil {
			return err
		}
		vr := ioctl.NewVersionReader(p)
		for vr.Next() {
			v, found = vr.Entry().Version, true
		}
		return vr.Err()
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Errno() != 0 && errors.Is(err, ErrInvalid) {
			// The kernel answers EINVAL for a type it cannot find.
			e.Err = errors.Join(e.Err, fmt.Errorf("target type %q: %w", name, ErrNotSupported))
		}
		return Version{}, err
	}
	if !found {
		return Version{}, newError("target version", ref, fmt.Errorf("target type %q: %w", name, ErrNotSupported))
	}
	return v, nil
}

// Message sends msg to the target that maps sector (DM_TARGET_MSG) and
// returns the text the target answered, if any. Messages starting with '@'
// go to device-mapper core instead of the target.
//
// The request goes in a 16 KiB buffer (the size that last sufficed, if a
// reply needed more). An answer that does not fit is only known to be too
// long after the target ran the message: the kernel then sets
// DM_BUFFER_FULL_FLAG, and the message is sent again with twice the
// buffer, as libdevmapper does, so it runs twice. That is harmless for the
// messages that answer at length (@stats_list, @stats_print) and for
// thin-pool messages, which answer nothing; a message that both changes
// state and answers more than 16 KiB (@stats_print_clear over many areas)
// should be split, a range of areas per call, so that each answer fits.
func (c *Control) Message(ctx context.Context, ref Ref, sector Sectors, msg string) (string, error) {
	err := ref.validate()
	if err == nil && msg == "" {
		err = invalid("message", "empty")
	}
	if err == nil && checkPrefix(msg, len(msg)+1) != nil {
		err = invalid("message", "contains a NUL byte")
	}
	if err != nil {
		return "", newError("message", ref, err)
	}
	r := &ioctl.Request{Cmd: ioctl.CmdTargetMsg, Sector: uint64(sector), Message: msg}
	var out string
	err = c.do(ctx, "message", ref, r, func(h *ioctl.Header, b []byte) error {
		if h.Flags&ioctl.FlagDataOut == 0 {
			return nil
		}
		p, err := h.Payload(b)
		if err != nil {
			return err
		}
		out, err = ioctl.ParseString(p)
		return err
	})
	return out, err
}

// Geometry is a device's reported disk geometry (DM_DEV_SET_GEOMETRY).
type Geometry struct {
	Cylinders uint32 // at most 65535
	Heads     uint32 // at most 255
	Sectors   uint32 // per track, at most 255
	Start     uint64 // start sector
}

// SetGeometry sets the geometry the device reports (HDIO_GETGEO).
func (c *Control) SetGeometry(ctx context.Context, ref Ref, g Geometry) error {
	err := ref.validate()
	if err == nil && (g.Cylinders > 65535 || g.Heads > 255 || g.Sectors > 255) {
		err = invalid("geometry", "cylinders must be at most 65535, heads and sectors at most 255")
	}
	if err != nil {
		return newError("set geometry", ref, err)
	}
	r := &ioctl.Request{Cmd: ioctl.CmdDevSetGeometry, String: fmt.Sprintf("%d %d %d %d", g.Cylinders, g.Heads, g.Sectors, g.Start)}
	return c.do(ctx, "set geometry", ref, r, nil)
}
