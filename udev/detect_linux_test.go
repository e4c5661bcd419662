//go:build linux

package udev

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const notifyRule = `# Udev rules for device-mapper devices.
ENV{DM_COOKIE}=="?*", RUN+="/sbin/dmsetup udevcomplete $env{DM_COOKIE}"
`

// fakeSystem is a root directory that looks like a system where udev sync
// works: a udevd (this test process) listening on /run/udev/control, /proc
// links showing one IPC namespace, lvm2's notify rule and /sbin/dmsetup.
type fakeSystem struct {
	t    *testing.T
	root string
	ln   *net.UnixListener
	env  map[string]string
}

func newFakeSystem(t *testing.T) *fakeSystem {
	t.Helper()
	// A short root: the control socket's path must fit sockaddr_un.
	root, err := os.MkdirTemp("", "ud")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	fs := &fakeSystem{t: t, root: root, env: map[string]string{}}
	fs.listen()
	fs.nsLink("self", "ipc:[4026531839]")
	fs.nsLink(fmt.Sprint(os.Getpid()), "ipc:[4026531839]")
	fs.write("/usr/lib/udev/rules.d/95-dm-notify.rules", notifyRule, 0o644)
	fs.write("/usr/sbin/dmsetup", "#!/bin/sh\n", 0o755)
	fs.symlink("/sbin", "usr/sbin")
	return fs
}

func (fs *fakeSystem) path(p string) string { return filepath.Join(fs.root, p) }

func (fs *fakeSystem) listen() {
	p := fs.path("/run/udev/control")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		fs.t.Fatal(err)
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: p, Net: "unixpacket"})
	if err != nil {
		fs.t.Fatal(err)
	}
	fs.ln = ln
	fs.t.Cleanup(func() { ln.Close() })
	// Accept and drop connections, as udevd does with a silent client.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func (fs *fakeSystem) write(p, content string, mode os.FileMode) {
	fs.t.Helper()
	full := fs.path(p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		fs.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), mode); err != nil {
		fs.t.Fatal(err)
	}
	if err := os.Chmod(full, mode); err != nil {
		fs.t.Fatal(err)
	}
}

func (fs *fakeSystem) symlink(p, target string) {
	fs.t.Helper()
	full := fs.path(p)
	os.Remove(full)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		fs.t.Fatal(err)
	}
	if err := os.Symlink(target, full); err != nil {
		fs.t.Fatal(err)
	}
}

func (fs *fakeSystem) nsLink(pid, target string) {
	fs.symlink("/proc/"+pid+"/ns/ipc", target)
}

func (fs *fakeSystem) remove(p string) {
	fs.t.Helper()
	if err := os.RemoveAll(fs.path(p)); err != nil {
		fs.t.Fatal(err)
	}
}

func (fs *fakeSystem) detect() Support {
	return DetectWith(&Config{
		Root: fs.root,
		LookupEnv: func(k string) (string, bool) {
			v, ok := fs.env[k]
			return v, ok
		},
		semProbe: func() error { return nil },
	})
}

func TestDetectAllGood(t *testing.T) {
	fs := newFakeSystem(t)
	s := fs.detect()
	want := Support{
		Sync:             true,
		Semaphores:       true,
		UdevRunning:      true,
		UdevdPID:         os.Getpid(),
		SameIPCNamespace: true,
		RulesFile:        "/usr/lib/udev/rules.d/95-dm-notify.rules",
		NotifyProgram:    "/sbin/dmsetup",
		ProgramPresent:   true,
	}
	if s != want {
		t.Fatalf("Detect:\n got %+v\nwant %+v", s, want)
	}
}

// TestDetectFailures breaks one thing at a time.
func TestDetectFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		breakf func(fs *fakeSystem, cfg *Config)
		reason string // substring of Support.Reason
		check  func(s Support) bool
	}{
		{
			name:   "DM_DISABLE_UDEV",
			breakf: func(fs *fakeSystem, _ *Config) { fs.env["DM_DISABLE_UDEV"] = "1" },
			reason: "DM_DISABLE_UDEV is set",
			check:  func(s Support) bool { return s.Disabled && s.UdevRunning },
		},
		{
			name:   "DM_DISABLE_UDEV empty",
			breakf: func(fs *fakeSystem, _ *Config) { fs.env["DM_DISABLE_UDEV"] = "" },
			reason: "DM_DISABLE_UDEV is set",
			check:  func(s Support) bool { return s.Disabled },
		},
		{
			name:   "no SysV semaphores",
			breakf: func(_ *fakeSystem, cfg *Config) { cfg.semProbe = func() error { return syscall.ENOSYS } },
			reason: "SysV semaphores unavailable",
			check:  func(s Support) bool { return !s.Semaphores && s.UdevRunning },
		},
		{
			name:   "no control socket",
			breakf: func(fs *fakeSystem, _ *Config) { fs.ln.Close() },
			reason: "udevd is not running",
			check:  func(s Support) bool { return !s.UdevRunning && s.UdevdPID == 0 && !s.SameIPCNamespace },
		},
		{
			name: "stale control socket",
			breakf: func(fs *fakeSystem, _ *Config) {
				fs.ln.SetUnlinkOnClose(false)
				fs.ln.Close()
				if _, err := os.Stat(fs.path("/run/udev/control")); err != nil {
					fs.t.Fatal(err)
				}
			},
			reason: "connection refused",
			check:  func(s Support) bool { return !s.UdevRunning },
		},
		{
			name:   "control is not a socket",
			breakf: func(fs *fakeSystem, _ *Config) { fs.ln.Close(); fs.write("/run/udev/control", "", 0o600) },
			reason: "udevd is not running",
			check:  func(s Support) bool { return !s.UdevRunning },
		},
		{
			name:   "other IPC namespace",
			breakf: func(fs *fakeSystem, _ *Config) { fs.nsLink(fmt.Sprint(os.Getpid()), "ipc:[4026532999]") },
			reason: "in another IPC namespace",
			check:  func(s Support) bool { return s.UdevRunning && !s.SameIPCNamespace },
		},
		{
			name:   "udevd's namespace unreadable",
			breakf: func(fs *fakeSystem, _ *Config) { fs.remove(fmt.Sprintf("/proc/%d", os.Getpid())) },
			reason: "cannot verify udevd's IPC namespace",
			check:  func(s Support) bool { return s.UdevRunning && !s.SameIPCNamespace },
		},
		{
			name:   "no notify rule",
			breakf: func(fs *fakeSystem, _ *Config) { fs.remove("/usr/lib/udev/rules.d/95-dm-notify.rules") },
			reason: "95-dm-notify.rules, from lvm2/dmsetup, is not installed",
			check:  func(s Support) bool { return s.RulesFile == "" && !s.ProgramPresent },
		},
		{
			name: "notify rule masked",
			breakf: func(fs *fakeSystem, _ *Config) {
				fs.symlink("/etc/udev/rules.d/95-dm-notify.rules", "/dev/null")
			},
			reason: "masked by /etc/udev/rules.d/95-dm-notify.rules",
			check:  func(s Support) bool { return s.RulesFile == "" },
		},
		{
			name: "notify rule masked by an empty file",
			breakf: func(fs *fakeSystem, _ *Config) {
				fs.write("/run/udev/rules.d/95-dm-notify.rules", "", 0o644)
			},
			reason: "masked by /run/udev/rules.d/95-dm-notify.rules",
		},
		{
			name: "notify rule overridden without udevcomplete",
			breakf: func(fs *fakeSystem, _ *Config) {
				fs.write("/etc/udev/rules.d/95-dm-notify.rules", "# local override\nENV{DM_COOKIE}==\"?*\", GOTO=\"end\"\n", 0o644)
			},
			reason: `/etc/udev/rules.d/95-dm-notify.rules has no RUN of "udevcomplete`,
		},
		{
			name: "program missing",
			breakf: func(fs *fakeSystem, _ *Config) {
				fs.remove("/usr/sbin/dmsetup")
			},
			reason: "runs /sbin/dmsetup, which does not exist",
			check:  func(s Support) bool { return s.NotifyProgram == "/sbin/dmsetup" && !s.ProgramPresent },
		},
		{
			name: "program not executable",
			breakf: func(fs *fakeSystem, _ *Config) {
				fs.write("/usr/sbin/dmsetup", "", 0o644)
			},
			reason: "which is not an executable file",
		},
		{
			name: "program is a directory",
			breakf: func(fs *fakeSystem, _ *Config) {
				fs.remove("/usr/sbin/dmsetup")
				if err := os.MkdirAll(fs.path("/usr/sbin/dmsetup"), 0o755); err != nil {
					fs.t.Fatal(err)
				}
			},
			reason: "which is not an executable file",
		},
		{
			name: "program symlink loop",
			breakf: func(fs *fakeSystem, _ *Config) {
				fs.symlink("/sbin", "/sbin")
			},
			reason: "too many levels of symbolic links",
		},
		{
			name: "program escapes by symlink",
			breakf: func(fs *fakeSystem, _ *Config) {
				// /sbin -> /bin must stay inside the root, where
				// there is no dmsetup, even if the host has one.
				fs.symlink("/sbin", "/bin")
			},
			reason: "runs /sbin/dmsetup, which does not exist",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeSystem(t)
			cfg := &Config{
				Root: fs.root,
				LookupEnv: func(k string) (string, bool) {
					v, ok := fs.env[k]
					return v, ok
				},
				semProbe: func() error { return nil },
			}
			tc.breakf(fs, cfg)
			s := DetectWith(cfg)
			if s.Sync {
				t.Fatalf("Sync despite %s: %+v", tc.name, s)
			}
			if !strings.Contains(s.Reason, tc.reason) {
				t.Errorf("Reason = %q, want it to contain %q", s.Reason, tc.reason)
			}
			if strings.Count(s.Reason, ";") != 0 {
				t.Errorf("one broken thing, several reasons: %q", s.Reason)
			}
			if tc.check != nil && !tc.check(s) {
				t.Errorf("fields do not match %s: %+v", tc.name, s)
			}
		})
	}
}

// TestDetectFindsUdevd: udevd is found by name in /proc, with its workers;
// the control socket's peer is only the fallback.
func TestDetectFindsUdevd(t *testing.T) {
	const ours, theirs = "ipc:[4026531839]", "ipc:[4026532999]"
	proc := func(fs *fakeSystem, pid int, comm string, ppid int, ns string) {
		fs.write(fmt.Sprintf("/proc/%d/stat", pid), fmt.Sprintf("%d (%s) S %d 1 1 0 -1\n", pid, comm, ppid), 0o444)
		if ns != "" {
			fs.nsLink(fmt.Sprint(pid), ns)
		}
	}
	for _, tc := range []struct {
		name   string
		setup  func(fs *fakeSystem)
		sync   bool
		pid    int
		reason string
	}{
		{
			name: "daemonised udevd, peer exited",
			setup: func(fs *fakeSystem) {
				fs.remove(fmt.Sprintf("/proc/%d", os.Getpid()))
				proc(fs, 4242, "systemd-udevd", 1, ours)
				proc(fs, 4300, "(udev-worker)", 4242, theirs) // not udevd by name
			},
			sync: true, pid: 4242,
		},
		{
			name: "main and workers agree",
			setup: func(fs *fakeSystem) {
				proc(fs, 4243, "systemd-udevd", 4242, ours)
				proc(fs, 4242, "systemd-udevd", 1, ours)
				proc(fs, 4244, "systemd-udevd", 4242, "") // exited meanwhile
				proc(fs, 77, "bash (x) )", 1, theirs)
			},
			sync: true, pid: 4242,
		},
		{
			name:   "udevd in another namespace, peer in ours",
			setup:  func(fs *fakeSystem) { proc(fs, 4242, "udevd", 1, theirs) },
			pid:    4242,
			reason: "udevd (pid 4242) is in another IPC namespace",
		},
		{
			name: "a worker in another namespace",
			setup: func(fs *fakeSystem) {
				proc(fs, 4242, "systemd-udevd", 1, ours)
				proc(fs, 4243, "systemd-udevd", 4242, theirs)
			},
			pid:    4243,
			reason: "udevd (pid 4243) is in another IPC namespace",
		},
		{
			name: "only udevd, and it vanished",
			setup: func(fs *fakeSystem) {
				fs.remove(fmt.Sprintf("/proc/%d", os.Getpid()))
				proc(fs, 4242, "systemd-udevd", 1, "")
			},
			pid:    4242,
			reason: "cannot verify udevd's IPC namespace",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeSystem(t)
			tc.setup(fs)
			s := fs.detect()
			if s.Sync != tc.sync || s.UdevdPID != tc.pid || !strings.Contains(s.Reason, tc.reason) {
				t.Fatalf("Detect = %+v; want Sync %v, pid %d, reason containing %q", s, tc.sync, tc.pid, tc.reason)
			}
		})
	}
}

// TestDetectRulesVariants: rules found under other layouts still count.
func TestDetectRulesVariants(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(fs *fakeSystem)
		file    string
		program string
	}{
		{
			name: "absolute /sbin link stays in root",
			setup: func(fs *fakeSystem) {
				fs.symlink("/sbin", "/usr/sbin")
			},
			file: "/usr/lib/udev/rules.d/95-dm-notify.rules", program: "/sbin/dmsetup",
		},
		{
			name: "split /lib and usr-merged /usr/sbin",
			setup: func(fs *fakeSystem) {
				fs.remove("/usr/lib/udev/rules.d/95-dm-notify.rules")
				fs.write("/lib/udev/rules.d/95-dm-notify.rules",
					"ENV{DM_COOKIE}==\"?*\", RUN+=\"/usr/sbin/dmsetup udevcomplete $env{DM_COOKIE}\"\n", 0o644)
			},
			file: "/lib/udev/rules.d/95-dm-notify.rules", program: "/usr/sbin/dmsetup",
		},
		{
			name: "/etc override wins",
			setup: func(fs *fakeSystem) {
				fs.write("/etc/udev/rules.d/95-dm-notify.rules",
					"ENV{DM_COOKIE}==\"?*\", \\\n  RUN{program}+=\"/usr/local/sbin/dmsetup udevcomplete $env{DM_COOKIE}\"\n", 0o644)
				fs.write("/usr/local/sbin/dmsetup", "", 0o755)
			},
			file: "/etc/udev/rules.d/95-dm-notify.rules", program: "/usr/local/sbin/dmsetup",
		},
		{
			name: "relative program in udev's directory",
			setup: func(fs *fakeSystem) {
				fs.write("/run/udev/rules.d/95-dm-notify.rules",
					"ENV{DM_COOKIE}==\"?*\", RUN+=\"dmsetup udevcomplete $env{DM_COOKIE}\"\n", 0o644)
				fs.write("/usr/lib/udev/dmsetup", "", 0o755)
			},
			file: "/run/udev/rules.d/95-dm-notify.rules", program: "dmsetup",
		},
		{
			name: "rule in another file",
			setup: func(fs *fakeSystem) {
				fs.remove("/usr/lib/udev/rules.d/95-dm-notify.rules")
				fs.write("/usr/lib/udev/rules.d/10-dm.rules", "SUBSYSTEM!=\"block\", GOTO=\"end\"\n", 0o644)
				fs.write("/usr/lib/udev/rules.d/99-local-dm.rules", notifyRule, 0o644)
			},
			file: "/usr/lib/udev/rules.d/99-local-dm.rules", program: "/sbin/dmsetup",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeSystem(t)
			tc.setup(fs)
			s := fs.detect()
			if !s.Sync || s.RulesFile != tc.file || s.NotifyProgram != tc.program {
				t.Fatalf("Detect = %+v, want Sync with %s running %s", s, tc.file, tc.program)
			}
		})
	}
}

// TestDetectHost runs the real checks. This host runs no udevd, and the VM
// tier's reason depends on its boot, so only consistency is checked.
func TestDetectHost(t *testing.T) {
	s := Detect()
	t.Logf("Detect() = %+v", s)
	if s.Sync != (s.Reason == "") {
		t.Errorf("Sync %v with reason %q", s.Sync, s.Reason)
	}
	if s.Sync && !(s.Semaphores && s.UdevRunning && s.SameIPCNamespace && s.ProgramPresent && !s.Disabled) {
		t.Errorf("Sync with a failed check: %+v", s)
	}
	if _, err := os.Stat("/run/udev/control"); err != nil && s.UdevRunning {
		t.Errorf("UdevRunning without /run/udev/control")
	}
	if sysvSupported && !s.Semaphores {
		if _, err := semInfoMax(); err == nil {
			t.Errorf("Semaphores false but SEM_INFO works")
		}
	}
}
