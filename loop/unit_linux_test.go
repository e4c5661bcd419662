package loop

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func osSupported() bool { return true }

func allocatedBytes(fi os.FileInfo) (int64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Blocks * 512, true
}

// TestSizes pins the layout of the kernel structures x/sys/unix mirrors
// against include/uapi/linux/loop.h.
func TestSizes(t *testing.T) {
	var info unix.LoopInfo64
	var cfg unix.LoopConfig
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(struct loop_info64)", unsafe.Sizeof(info), sizeofLoopInfo64},
		{"lo_device", unsafe.Offsetof(info.Device), 0},
		{"lo_inode", unsafe.Offsetof(info.Inode), 8},
		{"lo_rdevice", unsafe.Offsetof(info.Rdevice), 16},
		{"lo_offset", unsafe.Offsetof(info.Offset), 24},
		{"lo_sizelimit", unsafe.Offsetof(info.Sizelimit), 32},
		{"lo_number", unsafe.Offsetof(info.Number), 40},
		{"lo_encrypt_type", unsafe.Offsetof(info.Encrypt_type), 44},
		{"lo_encrypt_key_size", unsafe.Offsetof(info.Encrypt_key_size), 48},
		{"lo_flags", unsafe.Offsetof(info.Flags), 52},
		{"lo_file_name", unsafe.Offsetof(info.File_name), 56},
		{"lo_crypt_name", unsafe.Offsetof(info.Crypt_name), 120},
		{"lo_encrypt_key", unsafe.Offsetof(info.Encrypt_key), 184},
		{"lo_init", unsafe.Offsetof(info.Init), 216},
		{"sizeof(struct loop_config)", unsafe.Sizeof(cfg), sizeofLoopConfig},
		{"fd", unsafe.Offsetof(cfg.Fd), 0},
		{"block_size", unsafe.Offsetof(cfg.Size), 4},
		{"info", unsafe.Offsetof(cfg.Info), 8},
		{"LO_NAME_SIZE", unix.LO_NAME_SIZE, 64},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
	// The ioctl numbers and flags of include/uapi/linux/loop.h.
	for _, tc := range []struct {
		name      string
		got, want uint
	}{
		{"LOOP_SET_FD", unix.LOOP_SET_FD, 0x4c00},
		{"LOOP_CLR_FD", unix.LOOP_CLR_FD, 0x4c01},
		{"LOOP_SET_STATUS64", unix.LOOP_SET_STATUS64, 0x4c04},
		{"LOOP_GET_STATUS64", unix.LOOP_GET_STATUS64, 0x4c05},
		{"LOOP_SET_CAPACITY", unix.LOOP_SET_CAPACITY, 0x4c07},
		{"LOOP_SET_DIRECT_IO", unix.LOOP_SET_DIRECT_IO, 0x4c08},
		{"LOOP_SET_BLOCK_SIZE", unix.LOOP_SET_BLOCK_SIZE, 0x4c09},
		{"LOOP_CONFIGURE", unix.LOOP_CONFIGURE, 0x4c0a},
		{"LOOP_CTL_ADD", unix.LOOP_CTL_ADD, 0x4c80},
		{"LOOP_CTL_REMOVE", unix.LOOP_CTL_REMOVE, 0x4c81},
		{"LOOP_CTL_GET_FREE", unix.LOOP_CTL_GET_FREE, 0x4c82},
		{"LO_FLAGS_READ_ONLY", unix.LO_FLAGS_READ_ONLY, 1},
		{"LO_FLAGS_AUTOCLEAR", unix.LO_FLAGS_AUTOCLEAR, 4},
		{"LO_FLAGS_PARTSCAN", unix.LO_FLAGS_PARTSCAN, 8},
		{"LO_FLAGS_DIRECT_IO", unix.LO_FLAGS_DIRECT_IO, 16},
		{"LOOP_SET_STATUS_SETTABLE_FLAGS", setStatusFlags, 0xc},
		{"LOOP_CONFIGURE_SETTABLE_FLAGS", configureFlags, 0x1d},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

// infoBytes returns the bytes the kernel receives for info.
func infoBytes(info *unix.LoopInfo64) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(info)), unsafe.Sizeof(*info))
}

// TestEncodeInfoGolden checks the bytes handed to the kernel, field by
// field, in the machine's byte order.
func TestEncodeInfoGolden(t *testing.T) {
	le := func(v uint64, n int) []byte {
		b := make([]byte, n)
		for i := range n {
			b[i] = byte(v >> (8 * i))
		}
		if !littleEndian() {
			for i, j := 0, n-1; i < j; i, j = i+1, j-1 {
				b[i], b[j] = b[j], b[i]
			}
		}
		return b
	}
	o := Options{ReadOnly: true, Autoclear: true, PartScan: true, DirectIO: true, BlockSize: 4096, Offset: 0x1122334455667788, SizeLimit: 0x100000}
	for _, tc := range []struct {
		name    string
		allowed uint32
		flags   uint64
	}{
		{"LOOP_CONFIGURE", configureFlags, 0x1d},
		{"LOOP_SET_STATUS64", setStatusFlags, 0x0c},
	} {
		info := encodeInfo("/var/lib/thinp/data", o, tc.allowed)
		want := make([]byte, sizeofLoopInfo64)
		copy(want[24:], le(0x1122334455667788, 8)) // lo_offset
		copy(want[32:], le(0x100000, 8))           // lo_sizelimit
		copy(want[52:], le(tc.flags, 4))           // lo_flags
		copy(want[56:], "/var/lib/thinp/data")     // lo_file_name
		if diff := cmp.Diff(want, infoBytes(&info)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	// A long name keeps its NUL terminator.
	long := make([]byte, 100)
	for i := range long {
		long[i] = 'a'
	}
	info := encodeInfo(string(long), Options{}, configureFlags)
	if info.File_name[62] != 'a' || info.File_name[63] != 0 {
		t.Errorf("file name not truncated to 63 bytes + NUL: %q", info.File_name[60:])
	}
}

func littleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

func TestFlagsRoundTrip(t *testing.T) {
	for bits := range 16 {
		o := Options{ReadOnly: bits&1 != 0, Autoclear: bits&2 != 0, PartScan: bits&4 != 0, DirectIO: bits&8 != 0, Offset: uint64(bits) * 512, SizeLimit: uint64(bits) << 20}
		info := encodeInfo("x", o, configureFlags)
		if diff := cmp.Diff(o, decodeInfo(&info)); diff != "" {
			t.Errorf("bits %04b (-want +got):\n%s", bits, diff)
		}
		if len(missingOptions(o, decodeInfo(&info))) != 0 {
			t.Errorf("bits %04b: missing options after a round trip", bits)
		}
		// Through LOOP_SET_STATUS64 only autoclear and partscan survive.
		info = encodeInfo("x", o, setStatusFlags)
		got := decodeInfo(&info)
		if got.ReadOnly || got.DirectIO || got.Autoclear != o.Autoclear || got.PartScan != o.PartScan {
			t.Errorf("bits %04b: LOOP_SET_STATUS64 flags %+v", bits, got)
		}
	}
}

func TestMissingOptions(t *testing.T) {
	want := Options{ReadOnly: true, Autoclear: true, PartScan: true, DirectIO: true, BlockSize: 4096, Offset: 512, SizeLimit: 1024}
	got := missingOptions(want, Options{BlockSize: 512})
	wantMissing := []string{"read-only", "autoclear", "partition scan", "direct I/O", "block size 4096 (got 512)", "offset 512 (got 0)", "size limit 1024 (got 0)"}
	if diff := cmp.Diff(wantMissing, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// More than asked for is fine; BlockSize 0 accepts any.
	if m := missingOptions(Options{}, Options{ReadOnly: true, DirectIO: true, BlockSize: 4096}); len(m) != 0 {
		t.Errorf("extra options reported missing: %v", m)
	}
}

func TestProbeResult(t *testing.T) {
	for _, tc := range []struct {
		err     error
		state   int32
		wantErr bool
	}{
		{unix.EBADF, probeConfigure, false},
		{nil, probeConfigure, false},
		{unix.ENOTTY, probeLegacy, false},
		{unix.EINVAL, probeLegacy, false},
		{unix.EPERM, probeUnknown, true},
		{unix.EINTR, probeUnknown, true},
	} {
		state, err := probeResult(tc.err)
		if state != tc.state || (err != nil) != tc.wantErr {
			t.Errorf("probeResult(%v) = %d, %v; want %d, err %v", tc.err, state, err, tc.state, tc.wantErr)
		}
	}
}

func TestErrnoSentinels(t *testing.T) {
	for _, tc := range []struct {
		errno unix.Errno
		want  error
	}{
		{unix.EINVAL, ErrInvalid},
		{unix.EISDIR, ErrInvalid},
		{unix.ENOTBLK, ErrInvalid},
		{unix.EOVERFLOW, ErrInvalid},
		{unix.EBUSY, ErrBusy},
		{unix.ENXIO, ErrNotAttached},
		{unix.ENOTTY, ErrNotSupported},
		{unix.EOPNOTSUPP, ErrNotSupported},
		{unix.ENOSYS, ErrNotSupported},
		{unix.EROFS, ErrReadOnly},
		{unix.EACCES, ErrPermission},
		{unix.EPERM, ErrPermission},
	} {
		err := &Error{Op: "attach", Err: tc.errno}
		if !errors.Is(err, tc.want) || !errors.Is(err, tc.errno) {
			t.Errorf("%v: errors.Is(%v) = %v, errors.Is(errno) = %v", tc.errno, tc.want, errors.Is(err, tc.want), errors.Is(err, tc.errno))
		}
		for _, other := range []error{ErrInvalid, ErrBusy, ErrNotAttached, ErrNotSupported, ErrReadOnly, ErrPermission, ErrClosed} {
			if other != tc.want && errors.Is(err, other) {
				t.Errorf("%v also matches %v", tc.errno, other)
			}
		}
	}
	// Wrapped errnos count, unrelated ones match nothing.
	wrapped := &Error{Op: "attach", Err: newKinded(ErrNotSupported, unix.EINVAL, "direct I/O")}
	if !errors.Is(wrapped, ErrNotSupported) || !errors.Is(wrapped, unix.EINVAL) {
		t.Errorf("kinded errno: %v", wrapped)
	}
	enoent := &Error{Op: "attach", Err: unix.ENOENT}
	if !errors.Is(enoent, fs.ErrNotExist) {
		t.Errorf("ENOENT does not match fs.ErrNotExist")
	}
	for _, s := range []error{ErrInvalid, ErrBusy, ErrNotAttached, ErrNotSupported, ErrReadOnly, ErrPermission, ErrClosed} {
		if errors.Is(enoent, s) {
			t.Errorf("ENOENT matches %v", s)
		}
	}
}

func TestParseLoopName(t *testing.T) {
	for name, want := range map[string]int{"loop0": 0, "loop7": 7, "loop123": 123} {
		if n, ok := parseLoopName(name); !ok || n != want {
			t.Errorf("parseLoopName(%q) = %d, %v", name, n, ok)
		}
	}
	for _, name := range []string{"loop", "loop-control", "loop0p1", "loop01", "loop-1", "sda", "loop99999999999", "xloop1"} {
		if n, ok := parseLoopName(name); ok {
			t.Errorf("parseLoopName(%q) = %d, true", name, n)
		}
	}
}

func TestBackoff(t *testing.T) {
	for i := 1; i < 100; i++ {
		d := backoff(i)
		if d < backoffBase/2 || d > backoffMax {
			t.Errorf("backoff(%d) = %v, outside [%v, %v]", i, d, backoffBase/2, backoffMax)
		}
	}
	if backoff(1) > backoffBase || backoff(60) < backoffMax/2 {
		t.Errorf("backoff does not grow: %v .. %v", backoff(1), backoff(60))
	}
	var total time.Duration
	for i := 1; i < defaultAttempts; i++ {
		total += backoff(i)
	}
	if total > 15*time.Second {
		t.Errorf("worst-case allocation wait %v is not short", total)
	}
}
