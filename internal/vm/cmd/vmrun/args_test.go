package main

import (
	"flag"
	"io"
	"reflect"
	"testing"
)

// TestParseInterspersed: flags after the package, as go test users type them.
func TestParseInterspersed(t *testing.T) {
	for _, args := range [][]string{
		{"./thin", "-run", "X", "-udev=false"},
		{"-run", "X", "./thin", "-udev=false"},
		{"-udev=false", "-run", "X", "./thin"},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		run := fs.String("run", "", "")
		udev := fs.String("udev", "both", "")
		pkgs, err := parseInterspersed(fs, args)
		if err != nil || !reflect.DeepEqual(pkgs, []string{"./thin"}) || *run != "X" || *udev != "false" {
			t.Errorf("%q: pkgs %q, run %q, udev %q, %v", args, pkgs, *run, *udev, err)
		}
	}
}
