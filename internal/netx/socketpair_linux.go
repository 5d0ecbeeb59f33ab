package netx

import (
	"os"
	"syscall"
)

// Socketpair returns the two ends of a new connected Unix stream socket,
// neither inherited by a child unless passed on purpose.
func Socketpair(name string) (a, b *os.File, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), name), os.NewFile(uintptr(fds[1]), name), nil
}
