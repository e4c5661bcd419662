package main

import (
	"fmt"
	"io"

	"github.com/thinp/thinp/dm"
	"regexp"
	"strconv"
	"strings"
)

// selection is a parsed -S/--select: libdevmapper's report selection
// language over the report fields this dmsetup computes. It has
// comparisons of a field with a value (=, !=, =~ and !~ for every field;
// <, <=, > and >= for number fields), combined with && (or ","), || (or
// "#"), "!(...)" and parentheses; && binds tighter than ||. Values are
// quoted with ' or ", or unquoted up to a blank, a parenthesis, "," or "#"
// (or the "&&"/"||" that follows). String lists ([a,b], {a,b}), sizes,
// percentages and times, which no field computed here has, are not
// supported.
type selection struct {
	root selNode
	deps bool // a field needs the device's dependencies
}

// selNode is one node of the selection's tree.
type selNode interface {
	match(d *deviceInfo) bool
}

type selAnd struct{ a, b selNode }
type selOr struct{ a, b selNode }
type selNot struct{ a selNode }

func (n selAnd) match(d *deviceInfo) bool { return n.a.match(d) && n.b.match(d) }
func (n selOr) match(d *deviceInfo) bool  { return n.a.match(d) || n.b.match(d) }
func (n selNot) match(d *deviceInfo) bool { return !n.a.match(d) }

// selCmp compares one field with a value.
type selCmp struct {
	f   *reportField
	op  string
	str string
	num uint64
	re  *regexp.Regexp
}

func (c *selCmp) match(d *deviceInfo) bool {
	v := c.f.value(d)
	switch c.op {
	case "=~":
		return c.re.MatchString(v)
	case "!~":
		return !c.re.MatchString(v)
	}
	if !c.f.number {
		if c.op == "=" {
			return v == c.str
		}
		return v != c.str
	}
	n, _ := strconv.ParseUint(v, 10, 64)
	switch c.op {
	case "=":
		return n == c.num
	case "!=":
		return n != c.num
	case "<":
		return n < c.num
	case "<=":
		return n <= c.num
	case ">":
		return n > c.num
	}
	return n >= c.num
}

func (s *selection) match(d *deviceInfo) bool { return s.root.match(d) }

// selectionError is a selection dmsetup refuses: an optional help text
// (the typed field list or the operator list) and the lines of its
// complaint, printed on stderr without "Command failed.".
type selectionError struct {
	help  string
	lines []string
}

func (e *selectionError) Error() string { return strings.Join(e.lines, "\n") }

// syntaxAt is libdevmapper's complaint about the condition starting at
// rest, after what went wrong.
func syntaxAt(help, what, rest string) error {
	lines := []string{}
	if what != "" {
		lines = append(lines, what)
	}
	lines = append(lines, fmt.Sprintf("Selection syntax error at '%s'.", rest), "Use 'help' for selection to get more help.")
	return &selectionError{help: help, lines: lines}
}

// selParser is a recursive-descent parser over the selection's text.
type selParser struct {
	s    string
	pos  int
	deps bool
}

// parseSelection parses a -S argument.
func parseSelection(s string) (*selection, error) {
	p := &selParser{s: s}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	p.blanks()
	if p.pos < len(p.s) {
		// A ')' without its '('.
		return nil, &selectionError{lines: []string{fmt.Sprintf("Syntax error: unexpected '%s'", p.s[p.pos:])}}
	}
	return &selection{root: n, deps: p.deps}, nil
}

func (p *selParser) blanks() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t' || p.s[p.pos] == '\n') {
		p.pos++
	}
}

// eat consumes tok if it comes next (after blanks).
func (p *selParser) eat(tok string) bool {
	p.blanks()
	if strings.HasPrefix(p.s[p.pos:], tok) {
		p.pos += len(tok)
		return true
	}
	return false
}

func (p *selParser) or() (selNode, error) {
	n, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.eat("||") || p.eat("#") {
		m, err := p.and()
		if err != nil {
			return nil, err
		}
		n = selOr{n, m}
	}
	return n, nil
}

func (p *selParser) and() (selNode, error) {
	n, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.eat("&&") || p.eat(",") {
		m, err := p.unary()
		if err != nil {
			return nil, err
		}
		n = selAnd{n, m}
	}
	return n, nil
}

func (p *selParser) unary() (selNode, error) {
	switch {
	case p.eat("!"):
		if !p.eat("(") {
			return nil, &selectionError{lines: []string{fmt.Sprintf("Syntax error: left parenthesis expected at '%s'", p.s[p.pos:])}}
		}
		n, err := p.group()
		if err != nil {
			return nil, err
		}
		return selNot{n}, nil
	case p.eat("("):
		return p.group()
	}
	return p.cond()
}

// group parses what follows a '(' up to its ')'.
func (p *selParser) group() (selNode, error) {
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if !p.eat(")") {
		return nil, &selectionError{lines: []string{fmt.Sprintf("Syntax error: right parenthesis expected at '%s'", p.s[p.pos:])}}
	}
	return n, nil
}

// selOps are the comparison operators, longest first.
var selOps = []string{"=~", "!~", "!=", ">=", "<=", "=", ">", "<"}

// cond parses "field op value".
func (p *selParser) cond() (selNode, error) {
	p.blanks()
	start := p.pos
	for p.pos < len(p.s) && isFieldChar(p.s[p.pos]) {
		p.pos++
	}
	name := p.s[start:p.pos]
	if name == "" {
		return nil, syntaxAt("", "Expecting field name", p.s[start:])
	}
	f := findField(canonicalField(name))
	if f == nil {
		return nil, syntaxAt(typedFieldHelp(), "Unrecognised selection field: "+name, p.s[start:])
	}
	p.deps = p.deps || depsFields[f.id]
	p.blanks()
	op := ""
	for _, o := range selOps {
		if strings.HasPrefix(p.s[p.pos:], o) {
			op = o
			break
		}
	}
	if op == "" {
		return nil, syntaxAt(selectionOpsHelp, "Unrecognised comparison operator: "+p.s[p.pos:], p.s[start:])
	}
	p.pos += len(op)
	isRegex := op == "=~" || op == "!~"
	if !f.number && !isRegex && op != "=" && op != "!=" {
		return nil, syntaxAt(selectionOpsHelp, "Operator can be used only with number, size, time or percent fields: "+p.s[start:], p.s[start:])
	}
	p.blanks()
	if p.pos < len(p.s) && (p.s[p.pos] == '[' || p.s[p.pos] == '{') {
		return nil, syntaxAt("", "String lists are not supported by thinp's dmsetup.", p.s[start:])
	}
	val, quoted, err := p.value()
	if err != nil {
		return nil, syntaxAt("", err.Error(), p.s[start:])
	}
	c := &selCmp{f: f, op: op, str: val}
	switch {
	case isRegex:
		if val == "" && !quoted {
			return nil, syntaxAt("", "Regular expression expected for selection field "+f.id, p.s[start:])
		}
		if c.re, err = regexp.Compile(val); err != nil {
			return nil, syntaxAt("", "Failed to parse regex value for selection field "+f.id+".", p.s[start:])
		}
	case f.number:
		n, err := strconv.ParseUint(val, 10, 64)
		if err != nil {
			return nil, syntaxAt("", "Failed to parse numeric value for selection field "+f.id+".", p.s[start:])
		}
		c.num = n
	}
	return c, nil
}

func isFieldChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// value reads a quoted or unquoted value.
func (p *selParser) value() (v string, quoted bool, err error) {
	if p.pos < len(p.s) && (p.s[p.pos] == '\'' || p.s[p.pos] == '"') {
		q := p.s[p.pos]
		end := strings.IndexByte(p.s[p.pos+1:], q)
		if end < 0 {
			return "", true, fmt.Errorf("Missing end quote.")
		}
		v = p.s[p.pos+1 : p.pos+1+end]
		p.pos += end + 2
		return v, true, nil
	}
	start := p.pos
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		if c == ' ' || c == '\t' || c == '\n' || c == '(' || c == ')' || c == ',' || c == '#' ||
			strings.HasPrefix(p.s[p.pos:], "&&") || strings.HasPrefix(p.s[p.pos:], "||") {
			break
		}
		p.pos++
	}
	return p.s[start:p.pos], false, nil
}

// selectionTypes are the types dmsetup's selection help gives the fields
// that are not numbers.
var selectionTypes = map[string]string{
	"name": "string", "mangled_name": "string", "unmangled_name": "string", "uuid": "string",
	"mangled_uuid": "string", "unmangled_uuid": "string", "blkdevname": "string", "attr": "string",
	"tables_loaded": "string", "suspended": "string", "readonly": "string", "devno": "string",
	"devs_used": "string", "devnos_used": "string", "blkdevs_used": "string", "names_using_dev": "string",
	"devnos_using_dev": "string", "subsystem": "string", "vg_name": "string", "lv_name": "string",
	"lv_layer": "string", "hist_count": "string", "hist_count_bounds": "string", "hist_count_ranges": "string",
	"hist_percent": "string", "hist_percent_bounds": "string", "hist_percent_ranges": "string",
	"program_id": "string", "user_data": "string", "precise": "string", "hist_bins": "string",
	"hist_bounds": "string", "hist_ranges": "string", "stats_name": "string", "obj_type": "string",
	"region_start": "size", "region_len": "size", "area_start": "size", "area_len": "size", "area_offset": "size",
	"help": "unselectable number", "?": "unselectable number",
}

// typedFieldHelp is the field list as dmsetup prints it for a selection
// naming an unknown field: the report's list without the "<type>_all"
// groups, each field followed by its type.
func typedFieldHelp() string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(fieldHelpText, "\n") {
		id, _, ok := strings.Cut(strings.TrimPrefix(l, "  "), " ")
		if !ok || !strings.HasPrefix(l, "  ") || !strings.Contains(l, " - ") {
			b.WriteString(l)
			continue
		}
		if strings.HasSuffix(id, "_all") {
			continue
		}
		t := selectionTypes[id]
		if t == "" {
			t = "number"
		}
		b.WriteString(strings.TrimSuffix(l, "\n") + " [" + t + "]\n")
	}
	return b.String()
}

// selectionOpsHelp is dmsetup's list of the selection operands and
// operators, printed with some syntax errors.
const selectionOpsHelp = `Selection operands
------------------
  field               - Reporting field.
  number              - Non-negative integer value.
  size                - Floating point value with units, 'm' unit used by default if not specified.
  percent             - Non-negative integer with or without % suffix.
  string              - Characters quoted by ' or " or unquoted.
  string list         - Strings enclosed by [ ] or { } and elements delimited by either
                        "all items must match" or "at least one item must match" operator.
  regular expression  - Characters quoted by ' or " or unquoted.
 
Selection operators
-------------------
  Comparison operators:
        =~  - Matching regular expression. [regex]
        !~  - Not matching regular expression. [regex]
         =  - Equal to. [number, size, percent, string, string list, time]
        !=  - Not equal to. [number, size, percent, string, string_list, time]
        >=  - Greater than or equal to. [number, size, percent, time]
         >  - Greater than. [number, size, percent, time]
        <=  - Less than or equal to. [number, size, percent, time]
         <  - Less than. [number, size, percent, time]
     since  - Since specified time (same as '>='). [time]
     after  - After specified time (same as '>'). [time]
     until  - Until specified time (same as '<='). [time]
    before  - Before specified time (same as '<'). [time]
 
  Logical and grouping operators:
      &&  - All fields must match
       ,  - All fields must match
      ||  - At least one field must match
       #  - At least one field must match
       !  - Logical negation
       (  - Left parenthesis
       )  - Right parenthesis
       [  - List start
       ]  - List end
       {  - List subset start
       }  - List subset end
 
`

// selection parses -S once per run, or returns nil without it.
func (a *app) selection() (*selection, error) {
	if !a.opts.hasSel {
		return nil, nil
	}
	return parseSelection(a.opts.sel)
}

// passes says whether the device ref passes the selection sel (every
// device passes a nil one).
func (a *app) passes(ctl *dm.Control, sel *selection, ref dm.Ref) (bool, error) {
	if sel == nil {
		return true, nil
	}
	d, err := a.gatherInfo(ctl, ref, true)
	if err != nil {
		return false, err
	}
	if sel.deps {
		a.fillDeps(ctl, &d)
	}
	return sel.match(&d), nil
}

// tableConcise prints `table --concise`: every device (or those named) as
// "name,uuid,minor,ro|rw,table line[,table line...]", the devices joined
// by ';' on one line, with ',', ';' and '\' escaped by '\' inside each
// part: the format `create --concise` reads.
func (a *app) tableConcise(args []string) error {
	ctl, err := a.control()
	if err != nil {
		return err
	}
	ts, _, all, none, err := a.reportTargets(ctl, args)
	if err != nil {
		return err
	}
	if none {
		io.WriteString(a.stdout, "No devices found\n")
		return nil
	}
	var devs []string
	err = a.forTargets(ts, all, func(t target) error {
		// The table first, as dmsetup: its failure is the one shown.
		table, err := ctl.Table(a.ctx, t.ref, a.inactiveFlags()...)
		if err != nil {
			return err
		}
		info, err := ctl.Info(a.ctx, t.ref, a.inactiveFlags()...)
		if err != nil {
			return notExist(err)
		}
		parts := []string{concise(info.Name), concise(info.UUID), strconv.FormatUint(uint64(info.Dev.Minor), 10), "rw"}
		if info.ReadOnly {
			parts[3] = "ro"
		}
		for _, tg := range table {
			parts = append(parts, concise(fmt.Sprintf("%d %d %s %s", tg.Start, tg.Length, tg.Type, tg.Params)))
		}
		devs = append(devs, strings.Join(parts, ","))
		return nil
	})
	if len(devs) > 0 {
		io.WriteString(a.stdout, strings.Join(devs, ";")+"\n")
	}
	return err
}

// concise escapes a part of a concise device specification.
func concise(s string) string {
	if !strings.ContainsAny(s, `,;\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == ',' || s[i] == ';' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
