package vm

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Host is what the VM tier found on this machine: QEMU, a kernel, and the
// programs and udev rules copied into the guest.
type Host struct {
	// QEMU is qemu-system-x86_64.
	QEMU string
	// Kernel is the guest kernel.
	Kernel *Kernel
	// Tools are host paths of programs copied into the guest at the same
	// path (dmsetup, thin_check, ...), with their shared libraries.
	Tools []string
	// Udevd and Udevadm are systemd-udevd and udevadm.
	Udevd, Udevadm string
	// Rules are udev rules files copied into the guest at the same path.
	Rules []string
}

// toolSpec is a program the guest needs, and the Debian package with it.
type toolSpec struct {
	name     string
	pkg      string
	optional bool
	// paths are tried before PATH and the sbin/bin directories.
	paths []string
}

func guestTools() []toolSpec {
	return []toolSpec{
		{name: "dmsetup", pkg: "dmsetup"},
		{name: "thin_check", pkg: "thin-provisioning-tools"},
		{name: "thin_dump", pkg: "thin-provisioning-tools"},
		{name: "thin_ls", pkg: "thin-provisioning-tools"},
		{name: "thin_restore", pkg: "thin-provisioning-tools"},
		{name: "thin_repair", pkg: "thin-provisioning-tools"},
		{name: "thin_delta", pkg: "thin-provisioning-tools", optional: true},
		{name: "thin_rmap", pkg: "thin-provisioning-tools", optional: true},
		{name: "thin_trim", pkg: "thin-provisioning-tools", optional: true},
		{name: "thin_metadata_size", pkg: "thin-provisioning-tools", optional: true},
		{name: "udevadm", pkg: "udev"},
		{name: "systemd-udevd", pkg: "udev", paths: []string{
			"/lib/systemd/systemd-udevd", "/usr/lib/systemd/systemd-udevd",
		}},
		{name: "busybox", pkg: "busybox-static", optional: true},
		// lvm2's lvm, for the tests that open pools lvm2 made (they skip
		// without it).
		{name: "lvm", pkg: "lvm2", optional: true},
		// mkfs for examples/snapshotter, whose tests format and mount its
		// base volume (mkfs.ext4 is a symlink to mke2fs; both come in).
		{name: "mkfs.ext4", pkg: "e2fsprogs"},
		{name: "mkfs.xfs", pkg: "xfsprogs", optional: true},
		// containerd 1.6 and its client, for examples/snapshotter's test
		// of a real daemon using the snapshotter as a proxy plugin.
		// Optional so that a host without them still runs every other VM
		// test; that test looks them up with testenv.Tool, which fails it
		// in the guest (THINP_REQUIRE_PRIVILEGED=1) rather than skip, and
		// .ci/run installs them. The daemon needs no shim or runc to import
		// and unpack images, so only these two come in.
		{name: "containerd", pkg: "containerd", optional: true},
		{name: "ctr", pkg: "containerd", optional: true},
	}
}

// ruleSpec is a udev rules file the udev boot needs.
type ruleSpec struct {
	name     string
	pkg      string
	optional bool
}

// guestRules are lvm2's device-mapper rules (shipped by Debian's dmsetup
// package) and the systemd base rules that set up block devices and their
// /dev/disk links.
func guestRules() []ruleSpec {
	return []ruleSpec{
		{name: "50-udev-default.rules", pkg: "udev", optional: true},
		{name: "55-dm.rules", pkg: "dmsetup"},
		{name: "60-block.rules", pkg: "udev", optional: true},
		{name: "60-persistent-storage.rules", pkg: "udev", optional: true},
		{name: "60-persistent-storage-dm.rules", pkg: "dmsetup"},
		{name: "95-dm-notify.rules", pkg: "dmsetup"},
	}
}

// ruleDirs are where distributions keep packaged udev rules.
func ruleDirs() []string {
	return []string{"/lib/udev/rules.d", "/usr/lib/udev/rules.d"}
}

// APTPackages are the Debian packages the VM tier needs besides the kernel
// (kmod: .ci/vm-setup runs depmod on kernels shipped without modules.dep;
// lvm2: the guest's lvm; e2fsprogs, xfsprogs: the guest's mkfs.ext4 and
// mkfs.xfs; containerd: the
// guest's containerd and ctr).
func APTPackages() []string {
	return []string{"qemu-system-x86", "dmsetup", "thin-provisioning-tools", "udev", "busybox-static", "kmod", "lvm2", "e2fsprogs", "xfsprogs", "containerd"}
}

// FindHost finds everything the VM tier needs. When something is missing it
// returns a *MissingError naming all of it and how to install it.
// getenv is os.Getenv or a stand-in: THINP_VM_QEMU names QEMU's binary, and
// FindKernel documents the kernel variables.
func FindHost(getenv func(string) string) (*Host, error) {
	h := &Host{}
	var missing []string
	pkgs := map[string]bool{}
	lack := func(what, pkg string) {
		missing = append(missing, what)
		if pkg != "" {
			pkgs[pkg] = true
		}
	}
	if q := getenv("THINP_VM_QEMU"); q != "" {
		h.QEMU = q
	} else if q, err := lookTool("qemu-system-x86_64", nil); err == nil {
		h.QEMU = q
	} else {
		lack("qemu-system-x86_64", "qemu-system-x86")
	}
	k, err := FindKernel(getenv)
	switch e := err.(type) {
	case nil:
		h.Kernel = k
	case *MissingError:
		missing = append(missing, e.What...)
	default:
		return nil, err
	}
	for _, t := range guestTools() {
		p, err := lookTool(t.name, t.paths)
		if err != nil {
			if !t.optional {
				lack(t.name, t.pkg)
			}
			continue
		}
		switch t.name {
		case "systemd-udevd":
			h.Udevd = p
		case "udevadm":
			h.Udevadm = p
		}
		h.Tools = append(h.Tools, p)
	}
	for _, r := range guestRules() {
		found := ""
		for _, d := range ruleDirs() {
			if _, err := os.Stat(filepath.Join(d, r.name)); err == nil {
				found = filepath.Join(d, r.name)
				break
			}
		}
		if found == "" {
			if !r.optional {
				lack("udev rule "+r.name, r.pkg)
			}
			continue
		}
		h.Rules = append(h.Rules, found)
		progs, err := ruleProgramPaths(found)
		if err != nil {
			return nil, err
		}
		h.Tools = append(h.Tools, progs...)
	}
	if len(missing) > 0 {
		install := SetupHint
		if len(pkgs) > 0 {
			names := make([]string, 0, len(pkgs))
			for p := range pkgs {
				names = append(names, p)
			}
			sort.Strings(names)
			install = "apt-get install " + strings.Join(names, " ") + "; " + SetupHint
		}
		return nil, &MissingError{What: missing, Install: install}
	}
	h.Tools = dedupe(h.Tools)
	return h, nil
}

// lookTool finds a program in paths, then PATH, then the usual sbin and bin
// directories (a test's PATH may lack sbin).
func lookTool(name string, paths []string) (string, error) {
	for _, p := range paths {
		if isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs, nil
		}
	}
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// ruleProgramPaths returns the host programs a rules file runs by absolute
// path (lvm2's rules run /sbin/dmsetup), so the guest has them at that path.
func ruleProgramPaths(rules string) ([]string, error) {
	f, err := os.Open(rules)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The absolute program path at the start of a PROGRAM, RUN or
	// IMPORT{program} value.
	ruleProgram := regexp.MustCompile(`(?:PROGRAM|RUN(?:\{program\})?|IMPORT\{program\})\+?=\s*"(/[^" ]+)`)
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for _, m := range ruleProgram.FindAllStringSubmatch(sc.Text(), -1) {
			if isExecutable(m[1]) {
				out = append(out, m[1])
			}
		}
	}
	return out, sc.Err()
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
