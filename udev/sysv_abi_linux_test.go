//go:build linux && (amd64 || arm64 || riscv64 || loong64 || s390x || 386 || arm)

package udev

import "unsafe"

func currentSysVABI() sysvABI {
	shift := uint(0)
	for v := setvalArg(1); v > 1; v >>= 1 {
		shift++
	}
	return sysvABI{
		semget:        sysSemget,
		semctl:        sysSemctl,
		semtimedop:    sysSemtimedop,
		semctlVersion: semctlVersion,
		timespecSize:  unsafe.Sizeof(semTimespec{}),
		setvalShift:   shift,
		layout:        semid64(),
	}
}
