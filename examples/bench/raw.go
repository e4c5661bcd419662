package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
	"github.com/thinp/thinp/udev"
)

// The fields of struct dm_ioctl the floor reads back, at their offsets
// (see package ioctl for the C definition):
//
//	__u32 data_size;	/* offset 12 */
//	__u32 data_start;	/* offset 16 */
//	__u32 target_count;	/* offset 20 */
//	__u32 flags;		/* offset 28 */
const (
	rawOffDataSize    = 12
	rawOffDataStart   = 16
	rawOffTargetCount = 20
	rawOffFlags       = 28
)

// rawRunner is the floor: the control node opened with open(2), requests
// packed with ioctl.Request.MarshalTo into one reused buffer (a second one
// holds the device list while each device's status is read into the
// first), sent with ioctl(2), and replies read at fixed offsets. It
// validates nothing, manages no /dev nodes and takes no lock. Its one
// concession is to retry a remove that fails with EBUSY, which udev's
// probe of a new device causes when udevd runs; without it the floor could
// not finish there.
type rawRunner struct {
	fd   int
	buf  []byte // every request
	list []byte // LIST_DEVICES replies, doubled on DM_BUFFER_FULL_FLAG
	// dataSize is data_size for the requests that return data (target
	// message, table status): 1 KiB unless -raw-buffer says otherwise,
	// plenty for a thin or pool status line and for a message's answer.
	// (libdevmapper and package ioctl start at 16 KiB, and the kernel
	// allocates and copies in all of data_size on every call.)
	dataSize int
	// eventNr goes with resume and remove when not synchronising: the
	// udev flags libdevmapper sends then, as the library does.
	eventNr uint32

	req   ioctl.Request
	spec  [1]ioctl.TargetSpec
	names []string // of the last listNames, pointing into list

	pool    string
	poolDev string
	size    uint64
	sink    int // status bytes read, so that reading them is not optimised away

	// steps times each ioctl of (a) by command: where a cycle's time goes.
	steps stepTimes
}

// stepTimes accumulates the time of each step of the floor's lifecycle.
type stepTimes struct {
	d [len(stepNames)]time.Duration
	n [len(stepNames)]int
}

var stepNames = [...]string{"create_thin", "create", "load", "resume", "remove", "delete"}

func (s *stepTimes) add(i int, t0 time.Time) {
	s.d[i] += time.Since(t0)
	s.n[i]++
}

// String gives the mean time of each step.
func (s *stepTimes) String() string {
	var b []byte
	for i, name := range stepNames {
		if s.n[i] == 0 {
			continue
		}
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = fmt.Appendf(b, "%s %s", name, formatDur(s.d[i]/time.Duration(s.n[i])))
	}
	return string(b)
}

func newRawRunner(e *env) (*rawRunner, error) {
	fd, err := unix.Open(ioctl.ControlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", ioctl.ControlPath, err)
	}
	return &rawRunner{
		fd:       fd,
		buf:      make([]byte, max(e.cfg.RawBuffer, 4096)),
		list:     make([]byte, 16<<10),
		dataSize: e.cfg.RawBuffer,
		eventNr:  udev.EventNrWithoutCookie(udev.FallbackFlags),
		pool:     e.pool,
		poolDev:  e.poolDev.String(),
		size:     e.cfg.VolumeSize,
	}, nil
}

func (r *rawRunner) close() error { return unix.Close(r.fd) }

// send packs r.req into the first size bytes of b and issues it.
func (r *rawRunner) send(b []byte, size int) ([]byte, error) {
	b = b[:size]
	if _, err := r.req.MarshalTo(b); err != nil {
		return nil, err
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(r.fd), uintptr(r.req.Cmd.Request()), uintptr(unsafe.Pointer(&b[0])))
	if errno != 0 {
		return nil, fmt.Errorf("raw %s %s: %w", r.req.Cmd, r.req.Header.Name, errno)
	}
	return b, nil
}

// simple issues a command without payload on the device name.
func (r *rawRunner) simple(cmd ioctl.Cmd, name string, flags ioctl.Flags, eventNr uint32) (ioctl.Flags, error) {
	r.req = ioctl.Request{Cmd: cmd}
	r.req.Header.Name = name
	r.req.Header.Flags = flags
	r.req.Header.EventNr = eventNr
	b, err := r.send(r.buf, ioctl.SizeofHeader)
	if err != nil {
		return 0, err
	}
	return ioctl.Flags(binary.NativeEndian.Uint32(b[rawOffFlags:])), nil
}

func (r *rawRunner) message(msg string) error {
	r.req = ioctl.Request{Cmd: ioctl.CmdTargetMsg, Message: msg}
	r.req.Header.Name = r.pool
	_, err := r.send(r.buf, max(r.dataSize, r.req.Size()))
	return err
}

// activate is create + load + resume.
func (r *rawRunner) activate(name, ids string, eventNr uint32) (ioctl.Flags, error) {
	t0 := time.Now()
	if _, err := r.simple(ioctl.CmdDevCreate, name, 0, 0); err != nil {
		return 0, err
	}
	r.steps.add(1, t0)
	t0 = time.Now()
	r.spec[0] = ioctl.TargetSpec{Length: r.size, Type: "thin", Params: r.poolDev + " " + ids}
	r.req = ioctl.Request{Cmd: ioctl.CmdTableLoad, Targets: r.spec[:]}
	r.req.Header.Name = name
	if _, err := r.send(r.buf, r.req.Size()); err != nil {
		return 0, err
	}
	r.steps.add(2, t0)
	t0 = time.Now()
	f, err := r.simple(ioctl.CmdDevSuspend, name, 0, eventNr)
	r.steps.add(3, t0)
	return f, err
}

// remove removes name, retrying EBUSY every 10 ms for up to 5 s.
func (r *rawRunner) remove(name string, eventNr uint32) (ioctl.Flags, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, err := r.simple(ioctl.CmdDevRemove, name, 0, eventNr)
		if err == nil || !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return f, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lifecycle is one cycle of (a): six ioctls.
func (r *rawRunner) lifecycle(name string, id uint64) error {
	ids := strconv.FormatUint(id, 10)
	t0 := time.Now()
	if err := r.message("create_thin " + ids); err != nil {
		return err
	}
	r.steps.add(0, t0)
	if _, err := r.activate(name, ids, r.eventNr); err != nil {
		return err
	}
	t0 = time.Now()
	if _, err := r.remove(name, r.eventNr); err != nil {
		return err
	}
	r.steps.add(4, t0)
	t0 = time.Now()
	err := r.message("delete " + ids)
	r.steps.add(5, t0)
	return err
}

// lifecycleSync is one cycle of (d): as lifecycle, with a udev cookie on
// the resume and on the remove, waited for as libdevmapper does.
func (r *rawRunner) lifecycleSync(ctx context.Context, name string, id uint64) error {
	ids := strconv.FormatUint(id, 10)
	if err := r.message("create_thin " + ids); err != nil {
		return err
	}
	if err := withRawCookie(ctx, func(ev uint32) (ioctl.Flags, error) { return r.activate(name, ids, ev) }); err != nil {
		return err
	}
	if err := withRawCookie(ctx, func(ev uint32) (ioctl.Flags, error) { return r.remove(name, ev) }); err != nil {
		return err
	}
	return r.message("delete " + ids)
}

// withRawCookie runs issue with a fresh cookie's event_nr and waits for
// udev to complete it; without DM_UEVENT_GENERATED_FLAG in the reply no
// uevent comes, so the count is taken back instead.
func withRawCookie(ctx context.Context, issue func(eventNr uint32) (ioctl.Flags, error)) error {
	ck, err := udev.NewCookie()
	if err != nil {
		return err
	}
	defer ck.Close()
	if err := ck.Add(); err != nil {
		return err
	}
	f, err := issue(ck.EventNr(0))
	if err != nil || f&ioctl.FlagUeventGenerated == 0 {
		if derr := ck.Done(); derr != nil && err == nil {
			err = derr
		}
	}
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return ck.Wait(wctx)
}

// snapshot is one op of (b): three ioctls; the origin is resumed even if
// create_snap fails.
func (r *rawRunner) snapshot(origin string, originID, id uint64) error {
	if _, err := r.simple(ioctl.CmdDevSuspend, origin, ioctl.FlagSuspend, 0); err != nil {
		return err
	}
	err := r.message("create_snap " + strconv.FormatUint(id, 10) + " " + strconv.FormatUint(originID, 10))
	if _, rerr := r.simple(ioctl.CmdDevSuspend, origin, 0, r.eventNr); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// listNames lists the devices with LIST_DEVICES into r.list, doubled
// while the kernel sets DM_BUFFER_FULL_FLAG, and points r.names at the
// names in it (valid until the next list). It returns how many there are.
func (r *rawRunner) listNames() (int, error) {
	var b []byte
	for {
		r.req = ioctl.Request{Cmd: ioctl.CmdListDevices}
		var err error
		if b, err = r.send(r.list, len(r.list)); err != nil {
			return 0, err
		}
		if ioctl.Flags(binary.NativeEndian.Uint32(b[rawOffFlags:]))&ioctl.FlagBufferFull == 0 {
			break
		}
		r.list = make([]byte, 2*len(r.list))
	}
	ne := binary.NativeEndian
	start := int(ne.Uint32(b[rawOffDataStart:]))
	end := int(ne.Uint32(b[rawOffDataSize:]))
	r.names = r.names[:0]
	// struct dm_name_list: __u64 dev; __u32 next; char name[] (at 12).
	for off := start; end > start && off+12 < end; {
		if ne.Uint64(b[off:]) == 0 {
			break // an empty list
		}
		next := int(ne.Uint32(b[off+8:]))
		name := b[off+12:]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		r.names = append(r.names, unsafe.String(unsafe.SliceData(name), len(name)))
		if next == 0 {
			break
		}
		off += next
	}
	return len(r.names), nil
}

// scan is one op of (c): the device list, then the status of each
// device. It returns how many devices it read (one removed since the list
// is left out).
func (r *rawRunner) scan() (int, error) {
	n, err := r.listNames()
	if err != nil {
		return 0, err
	}
	seen := 0
	for _, name := range r.names[:n] {
		ok, err := r.status(name)
		if err != nil {
			return seen, err
		}
		if ok {
			seen++
		}
	}
	return seen, nil
}

// status reads the table status of name, reading each target's status
// string in place; it reports false if the device vanished since the list.
func (r *rawRunner) status(name string) (bool, error) {
	r.req = ioctl.Request{Cmd: ioctl.CmdTableStatus}
	r.req.Header.Name = name
	b, err := r.send(r.buf, r.dataSize)
	if errors.Is(err, unix.ENXIO) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	ne := binary.NativeEndian
	if ioctl.Flags(ne.Uint32(b[rawOffFlags:]))&ioctl.FlagBufferFull != 0 {
		return false, fmt.Errorf("raw status of %s: reply larger than -raw-buffer %d", name, r.dataSize)
	}
	base := int(ne.Uint32(b[rawOffDataStart:]))
	// struct dm_target_spec is 40 bytes, next (at 20) relative to the data
	// area; the status string follows the spec.
	off := base
	for t := ne.Uint32(b[rawOffTargetCount:]); t > 0; t-- {
		for _, c := range b[off+ioctl.SizeofTargetSpec:] {
			if c == 0 {
				break
			}
			r.sink++
		}
		off = base + int(ne.Uint32(b[off+20:]))
	}
	return true, nil
}
