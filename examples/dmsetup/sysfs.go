package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/thinp/thinp/dm"
)

// sysfs reads block device attributes under a sysfs root ("/sys").
type sysfs string

// devDir is /sys/dev/block/M:m, a link to the device's sysfs directory.
func (s sysfs) devDir(d dm.Dev) string {
	return filepath.Join(string(s), "dev", "block", d.String())
}

// readAhead returns a device's read-ahead in sectors, as libdevmapper
// reads it: /sys/dev/block/M:m/bdi/read_ahead_kb times two.
func (s sysfs) readAhead(d dm.Dev) (uint32, bool) {
	b, err := os.ReadFile(filepath.Join(s.devDir(d), "bdi", "read_ahead_kb"))
	if err != nil {
		return 0, false
	}
	kb, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(kb * 2), true
}

// blockName returns the kernel's name of a block device, "dm-0" or
// "loop3": the last element of the /sys/dev/block/M:m link.
func (s sysfs) blockName(d dm.Dev) (string, bool) {
	target, err := os.Readlink(s.devDir(d))
	if err != nil {
		return "", false
	}
	return filepath.Base(target), true
}

// mapperName returns the device-mapper name of a dm device from
// /sys/dev/block/M:m/dm/name, or the kernel's name for other devices.
func (s sysfs) mapperName(d dm.Dev) (string, bool) {
	if b, err := os.ReadFile(filepath.Join(s.devDir(d), "dm", "name")); err == nil {
		return strings.TrimSuffix(string(b), "\n"), true
	}
	return s.blockName(d)
}

// name implements devNamer.
func (s sysfs) name(d dm.Dev, mode nameMode) (string, bool) {
	switch mode {
	case nameMapper:
		return s.mapperName(d)
	case nameBlkDev:
		return s.blockName(d)
	}
	return "", false
}
