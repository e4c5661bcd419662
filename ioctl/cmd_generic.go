//go:build !(mips || mipsle || mips64 || mips64le || ppc || ppc64 || ppc64le || sparc || sparc64 || alpha)

package ioctl

// From include/uapi/asm-generic/ioctl.h:
//
//	#define _IOC_SIZEBITS	14
//	#define _IOC_NONE	0U
//	#define _IOC_WRITE	1U
//	#define _IOC_READ	2U
const (
	iocSizeBits = 14
	iocNone     = 0
	iocWrite    = 1
	iocRead     = 2
)
