package vm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseKernelList(t *testing.T) {
	got, err := parseKernelList(strings.NewReader(`# comment
bookworm 6.1.0-57-cloud-amd64 linux-image-6.1.0-57-cloud-amd64 udev no-udev

bullseye 5.10.0-46-cloud-amd64 linux-image-5.10.0-46-cloud-amd64 no-udev
sid 7.2.13+deb14-cloud-amd64 linux-image-7.2.13+deb14-cloud-amd64 both udev
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []kernelListEntry{
		{"bookworm", "6.1.0-57-cloud-amd64", "linux-image-6.1.0-57-cloud-amd64", []bool{true, false}},
		{"bullseye", "5.10.0-46-cloud-amd64", "linux-image-5.10.0-46-cloud-amd64", []bool{false}},
		{"sid", "7.2.13+deb14-cloud-amd64", "linux-image-7.2.13+deb14-cloud-amd64", []bool{true, false}},
	}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(kernelListEntry{})); d != "" {
		t.Errorf("parseKernelList (-want +got):\n%s", d)
	}
	for _, bad := range []string{
		"bookworm 6.1.0-57 dir\n",           // no boots
		"bookworm 6.1.0-57 dir sometimes\n", // unknown boot
		"bookworm 6.1.0-57 ../etc udev\n",   // outside the cache
		"bookworm 6.1.0-57 /boot udev\n",    // absolute
	} {
		if _, err := parseKernelList(strings.NewReader(bad)); err == nil {
			t.Errorf("parseKernelList(%q): no error", bad)
		}
	}
}

// fakeKernel makes an unpacked kernel package under cache/dir with a
// modules.dep naming dm-mod compressed with xz, as depmod -b writes it for
// Debian's newer packages.
func fakeKernel(t *testing.T, cache, dir, rel string) {
	root := filepath.Join(cache, dir)
	writeFile(t, filepath.Join(root, "boot", "vmlinuz-"+rel), "bzImage")
	writeFile(t, filepath.Join(root, "lib", "modules", rel, "modules.dep"), fakeModulesDep)
	writeFile(t, filepath.Join(root, "lib", "modules", rel, "kernel", "drivers", "md", "dm-mod.ko.xz"), "xz")
}

func TestFindKernels(t *testing.T) {
	cache := t.TempDir()
	fakeKernel(t, cache, "linux-image-6.1.0-57-cloud-amd64", "6.1.0-57-cloud-amd64")
	fakeKernel(t, cache, "linux-image-5.10.0-46-cloud-amd64", "5.10.0-46-cloud-amd64")
	fakeKernel(t, cache, "linux-image-7.2.13+deb14-cloud-amd64", "7.2.13+deb14-cloud-amd64")
	env := map[string]string{"THINP_VM_CACHE": cache}
	getenv := func(k string) string { return env[k] }
	names := func(ks []MatrixKernel) (out []string) {
		for _, k := range ks {
			out = append(out, k.Name)
		}
		return out
	}

	// No list: the one kernel FindKernel finds, both boots.
	ks, err := FindKernels(getenv)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) != 1 || ks[0].Kernel.Release != "7.2.13+deb14-cloud-amd64" || !cmp.Equal(ks[0].Boots, []bool{true, false}) {
		t.Errorf("without a list: %+v", ks)
	}
	env["THINP_VM_KERNELS"] = "bullseye"
	var m *MissingError
	if _, err := FindKernels(getenv); !errors.As(err, &m) {
		t.Errorf("THINP_VM_KERNELS without a list: %v, want a *MissingError", err)
	}
	delete(env, "THINP_VM_KERNELS")

	writeFile(t, filepath.Join(cache, KernelList), `bookworm 6.1.0-57-cloud-amd64 linux-image-6.1.0-57-cloud-amd64 udev no-udev
bullseye 5.10.0-46-cloud-amd64 linux-image-5.10.0-46-cloud-amd64 no-udev
sid 7.2.13+deb14-cloud-amd64 linux-image-7.2.13+deb14-cloud-amd64 no-udev
`)
	ks, err = FindKernels(getenv)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"bookworm", "bullseye", "sid"}, names(ks)); d != "" {
		t.Errorf("all kernels (-want +got):\n%s", d)
	}
	if k := ks[1]; k.Kernel.Image != filepath.Join(cache, "linux-image-5.10.0-46-cloud-amd64", "boot", "vmlinuz-5.10.0-46-cloud-amd64") ||
		k.Kernel.Modules != filepath.Join(cache, "linux-image-5.10.0-46-cloud-amd64", "lib", "modules", "5.10.0-46-cloud-amd64") ||
		!cmp.Equal(k.Boots, []bool{false}) {
		t.Errorf("bullseye: %+v %+v", k, k.Kernel)
	}

	// THINP_VM_KERNELS picks, by name or release, in its order; FindKernel
	// (what vmrun boots) takes the first.
	env["THINP_VM_KERNELS"] = "sid, 5.10.0-46-cloud-amd64"
	ks, err = FindKernels(getenv)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"sid", "bullseye"}, names(ks)); d != "" {
		t.Errorf("THINP_VM_KERNELS=%s (-want +got):\n%s", env["THINP_VM_KERNELS"], d)
	}
	if k, err := FindKernel(getenv); err != nil || k.Release != "7.2.13+deb14-cloud-amd64" {
		t.Errorf("FindKernel with THINP_VM_KERNELS=%s: %+v, %v", env["THINP_VM_KERNELS"], k, err)
	}
	env["THINP_VM_KERNELS"] = "all"
	if ks, err := FindKernels(getenv); err != nil || len(ks) != 3 {
		t.Errorf("THINP_VM_KERNELS=all: %d kernels, %v", len(ks), err)
	}
	env["THINP_VM_KERNELS"] = "woody"
	if _, err := FindKernels(getenv); !errors.As(err, &m) || !strings.Contains(err.Error(), "bookworm, bullseye, sid") {
		t.Errorf("unknown kernel: %v, want a *MissingError listing the kernels", err)
	}

	// A listed kernel that is gone is missing, not skipped.
	env["THINP_VM_KERNELS"] = "bullseye"
	if err := os.RemoveAll(filepath.Join(cache, "linux-image-5.10.0-46-cloud-amd64")); err != nil {
		t.Fatal(err)
	}
	if _, err := FindKernels(getenv); !errors.As(err, &m) {
		t.Errorf("a listed kernel removed: %v, want a *MissingError", err)
	}

	// THINP_VM_KERNEL overrides the list.
	env["THINP_VM_KERNEL"] = filepath.Join(cache, "linux-image-6.1.0-57-cloud-amd64", "boot", "vmlinuz-6.1.0-57-cloud-amd64")
	ks, err = FindKernels(getenv)
	if err != nil || len(ks) != 1 || ks[0].Kernel.Release != "6.1.0-57-cloud-amd64" {
		t.Errorf("THINP_VM_KERNEL: %+v, %v", ks, err)
	}
}

// TestCompressedModulesNeedModulesDep: without modules.dep, a tree of xz
// compressed modules cannot be ordered in pure Go; the error says to run
// depmod, which .ci/vm-setup does. With depmod's modules.dep the same tree
// resolves without opening a module.
func TestCompressedModulesNeedModulesDep(t *testing.T) {
	dir := t.TempDir()
	for _, m := range []string{"dm-mod", "dm-zero", "dm-thin-pool", "dm-bufio", "dm-bio-prison", "loop", "libcrc32c"} {
		writeFile(t, filepath.Join(dir, "kernel", m+".ko.xz"), "not really xz")
	}
	writeFile(t, filepath.Join(dir, "kernel", "dm-persistent-data.ko.zst"), "not really zstd")
	_, err := ResolveModules(dir)
	if err == nil || !strings.Contains(err.Error(), "depmod") {
		t.Fatalf("ResolveModules without modules.dep: %v, want an error naming depmod", err)
	}
	writeFile(t, filepath.Join(dir, "modules.dep"), `kernel/dm-mod.ko.xz:
kernel/dm-zero.ko.xz: kernel/dm-mod.ko.xz
kernel/dm-bufio.ko.xz:
kernel/dm-bio-prison.ko.xz:
kernel/libcrc32c.ko.xz:
kernel/dm-persistent-data.ko.zst: kernel/dm-bufio.ko.xz kernel/libcrc32c.ko.xz
kernel/dm-thin-pool.ko.xz: kernel/dm-persistent-data.ko.zst kernel/dm-bio-prison.ko.xz kernel/dm-mod.ko.xz kernel/dm-bufio.ko.xz kernel/libcrc32c.ko.xz
kernel/loop.ko.xz:
`)
	mods, err := ResolveModules(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range mods {
		got = append(got, m.Name)
	}
	want := []string{"dm_mod", "dm_zero", "dm_bufio", "libcrc32c", "dm_persistent_data", "dm_bio_prison", "dm_thin_pool", "loop"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("load order (-want +got):\n%s", d)
	}
}
