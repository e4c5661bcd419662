package vm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
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
	cmd := exec.CommandContext(ctx, b.Go, args...)
	cmd.Dir = b.ModuleRoot
	cmd.Env = b.env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return nil
}

// Package is a package of the module, as go list reports it.
type Package struct {
	ImportPath string
	Name       string
	// Dir is the package's source directory on the host.
	Dir string
	// RelDir is Dir relative to the module root, in slash form.
	RelDir string
	// TestFiles are its _test.go files (internal and external).
	TestFiles []string
	// Integration reports whether a test file declares a TestIntegration
	// function.
	Integration bool
}

// ListPackages lists the packages matching patterns (for linux/amd64, so
// build constraints apply as in the guest).
func (b *Builder) ListPackages(ctx context.Context, patterns ...string) ([]Package, error) {
	args := append([]string{"list", "-e", "-f",
		"{{.ImportPath}}\t{{.Name}}\t{{.Dir}}\t{{join .TestGoFiles \",\"}}\t{{join .XTestGoFiles \",\"}}\t{{if .Error}}{{.Error}}{{end}}"},
		patterns...)
	cmd := exec.CommandContext(ctx, b.Go, args...)
	cmd.Dir = b.ModuleRoot
	cmd.Env = b.env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %v\n%s", err, stderr.String())
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
		p := Package{ImportPath: f[0], Name: f[1], Dir: f[2]}
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
		args := []string{"test", "-c", "-ldflags=-s -w", "-o", out + string(filepath.Separator)}
		for _, i := range now {
			args = append(args, pkgs[i].ImportPath)
		}
		if err := b.goCmd(ctx, args...); err != nil {
			return nil, err
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

// BuildProgram compiles the main package pkg into out.
func (b *Builder) BuildProgram(ctx context.Context, pkg, out string) error {
	return b.goCmd(ctx, "build", "-ldflags=-s -w", "-o", out, pkg)
}
