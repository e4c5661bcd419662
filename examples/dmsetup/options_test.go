package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		args     []string
		want     func(o *options) bool
		operands []string
	}{
		{[]string{"create", "vol", "--table", "0 1 zero", "-u", "U"},
			func(o *options) bool { return o.hasTable && o.table == "0 1 zero" && o.uuid == "U" },
			[]string{"create", "vol"}},
		{[]string{"--table=0 1 zero", "create", "vol"},
			func(o *options) bool { return o.table == "0 1 zero" }, []string{"create", "vol"}},
		{[]string{"info", "-cvv", "-oname,uuid", "a"},
			func(o *options) bool { return o.columns && o.verbose == 2 && o.fields == "name,uuid" }, []string{"info", "a"}},
		{[]string{"info", "-C", "-o", "name", "--noh", "--sep", ":"},
			func(o *options) bool { return o.columns && o.noHeadings && o.separator == ":" }, []string{"info"}},
		{[]string{"suspend", "--noflush", "--nolockfs", "a", "b"},
			func(o *options) bool { return o.noFlush && o.noLockfs }, []string{"suspend", "a", "b"}},
		{[]string{"remove", "--retry", "--deferred", "-f", "a"},
			func(o *options) bool { return o.retry && o.deferred && o.force }, []string{"remove", "a"}},
		{[]string{"rename", "a", "--setuuid", "U"},
			func(o *options) bool { return o.setUUID }, []string{"rename", "a", "U"}},
		{[]string{"message", "a", "0", "--", "-x", "--y"},
			func(o *options) bool { return true }, []string{"message", "a", "0", "-x", "--y"}},
		{[]string{"create", "-j", "253", "-m4", "-n", "-r", "x"},
			func(o *options) bool { return o.major == "253" && o.minor == "4" && o.noTable && o.readOnly }, []string{"create", "x"}},
		{[]string{"--noudevsync", "-y", "udevcomplete_all", "-"},
			func(o *options) bool { return o.noUdevSync && o.yes }, []string{"udevcomplete_all", "-"}},
	}
	for _, tt := range tests {
		o, ops, err := parseArgs(tt.args)
		if err != nil {
			t.Errorf("%q: %v", tt.args, err)
			continue
		}
		if !tt.want(&o) {
			t.Errorf("%q: options %+v", tt.args, o)
		}
		if !reflect.DeepEqual(ops, tt.operands) {
			t.Errorf("%q: operands %q, want %q", tt.args, ops, tt.operands)
		}
	}
	bad := map[string][]string{
		"unrecognized":    {"--bogus"},
		"ambiguous":       {"--no"},
		"requires an":     {"info", "-o"},
		"invalid option":  {"-Z"},
		"doesn't allow":   {"--noflush=1"},
		"requires an arg": {"--table"},
	}
	for want, args := range bad {
		if _, _, err := parseArgs(args); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", args, err, want)
		}
	}
}
