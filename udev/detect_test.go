package udev

import (
	"strings"
	"testing"
)

func TestParseNotifyRun(t *testing.T) {
	for _, tc := range []struct {
		line string
		prog string // "" when the line is not the notify rule
	}{
		{`ENV{DM_COOKIE}=="?*", RUN+="/sbin/dmsetup udevcomplete $env{DM_COOKIE}"`, "/sbin/dmsetup"},
		{`ENV{DM_COOKIE}=="?*", RUN+="(DM_EXEC)/dmsetup udevcomplete $env{DM_COOKIE}"`, "(DM_EXEC)/dmsetup"},
		{`RUN{program}+="/usr/sbin/dmsetup udevcomplete $env{DM_COOKIE}"`, "/usr/sbin/dmsetup"},
		{`RUN = "/usr/sbin/dmsetup  udevcomplete   $env{DM_COOKIE}"`, "/usr/sbin/dmsetup"},
		{`RUN:="dmsetup udevcomplete $env{DM_COOKIE}"`, "dmsetup"},
		{`RUN+="/bin/true", RUN+="/sbin/dmsetup udevcomplete $env{DM_COOKIE}"`, "/sbin/dmsetup"},
		{`RUN{builtin}+="/sbin/dmsetup udevcomplete $env{DM_COOKIE}"`, ""},
		{`RUN=="/sbin/dmsetup udevcomplete $env{DM_COOKIE}"`, ""},
		{`ENV{DM_COOKIE}=="?*", RUN+="/sbin/dmsetup udevflags $env{DM_COOKIE}"`, ""},
		{`ENV{DM_COOKIE}=="?*", RUN+="/sbin/dmsetup udevcomplete"`, ""},
		{`IMPORT{program}="/sbin/dmsetup udevcomplete $env{DM_COOKIE}"`, ""},
		{`RUN+="/sbin/dmsetup udevcomplete $env{DM_COOKIE}`, ""},
		{`RUN{program`, ""},
		{`RUN`, ""},
		{``, ""},
	} {
		prog, ok := parseNotifyRun(tc.line)
		if prog != tc.prog || ok != (tc.prog != "") {
			t.Errorf("parseNotifyRun(%q) = %q, %v; want %q", tc.line, prog, ok, tc.prog)
		}
	}
}

func FuzzParseNotifyRun(f *testing.F) {
	f.Add(`ENV{DM_COOKIE}=="?*", RUN+="/sbin/dmsetup udevcomplete $env{DM_COOKIE}"`)
	f.Add(`RUN{program}+="x udevcomplete $env{DM_COOKIE}" RUN{`)
	f.Add(`RUN="a" RUN+="b udevcomplete $env{DM_COOKIE}"`)
	f.Fuzz(func(t *testing.T, line string) {
		prog, ok := parseNotifyRun(line)
		if !ok {
			if prog != "" {
				t.Fatalf("not found, but program %q", prog)
			}
			return
		}
		if prog == "" || strings.ContainsAny(prog, " \t\"") || !strings.Contains(line, prog) {
			t.Fatalf("parseNotifyRun(%q) = %q", line, prog)
		}
	})
}
