package udev

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestFlagValues pins every flag to its value in libdm/libdevmapper.h.
func TestFlagValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  Flags
		want uint16
	}{
		{"DM_UDEV_DISABLE_DM_RULES_FLAG", DisableDMRules, 0x0001},
		{"DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG", DisableSubsystemRules, 0x0002},
		{"DM_UDEV_DISABLE_DISK_RULES_FLAG", DisableDiskRules, 0x0004},
		{"DM_UDEV_DISABLE_OTHER_RULES_FLAG", DisableOtherRules, 0x0008},
		{"DM_UDEV_LOW_PRIORITY_FLAG", LowPriority, 0x0010},
		{"DM_UDEV_DISABLE_LIBRARY_FALLBACK", DisableLibraryFallback, 0x0020},
		{"DM_UDEV_PRIMARY_SOURCE_FLAG", PrimarySource, 0x0040},
		{"DM_SUBSYSTEM_UDEV_FLAG0", SubsystemFlag0, 0x0100},
		{"DM_SUBSYSTEM_UDEV_FLAG1", SubsystemFlag1, 0x0200},
		{"DM_SUBSYSTEM_UDEV_FLAG2", SubsystemFlag2, 0x0400},
		{"DM_SUBSYSTEM_UDEV_FLAG3", SubsystemFlag3, 0x0800},
		{"DM_SUBSYSTEM_UDEV_FLAG4", SubsystemFlag4, 0x1000},
		{"DM_SUBSYSTEM_UDEV_FLAG5", SubsystemFlag5, 0x2000},
		{"DM_SUBSYSTEM_UDEV_FLAG6", SubsystemFlag6, 0x4000},
		{"DM_SUBSYSTEM_UDEV_FLAG7", SubsystemFlag7, 0x8000},
		{"DM_COOKIE_MAGIC", CookieMagic, 0x0D4D},
		{"libdm: flags without a cookie", FallbackFlags, 0x0003},
	} {
		if uint16(tc.got) != tc.want {
			t.Errorf("%s = %#04x, want %#04x", tc.name, uint16(tc.got), tc.want)
		}
	}
}

func TestFlagsString(t *testing.T) {
	for _, tc := range []struct {
		f    Flags
		want string
	}{
		{0, "0"},
		{PrimarySource, "PRIMARY_SOURCE"},
		{DisableDMRules | DisableSubsystemRules | PrimarySource, "DISABLE_DM_RULES|DISABLE_SUBSYSTEM_RULES|PRIMARY_SOURCE"},
		{DisableDiskRules | DisableOtherRules | LowPriority | DisableLibraryFallback, "DISABLE_DISK_RULES|DISABLE_OTHER_RULES|LOW_PRIORITY|DISABLE_LIBRARY_FALLBACK"},
		{0x0080, "FLAG7"},
		{SubsystemFlag0 | SubsystemFlag7, "SUBSYSTEM_FLAG0|SUBSYSTEM_FLAG7"},
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("Flags(%#04x).String() = %q, want %q", uint16(tc.f), got, tc.want)
		}
	}
}

// TestFlagsEnv compares with what `dmsetup udevflags 0x0143000a` prints
// (libdm/dm-tools/dmsetup.c _udevflags): DISABLE_DM_RULES, DISABLE_SUBSYSTEM_RULES,
// PRIMARY_SOURCE and subsystem flag 0 of an LVM resume.
func TestFlagsEnv(t *testing.T) {
	f, base := SplitEventNr(0x0143000a)
	if base != 0x000a {
		t.Errorf("base = %#x, want 0xa", base)
	}
	want := []string{
		"DM_UDEV_DISABLE_DM_RULES_FLAG='1'",
		"DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG='1'",
		"DM_UDEV_PRIMARY_SOURCE_FLAG='1'",
		"DM_SUBSYSTEM_UDEV_FLAG0='1'",
	}
	if diff := cmp.Diff(want, f.Env()); diff != "" {
		t.Errorf("Env() mismatch (-want +got):\n%s", diff)
	}
	if got := Flags(0x0080).Env(); len(got) != 1 || got[0] != "DM_UDEV_FLAG7='1'" {
		t.Errorf("bit 7: %q", got)
	}
}

// TestParseFlagsRoundTrip checks all 65536 values.
func TestParseFlagsRoundTrip(t *testing.T) {
	for v := 0; v <= 0xffff; v++ {
		f := Flags(v)
		got, err := ParseFlags(f.String())
		if err != nil || got != f {
			t.Fatalf("ParseFlags(%q) = %#x, %v; want %#x", f.String(), got, err, v)
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Flags
	}{
		{"0x41", DisableDMRules | PrimarySource},
		{"65", DisableDMRules | PrimarySource},
		{"dm_udev_disable_dm_rules_flag | DM_UDEV_PRIMARY_SOURCE_FLAG", DisableDMRules | PrimarySource},
		{"DM_SUBSYSTEM_UDEV_FLAG3", SubsystemFlag3},
		{"SUBSYSTEM_FLAG3_FLAG", SubsystemFlag3},
		{"DM_UDEV_DISABLE_LIBRARY_FALLBACK", DisableLibraryFallback},
	} {
		got, err := ParseFlags(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseFlags(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "NOPE", "PRIMARY_SOURCE|", "0x10000", "SUBSYSTEM_FLAG8"} {
		if f, err := ParseFlags(bad); err == nil {
			t.Errorf("ParseFlags(%q) = %v, want an error", bad, f)
		}
	}
}

func TestEventNr(t *testing.T) {
	c := &Cookie{key: 0x0D4D1234}
	for _, tc := range []struct {
		f    Flags
		want uint32
	}{
		// PRIMARY_SOURCE is always added, as libdm's _dm_task_build_dmi does.
		{0, 0x00401234},
		{DisableLibraryFallback, 0x00601234},
		{DisableDMRules | SubsystemFlag0, 0x01411234},
		{PrimarySource, 0x00401234},
	} {
		if got := c.EventNr(tc.f); got != tc.want {
			t.Errorf("EventNr(%v) = %#08x, want %#08x", tc.f, got, tc.want)
		}
		f, base := SplitEventNr(c.EventNr(tc.f))
		if f != tc.f|PrimarySource || base != 0x1234 {
			t.Errorf("SplitEventNr(EventNr(%v)) = %v, %#x", tc.f, f, base)
		}
	}
	if got := EventNrWithoutCookie(FallbackFlags); got != 0x00430000 {
		t.Errorf("EventNrWithoutCookie(FallbackFlags) = %#08x, want 0x00430000", got)
	}
}

// TestCookieKey checks what `dmsetup udevcomplete` does to DM_COOKIE: strip
// the flags, put the magic back; a zero base carries flags only.
func TestCookieKey(t *testing.T) {
	for _, tc := range []struct {
		in   uint32
		want uint32
		ok   bool
	}{
		{0x00401234, 0x0D4D1234, true},
		{0x0D4D1234, 0x0D4D1234, true},
		{0xffff0001, 0x0D4D0001, true},
		{0x00430000, 0, false},
		{0, 0, false},
	} {
		got, ok := cookieKey(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("cookieKey(%#08x) = %#08x, %v; want %#08x, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseFlags(f *testing.F) {
	for _, s := range []string{"0", "PRIMARY_SOURCE", "0x41", "DISABLE_DM_RULES|SUBSYSTEM_FLAG7", "dm_subsystem_udev_flag1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fl, err := ParseFlags(s)
		if err != nil {
			return
		}
		// Whatever parses prints as something that parses to the same.
		again, err := ParseFlags(fl.String())
		if err != nil || again != fl {
			t.Fatalf("ParseFlags(%q) = %v, but ParseFlags(%q) = %v, %v", s, fl, fl.String(), again, err)
		}
		if fl != 0 && strings.Count(fl.String(), "|")+1 != len(fl.Env()) {
			t.Fatalf("String %q and Env %q disagree", fl.String(), fl.Env())
		}
	})
}
