package vm

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// DefaultCache is where .ci/vm-setup unpacks Debian's kernel package when
// THINP_VM_CACHE is not set.
const DefaultCache = "/var/cache/thinp-vm"

// SetupHint says how to get everything the VM tier needs on Debian or Ubuntu.
const SetupHint = "run `bash .ci/vm-setup` as root (apt-get installs qemu-system-x86 dmsetup " +
	"thin-provisioning-tools udev, and unpacks linux-image-cloud-amd64 into " + DefaultCache +
	"), or `go run ./internal/vm/cmd/vmrun setup`; other distributions: set THINP_VM_KERNEL " +
	"to a vmlinuz and THINP_VM_MODULES to its lib/modules/<release> directory"

// MissingError reports that something the VM needs is not on this machine.
type MissingError struct {
	// What is missing, one entry per item ("qemu-system-x86_64", "a kernel").
	What []string
	// Install says how to get it.
	Install string
}

// Error says what is missing and how to install it.
func (e *MissingError) Error() string {
	return fmt.Sprintf("VM tier unavailable: missing %s; to install: %s", strings.Join(e.What, ", "), e.Install)
}

// Kernel is a kernel image and the module tree built with it.
type Kernel struct {
	// Image is the bootable bzImage ("vmlinuz-6.1.0-56-amd64").
	Image string
	// Modules is the module directory, lib/modules/<Release>.
	Modules string
	// Release is the kernel release, as uname -r prints it.
	Release string
}

// FindKernel locates a kernel for the guest. In order:
//
//  1. THINP_VM_KERNEL (a vmlinuz) with THINP_VM_MODULES (its
//     lib/modules/<release>); without THINP_VM_MODULES the modules are looked
//     for beside the image's boot directory and in /lib/modules;
//  2. with THINP_VM_KERNELS, the first kernel it names (see FindKernels);
//  3. a kernel that .ci/vm-setup unpacked under THINP_VM_CACHE (default
//     /var/cache/thinp-vm), as <cache>/<package>/boot/vmlinuz-<release> and
//     <cache>/<package>/lib/modules/<release>: the one the symlink
//     <cache>/current names, else the newest;
//  4. the newest /boot/vmlinuz-<release> whose /lib/modules/<release> holds a
//     dm-mod module (or has device-mapper built in).
//
// getenv is os.Getenv or a stand-in for tests.
func FindKernel(getenv func(string) string) (*Kernel, error) {
	if img := getenv("THINP_VM_KERNEL"); img != "" {
		if _, err := os.Stat(img); err != nil {
			return nil, fmt.Errorf("THINP_VM_KERNEL: %w", err)
		}
		rel := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		mods := getenv("THINP_VM_MODULES")
		if mods == "" {
			for _, c := range []string{
				filepath.Join(filepath.Dir(filepath.Dir(img)), "lib", "modules", rel),
				filepath.Join("/lib/modules", rel),
			} {
				if hasDM(c) {
					mods = c
					break
				}
			}
			if mods == "" {
				return nil, fmt.Errorf("THINP_VM_KERNEL=%s: no module tree with dm-mod found; set THINP_VM_MODULES", img)
			}
		} else if !hasDM(mods) {
			return nil, fmt.Errorf("THINP_VM_MODULES=%s: no dm-mod module (or built-in device-mapper) there", mods)
		}
		return &Kernel{Image: img, Modules: mods, Release: filepath.Base(mods)}, nil
	}
	if selected(getenv("THINP_VM_KERNELS")) != nil {
		ks, err := FindKernels(getenv)
		if err != nil {
			return nil, err
		}
		return ks[0].Kernel, nil
	}
	return findCachedKernel(getenv)
}

// findCachedKernel is FindKernel's steps 3 and 4.
func findCachedKernel(getenv func(string) string) (*Kernel, error) {
	cache := getenv("THINP_VM_CACHE")
	if cache == "" {
		cache = DefaultCache
	}
	if k := newestKernel(filepath.Join(cache, "current", "boot", "vmlinuz-*"), func(img, rel string) string {
		return filepath.Join(filepath.Dir(filepath.Dir(img)), "lib", "modules", rel)
	}); k != nil {
		return k, nil
	}
	if k := newestKernel(filepath.Join(cache, "*", "boot", "vmlinuz-*"), func(img, rel string) string {
		return filepath.Join(filepath.Dir(filepath.Dir(img)), "lib", "modules", rel)
	}); k != nil {
		return k, nil
	}
	if k := newestKernel("/boot/vmlinuz-*", func(_, rel string) string {
		return filepath.Join("/lib/modules", rel)
	}); k != nil {
		return k, nil
	}
	return nil, &MissingError{
		What:    []string{fmt.Sprintf("a kernel with device-mapper modules (none in %s or /boot)", cache)},
		Install: SetupHint,
	}
}

// newestKernel returns the kernel with the highest release among the images
// matching pattern whose module tree (given by modules) has dm-mod.
func newestKernel(pattern string, modules func(img, rel string) string) *Kernel {
	imgs, _ := filepath.Glob(pattern)
	var ks []*Kernel
	for _, img := range imgs {
		rel := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		if m := modules(img, rel); hasDM(m) {
			ks = append(ks, &Kernel{Image: img, Modules: m, Release: rel})
		}
	}
	if len(ks) == 0 {
		return nil
	}
	sort.Slice(ks, func(i, j int) bool { return versionLess(ks[i].Release, ks[j].Release) })
	return ks[len(ks)-1]
}

// hasDM reports whether the module tree dir can give the guest
// device-mapper: a dm-mod module, or dm-mod in modules.builtin.
func hasDM(dir string) bool {
	if dir == "" {
		return false
	}
	ix, err := loadModuleIndex(dir)
	if err != nil {
		return false
	}
	return ix.paths["dm_mod"] != "" || ix.builtin["dm_mod"]
}

// versionLess compares kernel releases by their numeric fields, so that
// 6.1.0-56 sorts after 6.1.0-9.
func versionLess(a, b string) bool {
	fa, fb := versionFields(a), versionFields(b)
	for i := 0; i < len(fa) && i < len(fb); i++ {
		na, ea := strconv.Atoi(fa[i])
		nb, eb := strconv.Atoi(fb[i])
		switch {
		case ea == nil && eb == nil && na != nb:
			return na < nb
		case (ea != nil || eb != nil) && fa[i] != fb[i]:
			return fa[i] < fb[i]
		}
	}
	return len(fa) < len(fb)
}

func versionFields(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == '.' || r == '-' || r == '+' || r == '_' })
}
