package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// execRunner is the dmsetup path: one exec of the dmsetup program per
// step, as containerd's devmapper snapshotter drives device-mapper.
type execRunner struct {
	path string
	// noSync adds --noudevsync to every invocation.
	noSync  bool
	pool    string
	poolDev string
	size    uint64
}

func newExecRunner(e *env, path string, noSync bool) *execRunner {
	return &execRunner{path: path, noSync: noSync, pool: e.pool, poolDev: e.poolDev.String(), size: e.cfg.VolumeSize}
}

// run runs dmsetup with args and returns its standard output.
func (x *execRunner) run(ctx context.Context, args ...string) ([]byte, error) {
	if x.noSync {
		args = append([]string{"--noudevsync"}, args...)
	}
	cmd := exec.CommandContext(ctx, x.path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			// Killed because ctx ended: say so, not "signal: killed".
			return nil, fmt.Errorf("dmsetup %s: %w", strings.Join(args, " "), cerr)
		}
		return nil, fmt.Errorf("dmsetup %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func (x *execRunner) message(ctx context.Context, msg string) error {
	_, err := x.run(ctx, "message", x.pool, "0", msg)
	return err
}

// lifecycle is one cycle of (a) and (d): four invocations.
func (x *execRunner) lifecycle(ctx context.Context, name string, id uint64) error {
	ids := strconv.FormatUint(id, 10)
	if err := x.message(ctx, "create_thin "+ids); err != nil {
		return err
	}
	table := "0 " + strconv.FormatUint(x.size, 10) + " thin " + x.poolDev + " " + ids
	if _, err := x.run(ctx, "create", name, "--table", table); err != nil {
		return err
	}
	// --retry: a udev probe of the new device can make it busy for a
	// moment, and containerd retries too.
	if _, err := x.run(ctx, "remove", "--retry", name); err != nil {
		return err
	}
	return x.message(ctx, "delete "+ids)
}

// snapshot is one op of (b): three invocations. A failed create_snap
// still resumes the origin.
func (x *execRunner) snapshot(ctx context.Context, origin string, originID, id uint64) error {
	if _, err := x.run(ctx, "suspend", origin); err != nil {
		return err
	}
	err := x.message(ctx, "create_snap "+strconv.FormatUint(id, 10)+" "+strconv.FormatUint(originID, 10))
	if _, rerr := x.run(ctx, "resume", origin); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// scan is one op of (c): `dmsetup status` lists every device and prints a
// line per target; it returns the number of lines.
func (x *execRunner) scan(ctx context.Context) (int, error) {
	out, err := x.run(ctx, "status")
	if err != nil {
		return 0, err
	}
	return bytes.Count(out, []byte{'\n'}), nil
}
