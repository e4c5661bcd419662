//go:build linux && 386

package udev

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestSysVNumbersMatchXSys cross-checks the syscall numbers with x/sys/unix's
// generated table; i386 has only the time64 semtimedop.
func TestSysVNumbersMatchXSys(t *testing.T) {
	if sysSemget != unix.SYS_SEMGET || sysSemctl != unix.SYS_SEMCTL || sysSemtimedop != unix.SYS_SEMTIMEDOP_TIME64 {
		t.Errorf("semget/semctl/semtimedop_time64 = %d/%d/%d, x/sys/unix has %d/%d/%d",
			sysSemget, sysSemctl, sysSemtimedop, unix.SYS_SEMGET, unix.SYS_SEMCTL, unix.SYS_SEMTIMEDOP_TIME64)
	}
}
