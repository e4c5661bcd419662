//go:build !linux || !(amd64 || arm64 || riscv64 || loong64 || s390x || 386 || arm)

package udev

import (
	"syscall"
	"time"
)

// This build has no SysV semaphore support. What another Linux architecture
// needs, in a sysv_linux_<arch>.go file and the build tags of sysv_linux.go:
//
//   - the semget, semctl and semtimedop numbers from its syscall table; where
//     the table lacks a direct entry (kernels before 5.1 on several 32-bit
//     architectures), the ipc(2) multiplexer instead;
//   - whether its semctl entry is sys_old_semctl (then IPC_64 must be OR'ed
//     into every cmd, as on arm) or sys_semctl (the bit must not be set);
//   - the struct timespec semtimedop takes (time64 or old 32-bit);
//   - where SETVAL's int sits in the unsigned long argument: the high half on
//     big-endian 64-bit kernels (ppc64, mips64, sparc64), as on s390x;
//   - the layout of struct semid64_ds for SEM_STAT (ppc, mips and sparc each
//     have their own, see arch/*/include/uapi/asm/sembuf.h);
//   - a row in the TestSysVABI table, and a run of the tests on that
//     architecture (qemu-user is enough).
const sysvSupported = false

func semget(key int32, nsems, flags int) (int, error)               { return -1, syscall.ENOSYS }
func semSetval(semid, v int) error                                  { return syscall.ENOSYS }
func semGetval(semid int) (int, error)                              { return -1, syscall.ENOSYS }
func semGetpid(semid int) (int, error)                              { return -1, syscall.ENOSYS }
func semRemove(semid int) error                                     { return syscall.ENOSYS }
func semop(semid int, op, flags int16, timeout time.Duration) error { return syscall.ENOSYS }
func semInfoMax() (int, error)                                      { return -1, syscall.ENOSYS }
func semStatIndex(idx int) (int, semidDS, error)                    { return -1, semidDS{}, syscall.ENOSYS }
