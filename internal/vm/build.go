package vm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
)

// GuestInitPackage is the import path of the guest's /init.
const GuestInitPackage = "github.com/thinp/thinp/internal/vm/guestinit"

// Builder compiles what goes into the guest: static, for linux/amd64.
type Builder struct {
	// Go is the go command.
	Go string
	// ModuleRoot is the directory holding go.mod; go runs there.
	ModuleRoot string
	// Env is the environment for go, before the build settings are added
	// (nil: this process's).
	Env []string
}

// NewBuilder returns a Builder for the module containing dir.
func NewBuilder(dir string) (*Builder, error) {
	root, err := FindModuleRoot(dir)
	if err != nil {
		return nil, err
	}
	goTool, err := FindGo()
	if err != nil {
		return nil, err
	}
	return &Builder{Go: goTool, ModuleRoot: root}, nil
}

// FindModuleRoot returns the nearest directory at or above dir with a go.mod.
func FindModuleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod at or above %s", dir)
		}
	}
}

// FindGo returns the go command: $GOROOT/bin/go of the running toolchain
// when there is one, else go from PATH.
func FindGo() (string, error) {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	//lint:ignore SA1019 the fallback when neither GOROOT nor PATH has go.
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); isExecutable(p) {
		return p, nil
	}
	return "", fmt.Errorf("the go command is not in PATH or GOROOT")
}

// env is the build environment: static binaries for the guest.
func (b *Builder) env() []string {
	env := b.Env
	if env == nil {
		env = os.Environ()
	}
	return append(append([]string(nil), env...), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
}

func (b *Builder) goCmd(ctx context.Context, args ...string) error {
	return b.goCmdIn(ctx, b.ModuleRoot, args...)
}

// goCmdIn runs go in dir: the main module's root or a nested module's.
func (b *Builder) goCmdIn(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, b.Go, args...)
	cmd.Dir = dir
	cmd.Env = b.env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return nil
}

// Package is a package of the module, or of a module nested in its tree
// (see ListPackages), as go list reports it.
type Package struct {
	ImportPath string
	Name       string
	// Dir is the package's source directory on the host.
	Dir string
	// RelDir is Dir relative to the (main) module root, in slash form.
	RelDir string
	// ModuleRoot is the root of the module the package belongs to, where
	// go builds it: the Builder's ModuleRoot, or a nested module's.
	ModuleRoot string
	// TestFiles are its _test.go files (internal and external).
	TestFiles []string
	// Integration reports whether a test file declares a TestIntegration
	// function.
	Integration bool
}

// ListPackages lists the packages matching patterns (for linux/amd64, so
// build constraints apply as in the guest).
//
// Modules nested in the main module's tree (a directory with its own go.mod,
// such as examples/snapshotter, which keeps containerd's dependencies out of
// the main go.mod) are part of the tree here, although go's ./... leaves
// them out: a relative pattern that points into one (./examples/snapshotter/...)
// is listed by go in that module, and a relative pattern ending in /...
// (./... included) also lists every nested module below its directory.
// Import-path patterns are the main module's.
func (b *Builder) ListPackages(ctx context.Context, patterns ...string) ([]Package, error) {
	byModule, order, err := b.splitPatterns(patterns)
	if err != nil {
		return nil, err
	}
	var pkgs []Package
	for _, root := range order {
		ps, err := b.listIn(ctx, root, byModule[root])
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, ps...)
	}
	return pkgs, nil
}

// splitPatterns assigns each pattern to the module whose tree holds it,
// rewritten relative to that module's root, and adds ./... of the nested
// modules under each relative /... pattern. order lists the modules, the
// main module first.
func (b *Builder) splitPatterns(patterns []string) (byModule map[string][]string, order []string, err error) {
	byModule = map[string][]string{}
	add := func(root, pattern string) {
		if _, ok := byModule[root]; !ok {
			order = append(order, root)
		}
		for _, p := range byModule[root] {
			if p == pattern {
				return
			}
		}
		byModule[root] = append(byModule[root], pattern)
	}
	for _, pat := range patterns {
		if !isRelativePattern(pat) {
			add(b.ModuleRoot, pat)
			continue
		}
		dir, all := strings.CutSuffix(pat, "/...")
		if pat == "..." {
			dir, all = ".", true
		}
		abs := filepath.Join(b.ModuleRoot, filepath.FromSlash(dir))
		root, err := FindModuleRoot(abs)
		if err != nil {
			return nil, nil, err
		}
		rel, err := filepath.Rel(root, abs)
		if err != nil {
			return nil, nil, err
		}
		p := "./" + filepath.ToSlash(rel)
		if rel == "." {
			p = "."
		}
		if all {
			p += "/..."
		}
		add(root, p)
		if !all {
			continue
		}
		nested, err := nestedModules(abs, root)
		if err != nil {
			return nil, nil, err
		}
		for _, n := range nested {
			add(n, "./...")
		}
	}
	// The main module's packages first, as before nested modules existed.
	sort.SliceStable(order, func(i, j int) bool { return order[i] == b.ModuleRoot && order[j] != b.ModuleRoot })
	return byModule, order, nil
}

// isRelativePattern reports whether a go package pattern is a directory
// path relative to the working directory (".", "./x", "../x").
func isRelativePattern(p string) bool {
	return p == "." || p == ".." || p == "..." || strings.HasPrefix(p, "./") || strings.HasPrefix(p, "../")
}

// nestedModules returns the roots of the modules nested below dir, which
// lies in the module at root: directories under dir with a go.mod of their
// own, skipping what go skips (testdata, vendor, names starting with . or _).
func nestedModules(dir, root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipDir
			}
			return err
		}
		if !d.IsDir() || p == dir || p == root {
			return nil
		}
		if n := d.Name(); n == "testdata" || n == "vendor" || strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") {
			return filepath.SkipDir
		}
		if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// listIn runs go list in the module at root.
func (b *Builder) listIn(ctx context.Context, root string, patterns []string) ([]Package, error) {
	args := append([]string{"list", "-e", "-f",
		"{{.ImportPath}}\t{{.Name}}\t{{.Dir}}\t{{join .TestGoFiles \",\"}}\t{{join .XTestGoFiles \",\"}}\t{{if .Error}}{{.Error}}{{end}}"},
		patterns...)
	cmd := exec.CommandContext(ctx, b.Go, args...)
	cmd.Dir = root
	cmd.Env = b.env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list (in %s): %v\n%s", root, err, stderr.String())
	}
	var pkgs []Package
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 6 {
			continue
		}
		if f[5] != "" {
			return nil, fmt.Errorf("go list: %s: %s", f[0], f[5])
		}
		p := Package{ImportPath: f[0], Name: f[1], Dir: f[2], ModuleRoot: root}
		rel, err := filepath.Rel(b.ModuleRoot, p.Dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("package %s lies outside the module (%s)", p.ImportPath, p.Dir)
		}
		p.RelDir = filepath.ToSlash(rel)
		for _, names := range f[3:5] {
			for _, n := range strings.Split(names, ",") {
				if n != "" {
					p.TestFiles = append(p.TestFiles, filepath.Join(p.Dir, n))
				}
			}
		}
		if p.Integration, err = hasIntegrationTest(p.TestFiles); err != nil {
			return nil, err
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, sc.Err()
}

// hasIntegrationTest reports whether any of the files declares a
// func TestIntegration...(t *testing.T).
func hasIntegrationTest(files []string) (bool, error) {
	re := regexp.MustCompile(`(?m)^func TestIntegration[\p{L}\p{N}_]*\(`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return false, err
		}
		if re.Match(b) {
			return true, nil
		}
	}
	return false, nil
}

// BuildTests compiles the test binary of each package into dir and returns
// the binaries' paths in the order of pkgs. A package without test files
// gets no binary (its entry is "").
func (b *Builder) BuildTests(ctx context.Context, pkgs []Package, dir string) ([]string, error) {
	bins := make([]string, len(pkgs))
	// go test -c -o DIR builds several packages in one go, as long as their
	// names differ; packages sharing a name go to later rounds.
	todo := make([]int, 0, len(pkgs))
	for i, p := range pkgs {
		if len(p.TestFiles) > 0 {
			todo = append(todo, i)
		}
	}
	for round := 0; len(todo) > 0; round++ {
		out := filepath.Join(dir, fmt.Sprintf("round%d", round))
		if err := os.MkdirAll(out, 0o755); err != nil {
			return nil, err
		}
		names := map[string]bool{}
		var now, later []int
		for _, i := range todo {
			if names[testBinaryName(pkgs[i])] {
				later = append(later, i)
				continue
			}
			names[testBinaryName(pkgs[i])] = true
			now = append(now, i)
		}
		// One go test -c per module, run in the module's root.
		var roots []string
		byRoot := map[string][]string{}
		for _, i := range now {
			root := pkgs[i].ModuleRoot
			if root == "" {
				root = b.ModuleRoot
			}
			if _, ok := byRoot[root]; !ok {
				roots = append(roots, root)
			}
			byRoot[root] = append(byRoot[root], pkgs[i].ImportPath)
		}
		for _, root := range roots {
			args := append([]string{"test", "-c", "-ldflags=-s -w", "-o", out + string(filepath.Separator)}, byRoot[root]...)
			if err := b.goCmdIn(ctx, root, args...); err != nil {
				return nil, err
			}
		}
		for _, i := range now {
			bins[i] = filepath.Join(out, testBinaryName(pkgs[i]))
			if _, err := os.Stat(bins[i]); err != nil {
				return nil, fmt.Errorf("go test -c %s: no binary: %w", pkgs[i].ImportPath, err)
			}
		}
		todo = later
	}
	return bins, nil
}

// testBinaryName is the file go test -c -o DIR/ writes for p: the package
// name, or for a main package the last element of its import path, plus
// ".test".
func testBinaryName(p Package) string {
	if p.Name == "main" {
		return path.Base(p.ImportPath) + ".test"
	}
	return p.Name + ".test"
}

// BuildProgram compiles the main package pkg of the main module into out.
func (b *Builder) BuildProgram(ctx context.Context, pkg, out string) error {
	return b.goCmd(ctx, "build", "-ldflags=-s -w", "-o", out, pkg)
}

// BuildPackage compiles the main package p, of the main module or a nested
// one, into out.
func (b *Builder) BuildPackage(ctx context.Context, p Package, out string) error {
	root := p.ModuleRoot
	if root == "" {
		root = b.ModuleRoot
	}
	return b.goCmdIn(ctx, root, "build", "-ldflags=-s -w", "-o", out, p.ImportPath)
}
