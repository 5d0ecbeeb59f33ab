package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"

	"go.uber.org/zap"

	"holdfast/internal/systemd"
)

// A reload (SIGUSR2, which `systemctl reload holdfast-bridge` sends) is a
// deploy in place: the bridge starts the binary at its own path again, with
// its own flags and -takeover, as its successor. The successor takes the
// players and their connections to the game over as in any deploy, and this
// bridge exits 0 once they have all gone to it: the game sees nothing. Under
// systemd the successor then tells it that it is the main process (see
// readyAsSuccessor), which the unit's NotifyAccess=all allows.
//
// SIGTERM stays a stop: systemd stops a unit before it starts it again, so
// there is nobody to hand the connections to. The gateway holds the players
// and the next bridge opens new connections to the game.

// reloadOnSignal starts a successor at each SIGUSR2, one at a time.
func reloadOnSignal(log *zap.Logger, takeover bool) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR2)
	var mu sync.Mutex
	var running *exec.Cmd
	go func() {
		for range c {
			mu.Lock()
			busy := running != nil
			mu.Unlock()
			if busy {
				log.Warn("bridge: reload: a successor is already starting")
				continue
			}
			cmd, err := startSuccessor(takeover)
			if err != nil {
				log.Error("bridge: reload: cannot start a successor; this bridge serves on", zap.Error(err))
				continue
			}
			log.Info("bridge: reload: started a successor", zap.Int("pid", cmd.Process.Pid))
			mu.Lock()
			running = cmd
			mu.Unlock()
			go func() {
				err := cmd.Wait() // it outlives this bridge when all goes well
				log.Warn("bridge: reload: the successor exited; this bridge serves on", zap.Error(err))
				mu.Lock()
				running = nil
				mu.Unlock()
			}()
		}
	}()
}

// startSuccessor starts this bridge's binary, as it is now at the path it
// was started from, with the same flags and environment and -takeover.
func startSuccessor(takeover bool) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("the bridge's own path: %w", err)
	}
	args := os.Args[1:]
	if !takeover {
		args = append(append([]string(nil), args...), "-takeover")
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// readyAsSuccessor tells systemd that this bridge, a successor, is ready and
// is the service's main process now: its predecessor exits once the players
// have moved. Without systemd (no NOTIFY_SOCKET) it does nothing.
func readyAsSuccessor() error {
	return systemd.Notify(fmt.Sprintf("MAINPID=%d\nREADY=1", os.Getpid()))
}
