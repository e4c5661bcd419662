package ioctl

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// littleEndian is true on the architectures the golden bytes are written
// for; the layout tests still run elsewhere, the golden ones skip.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

func needLittleEndian(t testing.TB) {
	t.Helper()
	if !littleEndian {
		t.Skip("golden bytes are little-endian")
	}
}

// unhex turns the golden notation into bytes. Each line holds tokens and an
// optional "// comment":
//
//	2f        one byte in hex
//	00*122    a byte repeated n times (n in decimal)
//	"thin-1"  the bytes of a Go-quoted string, without a NUL
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := parseHex(s)
	if err != nil {
		t.Fatalf("bad golden text: %v", err)
	}
	return b
}

func parseHex(s string) ([]byte, error) {
	var out []byte
	for ln, line := range strings.Split(s, "\n") {
		for i := 0; i < len(line); {
			c := line[i]
			switch {
			case c == ' ' || c == '\t':
				i++
			case strings.HasPrefix(line[i:], "//"):
				i = len(line)
			case c == '"':
				q, err := strconv.QuotedPrefix(line[i:])
				if err != nil {
					return nil, fmt.Errorf("line %d: %v", ln+1, err)
				}
				u, _ := strconv.Unquote(q)
				out = append(out, u...)
				i += len(q)
			default:
				j := i
				for j < len(line) && line[j] != ' ' && line[j] != '\t' {
					j++
				}
				tok := line[i:j]
				i = j
				n := 1
				if k := strings.IndexByte(tok, '*'); k >= 0 {
					var err error
					if n, err = strconv.Atoi(tok[k+1:]); err != nil {
						return nil, fmt.Errorf("line %d: %q: %v", ln+1, tok, err)
					}
					tok = tok[:k]
				}
				v, err := hex.DecodeString(tok)
				if err != nil || len(v) != 1 {
					return nil, fmt.Errorf("line %d: bad byte %q", ln+1, tok)
				}
				out = append(out, bytes.Repeat(v, n)...)
			}
		}
	}
	return out, nil
}

func TestParseHex(t *testing.T) {
	got := unhex(t, `
		01 ff  // two bytes
		00*3 "ab" // a run and a string
		"x y\x00" 7f*1`)
	want := []byte{1, 0xff, 0, 0, 0, 'a', 'b', 'x', ' ', 'y', 0, 0x7f}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
	for _, bad := range []string{"1", "zz", "00*x", `"open`, "0102"} {
		if _, err := parseHex(bad); err == nil {
			t.Errorf("parseHex(%q) did not fail", bad)
		}
	}
}

// diffBytes reports the first differing offset of got and want.
func diffBytes(t testing.TB, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	n := min(len(got), len(want))
	i := 0
	for i < n && got[i] == want[i] {
		i++
	}
	lo := max(0, i-8)
	t.Errorf("bytes differ at offset %d (len got %d, want %d)\n got[%d:]: % x\nwant[%d:]: % x",
		i, len(got), len(want), lo, got[lo:min(len(got), i+24)], lo, want[lo:min(len(want), i+24)])
}
