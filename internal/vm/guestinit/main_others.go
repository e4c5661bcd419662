//go:build !linux

// Command guestinit is /init in the VM test tier's initramfs; it runs only
// on Linux, as PID 1 of the guest.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "guestinit: Linux only")
	os.Exit(2)
}
