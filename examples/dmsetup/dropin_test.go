package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/thinp/thinp/dm"
)

// asTool makes the test binary act as this dmsetup when re-executed with
// THINP_DMSETUP_TOOL=1, so tests can exec it as programs exec dmsetup.
func TestMain(m *testing.M) {
	if os.Getenv("THINP_DMSETUP_TOOL") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// execResult is what a program that execs dmsetup sees.
type execResult struct {
	stdout, stderr string
	code           int
}

// execTool runs bin (the real dmsetup, or this test binary acting as ours)
// with args.
func execTool(t *testing.T, bin string, ours bool, args ...string) execResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if ours {
		cmd.Env = append(os.Environ(), "THINP_DMSETUP_TOOL=1")
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %q: %v", bin, args, err)
	}
	return execResult{out.String(), errb.String(), code}
}

// ourBinary is this test binary, which acts as dmsetup under
// THINP_DMSETUP_TOOL=1. The real dmsetup names itself by argv[0] in switch
// errors: both are compared after replacing it.
func ourBinary(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// knownDifferences are the invocations (with the test's prefix replaced by
// "P") whose output differs from dmsetup 1.02.185 on purpose, and why.
var knownDifferences = map[string]string{
	"version": "the library version line names thinp",
}

// noUdevDifferences are further differences in the boot without udevd: the
// real dmsetup (libdevmapper built for udev) makes no /dev/mapper nodes
// there, so it cannot find a device by its path, and what follows differs;
// thinp's makes the nodes itself.
var noUdevDifferences = map[string]string{
	"load /dev/mapper/{N} --table 0 2048 zero": "no /dev/mapper node for the real dmsetup without udevd",
	"info -c -o name,tables_loaded {N}":        "follows from the load above",
	"table --inactive {N}":                     "follows from the load above",
	"remove --retry /dev/mapper/{N}":           "no /dev/mapper node for the real dmsetup without udevd",
	"remove {N}":                               "follows from the remove above",
	"info {N}":                                 "follows from the remove above",
	"suspend /dev/mapper/" + "P" + "zero":      "no /dev/mapper node for the real dmsetup without udevd",
	"info /dev/mapper/" + "P" + "lin":          "no /dev/mapper node for the real dmsetup without udevd",
	"table /dev/mapper/" + "P" + "lin":         "no /dev/mapper node for the real dmsetup without udevd",
	"info mapper/" + "P" + "lin":               "no /dev/mapper node for the real dmsetup without udevd",
	"info /dev/dm-1":                           "no /dev/mapper node for the real dmsetup without udevd",
	"status /dev/dm-1":                         "no /dev/mapper node for the real dmsetup without udevd",
}

var devNumLine = regexp.MustCompile(`Major, minor: +[0-9]+, [0-9]+`)

// TestIntegrationSideBySide runs a table of invocations (every command,
// the device-argument forms, and the errors programs meet) through the real
// dmsetup and through this one as separate processes, and compares stdout,
// stderr and exit status. It lists the differences and fails on any that
// knownDifferences does not explain.
func TestIntegrationSideBySide(t *testing.T) {
	v := newVMTest(t)
	lo, _ := v.loopDev(8 << 20)
	v.removeAllOnCleanup()
	p := v.prefix
	zero, lin := p+"zero", p+"lin"
	v.ours("create", zero, "--table", "0 2048 zero")
	v.ours("create", lin, "-u", p+"uuid", "--table", "0 4096 linear "+lo+" 0")
	v.settle()
	info, err := v.ctl.Info(context.Background(), dm.Name(lin))
	if err != nil {
		t.Fatal(err)
	}
	maj, min := fmt.Sprint(info.Dev.Major), fmt.Sprint(info.Dev.Minor)
	v.ours("create", p+"top", "--table", "0 1024 linear "+info.Dev.String()+" 0") // a stack for ls --tree
	dmN := "/dev/dm-" + min
	nosuch := p + "nosuch"
	cases := [][]string{
		{"ls"}, {"ls", "-o", "devname"}, {"ls", "--target", "linear"},
		{"info", lin}, {"info", "/dev/mapper/" + lin}, {"info", dmN}, {"info", "mapper/" + lin},
		{"info", "-j", maj, "-m", min}, {"info", "-u", p + "uuid"},
		{"info", "-c", "-o", "name,devnos_used,blkdevs_used,devs_used,subsystem,device_count", lin},
		{"info", "-c", "-O", "-name", "-o", "name,major", lin, zero},
		{"info", "-c", "-o", "help"},
		{"table", "/dev/mapper/" + lin}, {"status", dmN}, {"deps", "-j", maj, "-m", min},
		{"info", nosuch}, {"table", nosuch}, {"status", nosuch}, {"deps", nosuch},
		{"info", "/dev/mapper/" + nosuch}, {"remove", "/dev/mapper/" + nosuch}, {"info", "/nonexistent/x"},
		{"remove", nosuch}, {"suspend", nosuch}, {"resume", nosuch}, {"clear", nosuch},
		{"message", nosuch, "0", "hello"}, {"message", zero, "0", "hello"}, {"message", zero, "x", "y"},
		{"rename", nosuch, p + "other"}, {"rename", zero, lin},
		{"load", nosuch, "--table", "0 8 zero"}, {"load", zero, "--table", "0 8 nosuchtarget"},
		{"create", zero, "--table", "0 8 zero"}, {"create", p + "bad", "--table", "0 8 nosuchtarget"},
		{"info", "-j", "253", "-m", "250"}, {"table", "-u", nosuch},
		{"wait", nosuch}, {"wipe_table", nosuch}, {"setgeometry", nosuch, "1", "2", "3", "0"},
		{"target-version", "nosuchtarget"}, {"target-version", "zero"},
		{"mangle", lin}, {"splitname", lin},
		{"remove"}, {"suspend"}, {"info", "-c", "-o", "nosuch"},
		{"version"}, {"ls", "--tree"}, {"info", "-c", "-S", "name=" + lin},
		{"info", "-c", "--noheadings", "--separator", ";", lin}, {"info", "-c", "-o", "name,attr,tables_loaded,suspended,readonly,devno,blkdevname", lin},
		{"-v", "table", lin, zero}, {"-v", "status", lin}, {"deps", "-o", "blkdevname", lin}, {"ls", "-o", "blk"},
		{"table", "--target", "zero"}, {"status", "--target", "linear", lin}, {"table", "--showkeys", zero},
		{"suspend", "/dev/mapper/" + zero}, {"info", zero}, {"resume", "-j", "254", "-m", "0"}, {"resume", zero}, {"info", zero},
		{"suspend", "--noflush", "--nolockfs", zero}, {"resume", zero},
		// --concise and -S selections.
		{"table", "--concise"}, {"table", "--concise", lin, zero}, {"info", "--concise", lin}, {"table", "--concise", nosuch},
		{"info", "-c", "-S", "name=~'^" + p + "'"}, {"info", "-c", "-S", "name=" + lin + " || name=" + zero},
		{"info", "-c", "-S", "!(name=" + zero + ") && minor>=0"}, {"info", "-c", "-S", "(name=" + zero + " || name=" + lin + ") && segments<2"},
		{"info", "-c", "-S", "uuid=~uuid"}, {"info", "-c", "-S", "name = " + lin + ", open=0"}, {"info", "-c", "-S", "minor<0 # attr=~w"},
		{"info", "-c", "-o", "name,devs_used", "-S", "devs_used=~" + lin}, {"info", "-c", "-S", `name!~"zero"`, "-O", "-minor"},
		{"info", "-c", "-S", "name=" + lin, zero}, {"info", "-c", "-S", "name=" + lin, lin},
		{"table", "-S", "name=" + lin}, {"table", "-S", "name=" + lin, lin}, {"status", "-S", "name=~" + p + " && segments>0"},
		{"deps", "-S", "name=" + p + "top"}, {"table", "-S", "name=nosuch"},
		{"ls", "-S", "name=nosuch"}, {"info", "-S", "name=" + lin},
		{"info", "-c", "-S", "bogus=1"}, {"info", "-c", "-S", "name"}, {"info", "-c", "-S", "minor>x"}, {"info", "-c", "-S", "name>a"},
		{"info", "-c", "-S", "(name=x"}, {"info", "-c", "-S", "!name=x"}, {"info", "-c", "-S", "name=~"}, {"info", "-c", "-S", "name=x &&"},
		// Mutations: "{N}" is a device of each binary's own ("r" and "o").
		{"create", "{N}", "--table", "0 1024 zero"}, {"info", "{N}"}, {"create", "{N}", "--table", "0 1024 zero"},
		{"load", "/dev/mapper/{N}", "--table", "0 2048 zero"}, {"info", "-c", "-o", "name,tables_loaded", "{N}"},
		{"table", "--inactive", "{N}"}, {"clear", "{N}"}, {"reload", "{N}", "--table", "0 512 zero"}, {"resume", "{N}"},
		{"table", "{N}"}, {"wipe_table", "{N}"}, {"table", "{N}"}, {"setgeometry", "{N}", "10", "4", "32", "0"},
		{"rename", "{N}", "{N}2"}, {"rename", "{N}2", "{N}"}, {"rename", "{N}", "--setuuid", "{N}-uuid"}, {"info", "-u", "{N}-uuid"},
		{"mknodes", "{N}"}, {"remove", "--retry", "/dev/mapper/{N}"}, {"remove", "{N}"}, {"info", "{N}"},
		{"create", "{N}", "--notable"}, {"info", "{N}"}, {"remove", "-f", "{N}"},
		{"ls", "--tree"}, {"ls", "--tree", "-o", "ascii,blkdevname,active,open,rw,uuid"}, {"ls", "--tree", "-o", "nodevice"},
		{"ls", "--tree", "-o", "utf"}, {"ls", "--tree", "-o", "bogus"},
		{"udevcookies"}, {"targets"}, {"udevflags", "0x0041abcd"}, {"udevcomplete_all", "-y", "5000"},
	}
	real, ours := v.tool, ourBinary(t)
	same, differ := 0, 0
	var unexplained []string
	for _, args := range cases {
		own := func(name string) []string {
			a := make([]string, len(args))
			for i, w := range args {
				a[i] = strings.ReplaceAll(w, "{N}", p+name)
			}
			return a
		}
		want := execTool(t, real, false, own("r")...)
		got := execTool(t, ours, true, own("o")...)
		got.stderr = strings.ReplaceAll(got.stderr, ours, real)
		for _, r := range []*execResult{&want, &got} {
			if strings.Contains(strings.Join(args, " "), "{N}") {
				// Each binary's own device has its own number.
				r.stdout = devNumLine.ReplaceAllString(r.stdout, "Major, minor: (own)")
			}
			for _, n := range []string{"r", "o"} {
				r.stdout = strings.ReplaceAll(r.stdout, p+n, "{N}")
				r.stderr = strings.ReplaceAll(r.stderr, p+n, "{N}")
			}
		}
		key := strings.ReplaceAll(strings.Join(args, " "), p, "P")
		if got == want {
			same++
			continue
		}
		differ++
		why, ok := knownDifferences[key]
		if !ok && os.Getenv("THINP_VM_UDEV") == "0" {
			why, ok = noUdevDifferences[key]
		}
		if !ok {
			why = "UNEXPLAINED"
			unexplained = append(unexplained, key)
		}
		t.Logf("differs: dmsetup %s (%s)\n exit %d, real %d\n stdout: %s\n stderr: %s", key, why, got.code, want.code,
			lineDiff(got.stdout, want.stdout), lineDiff(got.stderr, want.stderr))
	}
	t.Logf("side by side: %d invocations, %d identical, %d differ (%d explained)", len(cases), same, differ, differ-len(unexplained))
	if len(unexplained) > 0 {
		t.Errorf("undocumented differences from dmsetup: %q", unexplained)
	}
}

// errnoTexts are the C library's texts of the errnos programs that exec
// dmsetup act on.
var errnoTexts = map[string]string{
	"Device or resource busy":   "EBUSY",
	"File exists":               "EEXIST",
	"No data available":         "ENODATA",
	"No such device or address": "ENXIO",
}

// client is written the way programs that exec dmsetup are: CombinedOutput,
// the errno recovered from the text after "failed: " on the first line that
// has it, EBUSY retried, EEXIST/ENODATA/ENXIO ignored where they mean the
// work is already done.
type client struct {
	bin  string
	ours bool
}

func (c client) run(args ...string) (string, string, error) {
	cmd := exec.Command(c.bin, args...)
	if c.ours {
		cmd.Env = append(os.Environ(), "THINP_DMSETUP_TOOL=1")
	}
	out, err := cmd.CombinedOutput()
	errno := ""
	if err != nil {
		for _, line := range strings.Split(string(out), "\n") {
			if i := strings.Index(line, "failed: "); i >= 0 {
				errno = errnoTexts[strings.TrimSpace(line[i+len("failed: "):])]
				break
			}
		}
		if errno == "" && strings.Contains(string(out), "Device does not exist.") {
			errno = "ENXIO"
		}
	}
	return string(out), errno, err
}

// do runs one step and reports what the program decided: "ok",
// "ignored <errno>", "retried", or "error <errno>".
func (c client) do(args ...string) string {
	for try := 0; ; try++ {
		_, errno, err := c.run(args...)
		switch {
		case err == nil && try > 0:
			return "retried"
		case err == nil:
			return "ok"
		case errno == "EBUSY" && try < 2:
			continue
		case errno == "EEXIST" || errno == "ENODATA" || errno == "ENXIO":
			return "ignored " + errno
		}
		return "error " + errno
	}
}

// TestIntegrationGoClient runs the same client scenario against the real
// dmsetup and against this one: every step must be decided the same way.
func TestIntegrationGoClient(t *testing.T) {
	v := newVMTest(t)
	meta, metaPath := v.loopDev(4 << 20)
	data, _ := v.loopDev(8 << 20)
	v.removeAllOnCleanup()
	// Without udevd, the real dmsetup (libdevmapper built for udev) leaves
	// /dev/mapper empty and refuses paths; thinp's makes the nodes itself.
	// Paths are used only where both can have them.
	path := func(name string) string { return name }
	if os.Getenv("THINP_VM_UDEV") == "1" {
		path = func(name string) string { return "/dev/mapper/" + name }
	}
	scenario := func(c client, p string) []string {
		pool, vol := p+"pool", p+"vol"
		var got []string
		step := func(args ...string) { got = append(got, strings.Join(args, " ")+": "+c.do(args...)) }
		step("create", pool, "--table", fmt.Sprintf("0 16384 thin-pool %s %s 128 0 1 skip_block_zeroing", meta, data))
		step("message", pool, "0", "create_thin 0")
		step("message", pool, "0", "create_thin 0") // EEXIST: already there
		step("create", vol, "--table", "0 8192 thin "+poolDev(t, v, pool)+" 0")
		step("message", path(pool), "0", "delete 0") // EBUSY while active: retried, then an error
		step("remove", path(vol))
		step("remove", vol) // ENXIO: already gone
		step("info", vol)
		step("message", pool, "0", "delete 0")
		step("message", pool, "0", "delete 0") // ENODATA: already deleted
		step("remove", pool)
		return got
	}
	// The pool must be formatted fresh for each run: wipe the metadata.
	wipe := func() {
		f, err := os.OpenFile(metaPath, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(make([]byte, 4096))
		f.Close()
	}
	wipe()
	want := scenario(client{v.tool, false}, v.prefix+"r")
	wipe()
	got := scenario(client{ourBinary(t), true}, v.prefix+"r")
	for i := range want {
		g := ""
		if i < len(got) {
			g = got[i]
		}
		if g != want[i] {
			t.Errorf("step %d: with thinp's dmsetup %q, with the real one %q", i, g, want[i])
		} else {
			t.Logf("same: %s", g)
		}
	}
}
