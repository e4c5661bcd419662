//go:build linux && (arm64 || riscv64 || loong64)

package udev

import (
	"time"

	"golang.org/x/sys/unix"
)

// System call numbers (x/sys/unix has them; the kernel table lines are
// kept for the entry points they name) from include/uapi/asm-generic/unistd.h, shared by the
// architectures that use the generic table (arm64, riscv64, loong64).
const (
	sysSemget     = unix.SYS_SEMGET     // #define __NR_semget 190
	sysSemctl     = unix.SYS_SEMCTL     // #define __NR_semctl 191
	sysSemtimedop = unix.SYS_SEMTIMEDOP // #define __NR_semtimedop 192 (__NR_semop is 193)

	// semctlVersion: the generic entry is sys_semctl, which always uses the
	// IPC_64 layouts and rejects a cmd with the IPC_64 bit.
	semctlVersion = 0
)

// semTimespec is struct __kernel_timespec { long long tv_sec; long long tv_nsec; }.
type semTimespec = unix.Timespec

func makeTimespec(d time.Duration) semTimespec { return unix.NsecToTimespec(int64(d)) }

// setvalArg: on little-endian, union semun's int is the low half of the long.
func setvalArg(v int) uintptr { return uintptr(v) }

// semid64 describes the generic 64-bit struct semid64_ds
// (include/uapi/asm-generic/sembuf.h with __BITS_PER_LONG == 64):
//
//	struct semid64_ds {
//		struct ipc64_perm sem_perm;  /*  0, 48 bytes */
//		__kernel_time_t sem_otime;   /* 48 */
//		__kernel_time_t sem_ctime;   /* 56 */
//		unsigned long   sem_nsems;   /* 64 */
//		unsigned long   __unused3;   /* 72 */
//		unsigned long   __unused4;   /* 80 */
//	};                               /* 88 */
func semid64() semidLayout {
	return semidLayout{size: 88, otime: 48, otimeHigh: -1, ctime: 56, ctimeHigh: -1, long: 8}
}
