package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	gen "github.com/thinp/thinp/thin/metadata/metadatatest"
)

// corpusImages is how many random pools TestToolEquality compares on.
const corpusImages = 200

const allFields = "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,MAPPED_SECTORS,EXCLUSIVE_SECTORS,SHARED_SECTORS,MAPPED_BYTES,EXCLUSIVE_BYTES,SHARED_BYTES,MAPPED,EXCLUSIVE,SHARED,TRANSACTION,CREATE_TIME,SNAP_TIME"

// runTool runs thintools in-process as the tool named by args[0].
func runTool(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return out.String(), errb.String(), code
}

// pair picks two device ids of p (possibly the same one) for thin_delta.
func pair(i int, p *gen.Pool) (string, string) {
	a, b := p.Devs[i%len(p.Devs)], p.Devs[(i*7+3)%len(p.Devs)]
	return strconv.Itoa(int(a.ID)), strconv.Itoa(int(b.ID))
}

// corpusCmds are the command lines compared on pool i: thin_dump, thin_ls
// with every field and thin_delta --verbose always, one of the other
// forms in turn.
func corpusCmds(i int, p *gen.Pool) [][]string {
	cmds := [][]string{
		{"thin_dump", "IMG"},
		{"thin_ls", "-o", allFields, "IMG"},
	}
	if len(p.Devs) > 0 {
		a, b := pair(i, p)
		cmds = append(cmds, []string{"thin_delta", "--verbose", "--snap1", a, "--snap2", b, "IMG"})
		switch i % 4 {
		case 0:
			cmds = append(cmds, []string{"thin_dump", "-f", "human_readable", "IMG"})
		case 1:
			cmds = append(cmds, []string{"thin_ls", "IMG"})
		case 2:
			cmds = append(cmds, []string{"thin_delta", "--snap1", b, "--snap2", a, "IMG"})
		case 3:
			cmds = append(cmds, []string{"thin_dump", "--skip-mappings", "--dev-id", a, "IMG"})
		}
	} else {
		cmds = append(cmds, []string{"thin_ls", "--no-headers", "IMG"})
	}
	return cmds
}

func snapCmds(i int, p *gen.Pool) [][]string {
	cmds := [][]string{
		{"thin_dump", "-m", "IMG"},
		{"thin_ls", "-m", "-o", "DEV,EXCLUSIVE_BLOCKS,SHARED,SNAP_TIME", "IMG"},
	}
	if len(p.Devs) > 0 {
		a, b := pair(i+1, p)
		cmds = append(cmds, []string{"thin_delta", "-m", "--verbose", "--snap1", a, "--snap2", b, "IMG"})
	}
	return cmds
}

// TestToolEquality restores random pools with thin_restore and compares
// thintools' output with thin_dump's, thin_ls's and thin_delta's on each,
// byte for byte, live and through a metadata snapshot.
func TestToolEquality(t *testing.T) {
	start := time.Now()
	tools := map[string]string{}
	for _, n := range []string{"thin_restore", "thin_dump", "thin_ls", "thin_delta"} {
		tools[n] = gen.Tool(t, n)
	}
	n := corpusImages
	if testing.Short() {
		n = 40
	}
	compared := map[string]int{}
	check := func(im *gen.Image, prefix string, c []string) {
		t.Helper()
		want := im.Out[prefix+gen.Key(c)]
		args := append(append([]string(nil), c[:len(c)-1]...), im.Path)
		got, stderr, code := runTool(args...)
		if code != 0 || got != string(want) {
			t.Fatalf("pool %d: %s: exit %d, %s\ndiff (-tool +thintools):\n%s", im.Index, strings.Join(args, " "), code, stderr, cmp.Diff(string(want), got))
		}
		compared[prefix+c[0]]++
	}
	for im := range gen.Corpus(tools, t.TempDir(), n, corpusCmds, snapCmds) {
		if im.Err != nil {
			t.Fatal(im.Err)
		}
		for _, c := range corpusCmds(im.Index, im.Pool) {
			check(im, "", c)
		}
		if im.Held != 0 {
			for _, c := range snapCmds(im.Index, im.Pool) {
				check(im, "snap:", c)
			}
		}
		os.Remove(im.Path)
	}
	t.Logf("%d images, byte-identical outputs: %v, in %v", n, compared, time.Since(start).Round(time.Millisecond))
}
