package ioctl

import (
	"math/rand"
	"testing"

	"golang.org/x/sys/unix"
)

func TestDev(t *testing.T) {
	known := []struct {
		major, minor uint32
		dev          uint64
	}{
		{253, 0, 0xfd00},
		{7, 0, 0x700},
		{7, 255, 0x7ff},
		{7, 256, 0x100700},
		{259, 65536, 0x10010300},
		{8, 16, 0x810},
		{0, 0, 0},
		{4095, 0xfffff, 0xffffffff},  // the largest 12-bit major, 20-bit minor
		{1, 0xfff00, 0xfff00100},     // high minor bits go above the major
		{0xfff, 0xff, 0xfffff},       // major fills bits 8-19
		{254, 1048575, 0xfff0feff},   // 254:2^20-1
		{253, 0x12345, 0x1230fd45},   // mixed
		{252, 0xab, 0xfcab},          // minor < 256 stays in the low byte
		{0, 0x100, 0x100000},         // minor 256, major 0
		{0x100, 0, 0x10000},          // major 256
		{0x800, 0x800, 0x880000},     // major 2048, minor 2048
		{0x1, 0x80000, 0x80000100},   // top minor bit
		{0xabc, 0xdef01, 0xdefabc01}, // every nibble distinct
		{0x123, 0x45678, 0x45612378}, // every nibble distinct
		{0xfd, 0x7, 0xfd07},          // 253:7
		{0x10, 0x1000, 0x1001000},    // 16:4096
		{0x3, 0x3ff, 0x3003ff},       // 3:1023
		{0x103, 0x10000, 0x10010300}, // 259:65536 again, in hex
		{0x0, 0xfffff, 0xfff000ff},   // 0:max
		{0xfff, 0x0, 0xfff00},        // max:0
		{0x1ff, 0x1ff, 0x11ffff},     // 511:511
	}
	for _, tt := range known {
		if got := (Dev{tt.major, tt.minor}).Encode(); got != tt.dev {
			t.Errorf("Dev{%d, %d}.Encode() = %#x, want %#x", tt.major, tt.minor, got, tt.dev)
		}
		if d := DecodeDev(tt.dev); d != (Dev{tt.major, tt.minor}) {
			t.Errorf("DecodeDev(%#x) = %s, want %d:%d", tt.dev, d, tt.major, tt.minor)
		}
		// For 12-bit majors and 20-bit minors huge_encode_dev agrees
		// with glibc's makedev, which x/sys/unix implements.
		if got := unix.Mkdev(tt.major, tt.minor); got != tt.dev {
			t.Errorf("unix.Mkdev(%d, %d) = %#x, want %#x", tt.major, tt.minor, got, tt.dev)
		}
		if unix.Major(tt.dev) != tt.major || unix.Minor(tt.dev) != tt.minor {
			t.Errorf("unix.Major/Minor(%#x) = %d:%d", tt.dev, unix.Major(tt.dev), unix.Minor(tt.dev))
		}
	}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 100000; i++ {
		major, minor := rng.Uint32()&0xfff, rng.Uint32()&0xfffff
		dev := Dev{major, minor}.Encode()
		if dev != unix.Mkdev(major, minor) || dev>>32 != 0 {
			t.Fatalf("Dev{%d, %d}.Encode() = %#x, unix.Mkdev %#x", major, minor, dev, unix.Mkdev(major, minor))
		}
		if d := DecodeDev(dev); d != (Dev{major, minor}) {
			t.Fatalf("round trip %d:%d -> %#x -> %s", major, minor, dev, d)
		}
	}
	// DecodeDev looks at the low 32 bits only, as new_decode_dev does.
	if d := DecodeDev(0xffffffff00000000 | 0xfd00); d != (Dev{253, 0}) {
		t.Errorf("DecodeDev with high bits: %s", d)
	}
}
