package dmtest

import (
	"encoding/binary"
	"errors"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

// Kernel is a fake device-mapper control device. It implements
// ioctl.Transport and is safe for concurrent use: one mutex guards the
// whole model, and DM_DEV_WAIT releases it while it blocks.
type Kernel struct {
	mu   sync.Mutex
	cond *sync.Cond // signalled on every event and on InterruptWaiters

	version  ioctl.Version
	types    []*targetType // registration order, newest first as the kernel lists them
	major    uint32
	unpriv   bool
	msgHook  MessageHook
	before   func(cmd ioctl.Cmd, h *ioctl.Header) error
	failNext map[ioctl.Cmd][]unix.Errno

	blockDevs map[devKey]*blockDev
	metadata  map[storeKey]*poolMetadata // pool metadata, kept on the metadata device
	byName    map[string]*device
	byUUID    map[string]*device
	byMinor   map[uint32]*device
	pools     []*pool

	globalEvent uint32
	armed       uint32
	interrupts  uint64

	calls []Call

	links    map[linkKey]uint64 // sysfs holder links seen by Holders
	stamps   map[devKey]holderStamp
	nextLink uint64
}

// Call is one request that reached the seam: the command number, the
// request number, the header as the caller sent it (zero if the buffer was
// shorter than a header) and the result.
type Call struct {
	Cmd    ioctl.Cmd
	Req    uint
	Header ioctl.Header
	Err    error
}

// MessageHook, when set with [Kernel.SetMessageHook], sees every target
// message (not the '@' ones, which dm core handles) before the target does.
// It returns handled=false to let the model process the message. When it
// handles the message, a non-nil err fails the ioctl with that errno, and
// dataOut=true makes the message return out as its result string (the
// DM_DATA_OUT_FLAG path of the kernel).
type MessageHook func(device string, target ioctl.TargetSpec, argv []string) (out string, dataOut, handled bool, err error)

// Option configures a Kernel.
type Option func(*Kernel)

// WithVersion sets the interface version the kernel reports and checks
// requests against (default 4.47.0). Commands newer than it are ENOTTY, and
// the name list layout follows it (event_nr from 4.37, uuids and prefix
// filters from 4.45).
func WithVersion(v ioctl.Version) Option { return func(k *Kernel) { k.version = v } }

// WithTargets replaces the registered target types. Types the model knows
// (linear, striped, zero, error, flakey, thin-pool, thin) behave as such;
// any other name is accepted as an opaque target whose table line is echoed
// back and whose status is empty. The kernel lists targets newest first:
// the first argument is listed first.
func WithTargets(ts ...ioctl.TargetVersion) Option {
	return func(k *Kernel) {
		k.types = nil
		for _, t := range ts {
			k.types = append(k.types, newTargetType(t.Name, t.Version))
		}
	}
}

// WithMajor sets the block major of dm devices (default 253).
func WithMajor(major uint32) Option { return func(k *Kernel) { k.major = major } }

// WithoutPrivilege makes every ioctl fail with EACCES, as for a caller
// without CAP_SYS_ADMIN.
func WithoutPrivilege() Option { return func(k *Kernel) { k.unpriv = true } }

// DefaultVersion is the interface version of Linux 6.1, which the fake
// models by default.
var DefaultVersion = ioctl.Version{4, 47, 0}

// DefaultTargets are the target types registered by default, in the order
// `dmsetup targets` lists them on a 6.1 kernel with dm-thin-pool and
// dm-flakey loaded.
var DefaultTargets = []ioctl.TargetVersion{
	{Name: "thin-pool", Version: ioctl.Version{1, 22, 0}},
	{Name: "thin", Version: ioctl.Version{1, 22, 0}},
	{Name: "flakey", Version: ioctl.Version{1, 5, 0}},
	{Name: "zero", Version: ioctl.Version{1, 1, 0}},
	{Name: "striped", Version: ioctl.Version{1, 6, 0}},
	{Name: "linear", Version: ioctl.Version{1, 4, 0}},
	{Name: "error", Version: ioctl.Version{1, 6, 0}},
}

// New returns an empty fake kernel: no dm devices and no block devices.
func New(opts ...Option) *Kernel {
	k := &Kernel{
		version:   DefaultVersion,
		major:     253,
		failNext:  map[ioctl.Cmd][]unix.Errno{},
		blockDevs: map[devKey]*blockDev{},
		metadata:  map[storeKey]*poolMetadata{},
		byName:    map[string]*device{},
		byUUID:    map[string]*device{},
		byMinor:   map[uint32]*device{},
	}
	k.cond = sync.NewCond(&k.mu)
	WithTargets(DefaultTargets...)(k)
	for _, o := range opts {
		o(k)
	}
	return k
}

var ne = binary.NativeEndian

// Offsets in struct dm_ioctl; see ioctl/header.go for the C definition.
const (
	offVersion     = 0
	offDataSize    = 12
	offDataStart   = 16
	offTargetCount = 20
	offOpenCount   = 24
	offFlags       = 28
	offEventNr     = 32
	offDev         = 40
	offName        = 48
	offUUID        = 176

	minDataSize = ioctl.DataOffset // offsetof(struct dm_ioctl, data)
	resultStart = ioctl.DataStart  // align_ptr(param + 1) - param

	// maxDataSize is DM_MAX_TARGETS * DM_MAX_TARGET_PARAMS, the largest
	// data_size 6.1's copy_params accepts.
	maxDataSize = 1048576 * 1024
)

// ioctl_flags of lookup_ioctl().
const (
	noParams    = 1 // IOCTL_FLAGS_NO_PARAMS
	globalEvent = 2 // IOCTL_FLAGS_ISSUE_GLOBAL_EVENT
)

// cmdFn runs one command on the kernel's copy of the parameters. It returns
// the command's positive return value (the kernel passes anything but 0 back
// to user space without copying the parameters) or an errno.
type cmdFn func(k *Kernel, p *param, paramSize int) (int, error)

var commands = [...]struct {
	flags int
	fn    cmdFn
}{
	ioctl.CmdVersion:          {0, nil},
	ioctl.CmdRemoveAll:        {noParams | globalEvent, (*Kernel).removeAll},
	ioctl.CmdListDevices:      {0, (*Kernel).listDevices},
	ioctl.CmdDevCreate:        {noParams | globalEvent, (*Kernel).devCreate},
	ioctl.CmdDevRemove:        {noParams | globalEvent, (*Kernel).devRemove},
	ioctl.CmdDevRename:        {globalEvent, (*Kernel).devRename},
	ioctl.CmdDevSuspend:       {noParams, (*Kernel).devSuspend},
	ioctl.CmdDevStatus:        {noParams, (*Kernel).devStatusCmd},
	ioctl.CmdDevWait:          {0, (*Kernel).devWait},
	ioctl.CmdTableLoad:        {0, (*Kernel).tableLoad},
	ioctl.CmdTableClear:       {noParams, (*Kernel).tableClear},
	ioctl.CmdTableDeps:        {0, (*Kernel).tableDeps},
	ioctl.CmdTableStatus:      {0, (*Kernel).tableStatus},
	ioctl.CmdListVersions:     {0, (*Kernel).listVersions},
	ioctl.CmdTargetMsg:        {0, (*Kernel).targetMessage},
	ioctl.CmdDevSetGeometry:   {0, (*Kernel).devSetGeometry},
	ioctl.CmdDevArmPoll:       {noParams, (*Kernel).devArmPoll},
	ioctl.CmdGetTargetVersion: {0, (*Kernel).getTargetVersion},
}

// Ioctl performs one control ioctl on b, as ctl_ioctl() in dm-ioctl.c does.
// It implements ioctl.Transport. Errors are unix.Errno values.
func (k *Kernel) Ioctl(req uint, b []byte) error {
	c := Call{Cmd: ioctl.Cmd(req & 0xff), Req: req}
	if len(b) >= ioctl.SizeofHeader {
		_ = c.Header.UnmarshalBinary(b)
	}
	k.mu.Lock()
	i := len(k.calls)
	k.calls = append(k.calls, c)
	k.mu.Unlock()

	err := k.ctlIoctl(req, b)

	k.mu.Lock()
	if i < len(k.calls) {
		k.calls[i].Err = err
	}
	k.mu.Unlock()
	return err
}

func (k *Kernel) ctlIoctl(req uint, b []byte) error {
	if k.unpriv {
		return unix.EACCES
	}
	if (req>>8)&0xff != ioctl.DMIoctlType {
		return unix.ENOTTY
	}
	nr := req & 0xff

	// check_version: the kernel's version is written back whatever happens
	// next, even when the caller's is refused.
	if len(b) < 12 {
		return unix.EFAULT
	}
	bad := ne.Uint32(b[offVersion:]) != k.version[0] || ne.Uint32(b[offVersion+4:]) > k.version[1]
	for i := 0; i < 3; i++ {
		ne.PutUint32(b[offVersion+4*i:], k.version[i])
	}
	if bad {
		return unix.EINVAL
	}
	if nr == uint(ioctl.CmdVersion) {
		return nil
	}
	cmd := ioctl.Cmd(nr)
	if nr >= uint(len(commands)) || commands[nr].fn == nil || k.version.Less(cmd.MinVersion()) {
		return unix.ENOTTY
	}
	ent := commands[nr]

	if err := k.inject(cmd, b); err != nil {
		return err
	}

	// copy_params
	if len(b) < minDataSize {
		return unix.EFAULT
	}
	dataSize := ne.Uint32(b[offDataSize:])
	if dataSize < minDataSize || dataSize > maxDataSize {
		return unix.EINVAL
	}
	secure := ne.Uint32(b[offFlags:])&uint32(ioctl.FlagSecureData) != 0
	var p param
	paramSize := int(dataSize)
	if ent.flags&noParams != 0 {
		p.b = make([]byte, ioctl.SizeofHeader)
		copy(p.b, b[:minDataSize])
		paramSize = minDataSize
		p.setU32(offDataSize, minDataSize)
	} else {
		if paramSize > len(b) {
			return unix.EFAULT
		}
		p.b = make([]byte, paramSize)
		copy(p.b, b[:paramSize])
	}
	if secure {
		// "Wipe the user buffer so we do not return it to userspace."
		clear(b[:paramSize])
	}

	if err := validateParams(cmd, &p); err != nil {
		return err
	}
	p.setU32(offDataSize, minDataSize)

	k.mu.Lock()
	r, err := ent.fn(k, &p, paramSize)
	if err == nil && r == 0 && ent.flags&globalEvent != 0 {
		k.issueGlobalEvent()
	}
	k.mu.Unlock()
	if err != nil {
		return err
	}
	if r != 0 {
		// ctl_ioctl copies nothing back and returns r, which ioctl(2)
		// passes on as a positive return value: the Transport contract
		// reports that as ioctl.ErrNoReply.
		return ioctl.ErrNoReply
	}
	n := min(int(p.u32(offDataSize)), len(p.b), len(b))
	copy(b[:n], p.b[:n])
	return nil
}

// inject applies FailNext and the BeforeIoctl hook. It runs after the
// version check, so a failure still leaves the kernel's version in b, and
// nothing else.
func (k *Kernel) inject(cmd ioctl.Cmd, b []byte) error {
	k.mu.Lock()
	var errno unix.Errno
	if q := k.failNext[cmd]; len(q) > 0 {
		errno = q[0]
		k.failNext[cmd] = q[1:]
	}
	hook := k.before
	k.mu.Unlock()
	if errno != 0 {
		return errno
	}
	if hook != nil {
		var h ioctl.Header
		if len(b) >= ioctl.SizeofHeader {
			_ = h.UnmarshalBinary(b)
		}
		if err := hook(cmd, &h); err != nil {
			return err
		}
	}
	return nil
}

// validateParams is validate_params().
func validateParams(cmd ioctl.Cmd, p *param) error {
	f := p.flags() &^ (ioctl.FlagBufferFull | ioctl.FlagUeventGenerated | ioctl.FlagSecureData | ioctl.FlagDataOut)
	p.setFlags(f)
	switch cmd {
	case ioctl.CmdRemoveAll, ioctl.CmdListDevices, ioctl.CmdListVersions:
		return nil
	case ioctl.CmdDevCreate:
		if p.b[offName] == 0 {
			return unix.EINVAL
		}
	default:
		if p.b[offUUID] != 0 && p.b[offName] != 0 {
			return unix.EINVAL
		}
	}
	p.b[offName+ioctl.NameLen-1] = 0
	p.b[offUUID+ioctl.UUIDLen-1] = 0
	return nil
}

// FailNext makes the next request for cmd fail with errno, after the
// version check (the kernel's version is still written back).
func (k *Kernel) FailNext(cmd ioctl.Cmd, errno unix.Errno) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failNext[cmd] = append(k.failNext[cmd], errno)
}

// SetBeforeIoctl installs a hook called for every command that passed the
// version check, with the header as the caller sent it. A non-nil error
// fails the ioctl with it, copying nothing back but the version. The hook
// runs without the kernel's lock held, so it may call the Kernel's methods.
func (k *Kernel) SetBeforeIoctl(fn func(cmd ioctl.Cmd, h *ioctl.Header) error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.before = fn
}

// SetMessageHook installs fn; see MessageHook.
func (k *Kernel) SetMessageHook(fn MessageHook) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.msgHook = fn
}

// Calls returns every request that reached the kernel, in arrival order.
func (k *Kernel) Calls() []Call {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Call(nil), k.calls...)
}

// ResetCalls forgets the recorded calls.
func (k *Kernel) ResetCalls() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = nil
}

// GlobalEvent is the global event counter (dm_global_event_nr), raised by
// create, remove, rename, remove-all and every device event.
func (k *Kernel) GlobalEvent() uint32 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.globalEvent
}

// PollReady reports what poll() on the control fd would: EPOLLIN once the
// global event counter has moved past the value DM_DEV_ARM_POLL recorded.
// The fake stands for a single open control fd, armed at zero.
func (k *Kernel) PollReady() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return int32(k.globalEvent-k.armed) > 0
}

// InterruptWaiters makes every DM_DEV_WAIT blocked right now return EINTR,
// as a signal would (the kernel returns ERESTARTSYS; a handler without
// SA_RESTART turns it into EINTR).
func (k *Kernel) InterruptWaiters() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.interrupts++
	k.cond.Broadcast()
}

// TriggerEvent raises a dm event on the named device, as a target's
// dm_table_event() does: its event_nr and the global counter move and
// DM_DEV_WAIT callers wake up.
func (k *Kernel) TriggerEvent(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	d := k.byName[name]
	if d == nil {
		return unix.ENXIO
	}
	k.deviceEvent(d)
	return nil
}

func (k *Kernel) issueGlobalEvent() {
	k.globalEvent++
	k.cond.Broadcast()
}

// deviceEvent is event_callback(): the device's counter, then the global one.
func (k *Kernel) deviceEvent(d *device) {
	d.eventNr++
	k.issueGlobalEvent()
}

// AddBlockDevice makes dev a block device of the given size that
// tables may reference, like a loop device. Re-adding a device replaces it
// with a fresh, zeroed one (pool metadata on it is gone).
func (k *Kernel) AddBlockDevice(dev ioctl.Dev, sectors uint64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if dev.Major == k.major {
		return errors.New("dmtest: the dm major is reserved for dm devices")
	}
	key := devKey{dev.Major, dev.Minor}
	k.blockDevs[key] = &blockDev{sectors: sectors}
	for sk := range k.metadata {
		if sk.dev == key {
			delete(k.metadata, sk)
		}
	}
	return nil
}

// ResizeBlockDevice changes the size of a block device added with
// AddBlockDevice, as growing a loop file and LOOP_SET_CAPACITY does. Its
// contents are kept.
func (k *Kernel) ResizeBlockDevice(dev ioctl.Dev, sectors uint64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	bd := k.blockDevs[devKey{dev.Major, dev.Minor}]
	if bd == nil {
		return unix.ENXIO
	}
	bd.sectors = sectors
	return nil
}

// WipeMetadata zeroes the first 4 KiB of a device, which is how a thin-pool
// metadata device is prepared: the next pool built on it formats fresh
// metadata. It is EBUSY while a pool uses the device.
func (k *Kernel) WipeMetadata(dev ioctl.Dev) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	sk := k.resolveStore(devKey{dev.Major, dev.Minor})
	m := k.metadata[sk]
	for _, pl := range k.pools {
		if m != nil && pl.meta == m {
			return unix.EBUSY
		}
	}
	delete(k.metadata, sk)
	return nil
}

// Open simulates an opener of the named device (a mounted filesystem, an
// open fd): the device's open count goes up until close is called, which
// makes DM_DEV_REMOVE return EBUSY and defers a deferred remove. close is
// idempotent. Opening a device that is being deleted is ENXIO.
func (k *Kernel) Open(name string) (close func(), err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	d := k.byName[name]
	if d == nil {
		return nil, unix.ENXIO
	}
	d.openers++
	var once sync.Once
	return func() {
		once.Do(func() {
			k.mu.Lock()
			defer k.mu.Unlock()
			d.openers--
			k.deferredRemove()
		})
	}, nil
}

// sortedDevices returns the devices in the kernel's name order (an rb-tree
// ordered by strcmp).
func (k *Kernel) sortedDevices() []*device {
	ds := make([]*device, 0, len(k.byName))
	for _, d := range k.byName {
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].name < ds[j].name })
	return ds
}
