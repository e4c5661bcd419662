package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/udev"
)

// The functions in this file turn what the kernel reported into the exact
// text dmsetup 1.02.185 prints. They do no I/O other than writing to w, so
// they are tested on machines without device-mapper.

// nameMode says how ls and deps show a device: by number (the default),
// by its device-mapper name, or by its kernel block device name ("dm-0").
type nameMode int

const (
	nameDevNo  nameMode = iota // "(253:0)"
	nameMapper                 // "(vol)"
	nameBlkDev                 // "(dm-0)"
)

// parseNameMode parses the -o argument of ls and deps: each word may be a
// prefix of its option, as in dmsetup.
func parseNameMode(s string) (nameMode, error) {
	mode := nameDevNo
	for _, w := range strings.Split(s, ",") {
		switch {
		case strings.HasPrefix("devno", w):
			mode = nameDevNo
		case strings.HasPrefix("blkdevname", w):
			mode = nameBlkDev
		case strings.HasPrefix("devname", w):
			mode = nameMapper
		default:
			// dmsetup names the rest of the list, from the bad word on.
			return 0, libdmf("Option not recognised: %s.", s[strings.Index(s, w):])
		}
	}
	return mode, nil
}

// devNamer names a device number for nameMapper and nameBlkDev; it returns
// false when the name cannot be found, and the number is shown instead.
type devNamer func(d dm.Dev, mode nameMode) (string, bool)

// writeLs prints `dmsetup ls`: one "name<TAB>(major:minor)" line a device,
// in the order given (the kernel's), or "No devices found".
func writeLs(w io.Writer, devs []dm.Device, mode nameMode, namer devNamer) {
	if len(devs) == 0 {
		io.WriteString(w, "No devices found\n")
		return
	}
	for _, d := range devs {
		if mode != nameDevNo && namer != nil {
			if s, ok := namer(d.Dev, mode); ok {
				fmt.Fprintf(w, "%s\t(%s)\n", d.Name, s)
				continue
			}
		}
		fmt.Fprintf(w, "%s\t(%d:%d)\n", d.Name, d.Dev.Major, d.Dev.Minor)
	}
}

// writeLsTarget prints one line of `dmsetup ls --target <type>`, which uses
// an older format: "name<TAB>(major, minor)".
func writeLsTarget(w io.Writer, name string, d dm.Dev) {
	fmt.Fprintf(w, "%s\t(%d, %d)\n", name, d.Major, d.Minor)
}

// deviceInfo is what `dmsetup info` shows of one device.
type deviceInfo struct {
	dm.Info
	// ReadAhead is the read-ahead in sectors; HasReadAhead is false when it
	// could not be read, and the line is left out, as dmsetup does.
	ReadAhead    uint32
	HasReadAhead bool
	// BlkDevName is the kernel's name of the block device, "dm-0".
	BlkDevName string
	// Deps are the devices the table uses, with their mapped-device names
	// (DepNames, for those that are mapped devices) and kernel names.
	Deps        []dm.Dev
	DepNames    []string
	DepBlkNames []string
	// Split is the name split into its LVM parts.
	Split splitName
}

// writeInfo prints the default, multi-line `dmsetup info` block of one
// device, followed by an empty line.
func writeInfo(w io.Writer, d deviceInfo) {
	var b strings.Builder
	fmt.Fprintf(&b, "Name:              %s\n", d.Name)
	state := "ACTIVE"
	if d.Suspended {
		state = "SUSPENDED"
	}
	if d.ReadOnly {
		state += " (READ-ONLY)"
	}
	if d.DeferredRemove {
		state += " (DEFERRED REMOVE)"
	}
	fmt.Fprintf(&b, "State:             %s\n", state)
	if d.HasReadAhead {
		fmt.Fprintf(&b, "Read Ahead:        %d\n", d.ReadAhead)
	}
	switch {
	case d.LivePresent && d.InactivePresent:
		b.WriteString("Tables present:    LIVE & INACTIVE\n")
	case d.LivePresent:
		b.WriteString("Tables present:    LIVE\n")
	case d.InactivePresent:
		b.WriteString("Tables present:    INACTIVE\n")
	default:
		b.WriteString("Tables present:    None\n")
	}
	fmt.Fprintf(&b, "Open count:        %d\n", d.OpenCount)
	fmt.Fprintf(&b, "Event number:      %d\n", d.EventNr)
	fmt.Fprintf(&b, "Major, minor:      %d, %d\n", d.Dev.Major, d.Dev.Minor)
	fmt.Fprintf(&b, "Number of targets: %d\n", d.TargetCount)
	if d.UUID != "" {
		fmt.Fprintf(&b, "UUID: %s\n", d.UUID)
	}
	b.WriteByte('\n')
	io.WriteString(w, b.String())
}

// targetLine is one line of a table or of a status: the target's sectors,
// its type, and its parameters (table) or status text (status).
type targetLine struct {
	Start, Length dm.Sectors
	Type          string
	Params        string
}

// tableLines converts a table for writeTargets.
func tableLines(t dm.Table) []targetLine {
	out := make([]targetLine, len(t))
	for i, tg := range t {
		out[i] = targetLine{tg.Start, tg.Length, tg.Type, tg.Params}
	}
	return out
}

// statusLines converts a status for writeTargets.
func statusLines(st []dm.TargetStatus) []targetLine {
	out := make([]targetLine, len(st))
	for i, s := range st {
		out[i] = targetLine{s.Start, s.Length, s.Type, s.Status}
	}
	return out
}

// targetsOutput says how writeTargets prints a device's lines.
type targetsOutput struct {
	// Prefix is printed before every line: "name: " when several devices
	// are shown, "" for one.
	Prefix string
	// Target, if not empty, shows only targets of that type.
	Target string
	// HideKeys replaces secret keys of crypt and integrity targets with
	// zeros (table without --showkeys).
	HideKeys bool
}

// writeTargets prints a device's table or status lines the way `dmsetup
// table` and `dmsetup status` do: "start length type params", with a space
// after the type even when there are no parameters. A device without a
// table prints an empty line (after the prefix), unless a target type is
// being filtered on. It reports whether anything matched.
func writeTargets(w io.Writer, lines []targetLine, o targetsOutput) bool {
	if len(lines) == 0 {
		if o.Target != "" {
			return false
		}
		io.WriteString(w, o.Prefix+"\n")
		return true
	}
	matched := false
	for _, l := range lines {
		if o.Target != "" && l.Type != o.Target {
			continue
		}
		matched = true
		params := l.Params
		if o.HideKeys {
			params = hideKeys(l.Type, params)
		}
		fmt.Fprintf(w, "%s%d %d %s %s\n", o.Prefix, l.Start, l.Length, l.Type, params)
	}
	return matched
}

// hideKeys replaces the secrets in a crypt or integrity table line with
// zeros, as dmsetup table does unless --showkeys: the crypt key (the second
// parameter, unless it is a ":keyring" reference) and the hexadecimal keys
// of integrity's internal_hash, journal_crypt and journal_mac.
func hideKeys(typ, params string) string {
	switch typ {
	case "crypt":
		i := strings.IndexByte(params, ' ')
		if i < 0 {
			return params
		}
		key := params[i+1:]
		if strings.HasPrefix(key, ":") {
			return params
		}
		n := strings.IndexByte(key, ' ')
		if n < 0 {
			n = len(key)
		}
		return params[:i+1] + strings.Repeat("0", n) + key[n:]
	case "integrity":
		for _, name := range []string{"internal_hash:", "journal_crypt:", "journal_mac:"} {
			params = zeroKeyAfter(params, name)
		}
	}
	return params
}

// zeroKeyAfter zeroes the key in "<name><alg>:<key>" at the first
// occurrence of name in params; "<name><alg>" without a key is kept.
func zeroKeyAfter(params, name string) string {
	i := strings.Index(params, name)
	if i < 0 {
		return params
	}
	rest := i + len(name)
	j := strings.IndexAny(params[rest:], " :")
	if j < 0 || params[rest+j] != ':' {
		return params
	}
	start := rest + j + 1
	end := strings.IndexByte(params[start:], ' ')
	if end < 0 {
		end = len(params) - start
	}
	return params[:start] + strings.Repeat("0", end) + params[start+end:]
}

// writeDeps prints `dmsetup deps` for one device:
// "N dependencies<TAB>: (major, minor) ...".
func writeDeps(w io.Writer, prefix string, deps []dm.Dev, mode nameMode, namer devNamer) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s%d dependencies\t:", prefix, len(deps))
	for _, d := range deps {
		if mode != nameDevNo && namer != nil {
			if s, ok := namer(d, mode); ok {
				fmt.Fprintf(&b, " (%s)", s)
				continue
			}
		}
		fmt.Fprintf(&b, " (%d, %d)", d.Major, d.Minor)
	}
	b.WriteByte('\n')
	io.WriteString(w, b.String())
}

// writeTargetVersion prints one line of `dmsetup targets` or
// `dmsetup target-version`: the name padded to 16 columns and "vX.Y.Z".
func writeTargetVersion(w io.Writer, name string, v dm.Version) {
	fmt.Fprintf(w, "%-16s v%d.%d.%d\n", name, v[0], v[1], v[2])
}

// writeMessageResponse prints a target's answer to a message: as is if it
// is empty or ends in a newline, else with a newline added.
func writeMessageResponse(w io.Writer, resp string) {
	if resp == "" || strings.HasSuffix(resp, "\n") {
		io.WriteString(w, resp)
		return
	}
	io.WriteString(w, resp+"\n")
}

// ctimeLayout is the layout of C's ctime(3), without its newline.
const ctimeLayout = "Mon Jan _2 15:04:05 2006"

// writeCookies prints `dmsetup udevcookies`: a header and one line a
// cookie, its times in ctime(3) form in loc. Cookies whose value could not
// be read (Value < 0) are left out, as dmsetup does.
func writeCookies(w io.Writer, cookies []udev.CookieInfo, loc *time.Location) {
	var b strings.Builder
	b.WriteString("Cookie       Semid      Value      Last semop time           Last change time\n")
	ctime := func(t time.Time) string {
		if t.IsZero() {
			t = time.Unix(0, 0)
		}
		return t.In(loc).Format(ctimeLayout)
	}
	for _, c := range cookies {
		if c.Value < 0 {
			continue
		}
		fmt.Fprintf(&b, "0x%-10x %-10d %-10d %s  %s\n", c.Cookie, c.SemID, c.Value, ctime(c.LastOp), ctime(c.LastChange))
	}
	io.WriteString(w, b.String())
}

// parseCookie parses a cookie argument as C's strtoul with base 0 does
// (decimal, 0x hexadecimal or 0 octal); zero is refused, as by dmsetup.
func parseCookie(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("incorrect cookie value %q", s)
	}
	return uint32(v), nil
}

// writeUdevFlags prints `dmsetup udevflags <cookie>`: one NAME='1' line
// for each udev flag in the cookie's upper 16 bits, which lvm2's udev
// rules import.
func writeUdevFlags(w io.Writer, cookie uint32) {
	f, _ := udev.SplitEventNr(cookie)
	for _, l := range f.Env() {
		io.WriteString(w, l+"\n")
	}
}

// completedLine is the line `dmsetup udevcomplete` prints, with C's
// "%-10x" padding.
func completedLine(cookie uint32) string {
	return fmt.Sprintf("DM_COOKIE_COMPLETED=0x%-10x\n", cookie)
}

// completeAllSummary is what `dmsetup udevcomplete_all` prints at the end.
func completeAllSummary(destroyed, skipped int) string {
	return fmt.Sprintf("%d semaphores with keys prefixed by %d (0x%x) destroyed. %d skipped.\n",
		destroyed, udev.CookieMagic, udev.CookieMagic, skipped)
}

// completeAllWarning is the warning udevcomplete_all prints before asking.
func completeAllWarning(ageMinutes uint64) string {
	age := ""
	if ageMinutes > 0 {
		age = fmt.Sprintf("older than %d minutes ", ageMinutes)
	}
	return fmt.Sprintf("WARNING: This operation will destroy all semaphores %swith keys that have a prefix %d (0x%x).\n",
		age, udev.CookieMagic, udev.CookieMagic)
}
