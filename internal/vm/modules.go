package vm

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Module is one kernel module to load in the guest, in load order.
type Module struct {
	// Name is the module's name with underscores ("dm_thin_pool").
	Name string
	// Path is the module file relative to the modules directory
	// ("kernel/drivers/md/dm-thin-pool.ko", possibly ending in .xz/.zst/.gz).
	Path string
	// Optional modules may fail to load without failing the boot
	// (crc32c-intel on a CPU without SSE4.2, say).
	Optional bool
}

// guestModules returns the modules the guest needs. Required ones must
// exist as a module or be built into the kernel; optional ones are loaded
// when the kernel has them.
//
// Required: the device-mapper core, the thin target (which pulls dm-bufio,
// dm-bio-prison, dm-persistent-data and libcrc32c through its
// dependencies), the zero target and loop devices. Optional: a crc32c
// implementation for libcrc32c (the guest has no modprobe to satisfy its
// soft dependency on request), the fault injection targets, and xfs (for
// examples/snapshotter's xfs base; ext4 is built into Debian's kernels).
func guestModules() (required, optional []string) {
	return []string{"dm_mod", "dm_zero", "dm_thin_pool", "loop"},
		[]string{"crc32c_generic", "crc32c_intel", "dm_flakey", "dm_delay", "dm_log_writes", "xfs"}
}

// moduleIndex knows where each module of one kernel lives and what it
// depends on.
type moduleIndex struct {
	dir     string              // lib/modules/<release>
	paths   map[string]string   // name -> path relative to dir
	deps    map[string][]string // name -> names it depends on
	pre     map[string][]string // name -> soft "pre:" dependencies
	builtin map[string]bool     // names built into the kernel image
}

// moduleName turns a path or name into the kernel's module name:
// "kernel/drivers/md/dm-thin-pool.ko.xz" -> "dm_thin_pool".
func moduleName(s string) string {
	s = filepath.Base(s)
	if i := strings.Index(s, ".ko"); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "-", "_")
}

// isModuleFile reports whether name looks like a (possibly compressed)
// kernel module.
func isModuleFile(name string) bool {
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// parseModulesDep reads depmod's modules.dep:
//
//	kernel/drivers/md/dm-thin-pool.ko: kernel/drivers/md/persistent-data/dm-persistent-data.ko kernel/drivers/md/dm-bio-prison.ko ...
//
// The list after the colon is every module the first one needs, directly or
// not; resolve orders them again, so its order does not matter here.
func parseModulesDep(r io.Reader) (paths map[string]string, deps map[string][]string, err error) {
	paths = map[string]string{}
	deps = map[string][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		path, rest, ok := strings.Cut(line, ":")
		path = strings.TrimSpace(path)
		if !ok || path == "" || !isModuleFile(path) {
			return nil, nil, fmt.Errorf("modules.dep line %d: malformed %q", n, line)
		}
		name := moduleName(path)
		paths[name] = path
		var ds []string
		for _, d := range strings.Fields(rest) {
			if !isModuleFile(d) {
				return nil, nil, fmt.Errorf("modules.dep line %d: malformed dependency %q", n, d)
			}
			ds = append(ds, moduleName(d))
		}
		deps[name] = ds
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	return paths, deps, nil
}

// parseModulesBuiltin reads modules.builtin: one path per line of a module
// compiled into the kernel image.
func parseModulesBuiltin(r io.Reader) (map[string]bool, error) {
	b := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			b[moduleName(line)] = true
		}
	}
	return b, sc.Err()
}

// modinfo is what resolve needs from a module's .modinfo section.
type modinfo struct {
	depends []string // depends=a,b
	pre     []string // softdep=pre: a b post: c
}

// parseModinfo reads the NUL-separated key=value strings of a module's
// .modinfo section.
func parseModinfo(section []byte) modinfo {
	var mi modinfo
	for _, kv := range bytes.Split(section, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					mi.depends = append(mi.depends, moduleName(d))
				}
			}
		case "softdep":
			inPre := false
			for _, f := range strings.Fields(v) {
				switch f {
				case "pre:":
					inPre = true
				case "post:":
					inPre = false
				default:
					if inPre {
						mi.pre = append(mi.pre, moduleName(f))
					}
				}
			}
		}
	}
	return mi
}

// readModinfo reads the .modinfo section of an uncompressed or gzip'd
// module. Modules compressed with xz or zstd cannot be read with the
// standard library: .ci/vm-setup runs depmod -b on such a kernel, whose
// package ships no modules.dep (its postinst would make one).
func readModinfo(path string) (modinfo, error) {
	data, err := readModuleFile(path)
	if err != nil {
		return modinfo{}, err
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return modinfo{}, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return modinfo{}, fmt.Errorf("%s: no .modinfo section", path)
	}
	b, err := s.Data()
	if err != nil {
		return modinfo{}, fmt.Errorf("%s: %w", path, err)
	}
	return parseModinfo(b), nil
}

// readModuleFile returns the module's ELF bytes, decompressing gzip.
func readModuleFile(path string) ([]byte, error) {
	switch {
	case strings.HasSuffix(path, ".ko"):
		return os.ReadFile(path)
	case strings.HasSuffix(path, ".ko.gz"):
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return io.ReadAll(zr)
	default:
		return nil, fmt.Errorf("%s: cannot read an xz or zstd compressed module without modules.dep (run depmod -b <package root> <release>, as .ci/vm-setup does)", path)
	}
}

// loadModuleIndex indexes the modules under dir (lib/modules/<release>).
// It uses modules.dep when depmod has written one; a kernel unpacked with
// dpkg -x has none, so then it walks the tree and reads each candidate's
// .modinfo.
func loadModuleIndex(dir string) (*moduleIndex, error) {
	ix := &moduleIndex{dir: dir, pre: map[string][]string{}, builtin: map[string]bool{}}
	if f, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		ix.builtin, err = parseModulesBuiltin(f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	if f, err := os.Open(filepath.Join(dir, "modules.dep")); err == nil {
		ix.paths, ix.deps, err = parseModulesDep(f)
		f.Close()
		return ix, err
	}
	ix.paths = map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && isModuleFile(d.Name()) {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			ix.paths[moduleName(rel)] = filepath.ToSlash(rel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(ix.paths) == 0 {
		return nil, fmt.Errorf("no kernel modules under %s", dir)
	}
	return ix, nil
}

// dependencies returns the direct dependencies of name, reading its
// .modinfo when the index came without modules.dep.
func (ix *moduleIndex) dependencies(name string) (deps, pre []string, err error) {
	if ix.deps != nil {
		return ix.deps[name], ix.pre[name], nil
	}
	mi, err := readModinfo(filepath.Join(ix.dir, ix.paths[name]))
	if err != nil {
		return nil, nil, err
	}
	return mi.depends, mi.pre, nil
}

// resolve returns the modules to load, dependencies before the modules that
// need them. A required name that is neither a module nor built in is an
// error; an optional one that is missing is left out. Soft "pre:"
// dependencies that name a module are loaded first, as optional. The crc32c
// implementations, which depend on nothing, come first of all so that
// libcrc32c finds one when it loads.
func (ix *moduleIndex) resolve(required, optional []string) ([]Module, error) {
	var order []Module
	at := map[string]int{}    // name -> index in order
	state := map[string]int{} // 1 visiting, 2 done
	var require func(name string)
	require = func(name string) {
		i, ok := at[name]
		if !ok || !order[i].Optional {
			return
		}
		order[i].Optional = false
		deps, _, _ := ix.dependencies(name)
		for _, d := range deps {
			require(d)
		}
	}
	var visit func(name string, opt bool, chain []string) error
	visit = func(name string, opt bool, chain []string) error {
		name = moduleName(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle: %s -> %s", strings.Join(chain, " -> "), name)
		case 2:
			if !opt {
				require(name)
			}
			return nil
		}
		path, ok := ix.paths[name]
		if !ok {
			if ix.builtin[name] || opt {
				state[name] = 2
				return nil
			}
			return fmt.Errorf("kernel module %s not found under %s (and not built in)", name, ix.dir)
		}
		state[name] = 1
		deps, pre, err := ix.dependencies(name)
		if err != nil {
			return err
		}
		chain = append(chain, name)
		for _, p := range pre {
			if err := visit(p, true, chain); err != nil {
				return err
			}
		}
		for _, d := range deps {
			if err := visit(d, opt, chain); err != nil {
				return err
			}
		}
		state[name] = 2
		at[name] = len(order)
		order = append(order, Module{Name: name, Path: path, Optional: opt})
		return nil
	}
	for _, n := range required {
		if err := visit(n, false, nil); err != nil {
			return nil, err
		}
	}
	for _, n := range optional {
		if err := visit(n, true, nil); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		return strings.HasPrefix(order[i].Name, "crc32c") && !strings.HasPrefix(order[j].Name, "crc32c")
	})
	return order, nil
}

// ResolveModules returns the modules the guest loads from the module tree
// dir (lib/modules/<release>), in load order.
func ResolveModules(dir string) ([]Module, error) {
	ix, err := loadModuleIndex(dir)
	if err != nil {
		return nil, err
	}
	return ix.resolve(guestModules())
}
