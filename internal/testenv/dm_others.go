//go:build !linux

package testenv

import "errors"

func checkPrivileged() string { return "needs Linux with device-mapper" }

func dmVersion() (major, minor, patch uint32, err error) {
	return 0, 0, 0, errors.New("device-mapper needs Linux")
}
