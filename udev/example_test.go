package udev_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/thinp/thinp/ioctl"
	"github.com/thinp/thinp/udev"
)

// issueIoctl stands for package dm sending one resume, remove or rename
// with eventNr in dm_ioctl.event_nr; it reports whether the reply carried
// DM_UEVENT_GENERATED_FLAG.
func issueIoctl(eventNr uint32) (uevent bool, err error) { return true, nil }

// The cookie protocol around one ioctl that generates a uevent.
func ExampleNewCookie() {
	s := udev.Detect()
	if !s.Sync {
		// Nobody would complete the cookie: send the flags only and make
		// /dev/mapper/<name> with udev.MakeNode afterwards.
		_, err := issueIoctl(udev.EventNrWithoutCookie(udev.FallbackFlags))
		log.Printf("no udev sync (%s): %v", s.Reason, err)
		return
	}

	c, err := udev.NewCookie() // before suspending anything
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // the semaphore goes away on every path, panics included

	if err := c.Add(); err != nil { // one per ioctl carrying the cookie
		log.Fatal(err)
	}
	uevent, err := issueIoctl(c.EventNr(udev.DisableLibraryFallback))
	if err != nil || !uevent {
		_ = c.Done() // no uevent: nobody else will count this ioctl down
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Wait(ctx); errors.Is(err, context.DeadlineExceeded) {
		log.Printf("udev did not finish in time: %v", err)
	}
}

func ExampleDetect() {
	s := udev.Detect()
	if s.Sync {
		fmt.Println("udev sync: yes, rules in", s.RulesFile)
	} else {
		fmt.Println("udev sync: no:", s.Reason)
	}
}

func ExampleFlags_String() {
	f, base := udev.SplitEventNr(0x0143000a) // a DM_COOKIE value
	fmt.Println(f)
	fmt.Printf("%#04x\n", base)
	fmt.Println(f.Env()[0])
	// Output:
	// DISABLE_DM_RULES|DISABLE_SUBSYSTEM_RULES|PRIMARY_SOURCE|SUBSYSTEM_FLAG0
	// 0x000a
	// DM_UDEV_DISABLE_DM_RULES_FLAG='1'
}

func ExampleParseEvent() {
	e, err := udev.ParseEvent([]byte("change@/devices/virtual/block/dm-0\x00ACTION=change\x00" +
		"DEVPATH=/devices/virtual/block/dm-0\x00SUBSYSTEM=block\x00DM_COOKIE=6292162\x00" +
		"MAJOR=254\x00MINOR=0\x00DEVNAME=dm-0\x00SEQNUM=653\x00"))
	if err != nil {
		log.Fatal(err)
	}
	cookie, _ := e.Cookie()
	flags, base := udev.SplitEventNr(cookie)
	fmt.Println(e.Source, e.Action, e.DevNode(), e.Major, e.Minor)
	fmt.Printf("%v %#x\n", flags, base)
	// Output:
	// kernel change /dev/dm-0 254 0
	// DISABLE_LIBRARY_FALLBACK|PRIMARY_SOURCE 0x2c2
}

// Wait for udev to finish with a device: open the monitor first, then act.
func ExampleMonitor_WaitDevice() {
	m, err := udev.NewMonitor(&udev.MonitorConfig{
		Sources:    udev.SourceUdev, // after the rules ran
		Subsystems: []string{"block"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	// ... resume dm-3 here ...

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := m.WaitDevice(ctx, "dm-3", udev.ActionAdd, udev.ActionChange)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.Get("DEVLINKS"))
}

// Like `dmsetup udevcookies` and `dmsetup udevcomplete_all 60`.
func ExampleListCookies() {
	cookies, err := udev.ListCookies()
	if err != nil {
		log.Fatal(err)
	}
	now := time.Now()
	for _, c := range cookies {
		fmt.Printf("%#08x semid %d value %d idle %v\n", c.Cookie, c.SemID, c.Value, c.Age(now).Round(time.Second))
	}
	n, err := udev.CompleteAll(time.Hour)
	fmt.Println(n, "stale cookies released", err)
}

// Without udev, the caller keeps /dev/mapper in step with the kernel.
func ExampleMakeNode() {
	if err := udev.MakeNode("/dev/mapper", "vol", ioctl.Dev{Major: 254, Minor: 3}, 0o600); err != nil {
		log.Fatal(err)
	}
	if err := udev.RenameNode("/dev/mapper", "vol", "vol2"); err != nil {
		log.Fatal(err)
	}
	if err := udev.RemoveNode("/dev/mapper", "vol2"); err != nil {
		log.Fatal(err)
	}
}
