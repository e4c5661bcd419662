package udev

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

// checkNodeName refuses names that are not a single path element.
func checkNodeName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("%w: node name %q", fs.ErrInvalid, name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w: node name %q contains '/' or NUL", fs.ErrInvalid, name)
	}
	return nil
}

// WaitNode waits until path exists (present) or is gone (!present), polling
// with a backoff of 1 to 50 ms, and returns ctx's error, wrapped, if ctx ends
// first. A path that exists follows symbolic links (a /dev/mapper/<name> link
// whose target is missing is not present yet); a path that is gone is gone
// itself, dangling or not.
func WaitNode(ctx context.Context, path string, present bool) error {
	delay := time.Millisecond
	for {
		var err error
		if present {
			_, err = os.Stat(path)
			if err == nil {
				return nil
			}
		} else {
			_, err = os.Lstat(path)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return &Error{Op: "wait node", Path: path, Err: err}
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return &Error{Op: "wait node", Path: path, Err: ctx.Err()}
		case <-t.C:
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// QueueFile is the file systemd-udevd keeps while its event queue is not
// empty; `udevadm settle` waits for it to disappear.
const QueueFile = "/run/udev/queue"

// Settle waits until udevd's event queue is empty, like `udevadm settle`,
// or ctx ends. It returns at once when udevd is not running. Prefer a
// cookie or Monitor.WaitDevice, which wait for one device instead of all.
func Settle(ctx context.Context) error {
	return WaitNode(ctx, QueueFile, false)
}
