package ioctl

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Dev is a Linux block device number, major:minor: the one device-number
// type of this module. Device-mapper tables name their underlying devices
// this way ("253:0"), dm_ioctl and dm_name_list carry it in the kernel's
// huge_encode_dev form (Encode, DecodeDev), and stat's st_rdev holds it in
// the same form for every number the kernel hands out (a 12-bit major and a
// 20-bit minor, see Valid).
type Dev struct {
	Major, Minor uint32
}

// MaxMajor and MaxMinor are the largest numbers a Linux dev_t holds: the
// kernel's MINORBITS is 20, leaving 12 bits of a 32-bit dev_t for the
// major.
const (
	MaxMajor = 1<<12 - 1
	MaxMinor = 1<<20 - 1
)

// String formats d as tables refer to devices, "major:minor".
func (d Dev) String() string {
	return strconv.FormatUint(uint64(d.Major), 10) + ":" + strconv.FormatUint(uint64(d.Minor), 10)
}

// IsZero reports whether d is 0:0, which no block device has.
func (d Dev) IsZero() bool { return d == Dev{} }

// ErrBadDev is returned by Dev.Valid and ParseDev.
var ErrBadDev = errors.New("not a valid device number")

// Valid reports, as an error wrapping ErrBadDev, whether d is a device
// number the kernel can have: not 0:0, the major at most MaxMajor, the
// minor at most MaxMinor. It returns nil for a valid number.
func (d Dev) Valid() error {
	switch {
	case d.IsZero():
		return fmt.Errorf("%w: 0:0 is no device", ErrBadDev)
	case d.Major > MaxMajor || d.Minor > MaxMinor:
		return fmt.Errorf("%w: %s does not fit a dev_t (major at most %d, minor at most %d)", ErrBadDev, d, MaxMajor, MaxMinor)
	}
	return nil
}

// Encode packs d the way the kernel's huge_encode_dev does for
// dm_ioctl.dev and dm_name_list.dev, which is also stat's st_rdev and the C
// library's makedev for every valid number:
//
//	(minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)
func (d Dev) Encode() uint64 {
	return uint64(d.Minor&0xff) | uint64(d.Major)<<8 | uint64(d.Minor&^0xff)<<12
}

// DecodeDev unpacks a huge_encode_dev value (or a st_rdev) into a Dev. Like
// the kernel's new_decode_dev it looks at the low 32 bits only.
func DecodeDev(v uint64) Dev {
	return Dev{
		Major: uint32((v >> 8) & 0xfff),
		Minor: uint32(v&0xff) | uint32((v>>12)&0xfff00),
	}
}

// ParseDev parses "major:minor" in decimal, as tables write device numbers,
// and checks it with Valid.
func ParseDev(s string) (Dev, error) {
	maj, min, ok := strings.Cut(s, ":")
	if !ok {
		return Dev{}, fmt.Errorf("%w: %q is not major:minor", ErrBadDev, s)
	}
	a, err1 := strconv.ParseUint(maj, 10, 32)
	b, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return Dev{}, fmt.Errorf("%w: %q is not major:minor", ErrBadDev, s)
	}
	d := Dev{uint32(a), uint32(b)}
	if err := d.Valid(); err != nil {
		return Dev{}, err
	}
	return d, nil
}
