package vm

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// cpioMember is one member as readCPIO decodes it.
type cpioMember struct {
	Name         string
	Ino, Mode    uint32
	Nlink        uint32
	RMaj, RMin   uint32
	Data         string
	HeaderOffset int
}

// readCPIO decodes a newc archive independently of CPIOWriter, checking
// the magic, the alignment and the trailer.
func readCPIO(b []byte) ([]cpioMember, error) {
	var out []cpioMember
	off := 0
	for {
		if off%4 != 0 {
			return nil, fmt.Errorf("member at %d not 4-aligned", off)
		}
		if len(b)-off < cpioHeaderSize {
			return nil, fmt.Errorf("truncated header at %d", off)
		}
		h := string(b[off : off+cpioHeaderSize])
		if h[:6] != "070701" {
			return nil, fmt.Errorf("bad magic %q at %d", h[:6], off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(h[6+8*i:6+8*i+8], 16, 32)
			if err != nil {
				panic(err)
			}
			return uint32(v)
		}
		m := cpioMember{Ino: field(0), Mode: field(1), Nlink: field(4), RMaj: field(9), RMin: field(10), HeaderOffset: off}
		size, namesize := int(field(6)), int(field(11))
		if field(12) != 0 {
			return nil, fmt.Errorf("non-zero checksum at %d", off)
		}
		p := off + cpioHeaderSize
		if namesize < 1 || p+namesize > len(b) || b[p+namesize-1] != 0 {
			return nil, fmt.Errorf("bad name at %d", off)
		}
		m.Name = string(b[p : p+namesize-1])
		p += namesize
		p += pad4(p)
		if p+size > len(b) {
			return nil, fmt.Errorf("truncated data of %s", m.Name)
		}
		m.Data = string(b[p : p+size])
		p += size
		p += pad4(p)
		off = p
		if m.Name == cpioTrailer {
			if off != len(b) {
				return nil, fmt.Errorf("%d bytes after the trailer", len(b)-off)
			}
			return out, nil
		}
		out = append(out, m)
	}
}

func TestCPIOWriterRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewCPIOWriter(&buf)
	steps := []error{
		w.Dir("/dev", 0o755),
		w.CharDev("dev/console", 0o600, 5, 1),
		w.Dir("./sbin", 0o755),
		w.Bytes("sbin/init", 0o755, []byte("#!/bin/sh\n")), // 10 bytes: 2 of padding
		w.Bytes("empty", 0o644, nil),
		w.Symlink("bin", "usr/bin"),
		w.File("x/abcd", 0o640, 4, strings.NewReader("abcdEXTRA")), // only 4 read
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	got, err := readCPIO(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i].HeaderOffset = 0
	}
	want := []cpioMember{
		{Name: "dev", Ino: 1, Mode: 0o040755, Nlink: 2},
		{Name: "dev/console", Ino: 2, Mode: 0o020600, Nlink: 1, RMaj: 5, RMin: 1},
		{Name: "sbin", Ino: 3, Mode: 0o040755, Nlink: 2},
		{Name: "sbin/init", Ino: 4, Mode: 0o100755, Nlink: 1, Data: "#!/bin/sh\n"},
		{Name: "empty", Ino: 5, Mode: 0o100644, Nlink: 1},
		{Name: "bin", Ino: 6, Mode: 0o120777, Nlink: 1, Data: "usr/bin"},
		{Name: "x/abcd", Ino: 7, Mode: 0o100640, Nlink: 1, Data: "abcd"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("archive (-want +got):\n%s", diff)
	}
}

// TestCPIOHeaderBytes pins the exact header of one member.
func TestCPIOHeaderBytes(t *testing.T) {
	var buf bytes.Buffer
	w := NewCPIOWriter(&buf)
	if err := w.Bytes("a", 0o644, []byte("xyz")); err != nil {
		t.Fatal(err)
	}
	want := "070701" + // magic
		"00000001" + // ino
		"000081a4" + // mode: S_IFREG|0644
		"00000000" + "00000000" + // uid, gid
		"00000001" + // nlink
		"00000000" + // mtime
		"00000003" + // filesize
		"00000000" + "00000000" + // dev major, minor
		"00000000" + "00000000" + // rdev major, minor
		"00000002" + // namesize: "a\x00"
		"00000000" + // check
		"a\x00" + // name: 110+2 = 112, already aligned
		"xyz\x00" // data and one byte of padding
	if got := buf.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestCPIOWriterErrors(t *testing.T) {
	for _, name := range []string{"", "/", ".", "a/../b", "../x", "a//b", "a\x00b"} {
		w := NewCPIOWriter(io.Discard)
		if err := w.Dir(name, 0o755); err == nil {
			t.Errorf("Dir(%q): no error", name)
		}
		// The error is sticky.
		if err := w.Dir("ok", 0o755); err == nil {
			t.Errorf("after a bad name %q, Dir(ok): no error", name)
		}
	}
	w := NewCPIOWriter(io.Discard)
	if err := w.File("short", 0o644, 10, strings.NewReader("abc")); err == nil || !strings.Contains(err.Error(), "short data") {
		t.Errorf("short data: got %v", err)
	}
	w = NewCPIOWriter(io.Discard)
	if err := w.File("neg", 0o644, -1, strings.NewReader("")); err == nil {
		t.Error("negative size: no error")
	}
	if err := NewCPIOWriter(io.Discard).Symlink("l", ""); err == nil {
		t.Error("empty symlink target: no error")
	}
	w = NewCPIOWriter(io.Discard)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Dir("late", 0o755); err == nil {
		t.Error("write after Close: no error")
	}
}

// TestCPIOListedByGNUCpio cross-checks the archive with GNU cpio when the
// host has it.
func TestCPIOListedByGNUCpio(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio not installed")
	}
	var buf bytes.Buffer
	w := NewCPIOWriter(&buf)
	_ = w.Dir("d", 0o755)
	_ = w.Bytes("d/f", 0o644, []byte("hello"))
	_ = w.Symlink("d/l", "f")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cpio, "-t", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	if got := strings.Fields(string(out)); !cmp.Equal(got, []string{"d", "d/f", "d/l"}) {
		t.Errorf("cpio -t listed %q", got)
	}
}

// TestTreeWrite checks that a tree's archive lists parents before children
// and copies host files, symlinks and ELF libraries.
func TestTreeWrite(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.MkdirAll(filepath.Join(real, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, "bin", "tool"), []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("tool", filepath.Join(real, "bin", "alias")); err != nil {
		t.Fatal(err)
	}
	tr := newTree()
	if err := tr.addHost(filepath.Join(dir, "link", "bin", "alias")); err != nil {
		t.Fatal(err)
	}
	tr.addData("/etc/x", 0o600, []byte("x"))
	var buf bytes.Buffer
	if err := tr.write(NewCPIOWriter(&buf)); err != nil {
		t.Fatal(err)
	}
	members, err := readCPIO(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]cpioMember{}
	var names []string
	for _, m := range members {
		byName[m.Name] = m
		names = append(names, m.Name)
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("members not sorted: %q", names)
	}
	rel := strings.TrimPrefix(dir, "/")
	for name, want := range map[string]string{
		rel + "/link":           "real",
		rel + "/real/bin/alias": "tool",
	} {
		if m, ok := byName[name]; !ok || m.Mode&0o170000 != modeSymlink || m.Data != want {
			t.Errorf("%s: want symlink to %q, got %+v", name, want, m)
		}
	}
	if m := byName[rel+"/real/bin/tool"]; m.Data != "#!/bin/sh\necho hi\n" || m.Mode != 0o100755 {
		t.Errorf("tool: got %+v", m)
	}
	if m := byName["etc/x"]; m.Data != "x" || m.Mode != 0o100600 {
		t.Errorf("etc/x: got %+v", m)
	}
}

// TestTreeELFLibraries copies a dynamically linked host program and checks
// its interpreter and libraries come along.
func TestTreeELFLibraries(t *testing.T) {
	prog := "/usr/sbin/dmsetup"
	if _, err := os.Stat(prog); err != nil {
		t.Skip("dmsetup not installed")
	}
	tr := newTree()
	if err := tr.addHost(prog); err != nil {
		t.Fatal(err)
	}
	var have []string
	for name, e := range tr.entries {
		if e.kind == kindFile {
			have = append(have, filepath.Base(name))
		}
	}
	all := strings.Join(have, " ")
	for _, want := range []string{"dmsetup", "libdevmapper.so.1.02.1", "libc.so.6", "ld-linux-x86-64.so.2"} {
		if !strings.Contains(all, want) {
			t.Errorf("copying %s brought %s, missing %s", prog, all, want)
		}
	}
}
