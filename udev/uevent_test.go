package udev

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Captured on the host: `echo change > /sys/block/loop7/uevent`.
const kernelLoopChange = "change@/devices/virtual/block/loop7\x00ACTION=change\x00DEVPATH=/devices/virtual/block/loop7\x00" +
	"SUBSYSTEM=block\x00SYNTH_UUID=0\x00MAJOR=7\x00MINOR=7\x00DEVNAME=loop7\x00DEVTYPE=disk\x00DISKSEQ=8\x00SEQNUM=834\x00"

// A device-mapper resume as the kernel announces it: dm_kobject_uevent adds
// only DM_COOKIE (the rules learn DM_NAME from dmsetup).
const kernelDMChange = "change@/devices/virtual/block/dm-0\x00ACTION=change\x00DEVPATH=/devices/virtual/block/dm-0\x00" +
	"SUBSYSTEM=block\x00DM_COOKIE=6296116\x00MAJOR=253\x00MINOR=0\x00DEVNAME=dm-0\x00" +
	"DEVTYPE=disk\x00DISKSEQ=12\x00SEQNUM=2057\x00"

// udevDMChange is systemd-udevd 252's event for a dmsetup create with a
// cookie, captured in the VM tier (little-endian header).
const udevDMChange = "libudev\x00\xfe\xed\xca\xfe(\x00\x00\x00(\x00\x00\x00\xd3\x01\x00\x00\xf0\x03\x1d\xb7{\xcb\xc5\xee\x00\x00\x00\x00\x00\x00\x00\x00UDEV_DATABASE_VERSION=1\x00ACTION=change\x00DEVPATH=/devices/virtual/block/dm-0\x00SUBSYSTEM=block\x00DM_COOKIE=6292162\x00DEVNAME=/dev/dm-0\x00DEVTYPE=disk\x00DISKSEQ=10\x00SEQNUM=653\x00USEC_INITIALIZED=38796382\x00MAJOR=254\x00MINOR=0\x00DM_UDEV_DISABLE_LIBRARY_FALLBACK_FLAG=1\x00DM_UDEV_PRIMARY_SOURCE_FLAG=1\x00DM_ACTIVATION=1\x00DM_NAME=thinp-udevtest-103-2\x00DM_UUID=\x00DM_SUSPENDED=0\x00DM_UDEV_RULES=1\x00DM_UDEV_RULES_VSN=2\x00DEVLINKS=/dev/disk/by-id/dm-name-thinp-udevtest-103-2 /dev/mapper/thinp-udevtest-103-2\x00"

// udevProps are properties udevd sends for that event after lvm2's rules ran.
var udevProps = []string{
	"ACTION=change", "DEVPATH=/devices/virtual/block/dm-0", "SUBSYSTEM=block", "DM_COOKIE=6296116",
	"DM_NAME=vol", "DM_UUID=thinp-1", "MAJOR=253", "MINOR=0", "DEVNAME=/dev/dm-0", "DEVTYPE=disk",
	"SEQNUM=2057", "USEC_INITIALIZED=3045211", "DM_UDEV_PRIMARY_SOURCE_FLAG=1", "DM_UDEV_RULES_VSN=2",
	"DEVLINKS=/dev/mapper/vol /dev/disk/by-id/dm-name-vol", "TAGS=:systemd:", "CURRENT_TAGS=:systemd:",
}

// encodeUdev builds a libudev monitor message the way systemd-udevd does.
func encodeUdev(props []string) []byte {
	var body bytes.Buffer
	for _, p := range props {
		body.WriteString(p)
		body.WriteByte(0)
	}
	hdr := make([]byte, sizeofUdevHdr)
	copy(hdr, udevPrefix)
	binary.BigEndian.PutUint32(hdr[8:], udevMagic)
	binary.NativeEndian.PutUint32(hdr[12:], sizeofUdevHdr)
	binary.NativeEndian.PutUint32(hdr[16:], sizeofUdevHdr)
	binary.NativeEndian.PutUint32(hdr[20:], uint32(body.Len()))
	binary.BigEndian.PutUint32(hdr[24:], 0xc370b302) // subsystem hash, unused here
	return append(hdr, body.Bytes()...)
}

// encodeKernel builds a kernel uevent from a parsed Event (for round
// trips). Its Env holds ACTION and DEVPATH, which win over the header, so the
// header's action is a placeholder: the real one may contain '@'.
func encodeKernel(e *Event) []byte {
	var b bytes.Buffer
	b.WriteString("x@" + e.DevPath)
	b.WriteByte(0)
	for _, kv := range sortedEnv(e) {
		b.WriteString(kv)
		b.WriteByte(0)
	}
	return b.Bytes()
}

func sortedEnv(e *Event) []string {
	var out []string
	for k, v := range e.Env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func TestParseKernelEvent(t *testing.T) {
	e, err := ParseEvent([]byte(kernelLoopChange))
	if err != nil {
		t.Fatal(err)
	}
	want := &Event{
		Source: SourceKernel, Action: ActionChange, DevPath: "/devices/virtual/block/loop7",
		Subsystem: "block", DevType: "disk", DevName: "loop7", Seqnum: 834,
		Major: 7, Minor: 7, HasDevNum: true,
		Env: map[string]string{
			"ACTION": "change", "DEVPATH": "/devices/virtual/block/loop7", "SUBSYSTEM": "block",
			"SYNTH_UUID": "0", "MAJOR": "7", "MINOR": "7", "DEVNAME": "loop7", "DEVTYPE": "disk",
			"DISKSEQ": "8", "SEQNUM": "834",
		},
	}
	if diff := cmp.Diff(want, e); diff != "" {
		t.Fatalf("mismatch (-want +got):\n%s", diff)
	}
	if e.DevNode() != "/dev/loop7" || e.SysName() != "loop7" {
		t.Errorf("DevNode %q SysName %q", e.DevNode(), e.SysName())
	}
	if _, ok := e.Cookie(); ok {
		t.Error("a loop event has no cookie")
	}
}

func TestParseDMEvents(t *testing.T) {
	k, err := ParseEvent([]byte(kernelDMChange))
	if err != nil {
		t.Fatal(err)
	}
	u, err := ParseEvent(encodeUdev(udevProps))
	if err != nil {
		t.Fatal(err)
	}
	if k.Source != SourceKernel || u.Source != SourceUdev {
		t.Errorf("sources %v %v", k.Source, u.Source)
	}
	for _, e := range []*Event{k, u} {
		c, ok := e.Cookie()
		if !ok || c != 6296116 {
			t.Errorf("%v: Cookie() = %#x, %v", e.Source, c, ok)
		}
		f, base := SplitEventNr(c)
		if f != PrimarySource|DisableLibraryFallback || base != 0x1234 {
			t.Errorf("%v: cookie splits into %v %#x", e.Source, f, base)
		}
		if e.DevNode() != "/dev/dm-0" || e.Major != 253 || e.Minor != 0 || !e.HasDevNum || e.Seqnum != 2057 {
			t.Errorf("%v: %+v", e.Source, e)
		}
		for _, dev := range []string{"/dev/dm-0", "dm-0", "/devices/virtual/block/dm-0", "/sys/devices/virtual/block/dm-0"} {
			if !e.IsDevice(dev) {
				t.Errorf("%v: IsDevice(%q) = false", e.Source, dev)
			}
		}
		for _, dev := range []string{"", "/dev/dm-1", "dm-1", "/devices/virtual/block/dm-01", "vol", "/dev/mapper/vo"} {
			if e.IsDevice(dev) {
				t.Errorf("%v: IsDevice(%q) = true", e.Source, dev)
			}
		}
	}
	if !u.IsDevice("/dev/mapper/vol") || !u.IsDevice("/dev/disk/by-id/dm-name-vol") || k.IsDevice("/dev/mapper/vol") {
		t.Error("IsDevice does not follow udev's DEVLINKS")
	}
	if u.Get("DEVLINKS") != "/dev/mapper/vol /dev/disk/by-id/dm-name-vol" {
		t.Errorf("DEVLINKS = %q", u.Get("DEVLINKS"))
	}
}

func TestParseCapturedUdevEvent(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("captured on a little-endian machine")
	}
	e, err := ParseEvent([]byte(udevDMChange))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := e.Cookie()
	if e.Source != SourceUdev || e.Action != ActionChange || e.DevNode() != "/dev/dm-0" || e.Seqnum != 653 ||
		e.Get("DM_NAME") != "thinp-udevtest-103-2" || c != 6292162 || e.Get("USEC_INITIALIZED") == "" {
		t.Errorf("%+v", e)
	}
	if f, base := SplitEventNr(c); f != PrimarySource|DisableLibraryFallback || base == 0 {
		t.Errorf("DM_COOKIE %#x: flags %v base %#x", c, f, base)
	}
}

func TestParseEventErrors(t *testing.T) {
	valid := encodeUdev(udevProps)
	patch := func(off int, v uint32) []byte {
		b := bytes.Clone(valid)
		binary.NativeEndian.PutUint32(b[off:], v)
		return b
	}
	badMagic := bytes.Clone(valid)
	badMagic[8] ^= 0xff
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "not ACTION@DEVPATH"},
		{"no @", []byte("change\x00ACTION=change\x00"), "not ACTION@DEVPATH"},
		{"empty action", []byte("@/devices/x\x00"), "not ACTION@DEVPATH"},
		{"empty devpath", []byte("add@\x00"), "not ACTION@DEVPATH"},
		{"pair without =", []byte("add@/devices/x\x00ACTION\x00"), "not KEY=VALUE"},
		{"empty key", []byte("add@/devices/x\x00=x\x00"), "not KEY=VALUE"},
		{"bad seqnum", []byte("add@/devices/x\x00SEQNUM=-1\x00"), "SEQNUM"},
		{"bad major", []byte("add@/devices/x\x00MAJOR=4294967296\x00"), "MAJOR"},
		{"udev short", []byte(udevPrefix + "xx"), "shorter than its 40-byte header"},
		{"udev magic", badMagic, "magic"},
		{"udev header_size small", patch(12, 39), "header_size"},
		{"udev header_size large", patch(12, uint32(len(valid)+1)), "header_size"},
		{"udev properties_off inside header", patch(16, 8), "properties_off"},
		{"udev properties_off past end", patch(16, uint32(len(valid)+1)), "properties_off"},
		{"udev properties_len past end", patch(20, uint32(len(valid))), "properties_len"},
		{"udev properties_len huge", patch(20, 0xffffffff), "properties_len"},
		{"udev properties_off huge", patch(16, 0xfffffff0), "properties_off"},
		{"udev without ACTION", encodeUdev([]string{"DEVPATH=/devices/x"}), "without ACTION"},
		{"udev without DEVPATH", encodeUdev([]string{"ACTION=add"}), "without ACTION"},
	} {
		e, err := ParseEvent(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, errMalformed) {
			t.Errorf("%s: ParseEvent = %v, %v; want an error containing %q", tc.name, e, err, tc.want)
		}
	}
}

func TestParseEventLenient(t *testing.T) {
	// The header fills in a missing ACTION and DEVPATH; empty entries and a
	// missing final NUL are fine; the pairs win over the header.
	e, err := ParseEvent([]byte("add@/devices/x\x00\x00SUBSYSTEM=block\x00\x00ACTION=change\x00FOO=a=b"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Action != ActionChange || e.DevPath != "/devices/x" || e.Env["DEVPATH"] != "/devices/x" || e.Env["FOO"] != "a=b" {
		t.Errorf("%+v", e)
	}
	if e.HasDevNum {
		t.Error("HasDevNum without MAJOR and MINOR")
	}
	// properties_len shorter than the data: only that much counts.
	b := encodeUdev([]string{"ACTION=add", "DEVPATH=/devices/y", "EXTRA=1"})
	binary.NativeEndian.PutUint32(b[20:], uint32(len("ACTION=add\x00DEVPATH=/devices/y\x00")))
	e, err = ParseEvent(b)
	if err != nil || e.Env["EXTRA"] != "" || e.DevPath != "/devices/y" {
		t.Errorf("truncated properties: %+v, %v", e, err)
	}
}

func TestSourceAndEventString(t *testing.T) {
	for s, want := range map[Source]string{SourceKernel: "kernel", SourceUdev: "udev", 3: "kernel|udev", 4: "Source(4)"} {
		if s.String() != want {
			t.Errorf("Source(%d) = %q", s, s.String())
		}
	}
	e, _ := ParseEvent([]byte(kernelLoopChange))
	if got := e.String(); got != "kernel change /devices/virtual/block/loop7 (block)" {
		t.Errorf("String() = %q", got)
	}
}

func TestMonitorConfigMatch(t *testing.T) {
	e, _ := ParseEvent([]byte(kernelDMChange))
	for _, tc := range []struct {
		cfg  MonitorConfig
		want bool
	}{
		{MonitorConfig{}, true},
		{MonitorConfig{Subsystems: []string{"net", "block"}}, true},
		{MonitorConfig{Subsystems: []string{"net"}}, false},
		{MonitorConfig{Devices: []string{"loop0", "/dev/dm-0"}}, true},
		{MonitorConfig{Devices: []string{"dm-1"}}, false},
		{MonitorConfig{Subsystems: []string{"block"}, Devices: []string{"dm-1"}}, false},
	} {
		if got := tc.cfg.match(e); got != tc.want {
			t.Errorf("%+v: match = %v", tc.cfg, got)
		}
	}
}

func fuzzSeeds(f *testing.F) {
	f.Add([]byte(kernelLoopChange))
	f.Add([]byte(kernelDMChange))
	f.Add(encodeUdev(udevProps))
	f.Add(encodeUdev([]string{"ACTION=remove", "DEVPATH=/devices/virtual/block/dm-3", "SEQNUM=1"}))
	f.Add([]byte("add@/x\x00MAJOR=1\x00MINOR=2\x00SEQNUM=18446744073709551615"))
	f.Add([]byte(udevPrefix))
}

// checkRoundTrip re-encodes a parsed event in its own format and expects the
// same event back.
func checkRoundTrip(t *testing.T, e *Event) {
	t.Helper()
	var b []byte
	if e.Source == SourceUdev {
		b = encodeUdev(sortedEnv(e))
	} else {
		b = encodeKernel(e)
	}
	again, err := ParseEvent(b)
	if err != nil {
		t.Fatalf("re-encoded event does not parse: %v\n%q", err, b)
	}
	if diff := cmp.Diff(e, again); diff != "" {
		t.Fatalf("round trip mismatch (-first +second):\n%s", diff)
	}
}

func checkInvariants(t *testing.T, e *Event) {
	t.Helper()
	if e.Action == "" || e.DevPath == "" || e.Env == nil {
		t.Fatalf("parsed event lacks ACTION, DEVPATH or Env: %+v", e)
	}
	if string(e.Action) != e.Env["ACTION"] || e.DevPath != e.Env["DEVPATH"] {
		t.Fatalf("fields disagree with Env: %+v", e)
	}
	_ = e.DevNode()
	_ = e.SysName()
	_, _ = e.Cookie()
	_ = e.IsDevice(e.DevPath)
	_ = e.String()
}

func FuzzParseKernelEvent(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if bytes.HasPrefix(b, []byte(udevPrefix)) {
			return // FuzzParseUdevEvent's job
		}
		e, err := parseKernelEvent(b)
		if err != nil {
			return
		}
		checkInvariants(t, e)
		checkRoundTrip(t, e)
	})
}

func FuzzParseUdevEvent(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		// Steer the fuzzer: most inputs should reach the header checks.
		if len(b) >= 8 && !bytes.HasPrefix(b, []byte(udevPrefix)) {
			b = append([]byte(udevPrefix), b[8:]...)
		}
		e, err := parseUdevEvent(b)
		if err != nil {
			return
		}
		if e.Source != SourceUdev {
			t.Fatalf("libudev message parsed as %v", e.Source)
		}
		if e2, err := ParseEvent(b); err != nil || e2.Source != SourceUdev {
			t.Fatalf("ParseEvent disagrees: %v, %v", e2, err)
		}
		checkInvariants(t, e)
		checkRoundTrip(t, e)
	})
}
