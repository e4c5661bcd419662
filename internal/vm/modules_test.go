package vm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeModulesDep is a modules.dep in depmod's format, dependencies listed
// in depmod's order (not load order).
const fakeModulesDep = `kernel/drivers/md/dm-mod.ko:
kernel/drivers/md/dm-zero.ko: kernel/drivers/md/dm-mod.ko
kernel/drivers/md/dm-bufio.ko:
kernel/drivers/md/dm-bio-prison.ko:
kernel/lib/libcrc32c.ko:
kernel/drivers/md/persistent-data/dm-persistent-data.ko: kernel/drivers/md/dm-bufio.ko kernel/lib/libcrc32c.ko
kernel/drivers/md/dm-thin-pool.ko.xz: kernel/drivers/md/persistent-data/dm-persistent-data.ko kernel/drivers/md/dm-bio-prison.ko kernel/drivers/md/dm-mod.ko kernel/drivers/md/dm-bufio.ko kernel/lib/libcrc32c.ko
kernel/drivers/block/loop.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/drivers/md/dm-flakey.ko: kernel/drivers/md/dm-mod.ko
`

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestParseModulesDep(t *testing.T) {
	paths, deps, err := parseModulesDep(strings.NewReader(fakeModulesDep))
	if err != nil {
		t.Fatal(err)
	}
	if got := paths["dm_thin_pool"]; got != "kernel/drivers/md/dm-thin-pool.ko.xz" {
		t.Errorf("dm_thin_pool path %q", got)
	}
	if got := deps["dm_persistent_data"]; !cmp.Equal(got, []string{"dm_bufio", "libcrc32c"}) {
		t.Errorf("dm_persistent_data deps %q", got)
	}
	for _, bad := range []string{"no colon here\n", "kernel/x.ko: notamodule\n", ": kernel/x.ko\n"} {
		if _, _, err := parseModulesDep(strings.NewReader(bad)); err == nil {
			t.Errorf("parseModulesDep(%q): no error", bad)
		}
	}
}

func TestResolveModules(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "modules.dep"), fakeModulesDep)
	writeFile(t, filepath.Join(dir, "modules.builtin"), "kernel/crypto/crc32c_generic.ko\n")
	ix, err := loadModuleIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ix.resolve(guestModules())
	if err != nil {
		t.Fatal(err)
	}
	want := []Module{
		{Name: "crc32c_intel", Path: "kernel/arch/x86/crypto/crc32c-intel.ko", Optional: true},
		{Name: "dm_mod", Path: "kernel/drivers/md/dm-mod.ko"},
		{Name: "dm_zero", Path: "kernel/drivers/md/dm-zero.ko"},
		{Name: "dm_bufio", Path: "kernel/drivers/md/dm-bufio.ko"},
		{Name: "libcrc32c", Path: "kernel/lib/libcrc32c.ko"},
		{Name: "dm_persistent_data", Path: "kernel/drivers/md/persistent-data/dm-persistent-data.ko"},
		{Name: "dm_bio_prison", Path: "kernel/drivers/md/dm-bio-prison.ko"},
		{Name: "dm_thin_pool", Path: "kernel/drivers/md/dm-thin-pool.ko.xz"},
		{Name: "loop", Path: "kernel/drivers/block/loop.ko"},
		{Name: "dm_flakey", Path: "kernel/drivers/md/dm-flakey.ko", Optional: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("load order (-want +got):\n%s", diff)
	}
	// Every module comes after its dependencies.
	at := map[string]int{}
	for i, m := range got {
		at[m.Name] = i
	}
	for _, m := range got {
		for _, d := range ix.deps[m.Name] {
			if at[d] > at[m.Name] {
				t.Errorf("%s loads before its dependency %s", m.Name, d)
			}
		}
	}
}

func TestResolveModulesErrors(t *testing.T) {
	ix := &moduleIndex{
		dir:     "/nowhere",
		paths:   map[string]string{"a": "a.ko", "b": "b.ko", "c": "c.ko"},
		deps:    map[string][]string{"a": {"b"}, "b": {"a"}, "c": {"missing"}},
		builtin: map[string]bool{"inside": true},
	}
	if _, err := ix.resolve([]string{"a"}, nil); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: got %v", err)
	}
	if _, err := ix.resolve([]string{"c"}, nil); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing dependency: got %v", err)
	}
	got, err := ix.resolve([]string{"inside"}, []string{"absent"})
	if err != nil || len(got) != 0 {
		t.Errorf("built-in required and absent optional: got %v, %v", got, err)
	}
}

// TestResolveOptionalBecomesRequired: a module first met as an optional
// soft dependency and later needed by a required one is required.
func TestResolveOptionalBecomesRequired(t *testing.T) {
	ix := &moduleIndex{
		paths: map[string]string{"x": "x.ko", "y": "y.ko", "z": "z.ko"},
		deps:  map[string][]string{"y": {"z"}, "x": {"y"}},
		pre:   map[string][]string{},
	}
	got, err := ix.resolve([]string{"x"}, []string{"y"})
	if err != nil {
		t.Fatal(err)
	}
	got2, err := ix.resolve(nil, []string{"y"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range got {
		if m.Optional {
			t.Errorf("%s optional although x needs it", m.Name)
		}
	}
	for _, m := range got2 {
		if !m.Optional {
			t.Errorf("%s required although only optional y needs it", m.Name)
		}
	}
	ix.pre["x"] = []string{"w", "z"}
	got, err = ix.resolve([]string{"x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Name != "z" || got[0].Optional {
		t.Errorf("pre-softdep z, then needed by y: got %+v", got)
	}
}

func TestParseModinfo(t *testing.T) {
	sec := []byte("license=GPL\x00depends=dm-bio-prison,dm-persistent-data,dm_mod\x00softdep=pre: crc32c post: foo\x00name=dm_thin_pool\x00\x00")
	mi := parseModinfo(sec)
	if !cmp.Equal(mi.depends, []string{"dm_bio_prison", "dm_persistent_data", "dm_mod"}) {
		t.Errorf("depends %q", mi.depends)
	}
	if !cmp.Equal(mi.pre, []string{"crc32c"}) {
		t.Errorf("pre %q", mi.pre)
	}
	if mi := parseModinfo([]byte("depends=\x00")); len(mi.depends) != 0 {
		t.Errorf("empty depends: %q", mi.depends)
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/md/dm-thin-pool.ko":     "dm_thin_pool",
		"kernel/drivers/md/dm-thin-pool.ko.zst": "dm_thin_pool",
		"crc32c-intel":                          "crc32c_intel",
		"loop.ko.gz":                            "loop",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestResolveRealKernel resolves the modules of each kernel the VM tier
// would boot, when there is one: Debian's packages unpacked with dpkg -x
// have no modules.dep, so this reads .modinfo sections, or the modules.dep
// .ci/vm-setup made with depmod -b for a kernel whose modules are
// compressed with xz or zstd.
func TestResolveRealKernel(t *testing.T) {
	ks, err := FindKernels(os.Getenv)
	if err != nil {
		t.Skip(err)
	}
	for _, k := range ks {
		t.Run(k.Name, func(t *testing.T) {
			mods, err := ResolveModules(k.Kernel.Modules)
			if err != nil {
				t.Fatal(err)
			}
			at := map[string]int{}
			for i, m := range mods {
				at[m.Name] = i + 1
			}
			for _, need := range []string{"dm_mod", "dm_thin_pool", "loop"} {
				if at[need] == 0 {
					t.Errorf("%s not resolved from %s", need, k.Kernel.Modules)
				}
			}
			if at["dm_persistent_data"] == 0 || at["dm_persistent_data"] > at["dm_thin_pool"] {
				t.Errorf("dm_persistent_data must load before dm_thin_pool: %v", mods)
			}
		})
	}
}

func TestFindKernel(t *testing.T) {
	cache := t.TempDir()
	for _, rel := range []string{"6.1.0-9-amd64", "6.1.0-56-amd64"} {
		root := filepath.Join(cache, "linux-image-"+rel)
		writeFile(t, filepath.Join(root, "boot", "vmlinuz-"+rel), "bzImage")
		writeFile(t, filepath.Join(root, "lib", "modules", rel, "modules.dep"), "kernel/drivers/md/dm-mod.ko:\n")
	}
	// A newer kernel without device-mapper is passed over.
	root := filepath.Join(cache, "linux-image-7.0.0-1-amd64")
	writeFile(t, filepath.Join(root, "boot", "vmlinuz-7.0.0-1-amd64"), "bzImage")
	writeFile(t, filepath.Join(root, "lib", "modules", "7.0.0-1-amd64", "modules.dep"), "kernel/drivers/block/loop.ko:\n")

	env := map[string]string{"THINP_VM_CACHE": cache}
	k, err := FindKernel(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != "6.1.0-56-amd64" || !strings.HasSuffix(k.Image, "vmlinuz-6.1.0-56-amd64") ||
		k.Modules != filepath.Join(cache, "linux-image-6.1.0-56-amd64", "lib", "modules", "6.1.0-56-amd64") {
		t.Errorf("FindKernel = %+v", k)
	}

	// The kernel "current" names wins over the newest.
	if err := os.Symlink("linux-image-6.1.0-9-amd64", filepath.Join(cache, "current")); err != nil {
		t.Fatal(err)
	}
	k, err = FindKernel(func(k string) string { return env[k] })
	if err != nil || k.Release != "6.1.0-9-amd64" {
		t.Errorf("with current: %+v, %v", k, err)
	}
	os.Remove(filepath.Join(cache, "current"))

	// Explicit paths win.
	img := filepath.Join(cache, "linux-image-6.1.0-9-amd64", "boot", "vmlinuz-6.1.0-9-amd64")
	env["THINP_VM_KERNEL"] = img
	k, err = FindKernel(func(k string) string { return env[k] })
	if err != nil || k.Release != "6.1.0-9-amd64" {
		t.Errorf("THINP_VM_KERNEL: %+v, %v", k, err)
	}
	env["THINP_VM_MODULES"] = filepath.Join(root, "lib", "modules", "7.0.0-1-amd64")
	if _, err := FindKernel(func(k string) string { return env[k] }); err == nil {
		t.Error("THINP_VM_MODULES without dm-mod: no error")
	}
}

func TestVersionLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		less bool
	}{
		{"6.1.0-9-amd64", "6.1.0-56-amd64", true},
		{"6.1.0-56-amd64", "6.1.0-9-amd64", false},
		{"5.10.0-30-amd64", "6.1.0-1-amd64", true},
		{"6.1.0-56-amd64", "6.1.0-56-cloud-amd64", true},
		{"6.1", "6.1.1", true},
	} {
		if got := versionLess(c.a, c.b); got != c.less {
			t.Errorf("versionLess(%q, %q) = %v", c.a, c.b, got)
		}
	}
}
