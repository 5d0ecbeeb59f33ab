//go:build !linux

package netx

import (
	"os"
	"syscall"
)

// Socketpair returns the two ends of a new connected Unix stream socket,
// neither inherited by a child unless passed on purpose. Without
// SOCK_CLOEXEC, the fork lock keeps a child started meanwhile from
// inheriting them before they are marked.
func Socketpair(name string) (a, b *os.File, err error) {
	syscall.ForkLock.RLock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), name), os.NewFile(uintptr(fds[1]), name), nil
}
