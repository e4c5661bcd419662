//go:build linux && (amd64 || arm64 || riscv64 || loong64 || s390x || arm)

package udev

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestSysVNumbersMatchXSys cross-checks the syscall numbers with x/sys/unix's
// generated tables.
func TestSysVNumbersMatchXSys(t *testing.T) {
	if sysSemget != unix.SYS_SEMGET || sysSemctl != unix.SYS_SEMCTL || sysSemtimedop != unix.SYS_SEMTIMEDOP {
		t.Errorf("semget/semctl/semtimedop = %d/%d/%d, x/sys/unix has %d/%d/%d",
			sysSemget, sysSemctl, sysSemtimedop, unix.SYS_SEMGET, unix.SYS_SEMCTL, unix.SYS_SEMTIMEDOP)
	}
}
