//go:build !linux

package dm

import (
	"context"
	"errors"
)

var errNoDM = errors.New("device-mapper is only available on Linux")

func (c *Control) nodeAdd(name string, dev Dev) error                { return nil }
func (c *Control) nodeRemove(name string) error                      { return nil }
func (c *Control) nodeRename(oldName, newName string, dev Dev) error { return nil }

// MakeNodes makes /dev/mapper match the kernel; Linux only.
func (c *Control) MakeNodes(ctx context.Context) error { return newError("mknodes", Ref{}, errNoDM) }

func ensureControlNode(path, sysDir string) error { return errNoDM }

func (c *Control) holders(dev Dev) ([]string, error) { return nil, errNoDM }
func (c *Control) isDM(dev Dev) bool                 { return false }
func (c *Control) mounts(dev Dev) []Mount            { return nil }
func (c *Control) claimed(dev Dev) bool              { return false }

// SyncNode makes one /dev/mapper node match the kernel; Linux only.
func (c *Control) SyncNode(ctx context.Context, name string) error {
	return newError("sync node", Name(name), errNoDM)
}

// DevNode finds a device node for dev; Linux only.
func (c *Control) DevNode(dev Dev) (string, error) { return "", errNoDM }
