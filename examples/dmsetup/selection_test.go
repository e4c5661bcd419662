package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/thinp/thinp/dm"
)

// selDevices are the devices of the selection tests, as in the side-by-side
// VM test: a linear device with two targets and a uuid, a read-only zero
// device, a device without a table and a zero device.
var selDevices = []deviceInfo{
	{Info: dm.Info{Name: "plin", UUID: "puuid", Dev: dm.Dev{Major: 254, Minor: 1}, TargetCount: 2, LivePresent: true}, ReadAhead: 256, HasReadAhead: true},
	{Info: dm.Info{Name: "pnotab", Dev: dm.Dev{Major: 254, Minor: 3}}},
	{Info: dm.Info{Name: "pro", Dev: dm.Dev{Major: 254, Minor: 2}, TargetCount: 1, LivePresent: true, ReadOnly: true}, ReadAhead: 256, HasReadAhead: true},
	{Info: dm.Info{Name: "pzero", Dev: dm.Dev{Major: 254, Minor: 0}, TargetCount: 1, LivePresent: true}, ReadAhead: 256, HasReadAhead: true},
}

// TestSelection: the selections real dmsetup 1.02.185 was seen to answer,
// with the devices it chose.
func TestSelection(t *testing.T) {
	for _, tc := range []struct{ sel, want string }{
		{"name=plin", "plin"},
		{"name=~lin", "plin"},
		{"name=~'^p'", "plin pnotab pro pzero"},
		{"minor>0", "plin pnotab pro"},
		{"minor>0 && name!=pzero", "plin pnotab pro"},
		{"name=pzero || name=plin", "plin pzero"},
		{"!(name=pzero)", "plin pnotab pro"},
		{"(name=pzero || name=plin) && segments>1", "plin"},
		{"segments>=2", "plin"},
		{"segments<2", "pnotab pro pzero"},
		{"segments<=1", "pnotab pro pzero"},
		{"attr=~r", "pro"},
		{"uuid=puuid", "plin"},
		{"open=0", "plin pnotab pro pzero"},
		{"name!~lin", "pnotab pro pzero"},
		{"name = plin", "plin"},
		{`name="plin"`, "plin"},
		{"suspended=Active", "plin pnotab pro pzero"},
		{"readonly=Read-only", "pro"},
		{"tables_loaded=None", "pnotab"},
		{"major=254 && minor=1", "plin"},
		{"devno=254:1", "plin"},
		{"events>=0", "plin pnotab pro pzero"},
		{"read_ahead>0", "plin pro pzero"},
		{"NAME=plin", "plin"},
		{"name==plin", ""},
		{`uuid=""`, "pnotab pro pzero"},
		{"uuid=''", "pnotab pro pzero"},
		{"name=plin,name=pzero", ""},
		{"name=plin#name=pzero", "plin pzero"},
		{"name=pro || name=plin && minor=3", "pro"}, // && binds tighter
		{"!(!(name=pro))", "pro"},
	} {
		s, err := parseSelection(tc.sel)
		if err != nil {
			t.Errorf("%q: %v", tc.sel, err)
			continue
		}
		var got []string
		for i := range selDevices {
			if s.match(&selDevices[i]) {
				got = append(got, selDevices[i].Name)
			}
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%q selects %q, want %q", tc.sel, strings.Join(got, " "), tc.want)
		}
	}
}

// TestSelectionErrors: dmsetup's complaints, and which help comes first.
func TestSelectionErrors(t *testing.T) {
	for _, tc := range []struct {
		sel, help, msg string
	}{
		{"bogus=1", "Mapped Device Name Fields", "Unrecognised selection field: bogus\nSelection syntax error at 'bogus=1'.\nUse 'help' for selection to get more help."},
		{"name", "Selection operands", "Unrecognised comparison operator: \nSelection syntax error at 'name'.\nUse 'help' for selection to get more help."},
		{"name=plin &&", "", "Expecting field name\nSelection syntax error at ''.\nUse 'help' for selection to get more help."},
		{"minor>x", "", "Failed to parse numeric value for selection field minor.\nSelection syntax error at 'minor>x'.\nUse 'help' for selection to get more help."},
		{"name>a", "Selection operands", "Operator can be used only with number, size, time or percent fields: name>a\nSelection syntax error at 'name>a'.\nUse 'help' for selection to get more help."},
		{"(name=plin", "", "Syntax error: right parenthesis expected at ''"},
		{"name=~lin && !attr=~r", "", "Syntax error: left parenthesis expected at 'attr=~r'"},
		{"name=~", "", "Regular expression expected for selection field name\nSelection syntax error at 'name=~'.\nUse 'help' for selection to get more help."},
		{"name=plin && bogus=1", "Mapped Device Name Fields", "Unrecognised selection field: bogus\nSelection syntax error at 'bogus=1'.\nUse 'help' for selection to get more help."},
		{"name='plin", "", "Missing end quote.\nSelection syntax error at 'name='plin'.\nUse 'help' for selection to get more help."},
	} {
		_, err := parseSelection(tc.sel)
		var se *selectionError
		if !errors.As(err, &se) {
			t.Errorf("%q: %v, want a selection error", tc.sel, err)
			continue
		}
		if se.Error() != tc.msg || !strings.HasPrefix(se.help, tc.help) || (tc.help == "") != (se.help == "") {
			t.Errorf("%q: help %.30q, message:\n%s\nwant help %q, message:\n%s", tc.sel, se.help, se.Error(), tc.help, tc.msg)
		}
	}
}

func TestTypedFieldHelp(t *testing.T) {
	h := typedFieldHelp()
	for _, want := range []string{
		"  name                  - Name of mapped device. [string]\n",
		"  read_ahead            - Read ahead value. [number]\n",
		"  region_start          - Region start. [size]\n",
		"  ?                     - Show help. [unselectable number]\n \n",
	} {
		if !strings.Contains(h, want) {
			t.Errorf("typed help lacks %q", want)
		}
	}
	if strings.Contains(h, "_all") {
		t.Error("typed help lists the _all groups")
	}
}

func TestConciseEscape(t *testing.T) {
	if got := concise(`a,b;c\d`); got != `a\,b\;c\\d` {
		t.Errorf("concise = %q", got)
	}
	if got := concise("0 8 zero "); got != "0 8 zero " {
		t.Errorf("concise = %q", got)
	}
}
