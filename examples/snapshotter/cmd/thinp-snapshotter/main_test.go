package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/thinp/thinp/examples/snapshotter/thinsnap"
)

// TestParseArgs reads a devmapper section's keys from a file, and flags
// override them.
func TestParseArgs(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.toml")
	toml := `root_path = "/var/lib/x"
pool_name = "pool"
base_image_size = "8GB"
async_remove = true
discard_blocks = true
fs_type = "ext4"
fs_options = ""
`
	if err := os.WriteFile(file, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, addr, err := parseArgs([]string{"-config", file, "-pool-name", "other", "-async-remove=false", "-address", "/tmp/s.sock"})
	if err != nil {
		t.Fatal(err)
	}
	want := thinsnap.Config{RootPath: "/var/lib/x", PoolName: "other", BaseImageSize: "8GB", FSType: "ext4", DiscardBlocks: true}
	if !cmp.Equal(cfg, want) || addr != "/tmp/s.sock" {
		t.Fatalf("config %+v at %s, want %+v", cfg, addr, want)
	}

	if err := os.WriteFile(file, []byte("pool_nmae = \"typo\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := parseArgs([]string{"-config", file}); err == nil {
		t.Fatal("an unknown key was accepted")
	}
	_, _, err = parseArgs([]string{"-root-path", "/r"})
	var ce *thinsnap.ConfigError
	if !errors.As(err, &ce) || ce.Key != "pool_name" {
		t.Fatalf("without pool_name: %v, want a ConfigError on pool_name", err)
	}
}
