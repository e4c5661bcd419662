//go:build !linux

package thin

import (
	"errors"

	"github.com/thinp/thinp/dm"
)

// holders is Linux's sysfs; elsewhere the pool scans every dm device.
func (h sysHost) holders(d dm.Dev) ([]holderLink, error) {
	return nil, errors.New("no sysfs holders outside Linux")
}

func (h sysHost) dmName(d dm.Dev) (string, error) {
	return "", errors.New("no sysfs outside Linux")
}

func (h sysHost) watchHolders(d dm.Dev) error { return errors.New("no sysfs outside Linux") }

func (h sysHost) holdersStamp(d dm.Dev) (holderStamp, error) {
	return holderStamp{}, errors.New("no sysfs outside Linux")
}
