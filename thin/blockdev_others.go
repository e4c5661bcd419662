//go:build !linux

package thin

import (
	"errors"

	"github.com/thinp/thinp/dm"
)

func zeroMetadataHeader(path string, d dm.Dev, force bool) error {
	return errors.New("formatting thin-pool metadata is only supported on Linux")
}
