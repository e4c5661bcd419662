package dmtest

import (
	"strconv"
	"strings"

	"github.com/thinp/thinp/ioctl"
)

// param is the kernel's copy of the caller's buffer (struct dm_ioctl and
// the data after it). Commands read and write it in place, field by field,
// as dm-ioctl.c does; only data_size bytes of it go back to the caller.
type param struct {
	b []byte
}

func (p *param) u32(off int) uint32       { return ne.Uint32(p.b[off:]) }
func (p *param) setU32(off int, v uint32) { ne.PutUint32(p.b[off:], v) }
func (p *param) flags() ioctl.Flags       { return ioctl.Flags(p.u32(offFlags)) }
func (p *param) setFlags(f ioctl.Flags)   { p.setU32(offFlags, uint32(f)) }
func (p *param) has(f ioctl.Flags) bool   { return p.flags()&f != 0 }
func (p *param) orFlags(f ioctl.Flags)    { p.setFlags(p.flags() | f) }
func (p *param) clearFlags(f ioctl.Flags) { p.setFlags(p.flags() &^ f) }
func (p *param) dev() uint64              { return ne.Uint64(p.b[offDev:]) }
func (p *param) eventNr() uint32          { return p.u32(offEventNr) }
func (p *param) dataStart() uint32        { return p.u32(offDataStart) }
func (p *param) setDataSize(n int)        { p.setU32(offDataSize, uint32(n)) }

// name and uuid read the arrays as C strings. validate_params has
// terminated them for every command that looks devices up; the commands it
// skips read at most the array (strnlen).
func (p *param) name() string { return cstr(p.b[offName : offName+ioctl.NameLen]) }
func (p *param) uuid() string { return cstr(p.b[offUUID : offUUID+ioctl.UUIDLen]) }

// strlcpy copies s and its NUL into b at off; the rest of the array keeps
// what the caller had there.
func (p *param) strlcpy(off, size int, s string) {
	if len(s) > size-1 {
		s = s[:size-1]
	}
	copy(p.b[off:], s)
	p.b[off+len(s)] = 0
}

// resultBuffer is get_result_buffer(): data_start becomes 312 and the room
// after it, up to the caller's data_size, is the result buffer.
func (p *param) resultBuffer(paramSize int) (off, n int) {
	p.setU32(offDataStart, resultStart)
	if resultStart < paramSize {
		return resultStart, paramSize - resultStart
	}
	return resultStart, 0
}

// cstr is the C string at the start of b, or all of b without a NUL.
func cstr(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// cstrAt is invalid_str(): the NUL-terminated string at off, which must end
// before end; ok is false when it does not.
func cstrAt(b []byte, off, end int) (string, bool) {
	if off < 0 || end > len(b) {
		return "", false
	}
	for i := off; i < end; i++ {
		if b[i] == 0 {
			return string(b[off:i]), true
		}
	}
	return "", false
}

func align8(n int) int { return (n + 7) &^ 7 }

// isspace is the kernel's isspace(), whose ctype table also counts 0xa0.
func isspace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r', 0xa0:
		return true
	}
	return false
}

// skipSpaces is skip_spaces().
func skipSpaces(s string) string {
	i := 0
	for i < len(s) && isspace(s[i]) {
		i++
	}
	return s[i:]
}

// splitArgs is dm_split_args(): whitespace separates arguments and a
// backslash quotes the next character.
func splitArgs(s string) []string {
	var argv []string
	i := 0
	for {
		for i < len(s) && isspace(s[i]) {
			i++
		}
		if i >= len(s) {
			return argv
		}
		var out strings.Builder
		for i < len(s) {
			if s[i] == '\\' && i+1 < len(s) {
				out.WriteByte(s[i+1])
				i += 2
				continue
			}
			if isspace(s[i]) {
				break
			}
			out.WriteByte(s[i])
			i++
		}
		if i < len(s) {
			i++
		}
		argv = append(argv, out.String())
	}
}

// kstrtoull is kstrtoull(s, 10, &v): an optional '+', decimal digits, an
// optional trailing newline, no overflow.
func kstrtoull(s string) (uint64, bool) {
	s = strings.TrimPrefix(s, "+")
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

// kstrtouint is kstrtouint(s, 10, &v).
func kstrtouint(s string) (uint32, bool) {
	v, ok := kstrtoull(s)
	if !ok || v > 1<<32-1 {
		return 0, false
	}
	return uint32(v), true
}

// scanUint reads the decimal number at the start of s as the kernel's
// sscanf %u/%llu does (digits only, no sign), returning the rest.
func scanUint(s string) (v uint64, rest string, ok bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, s, false
	}
	v, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		// The kernel's simple_strtoull wraps; nothing here relies on it.
		v = ^uint64(0)
	}
	return v, s[i:], true
}

// sscanfULL is sscanf(s, "%llu%c", &v, &dummy) == 1: a whole decimal number.
func sscanfULL(s string) (uint64, bool) {
	v, rest, ok := scanUint(s)
	return v, ok && rest == ""
}
