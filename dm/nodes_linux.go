package dm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/udev"
)

func (c *Control) mapperDir() string { return filepath.Join(c.cfg.devDir, "mapper") }

// nodeAdd creates /dev/mapper/<name> for dev when this Control manages
// nodes. An existing node or udev symlink for the same device is kept; a
// stale one is replaced.
func (c *Control) nodeAdd(name string, dev Dev) error {
	if !c.managesNodes() {
		return nil
	}
	return udev.MakeNode(c.mapperDir(), name, dev, 0o600)
}

func (c *Control) nodeRemove(name string) error {
	if !c.managesNodes() {
		return nil
	}
	return udev.RemoveNode(c.mapperDir(), name)
}

func (c *Control) nodeRename(oldName, newName string, dev Dev) error {
	if !c.managesNodes() {
		return nil
	}
	if oldName != "" {
		if err := udev.RemoveNode(c.mapperDir(), oldName); err != nil {
			return err
		}
	}
	return udev.MakeNode(c.mapperDir(), newName, dev, 0o600)
}

// SyncNode makes /dev/mapper/<name> match the kernel for one device, when
// this Control manages nodes (no udev daemon answers): the node is made if
// the device exists and removed if it does not. A process killed between
// an ioctl and its node change leaves a node missing or stale; recovery
// code that knows the name calls this, at the cost of one DM_DEV_STATUS,
// instead of MakeNodes, which lists every device. Where udev manages the
// nodes it does nothing.
func (c *Control) SyncNode(ctx context.Context, name string) error {
	if !c.managesNodes() {
		return nil
	}
	info, err := c.Info(ctx, Name(name))
	switch {
	case errors.Is(err, ErrNotFound):
		if err := c.nodeRemove(name); err != nil {
			return newError("sync node", Name(name), err)
		}
		return nil
	case err != nil:
		return err
	}
	if err := c.nodeAdd(name, info.Dev); err != nil {
		return newError("sync node", Name(name), err)
	}
	return nil
}

// MakeNodes makes /dev/mapper match the kernel, like `dmsetup mknodes`:
// a node for every device, none for devices that are gone, and the control
// node. It works whatever the udev policy.
func (c *Control) MakeNodes(ctx context.Context) error {
	devs, err := c.List(ctx)
	if err != nil {
		return err
	}
	dir := c.mapperDir()
	want := map[string]bool{"control": true}
	for _, d := range devs {
		want[d.Name] = true
		if err := udev.MakeNode(dir, d.Name, d.Dev, 0o600); err != nil {
			return newError("mknodes", Name(d.Name), err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return newError("mknodes", Ref{}, err)
	}
	for _, e := range entries {
		if want[e.Name()] {
			continue
		}
		// Only stale block nodes and symlinks are ours to remove.
		if e.Type()&(os.ModeDevice|os.ModeSymlink) != 0 {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	if c.path != "" {
		if err := ensureControlNode(c.path, c.cfg.sysDir); err != nil {
			return newError("mknodes", Ref{}, err)
		}
	}
	return nil
}

// ensureControlNode creates the control node from the misc device number
// in sysfs (/sys/class/misc/device-mapper/dev) when it is missing.
func ensureControlNode(path, sysDir string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(sysDir, "class/misc/device-mapper/dev"))
	if err != nil {
		return fmt.Errorf("device-mapper is not available (is the dm-mod module loaded?): %w", err)
	}
	dev, perr := ParseDev(strings.TrimSpace(string(b)))
	if perr != nil {
		return perr
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	err = unix.Mknod(path, unix.S_IFCHR|0o600, int(unix.Mkdev(dev.Major, dev.Minor)))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return &os.PathError{Op: "mknod", Path: path, Err: err}
	}
	return nil
}
