package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// deploy measures a backend handover under load, side by side with a
// graceful restart: typists type throughout while a successor takes the
// players over (-handover-cmd starts it), and then while the backend is
// stopped with SIGTERM and a new one started. It reports the longest round
// trip any typist saw in each, how long each took (the handover until the
// old backend has exited; the restart until the new backend answers), and
// the gateway's memory during the handover.
func deploy(o *options, sessions []*session) error {
	typists := sessions[:min(o.typists, len(sessions)-1)]

	ty := startTyping(typists, "ho")
	time.Sleep(time.Second)
	t0 := time.Now()
	next, err := startBackend(o.handoverCmd)
	if err != nil {
		ty.finish(t0, t0)
		return err
	}
	peak := 0
	for alive(o.backendPID) {
		peak = max(peak, rssKiB(o.pid))
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(t0)
	time.Sleep(time.Second)
	worst, err := ty.finish(t0, t0.Add(took))
	if err != nil {
		return fmt.Errorf("a typist during the handover: %w", err)
	}
	result("handover_time", float64(took.Microseconds())/1000, "ms")
	result("handover_rtt_max", float64(worst.Microseconds())/1000, "ms")
	result("handover_gateway_rss_peak", float64(peak), "KiB")
	o.backendPID = next

	ty = startTyping(typists, "rs")
	time.Sleep(time.Second)
	t0 = time.Now()
	if err := syscall.Kill(o.backendPID, syscall.SIGTERM); err != nil {
		ty.finish(t0, t0)
		return fmt.Errorf("stop backend: %w", err)
	}
	for alive(o.backendPID) {
		time.Sleep(time.Millisecond)
	}
	next, err = startBackend(o.backendCmd)
	if err != nil {
		ty.finish(t0, t0)
		return err
	}
	// The restart is over when a line is answered by the new one (a player
	// who is not typing: a typist's waits are its own).
	probe := sessions[len(sessions)-1]
	_, err = probe.expect("echo: restarted", func() error { return probe.send("echo restarted") }, 2*time.Minute)
	took = time.Since(t0)
	time.Sleep(time.Second)
	worstRestart, terr := ty.finish(t0, t0.Add(took))
	if err == nil {
		err = terr
	}
	if err != nil {
		return fmt.Errorf("a typist during the restart: %w", err)
	}
	result("restart_time", float64(took.Microseconds())/1000, "ms")
	result("restart_rtt_max", float64(worstRestart.Microseconds())/1000, "ms")
	o.backendPID = next
	fmt.Printf("new backend pid %d\n", next)
	return nil
}

// startBackend starts a backend by a shell command, in a session of its
// own (it outlives this tool), and returns its pid.
func startBackend(command string) (int, error) {
	cmd := exec.Command("sh", "-c", command)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start backend: %w", err)
	}
	go cmd.Wait()
	return cmd.Process.Pid, nil
}

// alive reports whether a process still runs (and is no zombie).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	for i := len(b) - 1; i > 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2] != 'Z'
		}
	}
	return true
}
