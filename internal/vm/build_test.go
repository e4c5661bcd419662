package vm

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSplitPatterns pins how package patterns are shared out among the
// main module and the modules nested in its tree.
func TestSplitPatterns(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"go.mod", "a/x.go", "ex/sub/go.mod", "ex/sub/p/x.go", "ex/other/x.go",
		"a/testdata/m/go.mod", "_skip/go.mod", ".hidden/go.mod", "vendor/v/go.mod"} {
		p := filepath.Join(root, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sub := filepath.Join(root, "ex", "sub")
	b := &Builder{ModuleRoot: root}
	for _, tc := range []struct {
		patterns []string
		want     map[string][]string
		order    []string
	}{
		{[]string{"./..."}, map[string][]string{root: {"./..."}, sub: {"./..."}}, []string{root, sub}},
		{[]string{"./ex/..."}, map[string][]string{root: {"./ex/..."}, sub: {"./..."}}, []string{root, sub}},
		{[]string{"./ex/sub/..."}, map[string][]string{sub: {"./..."}}, []string{sub}},
		{[]string{"./ex/sub/p", "./a"}, map[string][]string{sub: {"./p"}, root: {"./a"}}, []string{root, sub}},
		{[]string{"./a/...", "github.com/x/y"}, map[string][]string{root: {"./a/...", "github.com/x/y"}}, []string{root}},
		{[]string{"."}, map[string][]string{root: {"."}}, []string{root}},
	} {
		got, order, err := b.splitPatterns(tc.patterns)
		if err != nil {
			t.Fatalf("%q: %v", tc.patterns, err)
		}
		if !cmp.Equal(got, tc.want) || !slices.Equal(order, tc.order) {
			t.Errorf("%q: got %v in order %q, want %v in order %q", tc.patterns, got, order, tc.want, tc.order)
		}
	}
}

// TestListPackagesNested lists this repository's packages with ./... and
// finds those of the nested module examples/snapshotter among them, with
// their module root, as go test -c needs it.
func TestListPackagesNested(t *testing.T) {
	b, err := NewBuilder(".")
	if err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(b.ModuleRoot, "examples", "snapshotter")
	if _, err := os.Stat(filepath.Join(sub, "go.mod")); err != nil {
		t.Skip("no nested module examples/snapshotter in this tree")
	}
	pkgs, err := b.ListPackages(context.Background(), "./...")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]Package{}
	for _, p := range pkgs {
		found[p.ImportPath] = p
	}
	p, ok := found["github.com/thinp/thinp/examples/snapshotter/thinsnap"]
	if !ok || p.ModuleRoot != sub || p.RelDir != "examples/snapshotter/thinsnap" || !p.Integration {
		t.Fatalf("thinsnap = %+v (found %v), want it in module %s with integration tests", p, ok, sub)
	}
	if m, ok := found["github.com/thinp/thinp/thin"]; !ok || m.ModuleRoot != b.ModuleRoot {
		t.Fatalf("thin = %+v (found %v), want it in the main module", m, ok)
	}
}
