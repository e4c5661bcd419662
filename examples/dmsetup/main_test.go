package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/internal/testenv"
	"github.com/thinp/thinp/loop"
	"github.com/thinp/thinp/udev"
)

// runApp runs the tool in-process like run does, with stdin.
func runApp(stdin string, args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	a := &app{ctx: context.Background(), stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, sys: "/sys", devDir: "/dev"}
	defer a.close()
	code = a.main(args)
	return out.String(), errb.String(), code
}

// usageCases are command lines dmsetup answers without device-mapper:
// usage, help and switch errors. TestCrossCheckUsage compares them with the
// real dmsetup byte for byte where it is installed.
var usageCases = [][]string{
	nil,
	{"-h"},
	{"--help"},
	{"help"},
	{"help", "-c"},
	{"-c", "-h"},
	{"help", "remove"},
	{"create", "-h"},
	{"bogus"},
	{"--bogus", "ls"},
	{"-Z", "ls"},
	{"info", "-u"},
	{"ls", "extra"},
	{"udevflags"},
	{"udevflags", "0"},
	{"udevcomplete", "junk"},
	{"info", "-j", "253"},
	{"ls", "-o", "ascii"},
	{"ls", "-o", "devno,bogus,x"},
	{"message", "x"},
	{"wait", "x", "y", "z"},
	{"setgeometry", "x", "1", "2", "3"},
	{"create"},
	{"wipe_table"},
	{"splitname", "vg-lv"},
	{"splitname", "vg-lv", "LVM"},
	{"splitname", "a--b-c_d-e"},
	{"splitname", "vg-lv-x-y"},
	{"splitname", "vg-lv", "OTHER"},
	{"-c", "splitname", "vg-lv", "--noheadings"},
	{"splitname", "vg-lv", "-o", "lv_name,vg_name", "--separator", "/"},
	{"udevflags", "0x00410001"},
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stderr string // prefix expected on stderr
	}{
		{nil, 1, "Usage:\n\ndmsetup\n"},
		{[]string{"-h"}, 0, usageText},
		{[]string{"help", "-c"}, 0, usageText + "Mapped Device Name Fields"},
		{[]string{"bogus"}, 1, "Unknown command.\nUsage:"},
		{[]string{"--bogus", "ls"}, 1, "dmsetup: unrecognized option '--bogus'\nCouldn't process command line.\n"},
		{[]string{"ls", "extra"}, 1, "Incorrect number of arguments.\nUsage:"},
		{[]string{"udevflags", "0"}, 1, "Incorrect cookie value.\nCommand failed.\n"},
		{[]string{"info", "-j", "253"}, 1, "Please specify both major number and minor number.\nCouldn't process command line.\n"},
		{[]string{"ls", "-o", "devno,bogus,x"}, 1, "Option not recognised: bogus,x.\nCouldn't process command line.\n"},
		{[]string{"create"}, 1, "Please provide a name for the new device.\nCommand failed.\n"},
		{[]string{"create", "a/b", "--table", "0 1 zero"}, 1, "Name \"a/b\" invalid. It contains \"/\".\nCommand failed.\n"},
		{[]string{"info", "-c", "-o", "nosuch"}, 1, fieldHelpText + "Unrecognised field: nosuch\n"},
	}
	for _, tt := range tests {
		_, errOut, code := runApp("", tt.args...)
		if code != tt.code || !strings.HasPrefix(errOut, tt.stderr) {
			t.Errorf("dmsetup %q: exit %d, stderr %.200q; want exit %d, stderr starting %.200q", tt.args, code, errOut, tt.code, tt.stderr)
		}
	}
	if out, _, _ := runApp("", "splitname", "a--b-c_d-e"); out != "VG   LV   LVLayer\na-b  c_d  e      \n" {
		t.Errorf("splitname: %q", out)
	}
}

// TestCrossCheckUsage runs usageCases through this dmsetup and the real one
// (where installed; no device-mapper needed) and wants the same stdout,
// stderr and exit status.
func TestCrossCheckUsage(t *testing.T) {
	tool := testenv.Tool(t, "dmsetup")
	for _, args := range usageCases {
		var out, errb bytes.Buffer
		cmd := exec.Command(tool, args...)
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		var gotOut, gotErr bytes.Buffer
		a := &app{ctx: context.Background(), stdin: strings.NewReader(""), stdout: &gotOut, stderr: &gotErr, sys: "/sys", devDir: "/dev", prog: tool}
		gotCode := a.main(args)
		a.close()
		if gotCode != code || gotOut.String() != out.String() || gotErr.String() != errb.String() {
			t.Errorf("dmsetup %q: exit %d, real %d\nstdout:\n%s\nstderr:\n%s", args, gotCode, code,
				lineDiff(gotOut.String(), out.String()), lineDiff(gotErr.String(), errb.String()))
		}
	}
}

func TestReadTable(t *testing.T) {
	a := &app{stdin: strings.NewReader("0 8 zero\n8 8 error\n")}
	tb, err := a.readTable("")
	if err != nil || tb.String() != "0 8 zero \n8 8 error \n" {
		t.Errorf("from stdin: %q, %v", tb.String(), err)
	}
	file := filepath.Join(t.TempDir(), "table")
	if err := os.WriteFile(file, []byte("0 16 linear 7:0 0 # comment\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a = &app{stdin: strings.NewReader("not read")}
	if tb, err = a.readTable(file); err != nil || tb.String() != "0 16 linear 7:0 0\n" {
		t.Errorf("from file: %q, %v", tb.String(), err)
	}
	a.opts.table, a.opts.hasTable = "0 1 zero", true
	if tb, err = a.readTable(file); err != nil || tb.String() != "0 1 zero \n" {
		t.Errorf("--table wins: %q, %v", tb.String(), err)
	}
	a = &app{}
	if _, err = a.readTable(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestConfirm(t *testing.T) {
	const prompt = "P? "
	tests := []struct {
		in   string
		yes  bool
		want string
	}{
		{"", false, "P? \n"},
		{"y\n", true, "P? "},
		{"Y\n", true, "P? "},
		{"n\n", false, "P? "},
		{"yes\n", true, "P? "},
		{"x\ny\n", true, "P? P? "},
		{"yn\n", false, "P? "},
		{"y", false, "P? \n"}, // end of input before the newline
	}
	for _, tt := range tests {
		var out bytes.Buffer
		a := &app{stdin: strings.NewReader(tt.in), stdout: &out}
		if got := a.confirm(prompt); got != tt.yes || out.String() != tt.want {
			t.Errorf("confirm(%q) = %v, printed %q; want %v, %q", tt.in, got, out.String(), tt.yes, tt.want)
		}
	}
}

// realTool runs the real dmsetup with args and stdin, and returns its
// stdout and exit status. Only tests run it, as a cross-check.
func realTool(t *testing.T, tool, stdin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running %s %q: %v", tool, args, err)
	}
	if errb.Len() > 0 {
		t.Logf("real dmsetup %q stderr: %s", args, strings.TrimSpace(errb.String()))
	}
	return out.String(), code
}

// TestCrossCheckUdev compares the udev commands that need no
// device-mapper with the real dmsetup, where it is installed. None of them
// touches a semaphore: the cookie of udevcomplete carries flags only, and
// udevcomplete_all is answered "no".
func TestCrossCheckUdev(t *testing.T) {
	tool := testenv.Tool(t, "dmsetup")
	cases := []struct {
		stdin string
		args  []string
	}{
		{"", []string{"udevflags", "0x0041abcd"}},
		{"", []string{"udevflags", "0xffff0001"}},
		{"", []string{"udevflags", "0x00010000"}},
		{"", []string{"udevflags", "123456789"}},
		{"", []string{"udevflags", "0"}},
		{"", []string{"udevcomplete", "0x12340000"}},
		{"", []string{"udevcomplete", "0xd4d0000"}},
		{"", []string{"udevcomplete_all", "5"}},
		{"n\n", []string{"udevcomplete_all"}},
		{"maybe\nno\n", []string{"udevcomplete_all", "60"}},
	}
	for _, c := range cases {
		want, wantCode := realTool(t, tool, c.stdin, c.args...)
		got, errOut, code := runApp(c.stdin, c.args...)
		if code != wantCode {
			t.Errorf("%q: exit %d, real dmsetup %d (stderr %q)", c.args, code, wantCode, errOut)
		}
		if d := lineDiff(got, want); d != "" {
			t.Errorf("%q differs from the real dmsetup:\n%s", c.args, d)
		}
	}
	// The header of udevcookies; the cookies themselves come and go.
	want, _ := realTool(t, tool, "", "udevcookies")
	got, _, _ := runApp("", "udevcookies")
	gotHead, _, _ := strings.Cut(got, "\n")
	wantHead, _, _ := strings.Cut(want, "\n")
	if gotHead != wantHead {
		t.Errorf("udevcookies header %q, real %q", gotHead, wantHead)
	}
}

// vmTest is the state of a privileged test that compares this dmsetup with
// the real one.
type vmTest struct {
	t      *testing.T
	prefix string
	tool   string
	ctl    *dm.Control // for polling and cleanup, not for what is tested
}

func newVMTest(t *testing.T) *vmTest {
	testenv.Privileged(t)
	prefix := testenv.Prefix(t)
	testenv.CheckLeaks(t, prefix)
	tool := testenv.Tool(t, "dmsetup")
	ctl, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	return &vmTest{t: t, prefix: prefix, tool: tool, ctl: ctl}
}

// loopDev attaches a sparse file of size bytes and returns it as
// "major:minor"; it is detached when the test ends, after every cleanup
// registered later (the devices that use it).
func (v *vmTest) loopDev(size int64) (dev string, path string) {
	t := v.t
	ctx := context.Background()
	img := testenv.SparseFile(t, size)
	d, err := loop.Attach(ctx, img, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Detach(ctx); err != nil {
			t.Errorf("detach %s: %v", d, err)
		}
		d.Close()
	})
	return d.Dev().String(), d.Path()
}

// removeAllOnCleanup removes, when the test ends, every device whose name
// has the test's prefix, users first, and any /dev/mapper node left for
// them.
func (v *vmTest) removeAllOnCleanup() {
	v.t.Cleanup(func() {
		ctx := context.Background()
		for pass := 0; pass < 5; pass++ {
			devs, err := v.ctl.List(ctx)
			if err != nil {
				v.t.Errorf("cleanup: %v", err)
				return
			}
			left := 0
			for i := len(devs) - 1; i >= 0; i-- {
				if strings.HasPrefix(devs[i].Name, v.prefix) {
					left++
					if err := v.ctl.Remove(ctx, dm.Name(devs[i].Name)); err == nil {
						left--
					}
				}
			}
			if left == 0 {
				break
			}
		}
		if err := v.ctl.MakeNodes(ctx); err != nil {
			v.t.Errorf("cleanup: %v", err)
		}
	})
}

// ours runs this dmsetup in-process and fails the test unless it exits 0.
func (v *vmTest) ours(args ...string) string {
	v.t.Helper()
	var out, errb bytes.Buffer
	if code := run(args, &out, &errb); code != 0 {
		v.t.Fatalf("dmsetup %q: exit %d: %s", args, code, errb.String())
	}
	return out.String()
}

// theirs runs the real dmsetup and fails the test unless it exits 0.
func (v *vmTest) theirs(args ...string) string {
	v.t.Helper()
	out, code := realTool(v.t, v.tool, "", args...)
	if code != 0 {
		v.t.Fatalf("real dmsetup %q: exit %d", args, code)
	}
	return out
}

// same runs both with args and fails the test if their exit status or
// output differ, line by line; it returns the output.
func (v *vmTest) same(args ...string) string {
	v.t.Helper()
	want, wantCode := realTool(v.t, v.tool, "", args...)
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	if code != wantCode {
		v.t.Errorf("dmsetup %q: exit %d, real dmsetup %d; stderr %s", args, code, wantCode, errb.String())
	}
	if d := lineDiff(out.String(), want); d != "" {
		v.t.Errorf("dmsetup %q differs from the real dmsetup:\n%s", args, d)
	}
	return want
}

// settle waits for udev to finish with our events, so that nothing has a
// device open while the outputs are compared.
func (v *vmTest) settle() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := udev.Settle(ctx); err != nil {
		v.t.Logf("udev settle: %v", err)
	}
}

// waitGone waits until the device name no longer exists.
func (v *vmTest) waitGone(name string) {
	v.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := v.ctl.Info(context.Background(), dm.Name(name))
		if errors.Is(err, dm.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("%s still exists: %v", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustContain(t *testing.T, what, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Errorf("%s: %q does not contain %q", what, s, sub)
	}
}

// TestIntegrationCompare creates devices with this dmsetup and compares
// ls, info (also -c), table, status and deps with the real dmsetup, line by
// line, as the devices go through suspend, load, clear, resume, rename,
// message, deferred remove and remove.
func TestIntegrationCompare(t *testing.T) {
	v := newVMTest(t)
	lo, _ := v.loopDev(16 << 20)
	v.removeAllOnCleanup()
	p := v.prefix
	zero, lin, ro, empty := p+"zero", p+"lin", p+"ro", p+"empty"

	v.ours("create", zero, "--table", "0 2048 zero")
	v.ours("create", lin, "--uuid", p+"uuid-lin", "--table", "0 4096 linear "+lo+" 0\n4096 2048 zero\n")
	tableFile := filepath.Join(t.TempDir(), "ro.table")
	if err := os.WriteFile(tableFile, []byte("# read-only part\n0 1024 linear "+lo+" 8192\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v.ours("--noudevsync", "create", ro, "-r", tableFile)
	v.ours("create", empty, "--notable")
	v.settle()

	ls := v.same("ls")
	for _, n := range []string{zero, lin, ro, empty} {
		mustContain(t, "ls", ls, n+"\t(")
	}
	v.same("ls", "--target", "linear")
	v.same("ls", "-o", "blkdevname")
	v.same("ls", "-o", "devname")
	v.same("table")
	v.same("status")
	v.same("table", lin)
	v.same("status", lin)
	v.same("table", lin, zero, empty)
	v.same("status", "--target", "zero")
	v.same("table", "--target", "linear", ro, lin)
	v.same("table", "-u", p+"uuid-lin")
	info := v.same("info")
	mustContain(t, "info", info, "State:             ACTIVE (READ-ONLY)\n")
	v.same("info", lin)
	v.same("info", ro, empty)
	v.same("info", "-c")
	v.same("info", "-c", "--noheadings")
	v.same("info", "-c", "-o", "name,uuid,major,minor,open,segments,events,attr")
	v.same("info", "-c", "--separator", ",", lin)
	v.same("info", "-C", "-o", "+tables_loaded,suspended,readonly,devno,read_ahead")
	// Only devices with a table have a block device name (the kernel adds
	// the disk at the first load); the real dmsetup fails for the others.
	v.same("info", "-c", "-o", "name,blkdevname,read_ahead", lin, ro)
	v.same("deps")
	v.same("deps", lin)
	v.same("deps", "-o", "blkdevname", lin, ro)
	// -v shows each device's info block with its lines.
	v.same("-v", "table", lin, zero, empty)
	v.same("-v", "status", lin)
	v.same("-v", "deps", lin, ro)
	v.same("targets")
	v.same("target-version", "linear", "zero")
	ver := v.ours("version")
	theirVer := v.theirs("version")
	_, ourDriver, _ := strings.Cut(ver, "Driver version:")
	_, theirDriver, _ := strings.Cut(theirVer, "Driver version:")
	if ourDriver != theirDriver || ourDriver == "" {
		t.Errorf("driver version %q, real %q", ourDriver, theirDriver)
	}

	// A device that does not exist: both fail.
	v.same("info", p+"nosuch")
	v.same("table", p+"nosuch")

	// Suspend and resume.
	v.ours("suspend", "--noflush", lin)
	mustContain(t, "info after suspend", v.same("info", lin), "State:             SUSPENDED\n")
	v.same("info", "-c", lin)
	v.ours("resume", lin)
	mustContain(t, "info after resume", v.same("info", lin), "State:             ACTIVE\n")

	// Load, clear, load again and resume: the inactive table.
	v.ours("load", zero, "--table", "0 4096 zero")
	mustContain(t, "info after load", v.same("info", zero), "Tables present:    LIVE & INACTIVE\n")
	v.same("table", "--inactive", zero)
	v.same("info", "-c", zero)
	v.ours("clear", zero)
	mustContain(t, "info after clear", v.same("info", zero), "Tables present:    LIVE\n")
	v.ours("reload", zero, "--table", "0 4096 zero")
	v.ours("resume", zero)
	v.settle()
	if got := v.same("table", zero); got != "0 4096 zero \n" {
		t.Errorf("table after reload: %q", got)
	}

	// Messages to device-mapper core: statistics regions.
	if got := v.ours("message", lin, "0", "@stats_create", "-", "/1"); got != "0\n" {
		t.Errorf("@stats_create answered %q, want region 0", got)
	}
	if got := v.same("message", lin, "0", "@stats_list"); !strings.HasPrefix(got, "0: ") {
		t.Errorf("@stats_list: %q", got)
	}
	v.ours("message", lin, "0", "@stats_delete", "0")
	if got := v.theirs("message", lin, "0", "@stats_list"); got != "" {
		t.Errorf("@stats_list after delete: %q", got)
	}

	// Rename, and set the uuid of a device that has none.
	ro2 := p + "ro2"
	v.ours("--noudevsync", "rename", ro, ro2)
	mustContain(t, "ls after rename", v.same("ls"), ro2+"\t(")
	v.ours("rename", empty, "--setuuid", p+"uuid-empty")
	mustContain(t, "info after setuuid", v.same("info", empty), "UUID: "+p+"uuid-empty\n")
	v.settle()

	// Wait returns at once when the event counter differs.
	v.ours("wait", lin, "7")

	// Deferred remove of an open device, cancelled, then done at close.
	info0, err := v.ctl.Info(context.Background(), dm.Name(zero))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(fmt.Sprintf("/dev/dm-%d", info0.Dev.Minor))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v.ours("remove", "--deferred", zero)
	mustContain(t, "info after deferred remove", v.same("info", zero), "State:             ACTIVE (DEFERRED REMOVE)\n")
	v.ours("message", zero, "0", "@cancel_deferred_remove")
	mustContain(t, "info after cancel", v.same("info", zero), "State:             ACTIVE\nRead Ahead:")
	v.ours("remove", "--deferred", zero)
	f.Close()
	v.waitGone(zero)
	v.ours("mknodes", zero) // drops a node the kernel's deferred remove left behind
	if _, err := os.Lstat("/dev/mapper/" + zero); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/dev/mapper/%s after mknodes: %v", zero, err)
	}

	// Remove, forced and plain.
	v.ours("remove", "--retry", "-f", lin)
	v.ours("--noudevsync", "remove", ro2)
	v.ours("remove", "--retry", empty)
	ls = v.same("ls")
	if strings.Contains(ls, p) {
		t.Errorf("devices left after remove:\n%s", ls)
	}
	for _, n := range []string{zero, lin, ro2, empty} {
		v.waitGone(n)
	}
	v.same("udevcookies")
}

// TestIntegrationThinWait waits for a thin pool's low-water-mark event
// with this dmsetup's wait, and compares the pool's and the volume's
// status and table with the real dmsetup.
func TestIntegrationThinWait(t *testing.T) {
	v := newVMTest(t)
	meta, metaPath := v.loopDev(4 << 20)
	data, _ := v.loopDev(8 << 20)
	v.removeAllOnCleanup()
	pool, thin := v.prefix+"pool", v.prefix+"thin"

	// 128 blocks of 64 KiB, and a low water mark of 127 free blocks: the
	// pool checks the mark before each allocation, so the second block
	// written raises the event.
	v.ours("create", pool, "--table", fmt.Sprintf("0 16384 thin-pool %s %s 128 127 1 skip_block_zeroing", meta, data))
	v.ours("message", pool, "0", "create_thin", "0")
	v.ours("create", thin, "--table", "0 8192 thin "+poolDev(t, v, pool)+" 0")
	v.settle()
	v.same("status", pool)
	v.same("table", pool)
	v.same("status")
	v.same("deps", thin)
	v.same("info", "-c")
	v.same("ls", "--target", "thin-pool")

	before, err := v.ctl.Info(context.Background(), dm.Name(pool))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() {
		var out, errb bytes.Buffer
		code := run([]string{"wait", pool, fmt.Sprint(before.EventNr)}, &out, &errb)
		done <- fmt.Sprintf("exit %d %s%s", code, out.String(), errb.String())
	}()
	select {
	case r := <-done:
		t.Fatalf("wait returned before the event: %s", r)
	case <-time.After(200 * time.Millisecond):
	}

	info, err := v.ctl.Info(context.Background(), dm.Name(thin))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(fmt.Sprintf("/dev/dm-%d", info.Dev.Minor), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte{0xa5}, 4*64<<10)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r != "exit 0 " {
			t.Errorf("wait: %s", r)
		}
	case <-time.After(30 * time.Second):
		now, err := v.ctl.Info(context.Background(), dm.Name(pool))
		st, _ := v.ctl.Status(context.Background(), dm.Name(pool))
		t.Fatalf("wait did not return after the low water mark was crossed: event %d -> %d (%v), status %v",
			before.EventNr, now.EventNr, err, st)
	}
	v.settle()
	st := v.same("status", pool)
	if !strings.Contains(st, " 4/128 ") {
		t.Errorf("pool status after four blocks written: %q", st)
	}
	v.same("status", thin)
	v.same("info", pool)

	v.ours("remove", "--retry", thin)
	v.ours("remove", "--retry", pool)
	v.waitGone(pool)
	testenv.ThinCheck(t, metaPath)
}

// poolDev returns the pool's "major:minor".
func poolDev(t *testing.T, v *vmTest, name string) string {
	t.Helper()
	info, err := v.ctl.Info(context.Background(), dm.Name(name))
	if err != nil {
		t.Fatal(err)
	}
	return info.Dev.String()
}
