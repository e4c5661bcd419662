//go:build linux && amd64

package udev

import (
	"time"

	"golang.org/x/sys/unix"
)

// System call numbers (x/sys/unix has them; the kernel table lines are
// kept for the entry points they name) from arch/x86/entry/syscalls/syscall_64.tbl.
const (
	sysSemget     = unix.SYS_SEMGET     // 64  common semget      sys_semget
	sysSemctl     = unix.SYS_SEMCTL     // 66  common semctl      sys_semctl
	sysSemtimedop = unix.SYS_SEMTIMEDOP // 220 common semtimedop  sys_semtimedop

	// semctlVersion: the native entry is sys_semctl, which always uses the
	// IPC_64 layouts and rejects a cmd with the IPC_64 bit.
	semctlVersion = 0
)

// semTimespec is struct __kernel_timespec { long long tv_sec; long long tv_nsec; }.
type semTimespec = unix.Timespec

func makeTimespec(d time.Duration) semTimespec { return unix.NsecToTimespec(int64(d)) }

// setvalArg: on little-endian, union semun's int is the low half of the long.
func setvalArg(v int) uintptr { return uintptr(v) }

// semid64 describes x86-64's struct semid64_ds (arch/x86/include/uapi/asm/sembuf.h),
// which keeps padding after each time even on 64-bit:
//
//	struct semid64_ds {
//		struct ipc64_perm sem_perm;  /*  0, 48 bytes */
//		__kernel_long_t  sem_otime;  /* 48 */
//		__kernel_ulong_t __unused1;  /* 56 */
//		__kernel_long_t  sem_ctime;  /* 64 */
//		__kernel_ulong_t __unused2;  /* 72 */
//		__kernel_ulong_t sem_nsems;  /* 80 */
//		__kernel_ulong_t __unused3;  /* 88 */
//		__kernel_ulong_t __unused4;  /* 96 */
//	};                               /* 104 */
func semid64() semidLayout {
	return semidLayout{size: 104, otime: 48, otimeHigh: -1, ctime: 64, ctimeHigh: -1, long: 8}
}
