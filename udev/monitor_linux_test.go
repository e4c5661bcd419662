//go:build linux

package udev

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func newMonitor(t *testing.T, cfg *MonitorConfig) *Monitor {
	t.Helper()
	m, err := NewMonitor(cfg)
	if err != nil {
		t.Fatalf("NewMonitor: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// someBlockDevice returns a block device of the host that exists in /sys, a
// loop device by preference.
func someBlockDevice(t *testing.T) string {
	t.Helper()
	ents, _ := filepath.Glob("/sys/block/loop*")
	if len(ents) == 0 {
		ents, _ = filepath.Glob("/sys/block/*")
	}
	if len(ents) == 0 {
		unavailable(t, "no block device in /sys/block")
	}
	sort.Strings(ents)
	return filepath.Base(ents[len(ents)-1])
}

// triggerChange makes the kernel send a synthetic "change" uevent for dev,
// tagged with a fresh SYNTH_UUID so that the test recognises its own event
// among others (Linux 4.13+; older kernels send it untagged).
func triggerChange(t *testing.T, dev string) string {
	t.Helper()
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	uuid := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
	p := "/sys/block/" + dev + "/uevent"
	if err := os.WriteFile(p, []byte("change "+uuid+" THINPTEST=1"), 0); err != nil {
		if err := os.WriteFile(p, []byte("change"), 0); err != nil {
			t.Fatalf("triggering a uevent: %v", err)
		}
		return ""
	}
	return uuid
}

func TestMonitorKernelEvent(t *testing.T) {
	requireRoot(t)
	dev := someBlockDevice(t)
	m := newMonitor(t, &MonitorConfig{Subsystems: []string{"block"}, Devices: []string{dev}})
	uuid := triggerChange(t, dev)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := m.WaitFor(ctx, func(e *Event) bool {
		return e.Action == ActionChange && (uuid == "" || e.Get("SYNTH_UUID") == uuid)
	})
	if err != nil {
		t.Fatalf("waiting for the change of %s: %v", dev, err)
	}
	if e.Source != SourceKernel || e.Subsystem != "block" || e.SysName() != dev || e.DevNode() != "/dev/"+dev || !e.HasDevNum || e.Seqnum == 0 {
		t.Errorf("event %+v", e)
	}
	if uuid != "" && e.Get("SYNTH_ARG_THINPTEST") != "1" {
		t.Errorf("synthetic argument missing: %v", e.Env)
	}
}

// TestMonitorFilters: an event of another device or subsystem never comes
// out of Receive.
func TestMonitorFilters(t *testing.T) {
	requireRoot(t)
	dev := someBlockDevice(t)
	other := newMonitor(t, &MonitorConfig{Devices: []string{dev + "-not-this"}})
	net := newMonitor(t, &MonitorConfig{Subsystems: []string{"net"}})
	all := newMonitor(t, nil)
	uuid := triggerChange(t, dev)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := all.WaitDevice(ctx, "/dev/"+dev, ActionChange); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]*Monitor{"device filter": other, "subsystem filter": net} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		e, err := m.WaitFor(ctx, func(e *Event) bool { return uuid == "" || e.Get("SYNTH_UUID") == uuid })
		cancel()
		if err == nil {
			t.Errorf("%s let %v through", name, e)
		}
	}
}

// TestMonitorLoopAttach attaches a loop device the raw way; the kernel
// announces it with a change event.
func TestMonitorLoopAttach(t *testing.T) {
	requireRoot(t)
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		unavailable(t, fmt.Sprintf("no loop devices: %v", err))
	}
	defer ctl.Close()
	backing, err := os.Create(filepath.Join(t.TempDir(), "img"))
	if err != nil {
		t.Fatal(err)
	}
	defer backing.Close()
	if err := backing.Truncate(1 << 20); err != nil {
		t.Fatal(err)
	}

	m := newMonitor(t, &MonitorConfig{Subsystems: []string{"block"}})
	var loop *os.File
	var name string
	for attempt := 0; loop == nil; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			t.Fatalf("LOOP_CTL_GET_FREE: %v", err)
		}
		name = fmt.Sprintf("loop%d", n)
		f, err := os.OpenFile("/dev/"+name, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_SET_FD, int(backing.Fd()))
		if errors.Is(err, unix.EBUSY) && attempt < 20 {
			f.Close() // someone else took it first
			continue
		}
		if err != nil {
			f.Close()
			t.Fatalf("LOOP_SET_FD: %v", err)
		}
		loop = f
	}
	defer func() {
		unix.IoctlSetInt(int(loop.Fd()), unix.LOOP_CLR_FD, 0)
		loop.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := m.WaitDevice(ctx, name, ActionChange)
	if err != nil {
		t.Fatalf("no change event for %s after LOOP_SET_FD: %v", name, err)
	}
	if e.Major != 7 {
		t.Errorf("loop device major %d", e.Major)
	}
}

// blockedReceive starts a Receive that no event satisfies.
func blockedReceive(t *testing.T, ctx context.Context) (*Monitor, <-chan error) {
	t.Helper()
	m := newMonitor(t, &MonitorConfig{Subsystems: []string{"thinp-no-such-subsystem"}})
	errc := make(chan error, 1)
	go func() {
		_, err := m.Receive(ctx)
		errc <- err
	}()
	return m, errc
}

func waitErr(t *testing.T, errc <-chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(within):
		t.Fatalf("Receive still blocked after %v", within)
		return nil
	}
}

func TestMonitorCloseInterrupts(t *testing.T) {
	m, errc := blockedReceive(t, context.Background())
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	err := waitErr(t, errc, slack(time.Second))
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Receive after Close = %v, want ErrClosed", err)
	}
	if d := time.Since(start); d > slack(100*time.Millisecond) {
		t.Errorf("Close took %v to interrupt Receive", d)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := m.Receive(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Receive on a closed monitor = %v", err)
	}
}

func TestMonitorCancelInterrupts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	m, errc := blockedReceive(t, ctx)
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	cancel()
	if err := waitErr(t, errc, slack(time.Second)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive after cancel = %v, want Canceled", err)
	}
	if d := time.Since(start); d > slack(100*time.Millisecond) {
		t.Errorf("cancel took %v to interrupt Receive", d)
	}
	// The monitor stays usable, and the old cancellation does not leak
	// into the next call: a 300ms deadline takes about 300ms.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	start = time.Now()
	_, err := m.Receive(ctx2)
	if d := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || d < 250*time.Millisecond || d > slack(time.Second) {
		t.Fatalf("Receive with a 300ms deadline = %v after %v", err, d)
	}
}

func TestMonitorDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, errc := blockedReceive(t, ctx)
	if err := waitErr(t, errc, slack(time.Second)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > slack(150*time.Millisecond) {
		t.Errorf("150ms deadline noticed after %v", d)
	}
}

// send multicasts a raw datagram to the uevent groups, as only root may.
func send(t *testing.T, groups uint32, msg []byte) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unavailable(t, fmt.Sprintf("cannot multicast uevents: %v", err))
	}
}

// TestMonitorUdevEvents: a libudev message from root on group 2 is decoded;
// a kernel-format message from userspace on group 1 is a forgery and
// skipped.
func TestMonitorUdevEvents(t *testing.T) {
	requireRoot(t)
	m := newMonitor(t, &MonitorConfig{Sources: SourceKernel | SourceUdev, Subsystems: []string{"block"}})
	tag := fmt.Sprintf("thinp-%d", time.Now().UnixNano())
	send(t, uint32(SourceKernel), []byte("add@/devices/virtual/block/forged\x00ACTION=add\x00DEVPATH=/devices/virtual/block/forged\x00SUBSYSTEM=block\x00TAG="+tag+"\x00"))
	props := append([]string{"THINP_TAG=" + tag}, udevProps...)
	send(t, uint32(SourceUdev), encodeUdev(props))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		e, err := m.Receive(ctx)
		if err != nil {
			t.Fatalf("no udev event: %v", err)
		}
		if e.Get("TAG") == tag {
			t.Fatalf("forged kernel event accepted: %v", e)
		}
		if e.Get("THINP_TAG") != tag {
			continue
		}
		if e.Source != SourceUdev || e.DevNode() != "/dev/dm-0" || e.Get("DM_NAME") != "vol" {
			t.Errorf("udev event %+v", e)
		}
		break
	}

	// A kernel-only monitor does not return udev's events.
	k := newMonitor(t, &MonitorConfig{Sources: SourceKernel})
	send(t, uint32(SourceUdev), encodeUdev(props))
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if e, err := k.WaitFor(ctx2, func(e *Event) bool { return e.Get("THINP_TAG") == tag }); err == nil {
		t.Errorf("kernel-only monitor returned %v", e)
	}
}

// TestMonitorOverrun: a receive buffer that overflows reports lost events,
// and the monitor keeps working.
func TestMonitorOverrun(t *testing.T) {
	requireRoot(t)
	m := newMonitor(t, &MonitorConfig{Sources: SourceUdev, ReceiveBuffer: 1})
	msg := encodeUdev(udevProps)
	for range 200 {
		send(t, uint32(SourceUdev), msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lost := false
	for range 300 {
		_, err := m.Receive(ctx)
		if errors.Is(err, ErrEventsLost) {
			lost = true
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !lost {
		t.Fatal("no ErrEventsLost after flooding a tiny buffer")
	}
	send(t, uint32(SourceUdev), msg)
	if _, err := m.Receive(ctx); err != nil {
		t.Fatalf("Receive after an overrun: %v", err)
	}
}

func TestFromRoot(t *testing.T) {
	for _, tc := range []struct {
		oob  []byte
		want bool
	}{
		{unix.UnixCredentials(&unix.Ucred{Pid: 1, Uid: 0, Gid: 0}), true},
		{unix.UnixCredentials(&unix.Ucred{Pid: 1, Uid: 1000, Gid: 0}), false},
		{nil, false},
		{[]byte{1, 2, 3}, false},
	} {
		if got := fromRoot(tc.oob); got != tc.want {
			t.Errorf("fromRoot(%x) = %v", tc.oob, got)
		}
	}
}

func TestNewMonitorErrors(t *testing.T) {
	if _, err := NewMonitor(&MonitorConfig{Sources: 4}); err == nil || !strings.Contains(err.Error(), "unknown sources") {
		t.Errorf("NewMonitor with source 4: %v", err)
	}
}
