package backend

import "golang.org/x/sys/unix"

// processStart reads the clock that orders backend processes (see
// link.NewInstance): CLOCK_BOOTTIME is the same for every process on the
// host and, unlike the wall clock, is never set back.
func processStart() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		// Before Linux 2.6.39: the same clock, less the time suspended.
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	}
	return ts.Nano()
}
