// Command thinp-snapshotter serves a thin-provisioning snapshotter (package
// thinsnap, on thinp's volume catalog) to containerd as a proxy plugin: the
// snapshots gRPC API on a unix socket.
//
// Usage:
//
//	thinp-snapshotter [-config FILE] [-address SOCKET] [flags]
//
// containerd's config.toml then names the socket:
//
//	[proxy_plugins.thinp]
//	  type = "snapshot"
//	  address = "/run/thinp-snapshotter.sock"
//
// and ctr or a CRI configuration selects the snapshotter "thinp". -config
// reads the keys of containerd's devmapper section (root_path, pool_name,
// base_image_size, async_remove, discard_blocks, fs_type, fs_options) and
// this snapshotter's own (metadata_device, data_device, data_block_size)
// from a TOML file; flags given on the command line override it. It needs
// root and a kernel with device-mapper. SIGINT or SIGTERM stops it: the
// socket is removed, the devices of snapshots stay as they are.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/pelletier/go-toml/v2"
	"google.golang.org/grpc"

	"github.com/thinp/thinp/examples/snapshotter/thinsnap"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "thinp-snapshotter:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg, address, err := parseArgs(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sn, err := thinsnap.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer sn.Close()

	if err := os.Remove(address); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	l, err := net.Listen("unix", address)
	if err != nil {
		return err
	}
	defer os.Remove(address)
	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(sn))
	go func() {
		<-ctx.Done()
		rpc.GracefulStop()
	}()
	slog.Info("thinp-snapshotter: serving", "address", address, "pool", cfg.PoolName, "root", cfg.RootPath)
	return rpc.Serve(l)
}

// parseArgs reads -config, then the flags over it.
func parseArgs(args []string) (thinsnap.Config, string, error) {
	fs := flag.NewFlagSet("thinp-snapshotter", flag.ContinueOnError)
	var cfg thinsnap.Config
	configFile := fs.String("config", "", "TOML `file` with the keys of containerd's devmapper section")
	address := fs.String("address", "/run/thinp-snapshotter.sock", "unix `socket` to serve on")
	root := fs.String("root-path", "", "catalog `directory` (root_path)")
	pool := fs.String("pool-name", "", "thin-pool dm device (pool_name)")
	meta := fs.String("metadata-device", "", "metadata `device` of a pool to create (metadata_device)")
	data := fs.String("data-device", "", "data `device` of a pool to create (data_device)")
	block := fs.String("data-block-size", "", "data block `size` of a pool to create (data_block_size, default 64KiB)")
	baseSize := fs.String("base-image-size", "", "virtual `size` of every snapshot (base_image_size, default "+thinsnap.DefaultBaseImageSize+")")
	fsType := fs.String("fs-type", "", "ext4 or xfs (fs_type, default ext4)")
	fsOpts := fs.String("fs-options", "", "mkfs options (fs_options; ext4: -E value, default "+thinsnap.DefaultExt4Options+")")
	discard := fs.Bool("discard-blocks", false, "discard a snapshot's blocks before deleting it (discard_blocks)")
	async := fs.Bool("async-remove", false, "remove open snapshots later, at Cleanup (async_remove)")
	if err := fs.Parse(args); err != nil {
		return cfg, "", err
	}
	if fs.NArg() > 0 {
		return cfg, "", fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *configFile != "" {
		b, err := os.ReadFile(*configFile)
		if err != nil {
			return cfg, "", err
		}
		dec := toml.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return cfg, "", fmt.Errorf("%s: %w", *configFile, err)
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, p := range map[string]struct {
		dst *string
		src string
	}{
		"root-path": {&cfg.RootPath, *root}, "pool-name": {&cfg.PoolName, *pool},
		"metadata-device": {&cfg.MetadataDevice, *meta}, "data-device": {&cfg.DataDevice, *data},
		"data-block-size": {&cfg.DataBlockSize, *block}, "base-image-size": {&cfg.BaseImageSize, *baseSize},
		"fs-type": {&cfg.FSType, *fsType}, "fs-options": {&cfg.FSOptions, *fsOpts},
	} {
		if set[name] {
			*p.dst = p.src
		}
	}
	if set["discard-blocks"] {
		cfg.DiscardBlocks = *discard
	}
	if set["async-remove"] {
		cfg.AsyncRemove = *async
	}
	return cfg, *address, cfg.Validate()
}
