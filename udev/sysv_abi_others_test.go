//go:build !linux || !(amd64 || arm64 || riscv64 || loong64 || s390x || 386 || arm)

package udev

func currentSysVABI() sysvABI { return sysvABI{} }

func setvalArg(v int) uintptr { return uintptr(v) }
