package testenv

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
)

// cookieMagic is the top 16 bits of the SysV semaphore keys that udev
// cookies use (libdevmapper's DM_COOKIE_MAGIC, 0x0D4D).
const cookieMagic = 0x0D4D

// leakSettle is how long CheckLeaks waits for things that go away
// asynchronously (a loop device with autoclear, a deferred remove, udev
// still holding a device) before it calls them leaked.
const leakSettle = 5 * time.Second

// Prefix returns a device name prefix unique to this test run,
// "thinp-test-<hash of the test name><random>-". Name every dm device the
// test makes with it, and pass it to CheckLeaks.
func Prefix(t testing.TB) string {
	t.Helper()
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	var r [3]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatalf("Prefix: %v", err)
	}
	return fmt.Sprintf("thinp-test-%08x%s-", h.Sum32(), hex.EncodeToString(r[:]))
}

// CheckLeaks snapshots the process's open file descriptors and the udev
// cookie semaphores now, and registers a cleanup that fails t if, after the
// test and the cleanups registered after this call have run, any of these
// remain:
//
//   - dm devices whose name starts with prefix (/sys/block/dm-*/dm/name);
//   - /dev/mapper/<prefix>* nodes;
//   - loop devices whose backing file contains prefix or lies under one of
//     the test's t.TempDir directories;
//   - SysV semaphores with a 0x0D4D____ key (udev cookies) that were not
//     there at the snapshot;
//   - file descriptors that were not open at the snapshot, other than the
//     Go runtime's netpoller (epoll and eventfd descriptors).
//
// Things that go away on their own shortly (an autoclear loop device, udev
// still holding a device) get a few seconds. The fd and semaphore checks
// see the whole process, so a test using CheckLeaks must not run in
// parallel with other tests that open files or take cookies.
func CheckLeaks(t testing.TB, prefix string) {
	t.Helper()
	checkLeaks(t, prefix, leakSettle)
}

// leakSnapshot is the state CheckLeaks compares against.
type leakSnapshot struct {
	fds  map[int]string // fd -> readlink target
	sems map[string]bool
}

func checkLeaks(t testing.TB, prefix string, settle time.Duration) {
	t.Helper()
	if prefix == "" {
		t.Fatalf("CheckLeaks: empty prefix would match every device")
		return
	}
	snap := leakSnapshot{fds: openFDs(), sems: cookieSems()}
	tmpPattern := filepath.Join(tempRoot(), tempDirPattern(t.Name()))
	t.Cleanup(func() {
		var leaks []string
		deadline := time.Now().Add(settle)
		for {
			leaks = findLeaks(prefix, tmpPattern, snap)
			if len(leaks) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, l := range leaks {
			t.Errorf("leaked: %s", l)
		}
	})
}

// findLeaks lists what is left over.
func findLeaks(prefix, tmpPattern string, snap leakSnapshot) []string {
	var leaks []string
	for _, name := range dmNames() {
		if strings.HasPrefix(name.name, prefix) {
			leaks = append(leaks, fmt.Sprintf("dm device %s (%s)", name.name, name.dev))
		}
	}
	if ents, err := os.ReadDir("/dev/mapper"); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix) {
				leaks = append(leaks, "node /dev/mapper/"+e.Name())
			}
		}
	}
	for _, l := range loopBackings() {
		if strings.Contains(l.file, prefix) || strings.HasPrefix(l.file, tmpPattern) {
			leaks = append(leaks, fmt.Sprintf("loop device %s backed by %s", l.dev, l.file))
		}
	}
	for key := range cookieSems() {
		if !snap.sems[key] {
			leaks = append(leaks, "udev cookie semaphore "+key)
		}
	}
	now := openFDs()
	fds := make([]int, 0, len(now))
	for fd := range now {
		fds = append(fds, fd)
	}
	sort.Ints(fds)
	for _, fd := range fds {
		target := now[fd]
		if old, ok := snap.fds[fd]; ok && old == target {
			continue
		}
		if isRuntimeFD(target) {
			continue
		}
		leaks = append(leaks, fmt.Sprintf("file descriptor %d -> %s", fd, target))
	}
	return leaks
}

// isRuntimeFD reports whether an fd is one the Go runtime opens lazily
// for its netpoller (epoll instance and its wake-up eventfd or pipe).
func isRuntimeFD(target string) bool {
	return target == "anon_inode:[eventpoll]" || target == "anon_inode:[eventfd]"
}

// openFDs returns this process's open file descriptors and what they point
// to, leaving out the descriptor used to list them.
func openFDs() map[int]string {
	fds := map[int]string{}
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return fds
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fds
	}
	self := -1
	if sc, err := d.SyscallConn(); err == nil {
		_ = sc.Control(func(fd uintptr) { self = int(fd) })
	}
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil || fd == self {
			continue
		}
		target, err := os.Readlink("/proc/self/fd/" + n)
		if err != nil {
			continue // closed meanwhile
		}
		fds[fd] = target
	}
	return fds
}

// cookieSems returns the udev cookie semaphores in /proc/sysvipc/sem.
func cookieSems() map[string]bool {
	f, err := os.Open("/proc/sysvipc/sem")
	if err != nil {
		return map[string]bool{}
	}
	defer f.Close()
	return parseCookieSems(f)
}

// parseCookieSems reads /proc/sysvipc/sem ("key semid perms nsems ..."
// with a decimal, possibly negative, key) and returns the semaphores whose
// key has the cookie magic in its top 16 bits, as "0xKEY/semid" strings.
func parseCookieSems(r io.Reader) map[string]bool {
	sems := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		key, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue // the header line
		}
		if uint32(key)>>16 == cookieMagic {
			sems[fmt.Sprintf("0x%08x/%s", uint32(key), fields[1])] = true
		}
	}
	return sems
}

type dmName struct{ name, dev string }

// dmNames lists dm devices from sysfs.
func dmNames() []dmName {
	var out []dmName
	paths, _ := filepath.Glob("/sys/block/dm-*/dm/name")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		out = append(out, dmName{name: strings.TrimSpace(string(b)), dev: filepath.Base(filepath.Dir(filepath.Dir(p)))})
	}
	return out
}

type loopBacking struct{ dev, file string }

// loopBackings lists attached loop devices and their backing files.
func loopBackings() []loopBacking {
	var out []loopBacking
	paths, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		out = append(out, loopBacking{dev: filepath.Base(filepath.Dir(filepath.Dir(p))), file: strings.TrimSpace(string(b))})
	}
	return out
}

// tempDirPattern is the name prefix testing's TempDir gives the directories
// of a test (as testing.(*common).makeTempDir does): the test's name cut to
// 64 bytes, keeping only letters, digits and a few symbols.
func tempDirPattern(name string) string {
	name = name[:min(len(name), 64)]
	const allowed = "!#$%&()+,-.=@^_{}~ "
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsNumber(r) || strings.ContainsRune(allowed, r) {
			return r
		}
		return -1
	}, name)
}

// tempRoot is where testing's TempDir puts test directories.
func tempRoot() string {
	if d := os.Getenv("GOTMPDIR"); d != "" {
		return d
	}
	return os.TempDir()
}
