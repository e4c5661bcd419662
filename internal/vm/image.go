package vm

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/thinp/thinp/internal/vm/proto"
)

// Guest paths of what the harness itself puts in the image.
const (
	guestModuleDir = "/thinp/modules"
	guestBinDir    = "/thinp/bin"
	guestSrcDir    = "/thinp/src"
)

// Workload is one program for the guest to run.
type Workload struct {
	// Name identifies it in events and reports (an import path).
	Name string
	// Kind is proto.KindTest or proto.KindRun.
	Kind string
	// Binary is the host path of the static binary.
	Binary string
	// Args are its arguments.
	Args []string
	// SrcDir, when set, is a host source directory whose testdata/ is
	// copied into the guest; the program runs in the copy. RelDir names it
	// inside the guest's source tree.
	SrcDir, RelDir string
}

// ImageSpec says what goes into an initramfs.
type ImageSpec struct {
	// Init is the host path of the static guestinit binary.
	Init string
	// Host supplies the kernel modules, tools and udev rules.
	Host *Host
	// Modules are the kernel modules to load (nil: none, as in the KVM probe).
	Modules []Module
	// Workloads run in order.
	Workloads []Workload
	// Env is added to the workloads' environment.
	Env []string
	// Minimal leaves out tools, rules and modules (for the KVM probe).
	Minimal bool
	// Heartbeat is the interval of the guest's heartbeat events, in seconds.
	Heartbeat int
	// Gzip compresses the archive; the kernel takes either.
	Gzip bool
}

// BuildImage writes the initramfs described by spec to out.
func BuildImage(spec ImageSpec, out string) error {
	t := newTree()
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/etc", "/var/tmp"} {
		t.mkdirAll(d)
	}
	t.entries["/tmp"].perm = 0o1777
	t.entries["/var/tmp"].perm = 0o1777
	t.entries["/root"].perm = 0o700
	// The kernel opens /dev/console for /init's stdin, stdout and stderr
	// before /init can mount devtmpfs.
	t.addCharDev("/dev/console", 0o600, 5, 1)
	t.addCharDev("/dev/null", 0o666, 1, 3)
	t.addSymlink("/etc/mtab", "../proc/self/mounts")
	t.addFile("/init", spec.Init, 0o755)

	plan := proto.Plan{Env: spec.Env, Heartbeat: spec.Heartbeat}
	if !spec.Minimal && spec.Host != nil {
		if err := addHostFiles(t, spec.Host); err != nil {
			return err
		}
		plan.Udevd, plan.Udevadm = spec.Host.Udevd, spec.Host.Udevadm
		for _, m := range spec.Modules {
			pm, err := addModule(t, spec.Host.Kernel.Modules, m)
			if err != nil {
				return err
			}
			plan.Modules = append(plan.Modules, pm)
		}
	}
	for i, w := range spec.Workloads {
		bin := path.Join(guestBinDir, fmt.Sprintf("%02d-%s", i, filepath.Base(w.Binary)))
		t.addFile(bin, w.Binary, 0o755)
		dir := "/tmp"
		if w.RelDir != "" {
			dir = path.Join(guestSrcDir, w.RelDir)
			t.mkdirAll(dir)
			if w.SrcDir != "" {
				td := filepath.Join(w.SrcDir, "testdata")
				if fi, err := os.Stat(td); err == nil && fi.IsDir() {
					if err := t.addHostDir(path.Join(dir, "testdata"), td); err != nil {
						return err
					}
				}
			}
		}
		plan.Jobs = append(plan.Jobs, proto.Job{Name: w.Name, Kind: w.Kind, Path: bin, Dir: dir, Args: w.Args})
	}
	pj, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		return err
	}
	t.addData(proto.PlanPath, 0o644, pj)
	return writeTree(t, out, spec.Gzip)
}

// addHostFiles copies the tools with their libraries, the udev rules, and
// the account files udev rules resolve names with.
func addHostFiles(t *tree, h *Host) error {
	for _, p := range h.Tools {
		if err := t.addHost(p); err != nil {
			return fmt.Errorf("copy %s into the guest: %w", p, err)
		}
	}
	for _, r := range h.Rules {
		if err := t.addHost(r); err != nil {
			return fmt.Errorf("copy %s into the guest: %w", r, err)
		}
	}
	// mke2fs.conf: mkfs.ext4 makes the file systems the host's would.
	for _, f := range []string{"/etc/passwd", "/etc/group", "/etc/mke2fs.conf"} {
		if b, err := os.ReadFile(f); err == nil {
			t.addData(f, 0o644, b)
		}
	}
	return nil
}

// addModule puts one module under /thinp/modules. gzip'd modules are
// decompressed here; xz and zstd ones go in as they are, for the kernel to
// decompress (CONFIG_MODULE_DECOMPRESS).
func addModule(t *tree, dir string, m Module) (proto.Module, error) {
	host := filepath.Join(dir, filepath.FromSlash(m.Path))
	base := path.Base(m.Path)
	pm := proto.Module{Name: m.Name, Optional: m.Optional}
	switch {
	case strings.HasSuffix(base, ".ko.gz"):
		data, err := readModuleFile(host)
		if err != nil {
			return pm, err
		}
		pm.Path = path.Join(guestModuleDir, strings.TrimSuffix(base, ".gz"))
		t.addData(pm.Path, 0o644, data)
	case strings.HasSuffix(base, ".ko.xz"), strings.HasSuffix(base, ".ko.zst"):
		pm.Path = path.Join(guestModuleDir, base)
		pm.Compressed = true
		t.addFile(pm.Path, host, 0o644)
	default:
		pm.Path = path.Join(guestModuleDir, base)
		t.addFile(pm.Path, host, 0o644)
	}
	return pm, nil
}

func writeTree(t *tree, out string, gz bool) (err error) {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if !gz {
		if err := t.write(NewCPIOWriter(bw)); err != nil {
			return err
		}
		return bw.Flush()
	}
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		return err
	}
	if err := t.write(NewCPIOWriter(zw)); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}
