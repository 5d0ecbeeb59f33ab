package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"time"
)

// upgradeGateway measures a gateway upgrade under load: typists keep
// typing, one line after another, while the upgrade command runs. It
// reports how long the command took (until the new process serves), the
// longest round trip any typist saw meanwhile, and the memory and open
// descriptors of the old process before and of the new one after. Every
// player must still answer afterwards.
func upgradeGateway(o *options, sessions []*session) error {
	ty := startTyping(sessions[:min(o.typists, len(sessions))], "up")
	time.Sleep(time.Second) // typing before
	rssBefore, fdsBefore := rssKiB(o.pid), openFiles(o.pid)
	t0 := time.Now()
	out, err := exec.Command("sh", "-c", o.upgradeCmd).CombinedOutput()
	took := time.Since(t0)
	if err != nil {
		ty.finish(t0, t0)
		return fmt.Errorf("upgrade: %v: %s", err, out)
	}
	time.Sleep(time.Second) // typing after
	during, err := ty.finish(t0, t0.Add(took))
	if err != nil {
		return fmt.Errorf("a typist during the upgrade: %w", err)
	}
	m := regexp.MustCompile(`pid (\d+)`).FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("upgrade: no pid in %q", out)
	}
	newPID, _ := strconv.Atoi(string(m[1]))
	// Every player is still there.
	_, err = all(sessions, func(s *session) (time.Time, error) {
		return s.expect("echo: after-upgrade", func() error { return s.send("echo after-upgrade") }, time.Minute)
	})
	if err != nil {
		return fmt.Errorf("after the upgrade: %w", err)
	}
	time.Sleep(2 * time.Second) // let the new process settle before reading its memory
	result("upgrade_pid", float64(newPID), "pid")
	result("upgrade_time", float64(took.Microseconds())/1000, "ms")
	result("upgrade_rtt_max", float64(during.Microseconds())/1000, "ms")
	result("upgrade_rss_before", float64(rssBefore), "KiB")
	result("upgrade_rss_after", float64(rssKiB(newPID)), "KiB")
	result("upgrade_fds_before", float64(fdsBefore), "fds")
	result("upgrade_fds_after", float64(openFiles(newPID)), "fds")
	if _, err := os.Stat("/proc/" + strconv.Itoa(o.pid)); err == nil {
		result("upgrade_old_fds", float64(openFiles(o.pid)), "fds")
	}
	o.pid = newPID
	return nil
}

// openFiles counts a process's open descriptors.
func openFiles(pid int) int {
	d, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return 0
	}
	return len(d)
}
