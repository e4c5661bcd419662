package udev

import "encoding/binary"

// SysV IPC constants, from include/uapi/linux/ipc.h and include/uapi/linux/sem.h.
// x/sys/unix has no semaphore wrappers and only some of these numbers.
const (
	ipcCreat  = 0x200 // #define IPC_CREAT  00001000
	ipcExcl   = 0x400 // #define IPC_EXCL   00002000
	ipcNowait = 0x800 // #define IPC_NOWAIT 00004000
	ipcRmid   = 0     // #define IPC_RMID 0
	ipc64     = 0x100 // #define IPC_64 0x0100: "new" struct layout, for old_semctl

	cmdGetpid  = 11 // #define GETPID 11: pid of the last semop or SETVAL
	cmdGetval  = 12 // #define GETVAL 12
	cmdSetval  = 16 // #define SETVAL 16
	cmdSemStat = 18 // #define SEM_STAT 18: index in, semid out, semid64_ds filled
	cmdSemInfo = 19 // #define SEM_INFO 19: highest used index out, seminfo filled

	// semvmx is the largest value a semaphore can hold (SEMVMX).
	semvmx = 32767
)

// sizeofSembuf is the size of struct sembuf, identical on every architecture:
//
//	struct sembuf {
//		unsigned short sem_num; /* semaphore index in array */
//		short          sem_op;  /* semaphore operation */
//		short          sem_flg; /* operation flags */
//	};
const sizeofSembuf = 6

// sembuf mirrors struct sembuf.
type sembuf struct {
	Num uint16
	Op  int16
	Flg int16
}

// sizeofSeminfo is the size of struct seminfo: ten ints on every architecture.
//
//	struct seminfo {
//		int semmap; int semmni; int semmns; int semmnu; int semmsl;
//		int semopm; int semume; int semusz; int semvmx; int semaem;
//	};
const sizeofSeminfo = 40

// semidLayout describes where struct semid64_ds keeps the fields this package
// reads; it differs by architecture (see the sysv_linux_*.go files). All
// layouts start with struct ipc64_perm, whose first field is the int key.
type semidLayout struct {
	size      int // sizeof(struct semid64_ds)
	otime     int // offset of sem_otime
	otimeHigh int // offset of sem_otime_high on 32-bit layouts, or -1
	ctime     int // offset of sem_ctime
	ctimeHigh int // offset of sem_ctime_high on 32-bit layouts, or -1
	long      int // sizeof(long) in this layout: 4 or 8
}

// semidDS is what this package needs from struct semid64_ds.
type semidDS struct {
	key   int32 // sem_perm.key
	otime int64 // last semop, seconds since the epoch; 0 if never
	ctime int64 // last change (creation, SETVAL), seconds since the epoch
}

// decode reads the fields from b, which holds one struct semid64_ds in native
// byte order; b must be at least l.size bytes long.
func (l semidLayout) decode(b []byte) semidDS {
	ne := binary.NativeEndian
	word := func(off, high int) int64 {
		if l.long == 8 {
			return int64(ne.Uint64(b[off:]))
		}
		v := int64(ne.Uint32(b[off:]))
		if high >= 0 {
			v |= int64(ne.Uint32(b[high:])) << 32
		}
		return v
	}
	return semidDS{
		key:   int32(ne.Uint32(b[0:])),
		otime: word(l.otime, l.otimeHigh),
		ctime: word(l.ctime, l.ctimeHigh),
	}
}
