package test

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUpgradeWithinFileLimit upgrades a gateway whose limit on open files
// leaves room for its players' sockets and two batches more (one offered,
// the next prepared meanwhile): the move keeps no copy of a socket past
// its batch's offer, however many players there are, so a gateway near
// its limit can still be upgraded. There are more players than that room,
// so that copies kept to the end would not fit.
func TestUpgradeWithinFileLimit(t *testing.T) {
	u := startUpgradable(t, nil)
	u.startBackend()
	held := u.hold(max(*overlapHeld, 600))
	pid, _ := u.health()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	// A batch is 200 sessions; what is left is for the upgrade's own.
	limit := uint64(len(fds) + 450)
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(pid, syscall.SIGUSR2)
	u.gw.waitLog("gateway: upgrade done; the new process serves", 1)
	newPID, _ := u.health()
	killOnCleanup(t, newPID)
	allAnswer(t, held, "after")
	t.Logf("%d players held with %d descriptors open, under a limit of %d", len(held), len(fds), limit)
}
