package dmtest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

func waitReq(name string, ev uint32) *ioctl.Request {
	r := named(ioctl.CmdDevWait, name)
	r.Header.EventNr = ev
	return r
}

func TestDevWait(t *testing.T) {
	f := newFixture(t)
	f.activate("vol", linear(0, 8, "7:2 0"))
	ev := f.info("vol").EventNr

	// A stale event number returns at once, with the status of the table.
	h, b := f.mustDo(waitReq("vol", ev-1))
	tr := ioctl.NewTargetReader(&h, b)
	if !tr.Next() || tr.Spec().Type != "linear" || h.EventNr != ev {
		t.Errorf("wait: %+v %+v", h, tr.Spec())
	}
	_, _, err := f.do(waitReq("missing", 0))
	wantErrno(t, "missing", err, unix.ENXIO)

	// The current one blocks until an event.
	done := make(chan ioctl.Header)
	go func() {
		h, _, err := f.do(waitReq("vol", ev))
		if err != nil {
			t.Error(err)
		}
		done <- h
	}()
	waitCalls(t, f.k, ioctl.CmdDevWait)
	select {
	case <-done:
		t.Fatal("DEV_WAIT returned without an event")
	case <-time.After(20 * time.Millisecond):
	}
	// Other commands go on while it waits.
	f.create("other")
	if err := f.k.TriggerEvent("vol"); err != nil {
		t.Fatal(err)
	}
	select {
	case h := <-done:
		if h.EventNr != ev+1 {
			t.Errorf("woke with event %d", h.EventNr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("DEV_WAIT did not wake")
	}

	// Events on other devices do not wake it; a signal does.
	f.k.ResetCalls()
	errc := make(chan error)
	go func() {
		_, _, err := f.do(waitReq("vol", ev+1))
		errc <- err
	}()
	waitCalls(t, f.k, ioctl.CmdDevWait)
	f.k.TriggerEvent("other")
	select {
	case err := <-errc:
		t.Fatalf("woke on another device's event: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	f.k.InterruptWaiters()
	select {
	case err := <-errc:
		wantErrno(t, "interrupted wait", err, unix.EINTR)
	case <-time.After(5 * time.Second):
		t.Fatal("InterruptWaiters did not wake the waiter")
	}
}

// TestConcurrency runs every kind of command from many goroutines; run it
// with -race.
func TestConcurrency(t *testing.T) {
	f := newFixture(t)
	f.pool("pool", 1<<21, "128 16")
	f.mustMsg("pool", "create_thin 0")
	var wg sync.WaitGroup
	stop := make(chan struct{})

	// Waiters on the pool, woken by provisioning and triggers.
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := uint32(0)
			for {
				select {
				case <-stop:
					return
				default:
				}
				h, _, err := f.do(waitReq("pool", ev))
				if err != nil && errnoOf(err) != unix.EINTR {
					t.Error(err)
					return
				}
				ev = h.EventNr
			}
		}()
	}
	var workers sync.WaitGroup
	for g := 0; g < 8; g++ {
		workers.Add(1)
		go func(g int) {
			defer workers.Done()
			for i := 0; i < 50; i++ {
				name := fmt.Sprintf("vol-%d-%d", g, i)
				f.activate(name, linear(0, 8, fmt.Sprintf("7:2 %d", g*8)))
				f.line(name, ioctl.FlagStatusTable)
				f.mustDo(&ioctl.Request{Cmd: ioctl.CmdListDevices})
				f.mustDo(named(ioctl.CmdTableDeps, name))
				f.k.TriggerEvent("pool")
				f.k.Devices()
				f.k.Pool("pool")
				if err := f.remove(name); err != nil {
					t.Error(err)
				}
				f.line("pool", ioctl.FlagNoFlush)
			}
		}(g)
	}
	workers.Add(1)
	go func() {
		defer workers.Done()
		for i := 0; i < 100; i++ {
			f.k.ProvisionBlocks("pool", 0, 1)
		}
	}()
	workers.Wait()
	close(stop)
	// Wake the waiters until they have all seen stop.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			if n := len(f.k.Devices()); n != 1 {
				t.Errorf("%d devices left", n)
			}
			return
		case <-time.After(10 * time.Millisecond):
			f.k.InterruptWaiters()
		}
	}
}
