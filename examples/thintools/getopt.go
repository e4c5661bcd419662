package main

import (
	"fmt"
	"strings"
)

// argKind says whether an option takes an argument, as getopt_long's
// no_argument, required_argument and optional_argument.
type argKind int

const (
	noArg argKind = iota
	requiredArg
	optionalArg // only attached: -mVALUE or --name=VALUE
)

// option is one option a command accepts.
type option struct {
	long  string // without "--"; "" if none
	short byte   // 0 if none
	arg   argKind
	id    string // what the parser reports
}

// parsedOpt is one option found on the command line.
type parsedOpt struct {
	id     string
	value  string
	hasVal bool
}

// getopt parses args as getopt_long does with the tools' option tables:
// options and operands may be mixed, "--" ends the options, long options
// may be abbreviated to a unique prefix and take their argument after "="
// or as the next word (optional arguments only after "="), short options
// may be clustered and take their argument attached or as the next word.
func getopt(args []string, opts []option) (found []parsedOpt, operands []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return found, append(operands, args[i+1:]...), nil
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			o, err := findLong(opts, name)
			if err != nil {
				return nil, nil, err
			}
			switch o.arg {
			case noArg:
				if hasVal {
					return nil, nil, fmt.Errorf("option '--%s' doesn't allow an argument", o.long)
				}
			case requiredArg:
				if !hasVal {
					if i+1 >= len(args) {
						return nil, nil, fmt.Errorf("option '--%s' requires an argument", o.long)
					}
					i++
					val, hasVal = args[i], true
				}
			}
			found = append(found, parsedOpt{id: o.id, value: val, hasVal: hasVal})
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				o := findShort(opts, a[j])
				if o == nil {
					return nil, nil, fmt.Errorf("invalid option -- '%c'", a[j])
				}
				if o.arg == noArg {
					found = append(found, parsedOpt{id: o.id})
					continue
				}
				rest := a[j+1:]
				if rest == "" && o.arg == requiredArg {
					if i+1 >= len(args) {
						return nil, nil, fmt.Errorf("option requires an argument -- '%c'", a[j])
					}
					i++
					rest = args[i]
				}
				found = append(found, parsedOpt{id: o.id, value: rest, hasVal: rest != ""})
				break
			}
		default:
			operands = append(operands, a)
		}
	}
	return found, operands, nil
}

func findLong(opts []option, name string) (*option, error) {
	var match *option
	n := 0
	for i := range opts {
		o := &opts[i]
		if o.long == "" {
			continue
		}
		if o.long == name {
			return o, nil
		}
		if strings.HasPrefix(o.long, name) && name != "" {
			if match == nil || match.id != o.id {
				n++
			}
			match = o
		}
	}
	switch {
	case n == 1:
		return match, nil
	case n > 1:
		return nil, fmt.Errorf("option '--%s' is ambiguous", name)
	}
	return nil, fmt.Errorf("unrecognized option '--%s'", name)
}

func findShort(opts []option, c byte) *option {
	for i := range opts {
		if opts[i].short == c {
			return &opts[i]
		}
	}
	return nil
}
