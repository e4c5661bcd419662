//go:build !linux

package loop

import (
	"context"
	"os"
)

func unsupported(op string) error {
	return &Error{Op: op, Err: newKinded(ErrNotSupported, nil, "loop devices need Linux")}
}

func openControl() (*Control, error) { return nil, unsupported("open") }

func (c *Control) attachPath(context.Context, string, Options) (*Device, error) {
	return nil, unsupported("attach")
}

func (c *Control) attachOSFile(context.Context, *os.File, Options) (*Device, error) {
	return nil, unsupported("attach")
}

func (c *Control) add(int) (int, error) { return 0, unsupported("control-add") }

func (c *Control) remove(int) error { return unsupported("control-remove") }

func (d *Device) detachLocked(context.Context) error { return ErrNotSupported }

func deviceStatus(int, int) (Status, error) { return Status{}, ErrNotSupported }

func setCapacity(int) error { return ErrNotSupported }

func openDevice(int) (*Device, error) { return nil, unsupported("open") }

func list() ([]Status, error) { return nil, unsupported("list") }

func find(string) ([]Status, error) { return nil, unsupported("find") }

// closeFD has nothing to close: no Control or Device is ever opened here.
func closeFD(int) error { return nil }

// errnoKind has nothing to map where no kernel operation exists.
func errnoKind(error) sentinel { return "" }
