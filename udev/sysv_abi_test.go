package udev

import (
	"encoding/binary"
	"runtime"
	"testing"
	"unsafe"
)

// sysvABI is what one architecture needs for SysV semaphores, written down
// from the kernel's syscall tables and uapi headers (see sysv_linux_*.go).
type sysvABI struct {
	semget, semctl, semtimedop uintptr
	semctlVersion              int
	timespecSize               uintptr // the struct semtimedop takes
	setvalShift                uint    // where SETVAL's int sits in the unsigned long
	layout                     semidLayout
}

var (
	layoutAMD64   = semidLayout{size: 104, otime: 48, otimeHigh: -1, ctime: 64, ctimeHigh: -1, long: 8}
	layoutGeneric = semidLayout{size: 88, otime: 48, otimeHigh: -1, ctime: 56, ctimeHigh: -1, long: 8}
	layout32      = semidLayout{size: 64, otime: 36, otimeHigh: 40, ctime: 44, ctimeHigh: 48, long: 4}
)

// wantSysVABI pins every supported architecture; a new row needs a test run
// on that architecture.
func wantSysVABI(goarch string) (sysvABI, bool) {
	switch goarch {
	case "amd64":
		return sysvABI{64, 66, 220, 0, 16, 0, layoutAMD64}, true
	case "arm64", "riscv64", "loong64":
		return sysvABI{190, 191, 192, 0, 16, 0, layoutGeneric}, true
	case "s390x":
		return sysvABI{393, 394, 392, 0, 16, 32, layoutGeneric}, true
	case "386":
		return sysvABI{393, 394, 420, 0, 16, 0, layout32}, true
	case "arm":
		return sysvABI{299, 300, 312, 0x100, 8, 0, layout32}, true
	}
	return sysvABI{}, false
}

func TestSysVABI(t *testing.T) {
	want, ok := wantSysVABI(runtime.GOARCH)
	if !ok {
		if sysvSupported {
			t.Fatalf("%s has SysV support but no row in wantSysVABI", runtime.GOARCH)
		}
		t.Skipf("no SysV semaphore support on %s", runtime.GOARCH)
	}
	got := currentSysVABI()
	if got != want {
		t.Errorf("%s ABI:\n got %+v\nwant %+v", runtime.GOARCH, got, want)
	}
}

// TestSysVStructs pins the layouts that are the same everywhere.
func TestSysVStructs(t *testing.T) {
	if s := unsafe.Sizeof(sembuf{}); s != sizeofSembuf {
		t.Errorf("sizeof(struct sembuf) = %d, want %d", s, sizeofSembuf)
	}
	for _, tc := range []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"sem_num", unsafe.Offsetof(sembuf{}.Num), 0},
		{"sem_op", unsafe.Offsetof(sembuf{}.Op), 2},
		{"sem_flg", unsafe.Offsetof(sembuf{}.Flg), 4},
	} {
		if tc.got != tc.want {
			t.Errorf("offsetof(struct sembuf, %s) = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
	for _, tc := range []struct {
		name      string
		got, want int
	}{
		{"IPC_CREAT", ipcCreat, 0o1000},
		{"IPC_EXCL", ipcExcl, 0o2000},
		{"IPC_NOWAIT", ipcNowait, 0o4000},
		{"IPC_RMID", ipcRmid, 0},
		{"IPC_64", ipc64, 0x100},
		{"GETVAL", cmdGetval, 12},
		{"SETVAL", cmdSetval, 16},
		{"SEM_STAT", cmdSemStat, 18},
		{"SEM_INFO", cmdSemInfo, 19},
		{"sizeof(struct seminfo)", sizeofSeminfo, 10 * 4},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

// TestSemidDecode decodes hand-made semid64_ds images for each layout.
func TestSemidDecode(t *testing.T) {
	const key, otime, ctime = 0x0D4D1234, 0x1_2345_6789, 0x0_6543_2100
	bo := binary.NativeEndian // the kernel writes native byte order
	for name, l := range map[string]semidLayout{"amd64": layoutAMD64, "generic64": layoutGeneric, "32-bit": layout32} {
		b := make([]byte, l.size)
		bo.PutUint32(b[0:], key)
		put := func(off, high int, v int64) {
			if l.long == 8 {
				bo.PutUint64(b[off:], uint64(v))
				return
			}
			bo.PutUint32(b[off:], uint32(v))
			bo.PutUint32(b[high:], uint32(v>>32))
		}
		put(l.otime, l.otimeHigh, otime)
		put(l.ctime, l.ctimeHigh, ctime)
		if got := l.decode(b); got != (semidDS{key: key, otime: otime, ctime: ctime}) {
			t.Errorf("%s: decode = %+v", name, got)
		}
	}
}

// TestSetvalArg checks where SETVAL's value travels (big-endian 64-bit
// kernels read the high half of the unsigned long).
func TestSetvalArg(t *testing.T) {
	want, ok := wantSysVABI(runtime.GOARCH)
	if !ok {
		t.Skip("unsupported architecture")
	}
	if got := setvalArg(1); got != uintptr(1)<<want.setvalShift {
		t.Errorf("setvalArg(1) = %#x, want %#x", got, uintptr(1)<<want.setvalShift)
	}
}
