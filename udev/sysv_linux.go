//go:build linux && (amd64 || arm64 || riscv64 || loong64 || s390x || 386 || arm)

package udev

import (
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysvSupported reports whether this build has SysV semaphore syscalls.
const sysvSupported = true

// errnoErr turns a zero Errno into nil.
func errnoErr(e unix.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}

// semget(2): int semget(key_t key, int nsems, int semflg).
func semget(key int32, nsems, flags int) (int, error) {
	r, _, e := unix.Syscall(sysSemget, uintptr(key), uintptr(nsems), uintptr(flags))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// semctl(2) with an integer or pointer argument. The kernel takes the union
// semun by value as an unsigned long. semctlVersion is IPC_64 on
// architectures whose semctl entry is sys_old_semctl, and 0 where it is
// sys_semctl (which rejects the flag).
func semctl(semid, semnum, cmd int, arg uintptr) (int, error) {
	r, _, e := unix.Syscall6(sysSemctl, uintptr(semid), uintptr(semnum), uintptr(cmd|semctlVersion), arg, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// semctlPtr is semctl with a buffer argument (SEM_INFO, SEM_STAT).
func semctlPtr(semid, semnum, cmd int, buf []byte) (int, error) {
	r, _, e := unix.Syscall6(sysSemctl, uintptr(semid), uintptr(semnum), uintptr(cmd|semctlVersion),
		uintptr(unsafe.Pointer(&buf[0])), 0, 0)
	runtime.KeepAlive(buf)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// semSetval sets semaphore 0 to v. union semun's int member travels in an
// unsigned long; setvalArg places it where the kernel reads it (the high half
// on big-endian 64-bit kernels).
func semSetval(semid, v int) error {
	_, err := semctl(semid, 0, cmdSetval, setvalArg(v))
	return err
}

// semGetval returns the value of semaphore 0.
func semGetval(semid int) (int, error) {
	return semctl(semid, 0, cmdGetval, 0)
}

// semGetpid returns the pid of the last process that operated on semaphore 0
// (semop or SETVAL), as seen in our pid namespace.
func semGetpid(semid int) (int, error) {
	return semctl(semid, 0, cmdGetpid, 0)
}

// semRemove removes the set (IPC_RMID), waking every waiter with EIDRM.
func semRemove(semid int) error {
	_, err := semctl(semid, 0, ipcRmid, 0)
	return err
}

// semop performs one operation on semaphore 0. A negative timeout blocks
// without a time limit; otherwise the kernel gives up with EAGAIN after it.
// Only IPC_NOWAIT and wait-for-zero operations should block.
func semop(semid int, op, flags int16, timeout time.Duration) error {
	sb := sembuf{Num: 0, Op: op, Flg: flags}
	var tsp unsafe.Pointer
	var ts semTimespec
	if timeout >= 0 {
		ts = makeTimespec(timeout)
		tsp = unsafe.Pointer(&ts)
	}
	// semtimedop(int semid, struct sembuf *sops, size_t nsops,
	//            const struct timespec *timeout)
	_, _, e := unix.Syscall6(sysSemtimedop, uintptr(semid), uintptr(unsafe.Pointer(&sb)), 1, uintptr(tsp), 0, 0)
	runtime.KeepAlive(&sb)
	runtime.KeepAlive(&ts)
	return errnoErr(e)
}

// semInfoMax returns the highest index in use in the kernel's semaphore
// array (SEM_INFO), 0 when none is in use.
func semInfoMax() (int, error) {
	var buf [sizeofSeminfo]byte
	return semctlPtr(0, 0, cmdSemInfo, buf[:])
}

// semStatIndex returns the semid and the semid64_ds of the set at index idx
// (SEM_STAT), which the kernel refuses with EINVAL for an unused index and
// EACCES for a set the caller may not read.
func semStatIndex(idx int) (int, semidDS, error) {
	l := semid64()
	buf := make([]byte, l.size)
	id, err := semctlPtr(idx, 0, cmdSemStat, buf)
	if err != nil {
		return -1, semidDS{}, err
	}
	return id, l.decode(buf), nil
}
