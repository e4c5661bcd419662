package vm

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// entryKind is the type of a file in the guest tree.
type entryKind int

const (
	kindDir entryKind = iota
	kindFile
	kindSymlink
	kindCharDev
)

// entry is one file of the guest's root file system.
type entry struct {
	kind   entryKind
	perm   fs.FileMode
	host   string // kindFile: copied from this host file when data is nil
	data   []byte // kindFile: contents given directly
	target string // kindSymlink
	major  uint32 // kindCharDev
	minor  uint32
}

// tree is the guest's root file system, built up in memory and written out
// as a cpio archive. Paths are absolute guest paths in slash form.
type tree struct {
	entries map[string]*entry
	// libDirs are the host directories searched for shared libraries that an
	// ELF file needs, after its own DT_RUNPATH.
	libDirs []string
}

func newTree() *tree {
	return &tree{entries: map[string]*entry{}, libDirs: hostLibDirs()}
}

// mkdirAll adds dir and its parents.
func (t *tree) mkdirAll(dir string) {
	dir = path.Clean("/" + dir)
	for d := dir; d != "/"; d = path.Dir(d) {
		if _, ok := t.entries[d]; ok {
			continue
		}
		t.entries[d] = &entry{kind: kindDir, perm: 0o755}
	}
}

// addData adds a file with the given contents.
func (t *tree) addData(name string, perm fs.FileMode, data []byte) {
	name = path.Clean("/" + name)
	t.mkdirAll(path.Dir(name))
	t.entries[name] = &entry{kind: kindFile, perm: perm, data: data}
}

// addFile adds the host file host at guest path name.
func (t *tree) addFile(name, host string, perm fs.FileMode) {
	name = path.Clean("/" + name)
	t.mkdirAll(path.Dir(name))
	t.entries[name] = &entry{kind: kindFile, perm: perm, host: host}
}

// addSymlink adds a symlink at name.
func (t *tree) addSymlink(name, target string) {
	name = path.Clean("/" + name)
	t.mkdirAll(path.Dir(name))
	t.entries[name] = &entry{kind: kindSymlink, perm: 0o777, target: target}
}

// addCharDev adds a character device node.
func (t *tree) addCharDev(name string, perm fs.FileMode, major, minor uint32) {
	name = path.Clean("/" + name)
	t.mkdirAll(path.Dir(name))
	t.entries[name] = &entry{kind: kindCharDev, perm: perm, major: major, minor: minor}
}

// addHostDir copies the host directory src, recursively, to guest path dst.
// Symlinks are copied as symlinks.
func (t *tree) addHostDir(dst, src string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		g := path.Join(dst, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			t.mkdirAll(g)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			t.addSymlink(g, target)
		case info.Mode().IsRegular():
			t.addFile(g, p, info.Mode().Perm())
		}
		return nil
	})
}

// maxSymlinks bounds symlink resolution, as the kernel's ELOOP does.
const maxSymlinks = 40

// addHost copies the host file at the absolute path p into the guest at the
// same path, reproducing every symlink met on the way (so /sbin/dmsetup
// arrives as the symlink /sbin -> usr/sbin plus /usr/sbin/dmsetup, and
// thin_check as a symlink to pdata_tools), and, for a dynamically linked ELF
// file, its interpreter and the shared libraries it needs.
func (t *tree) addHost(p string) error {
	return t.addHostDepth(p, 0)
}

func (t *tree) addHostDepth(p string, depth int) error {
	if depth > maxSymlinks {
		return fmt.Errorf("%s: too many levels of symbolic links", p)
	}
	p = path.Clean(p)
	if !path.IsAbs(p) {
		return fmt.Errorf("%s: not an absolute path", p)
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	for i, part := range parts {
		next := path.Join(cur, part)
		fi, err := os.Lstat(next)
		if err != nil {
			return err
		}
		last := i == len(parts)-1
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(next)
			if err != nil {
				return err
			}
			t.addSymlink(next, target)
			resolved := target
			if !path.IsAbs(target) {
				resolved = path.Join(cur, target)
			}
			rest := path.Join(append([]string{resolved}, parts[i+1:]...)...)
			return t.addHostDepth(rest, depth+1)
		case fi.IsDir():
			if last {
				t.mkdirAll(next)
				return nil
			}
			cur = next
		case fi.Mode().IsRegular():
			if !last {
				return fmt.Errorf("%s: not a directory", next)
			}
			if e, ok := t.entries[next]; ok && e.kind == kindFile && e.host == next {
				return nil // already there, with its libraries
			}
			t.addFile(next, next, fi.Mode().Perm())
			return t.addELFDeps(next, depth)
		default:
			return fmt.Errorf("%s: not a regular file, directory or symlink", next)
		}
	}
	return nil
}

// addELFDeps adds the program interpreter and the DT_NEEDED libraries of
// the ELF file p, and theirs, resolved as ld.so would: DT_RPATH/DT_RUNPATH
// (with $ORIGIN), then the standard library directories. Files that are not
// ELF, and static ELF files, need nothing.
func (t *tree) addELFDeps(p string, depth int) error {
	interp, needed, runpath, err := elfNeeds(p)
	if err != nil || (interp == "" && len(needed) == 0) {
		return err
	}
	if interp != "" {
		if err := t.addHostDepth(interp, depth); err != nil {
			return fmt.Errorf("%s: interpreter: %w", p, err)
		}
	}
	for _, lib := range needed {
		found := ""
		dirs := append(expandOrigin(runpath, path.Dir(p)), t.libDirs...)
		for _, d := range dirs {
			c := path.Join(d, lib)
			if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() {
				found = c
				break
			}
		}
		if found == "" {
			return fmt.Errorf("%s: shared library %s not found in %s", p, lib, strings.Join(dirs, ":"))
		}
		if err := t.addHostDepth(found, depth); err != nil {
			return err
		}
	}
	return nil
}

// elfNeeds reads what a dynamically linked ELF file needs at run time.
func elfNeeds(p string) (interp string, needed, runpath []string, err error) {
	f, err := os.Open(p)
	if err != nil {
		return "", nil, nil, err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || string(magic[:]) != elf.ELFMAG {
		return "", nil, nil, nil // not ELF: a script or data file
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return "", nil, nil, fmt.Errorf("%s: %w", p, err)
	}
	defer ef.Close()
	for _, prog := range ef.Progs {
		if prog.Type == elf.PT_INTERP {
			b, err := io.ReadAll(prog.Open())
			if err != nil {
				return "", nil, nil, fmt.Errorf("%s: PT_INTERP: %w", p, err)
			}
			interp = string(bytes.TrimRight(b, "\x00"))
		}
	}
	if ef.Section(".dynamic") == nil {
		return interp, nil, nil, nil
	}
	if needed, err = ef.ImportedLibraries(); err != nil {
		return "", nil, nil, fmt.Errorf("%s: DT_NEEDED: %w", p, err)
	}
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, err := ef.DynString(tag)
		if err != nil {
			return "", nil, nil, fmt.Errorf("%s: %v: %w", p, tag, err)
		}
		for _, v := range vals {
			runpath = append(runpath, filepath.SplitList(v)...)
		}
	}
	return interp, needed, runpath, nil
}

// expandOrigin replaces $ORIGIN in run paths with the directory of the file.
func expandOrigin(dirs []string, origin string) []string {
	out := make([]string, 0, len(dirs))
	for _, d := range dirs {
		d = strings.ReplaceAll(d, "${ORIGIN}", origin)
		d = strings.ReplaceAll(d, "$ORIGIN", origin)
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// hostLibDirs lists the directories the host's dynamic linker searches:
// those named in /etc/ld.so.conf (following include lines), then the
// built-in ones.
func hostLibDirs() []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		if d != "" && !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	var readConf func(name string, depth int)
	readConf = func(name string, depth int) {
		if depth > 8 {
			return
		}
		f, err := os.Open(name)
		if err != nil {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = strings.TrimSpace(line[:i])
			}
			if rest, ok := strings.CutPrefix(line, "include "); ok {
				pattern := strings.TrimSpace(rest)
				if !filepath.IsAbs(pattern) {
					pattern = filepath.Join(filepath.Dir(name), pattern)
				}
				matches, _ := filepath.Glob(pattern)
				sort.Strings(matches)
				for _, m := range matches {
					readConf(m, depth+1)
				}
				continue
			}
			add(line)
		}
	}
	readConf("/etc/ld.so.conf", 0)
	for _, d := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"} {
		add(d)
	}
	return dirs
}

// write writes the tree as a cpio archive. Members are sorted by path, which
// puts every directory before what it holds.
func (t *tree) write(cw *CPIOWriter) error {
	names := make([]string, 0, len(t.entries))
	for n := range t.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := t.entries[n]
		var err error
		switch e.kind {
		case kindDir:
			err = cw.Dir(n, e.perm)
		case kindSymlink:
			err = cw.Symlink(n, e.target)
		case kindCharDev:
			err = cw.CharDev(n, e.perm, e.major, e.minor)
		case kindFile:
			if e.data != nil || e.host == "" {
				err = cw.Bytes(n, e.perm, e.data)
				break
			}
			err = copyHostFile(cw, n, e)
		}
		if err != nil {
			return err
		}
	}
	return cw.Close()
}

func copyHostFile(cw *CPIOWriter, name string, e *entry) error {
	f, err := os.Open(e.host)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return cw.File(name, e.perm, fi.Size(), f)
}
