//go:build mips || mipsle || mips64 || mips64le || ppc || ppc64 || ppc64le || sparc || sparc64 || alpha

package ioctl

// From arch/{alpha,mips,powerpc,sparc}/include/uapi/asm/ioctl.h:
//
//	#define _IOC_SIZEBITS	13
//	#define _IOC_NONE	1U
//	#define _IOC_READ	2U
//	#define _IOC_WRITE	4U
const (
	iocSizeBits = 13
	iocNone     = 1
	iocWrite    = 4
	iocRead     = 2
)
