//go:build linux && arm

package udev

import (
	"time"

	"golang.org/x/sys/unix"
)

// System call numbers (x/sys/unix has them; the kernel table lines are
// kept for the entry points they name) from arch/arm/tools/syscall.tbl (EABI). These entries
// predate Linux 5.1, so they work on every kernel Go supports.
const (
	sysSemget     = unix.SYS_SEMGET     // 299 common semget     sys_semget
	sysSemctl     = unix.SYS_SEMCTL     // 300 common semctl     sys_old_semctl
	sysSemtimedop = unix.SYS_SEMTIMEDOP // 312 common semtimedop sys_semtimedop_time32

	// semctlVersion: arm's semctl is sys_old_semctl, which returns the old
	// struct semid_ds unless the cmd carries IPC_64 (as glibc sets it).
	semctlVersion = ipc64
)

// semTimespec is struct old_timespec32 { s32 tv_sec; s32 tv_nsec; }, which
// semtimedop_time32 takes. Only relative timeouts of at most a second or so
// are passed, so the 32-bit seconds field is no limit.
type semTimespec = unix.Timespec

func makeTimespec(d time.Duration) semTimespec { return unix.NsecToTimespec(int64(d)) }

// setvalArg: on 32-bit, union semun is exactly one long.
func setvalArg(v int) uintptr { return uintptr(v) }

// semid64 describes the generic 32-bit struct semid64_ds
// (include/uapi/asm-generic/sembuf.h with __BITS_PER_LONG == 32; the 32-bit
// ipc64_perm is 36 bytes). Little-endian: the time is low | high<<32.
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
