package udev

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Support says whether device-mapper operations can wait for udev with a
// cookie, and why not. Every check runs, so the fields describe the whole
// system even when an early one fails.
type Support struct {
	// Sync is true when every check passed: create cookies and wait.
	// Otherwise do not wait; manage /dev/mapper nodes yourself and send
	// EventNrWithoutCookie(FallbackFlags) so that a running udevd leaves
	// those nodes alone.
	Sync bool
	// Reason lists every failed check, separated by "; "; empty when Sync.
	Reason string

	// Disabled is true when the environment sets DM_DISABLE_UDEV, which
	// libdevmapper also honours.
	Disabled bool
	// Semaphores is true when semctl(0, 0, SEM_INFO) works: the kernel has
	// SysV IPC and this build has the syscalls.
	Semaphores bool
	// UdevRunning is true when /run/udev/control exists and a udevd
	// accepted a connection on it.
	UdevRunning bool
	// UdevdPID is the process whose IPC namespace was compared with ours:
	// udevd's main process found by name in /proc, or else the creator of
	// the control socket (the service manager under socket activation); 0
	// if none is visible in our pid namespace.
	UdevdPID int
	// SameIPCNamespace is true when /proc/self/ns/ipc and udevd's
	// /proc/<pid>/ns/ipc are the same namespace. Otherwise udevd completes
	// cookies in a different semaphore space and a wait would never end
	// (containers with a private IPC namespace, bootc#2089, lvm2#70).
	SameIPCNamespace bool
	// RulesFile is the udev rules file, after udev's override order, that
	// runs the cookie notification (normally 95-dm-notify.rules); empty
	// when there is none.
	RulesFile string
	// NotifyProgram is the program that rule runs, as written there, for
	// example /sbin/dmsetup.
	NotifyProgram string
	// ProgramPresent is true when NotifyProgram exists and is executable.
	ProgramPresent bool
}

// Config changes where Detect looks. The zero value, and a nil *Config,
// describe the running system.
type Config struct {
	// Root is prepended to every path Detect reads: /run/udev/control, the
	// udev rules directories, the notify program, and /proc. Empty means
	// "/". Tests point it at a fake tree.
	Root string
	// LookupEnv reads the environment; nil means os.LookupEnv.
	LookupEnv func(key string) (string, bool)

	// semProbe replaces the SEM_INFO probe in tests.
	semProbe func() error
}

// NotifyRulesName is the name of lvm2's rules file that completes cookies.
const NotifyRulesName = "95-dm-notify.rules"

// RulesDirs are udev's rules directories, highest priority first: a file in
// an earlier directory hides a file of the same name in a later one.
func RulesDirs() []string {
	return []string{
		"/etc/udev/rules.d",
		"/run/udev/rules.d",
		"/usr/local/lib/udev/rules.d",
		"/usr/lib/udev/rules.d",
		"/lib/udev/rules.d",
	}
}

// Detect runs every check of the libdevmapper cookie protocol's "can udev
// answer?" step on the running system, except the dm interface version
// (cookies need 4.15, which the dm package checks):
//
//   - DM_DISABLE_UDEV is unset;
//   - semctl(SEM_INFO) works;
//   - /run/udev/control exists and udevd accepts a connection on it;
//   - we share udevd's IPC namespace;
//   - a udev rule runs `... udevcomplete $env{DM_COOKIE}` (95-dm-notify.rules
//     in /etc, /run, /usr/local/lib, /usr/lib or /lib udev/rules.d), not
//     masked;
//   - the program that rule runs (normally /sbin/dmsetup) is there.
//
// If any check fails, waiting for a cookie could never end, so Sync is false.
// Detect takes a few milliseconds; cache the result, but run it again after
// udevd may have started or stopped.
func Detect() Support { return DetectWith(nil) }

// DetectWith is Detect with a Config.
func DetectWith(cfg *Config) Support {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Root == "" {
		c.Root = "/"
	}
	if c.LookupEnv == nil {
		c.LookupEnv = os.LookupEnv
	}
	if c.semProbe == nil {
		c.semProbe = func() error { _, err := semInfoMax(); return err }
	}

	var s Support
	var why []string

	if _, ok := c.LookupEnv("DM_DISABLE_UDEV"); ok {
		s.Disabled = true
		why = append(why, "DM_DISABLE_UDEV is set")
	}

	if err := c.semProbe(); err != nil {
		why = append(why, fmt.Sprintf("SysV semaphores unavailable (semctl SEM_INFO: %v)", err))
	} else {
		s.Semaphores = true
	}

	ctl := c.path("/run/udev/control")
	peer, err := probeControl(ctl)
	switch {
	case err != nil:
		why = append(why, fmt.Sprintf("udevd is not running (%v)", err))
	default:
		s.UdevRunning = true
		pid, same, err := c.udevdNamespace(peer)
		s.UdevdPID = pid
		switch {
		case err != nil:
			why = append(why, fmt.Sprintf("cannot verify udevd's IPC namespace: %v", err))
		case !same:
			why = append(why, fmt.Sprintf("udevd (pid %d) is in another IPC namespace: it would never complete our cookies", pid))
		default:
			s.SameIPCNamespace = true
		}
	}

	rules, prog, err := c.findNotifyRule()
	if err != nil {
		why = append(why, err.Error())
	} else {
		s.RulesFile, s.NotifyProgram = rules, prog
		if err := c.checkProgram(prog); err != nil {
			why = append(why, fmt.Sprintf("%s runs %s, which %v", rules, prog, err))
		} else {
			s.ProgramPresent = true
		}
	}

	s.Sync = len(why) == 0
	s.Reason = strings.Join(why, "; ")
	return s
}

// path maps an absolute system path into c.Root, lexically.
func (c *Config) path(p string) string {
	return filepath.Join(c.Root, filepath.FromSlash(p))
}

// udevdNamespace finds udevd and compares its IPC namespace with ours, by
// the "ipc:[inode]" targets of the /proc/<pid>/ns/ipc links. udevd is found
// by name in /proc (systemd-udevd or udevd, and every worker of that name
// must agree); failing that, the control socket's peer is used: under
// socket activation that is the service manager, which created the socket
// and runs udevd in its own namespaces. (The peer of a udevd that
// daemonised itself is its parent, which has exited by then, so the peer
// comes second.) It returns the pid it compared with.
func (c *Config) udevdNamespace(peer int) (pid int, same bool, err error) {
	self, err := os.Readlink(c.path("/proc/self/ns/ipc"))
	if err != nil {
		return 0, false, err
	}
	pids, main := c.findUdevd()
	if len(pids) == 0 {
		if peer <= 0 {
			return 0, false, errors.New("no udevd process is visible in /proc, and the control socket's peer is not in our pid namespace")
		}
		pids, main = []int{peer}, peer
	}
	seen := false
	for _, p := range pids {
		theirs, err := os.Readlink(c.path(fmt.Sprintf("/proc/%d/ns/ipc", p)))
		if errors.Is(err, fs.ErrNotExist) && len(pids) > 1 {
			continue // a worker that just exited
		}
		if err != nil {
			return main, false, err
		}
		seen = true
		if theirs != self {
			return p, false, nil
		}
	}
	if !seen {
		return main, false, errors.New("every udevd process exited while being inspected")
	}
	return main, true, nil
}

// findUdevd returns the pids of the processes named systemd-udevd or udevd
// in /proc, and the main one: the one whose parent has another name.
func (c *Config) findUdevd() (pids []int, main int) {
	ents, err := os.ReadDir(c.path("/proc"))
	if err != nil {
		return nil, 0
	}
	ppid := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		b, err := os.ReadFile(c.path(fmt.Sprintf("/proc/%d/stat", pid)))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces and ')'.
		st := string(b)
		lp, rp := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
		if lp < 0 || rp < lp {
			continue
		}
		if comm := st[lp+1 : rp]; comm != "systemd-udevd" && comm != "udevd" {
			continue
		}
		f := strings.Fields(st[rp+1:])
		pp := 0
		if len(f) >= 2 {
			pp, _ = strconv.Atoi(f[1])
		}
		pids = append(pids, pid)
		ppid[pid] = pp
	}
	sort.Ints(pids)
	for _, p := range pids {
		if _, parentIsUdevd := ppid[ppid[p]]; !parentIsUdevd {
			return pids, p
		}
	}
	if len(pids) > 0 {
		main = pids[0]
	}
	return pids, main
}

// findNotifyRule finds the effective rules file that completes cookies and
// the program it runs. It looks for NotifyRulesName first and then scans
// every other rules file, honouring udev's override order by file name.
func (c *Config) findNotifyRule() (file, prog string, err error) {
	// name -> effective path, first directory wins.
	effective := map[string]string{}
	var names []string
	for _, dir := range RulesDirs() {
		ents, err := os.ReadDir(c.path(dir))
		if err != nil {
			continue
		}
		for _, e := range ents {
			n := e.Name()
			if !strings.HasSuffix(n, ".rules") {
				continue
			}
			if _, ok := effective[n]; !ok {
				effective[n] = path.Join(dir, n)
				names = append(names, n)
			}
		}
	}
	if p, ok := effective[NotifyRulesName]; ok {
		if masked, err := c.masked(p); err != nil {
			return "", "", fmt.Errorf("cannot read %s: %v", p, err)
		} else if masked {
			return "", "", fmt.Errorf("%s is masked by %s: udev would never complete a cookie", NotifyRulesName, p)
		}
		if prog, err := c.notifyProgram(p); err == nil {
			return p, prog, nil
		}
	}
	// lvm2's rule under another name (some distributions merge rules files).
	sort.Strings(names)
	for _, n := range names {
		p := effective[n]
		if n == NotifyRulesName {
			continue
		}
		if prog, err := c.notifyProgram(p); err == nil {
			return p, prog, nil
		}
	}
	if _, ok := effective[NotifyRulesName]; ok {
		return "", "", fmt.Errorf("%s has no RUN of \"udevcomplete $env{DM_COOKIE}\": udev would never complete a cookie", effective[NotifyRulesName])
	}
	return "", "", fmt.Errorf("no udev rule completes device-mapper cookies (%s, from lvm2/dmsetup, is not installed in %s)",
		NotifyRulesName, strings.Join(RulesDirs(), ", "))
}

// masked reports whether the rules file p is masked: a symlink to /dev/null
// or an empty file, as udev treats them.
func (c *Config) masked(p string) (bool, error) {
	fi, err := os.Lstat(c.path(p))
	if err != nil {
		return false, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if t, err := os.Readlink(c.path(p)); err == nil && t == "/dev/null" {
			return true, nil
		}
		fi, err = os.Stat(c.path(p))
		if err != nil {
			return false, err
		}
	}
	return fi.Mode().IsRegular() && fi.Size() == 0, nil
}

// notifyProgram returns the program of the first RUN assignment in the rules
// file p whose command is "<program> udevcomplete $env{DM_COOKIE}".
func (c *Config) notifyProgram(p string) (string, error) {
	f, err := os.Open(c.path(p))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	var line strings.Builder
	for sc.Scan() {
		t := sc.Text()
		// udev joins lines that end in a backslash.
		if strings.HasSuffix(t, "\\") {
			line.WriteString(strings.TrimSuffix(t, "\\"))
			continue
		}
		line.WriteString(t)
		l := strings.TrimSpace(line.String())
		line.Reset()
		if l == "" || l[0] == '#' {
			continue
		}
		if prog, ok := parseNotifyRun(l); ok {
			return prog, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no udevcomplete rule")
}

// parseNotifyRun looks for RUN+="<prog> udevcomplete $env{DM_COOKIE}" (or
// RUN= / RUN{program}+=) in one rules line and returns prog.
func parseNotifyRun(l string) (string, bool) {
	for rest := l; ; {
		i := strings.Index(rest, "RUN")
		if i < 0 {
			return "", false
		}
		rest = rest[i+3:]
		// Optional {attribute}.
		if strings.HasPrefix(rest, "{") {
			j := strings.IndexByte(rest, '}')
			if j < 0 {
				return "", false
			}
			if attr := rest[1:j]; attr != "program" {
				rest = rest[j+1:]
				continue // RUN{builtin}: not a program
			}
			rest = rest[j+1:]
		}
		op := strings.TrimLeft(rest, " \t")
		switch {
		case strings.HasPrefix(op, "+="):
			op = op[2:]
		case strings.HasPrefix(op, ":="):
			op = op[2:]
		case strings.HasPrefix(op, "=") && !strings.HasPrefix(op, "=="):
			op = op[1:]
		default:
			continue
		}
		op = strings.TrimLeft(op, " \t")
		if !strings.HasPrefix(op, "\"") {
			continue
		}
		end := strings.IndexByte(op[1:], '"')
		if end < 0 {
			return "", false
		}
		f := strings.Fields(op[1 : 1+end])
		if len(f) >= 3 && f[1] == "udevcomplete" && f[2] == "$env{DM_COOKIE}" {
			return f[0], true
		}
		rest = op[1+end:]
	}
}

// checkProgram checks that the rule's program exists and is executable. udev
// runs a program without a slash from its library directory.
func (c *Config) checkProgram(prog string) error {
	cands := []string{prog}
	if !strings.HasPrefix(prog, "/") {
		cands = []string{"/usr/lib/udev/" + prog, "/lib/udev/" + prog}
	}
	var last error
	for _, p := range cands {
		fi, err := c.statInRoot(p)
		if err != nil {
			last = err
			continue
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			last = errors.New("is not an executable file")
			continue
		}
		return nil
	}
	if errors.Is(last, fs.ErrNotExist) {
		return errors.New("does not exist")
	}
	return last
}

// statInRoot stats the absolute path p inside c.Root, resolving symbolic
// links as if c.Root were "/": /sbin -> usr/sbin and absolute link targets
// stay inside the root.
func (c *Config) statInRoot(p string) (fs.FileInfo, error) {
	if c.Root == "/" {
		return os.Stat(p)
	}
	const maxLinks = 40
	links := 0
	todo := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	cur := "/"
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		if name == "" || name == "." {
			continue
		}
		if name == ".." {
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, name)
		fi, err := os.Lstat(c.path(next))
		if err != nil {
			return nil, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if len(todo) == 0 {
				return fi, nil
			}
			cur = next
			continue
		}
		links++
		if links > maxLinks {
			return nil, &fs.PathError{Op: "stat", Path: p, Err: errors.New("too many levels of symbolic links")}
		}
		t, err := os.Readlink(c.path(next))
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(t, "/") {
			cur = "/"
		}
		todo = append(strings.Split(strings.Trim(t, "/"), "/"), todo...)
	}
	return os.Stat(c.path(cur))
}
