// Package netx holds small networking helpers shared by the servers.
package netx

import (
	"errors"
	"syscall"
	"time"
)

// RetryableAccept reports whether Accept failed for a passing reason, such as
// running out of file descriptors, rather than because the listener is gone.
func RetryableAccept(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS)
}

// Backoff returns the next delay of an exponential backoff: min after zero,
// then doubling up to max.
func Backoff(d, min, max time.Duration) time.Duration {
	if d == 0 {
		return min
	}
	if d *= 2; d > max {
		d = max
	}
	return d
}
