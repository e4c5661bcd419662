//go:build linux && s390x

package udev

import (
	"time"

	"golang.org/x/sys/unix"
)

// System call numbers (x/sys/unix has them; the kernel table lines are
// kept for the entry points they name) from arch/s390/kernel/syscalls/syscall.tbl. They exist
// since Linux 5.1; older kernels only have the ipc(2) multiplexer, which this
// package does not use, so they fail with ENOSYS (ErrNotSupported).
const (
	sysSemtimedop = unix.SYS_SEMTIMEDOP // 392 64     semtimedop sys_semtimedop
	sysSemget     = unix.SYS_SEMGET     // 393 common semget     sys_semget
	sysSemctl     = unix.SYS_SEMCTL     // 394 common semctl     sys_semctl

	// semctlVersion: the entry is sys_semctl, which always uses the IPC_64
	// layouts and rejects a cmd with the IPC_64 bit.
	semctlVersion = 0
)

// semTimespec is struct __kernel_timespec { long long tv_sec; long long tv_nsec; }.
type semTimespec = unix.Timespec

func makeTimespec(d time.Duration) semTimespec { return unix.NsecToTimespec(int64(d)) }

// setvalArg: s390x is big-endian 64-bit. The caller's union semun { int val;
// ... } is passed as an unsigned long, so its int sits in the high half, and
// ipc/sem.c reads it from there:
//
//	#if defined(CONFIG_64BIT) && defined(__BIG_ENDIAN)
//		val = arg >> 32;
func setvalArg(v int) uintptr { return uintptr(v) << 32 }

// semid64 describes s390x's struct semid64_ds (arch/s390/include/uapi/asm/sembuf.h;
// ipc64_perm from arch/s390/include/uapi/asm/ipcbuf.h is 48 bytes on s390x):
//
//	struct semid64_ds {
//		struct ipc64_perm sem_perm;  /*  0, 48 bytes */
//		__kernel_time_t sem_otime;   /* 48 */
//		__kernel_time_t sem_ctime;   /* 56 */
//		unsigned long   sem_nsems;   /* 64 */
//		unsigned long   __unused1;   /* 72 */
//		unsigned long   __unused2;   /* 80 */
//	};                               /* 88 */
func semid64() semidLayout {
	return semidLayout{size: 88, otime: 48, otimeHigh: -1, ctime: 56, ctimeHigh: -1, long: 8}
}
