package vm

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// MatrixKernel is one kernel of the test matrix and the boots it gets.
type MatrixKernel struct {
	// Name is the kernel's name in .ci/kernels ("bullseye"), or its
	// release when it did not come from there.
	Name string
	// Kernel is the image and module tree.
	Kernel *Kernel
	// Boots lists the boots, with udevd (true) or without.
	Boots []bool
}

// KernelList is the file, under THINP_VM_CACHE, where .ci/vm-setup lists the
// kernels it unpacked from .ci/kernels, one per line:
//
//	name release directory boots...
//
// directory is relative to the cache and holds boot/vmlinuz-<release> and
// lib/modules/<release>; boots are "udev", "no-udev" or "both".
const KernelList = "kernels"

// kernelListEntry is one line of KernelList.
type kernelListEntry struct {
	name, release, dir string
	boots              []bool
}

// parseKernelList reads KernelList's lines; blank lines and # comments are
// skipped.
func parseKernelList(r io.Reader) ([]kernelListEntry, error) {
	var out []kernelListEntry
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 4 {
			return nil, fmt.Errorf("line %d: want name release directory boots..., got %q", n, sc.Text())
		}
		e := kernelListEntry{name: f[0], release: f[1], dir: f[2]}
		if strings.Contains(e.dir, "..") || filepath.IsAbs(e.dir) {
			return nil, fmt.Errorf("line %d: directory %q is not inside the cache", n, e.dir)
		}
		seen := map[bool]bool{}
		for _, b := range f[3:] {
			var bs []bool
			switch b {
			case "udev":
				bs = []bool{true}
			case "no-udev":
				bs = []bool{false}
			case "both":
				bs = []bool{true, false}
			default:
				return nil, fmt.Errorf("line %d: boot %q: want udev, no-udev or both", n, b)
			}
			for _, v := range bs {
				if !seen[v] {
					seen[v] = true
					e.boots = append(e.boots, v)
				}
			}
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// selected splits THINP_VM_KERNELS into names; "all" or nothing selects
// every kernel (nil).
func selected(v string) []string {
	names := strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	for _, n := range names {
		if n == "all" {
			return nil
		}
	}
	return names
}

// FindKernels returns the kernels to test, in order:
//
//  1. THINP_VM_KERNEL (see FindKernel) alone, booted with and without udevd;
//  2. the kernels of THINP_VM_CACHE's KernelList, which .ci/vm-setup writes
//     from .ci/kernels, each with its boots; THINP_VM_KERNELS (names or
//     releases, space or comma separated; default all) picks some, in the
//     order given;
//  3. without a KernelList, FindKernel's kernel, booted with and without
//     udevd.
//
// getenv is os.Getenv or a stand-in for tests.
func FindKernels(getenv func(string) string) ([]MatrixKernel, error) {
	both := []bool{true, false}
	if getenv("THINP_VM_KERNEL") != "" {
		k, err := FindKernel(getenv)
		if err != nil {
			return nil, err
		}
		return []MatrixKernel{{Name: k.Release, Kernel: k, Boots: both}}, nil
	}
	cache := getenv("THINP_VM_CACHE")
	if cache == "" {
		cache = DefaultCache
	}
	want := selected(getenv("THINP_VM_KERNELS"))
	f, err := os.Open(filepath.Join(cache, KernelList))
	if os.IsNotExist(err) {
		if len(want) > 0 {
			return nil, &MissingError{
				What:    []string{fmt.Sprintf("THINP_VM_KERNELS=%s: no kernel list %s", getenv("THINP_VM_KERNELS"), filepath.Join(cache, KernelList))},
				Install: SetupHint,
			}
		}
		k, err := findCachedKernel(getenv)
		if err != nil {
			return nil, err
		}
		return []MatrixKernel{{Name: k.Release, Kernel: k, Boots: both}}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	list, err := parseKernelList(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	var picked []kernelListEntry
	if len(want) == 0 {
		picked = list
	}
	for _, w := range want {
		found := false
		for _, e := range list {
			if e.name == w || e.release == w {
				picked = append(picked, e)
				found = true
				break
			}
		}
		if !found {
			var names []string
			for _, e := range list {
				names = append(names, e.name)
			}
			return nil, &MissingError{
				What: []string{fmt.Sprintf("kernel %q (THINP_VM_KERNELS; %s lists %s)", w, f.Name(), strings.Join(names, ", "))},
				Install: "add it to .ci/kernels and run `bash .ci/vm-setup` as root, or " +
					"`THINP_VM_KERNELS=" + w + " bash .ci/vm-setup` when it is listed there",
			}
		}
	}
	if len(picked) == 0 {
		return nil, fmt.Errorf("%s lists no kernel", f.Name())
	}
	var out []MatrixKernel
	for _, e := range picked {
		dir := filepath.Join(cache, e.dir)
		k := &Kernel{
			Image:   filepath.Join(dir, "boot", "vmlinuz-"+e.release),
			Modules: filepath.Join(dir, "lib", "modules", e.release),
			Release: e.release,
		}
		if _, err := os.Stat(k.Image); err != nil || !hasDM(k.Modules) {
			return nil, &MissingError{
				What:    []string{fmt.Sprintf("kernel %s (%s) with device-mapper modules under %s", e.name, e.release, dir)},
				Install: SetupHint,
			}
		}
		out = append(out, MatrixKernel{Name: e.name, Kernel: k, Boots: e.boots})
	}
	return out, nil
}

// KernelSummary is the line the host prints after one kernel's boot: the
// counts of its guest test and subtest verdicts, as Summary's but naming
// the kernel and boot ("vm 5.10.0-32-cloud-amd64 no-udev: ...").
func KernelSummary(release string, o *Outcome) string {
	p, f, s := o.Counts()
	return fmt.Sprintf("vm %s %s: %d passed, %d failed, %d skipped", release, o.Name(), p, f, s)
}
