//go:build linux

package udev

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// probeControl connects to udevd's control socket (an AF_UNIX
// SOCK_SEQPACKET listener) and returns udevd's pid from the peer
// credentials, 0 if the pid is not visible in our pid namespace. A
// successful connect proves that a udevd listens: a stale socket file left by
// a dead udevd refuses the connection. The connection is closed at once
// without a message, which udevd treats as a client that went away.
func probeControl(path string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return 0, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
	switch {
	case err == nil:
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINPROGRESS):
		// Listening, with a full backlog: running but busy. The peer
		// is not known before the connection is accepted.
		return 0, nil
	default:
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return 0, nil
	}
	return int(cred.Pid), nil
}
