package tool

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLook(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "thinp-tool-test")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "thinp-not-exec"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", "/nonexistent")
	if _, err := Look("thinp-tool-test"); err == nil {
		t.Fatal("found a program that is nowhere searched")
	}
	old := dirs
	dirs = []string{"/nonexistent", dir}
	defer func() { dirs = old }()
	if p, err := Look("thinp-tool-test"); err != nil || p != prog {
		t.Fatalf("Look = %q, %v; want %q", p, err, prog)
	}
	if _, err := Look("thinp-not-exec"); err == nil {
		t.Fatal("found a file that is not executable")
	}
	t.Setenv("PATH", dir)
	dirs = nil
	if p, err := Look("thinp-tool-test"); err != nil || p != prog {
		t.Fatalf("Look through PATH = %q, %v; want %q", p, err, prog)
	}
}
