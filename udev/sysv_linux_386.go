//go:build linux && 386

package udev

import (
	"time"

	"golang.org/x/sys/unix"
)

// System call numbers (x/sys/unix has them; the kernel table lines are
// kept for the entry points they name) from arch/x86/entry/syscalls/syscall_32.tbl. i386 has
// no semop or 32-bit-time semtimedop entry of its own: before Linux 5.1 all
// SysV IPC went through the ipc(2) multiplexer (117), which this package does
// not use, so older kernels fail with ENOSYS (ErrNotSupported).
const (
	sysSemget     = unix.SYS_SEMGET            // 393 i386 semget            sys_semget
	sysSemctl     = unix.SYS_SEMCTL            // 394 i386 semctl            sys_semctl   compat_sys_semctl
	sysSemtimedop = unix.SYS_SEMTIMEDOP_TIME64 // 420 i386 semtimedop_time64 sys_semtimedop

	// semctlVersion: the entry is sys_semctl (compat_sys_semctl on a 64-bit
	// kernel), which always uses the IPC_64 layouts and rejects the bit.
	semctlVersion = 0
)

// semTimespec is struct __kernel_timespec { long long tv_sec; long long tv_nsec; },
// which semtimedop_time64 takes; x/sys/unix's Timespec has 32-bit fields on 386.
type semTimespec struct {
	Sec  int64
	Nsec int64
}

func makeTimespec(d time.Duration) semTimespec {
	return semTimespec{Sec: int64(d / time.Second), Nsec: int64(d % time.Second)}
}

// setvalArg: on 32-bit, union semun is exactly one long.
func setvalArg(v int) uintptr { return uintptr(v) }

// semid64 describes i386's struct semid64_ds (arch/x86/include/uapi/asm/sembuf.h
// with __i386__; the 32-bit ipc64_perm is 36 bytes). compat_semid64_ds has
// the same layout, so a 386 binary on an x86-64 kernel reads it the same way.
//
//	struct semid64_ds {
//		struct ipc64_perm sem_perm;     /*  0, 36 bytes */
//		unsigned long sem_otime;        /* 36 */
//		unsigned long sem_otime_high;   /* 40 */
//		unsigned long sem_ctime;        /* 44 */
//		unsigned long sem_ctime_high;   /* 48 */
//		unsigned long sem_nsems;        /* 52 */
//		unsigned long __unused3;        /* 56 */
//		unsigned long __unused4;        /* 60 */
//	};                                  /* 64 */
func semid64() semidLayout {
	return semidLayout{size: 64, otime: 36, otimeHigh: 40, ctime: 44, ctimeHigh: 48, long: 4}
}
