package main

import (
	"flag"
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"time"
)

// bridgeOptions are load bridge's flags: players through the gateway and
// the bridge to a game (the echo server) that this tool kills and starts
// again on the same address.
type bridgeOptions struct {
	addr       string
	sessions   int
	typists    int
	keys       int
	bulkLines  int
	gatewayPID int
	bridgePID  int
	game       string
	gamePID    int
	gameCmd    string
	notice     string
	down       time.Duration
	restarts   int
	settle     time.Duration
}

// bridgeMain is load bridge, the figures of an existing game behind
// holdfast:
//
//	load bridge -addr GATEWAY -sessions 1000 -gateway-pid PID -bridge-pid PID \
//		-game 127.0.0.1:5000 -game-pid PID -game-cmd "exec load echo -listen 127.0.0.1:5000"
func bridgeMain(args []string) error {
	var o bridgeOptions
	fs := flag.NewFlagSet("bridge", flag.ExitOnError)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:4000", "the gateway players connect to")
	fs.IntVar(&o.sessions, "sessions", 100, "players to log in and hold")
	fs.IntVar(&o.typists, "typists", 10, "players typing for the round-trip figure")
	fs.IntVar(&o.keys, "keys", 100, "lines each typist sends, one at a time")
	fs.IntVar(&o.bulkLines, "bulk", 2000, "lines of 200 bytes one player sends back to back for the bulk figure")
	fs.IntVar(&o.gatewayPID, "gateway-pid", 0, "the gateway, whose memory is measured")
	fs.IntVar(&o.bridgePID, "bridge-pid", 0, "the bridge, whose memory is measured")
	fs.StringVar(&o.game, "game", "", "the game's address, where it listens again after a restart")
	fs.IntVar(&o.gamePID, "game-pid", 0, "the game, killed with SIGKILL for the restart figure; 0: no restart")
	fs.StringVar(&o.gameCmd, "game-cmd", "", "shell command that starts the game again on -game")
	fs.StringVar(&o.notice, "notice", "[holdfast] The game is restarting", "how the bridge's notice that the game is down begins")
	fs.DurationVar(&o.down, "down", 2*time.Second, "how long the game stays down, at least until every player has been told")
	fs.IntVar(&o.restarts, "restarts", 1, "game restarts, each measured")
	fs.DurationVar(&o.settle, "settle", 15*time.Second, "how long the players stay idle before the settled memory figures; 0: no such figures")
	fs.Parse(args)
	if o.gamePID != 0 && (o.game == "" || o.gameCmd == "") {
		return fmt.Errorf("bridge: -game-pid needs -game and -game-cmd")
	}
	raiseFileLimit()
	return runBridge(&o)
}

// runBridge logs the players in, measures the gateway's and the bridge's
// memory per idle player apart, runs the round-trip, fan-out and bulk
// phases as load run does, and then restarts the game.
func runBridge(o *bridgeOptions) error {
	gw0, br0 := rssKiB(o.gatewayPID), rssKiB(o.bridgePID)
	start := time.Now()
	sessions, err := connect([]string{o.addr}, o.sessions)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range sessions {
			s.conn.Close()
		}
	}()
	result("login_all", time.Since(start).Seconds(), "s")
	n := float64(len(sessions))
	idle := func(total, gateway, bridge string) {
		gw, br := float64(rssKiB(o.gatewayPID)-gw0), float64(rssKiB(o.bridgePID)-br0)
		result(total, (gw+br)/n, "KiB")
		result(gateway, gw/n, "KiB")
		result(bridge, br/n, "KiB")
	}
	if o.gatewayPID != 0 && o.bridgePID != 0 {
		time.Sleep(2 * time.Second)
		idle("rss_per_idle_session", "rss_per_idle_gateway", "rss_per_idle_bridge")
		if o.settle > 2*time.Second {
			time.Sleep(o.settle - 2*time.Second)
			idle("rss_per_idle_settled", "rss_settled_gateway", "rss_settled_bridge")
		}
	}
	rt := &options{keys: o.keys, pids: pids{o.gatewayPID}}
	if err := roundTrips(rt, sessions[:min(o.typists, len(sessions))]); err != nil {
		return err
	}
	if err := fanOut(sessions); err != nil {
		return err
	}
	if err := bulk(sessions, o.bulkLines); err != nil {
		return err
	}
	for i := 0; o.gamePID != 0 && i < o.restarts; i++ {
		pid, err := restartGame(o, sessions)
		if err != nil {
			return err
		}
		o.gamePID = pid
	}
	return nil
}

// restartGame kills the game, waits until every player has been told and
// the game has been down for o.down, starts it again on the same address,
// and times from its listening until every player has its welcome (the
// name prompt) again; it returns the new game.
func restartGame(o *bridgeOptions, sessions []*session) (int, error) {
	for _, s := range sessions {
		s.arm(o.notice)
	}
	killed := time.Now()
	if err := syscall.Kill(o.gamePID, syscall.SIGKILL); err != nil {
		return 0, fmt.Errorf("kill game: %w", err)
	}
	last, err := arrived(sessions, time.Minute)
	if err != nil {
		return 0, err
	}
	result("game_down_told_all", float64(last.Sub(killed).Microseconds())/1000, "ms")
	for _, s := range sessions {
		s.arm("What is your name?")
	}
	time.Sleep(time.Until(killed.Add(o.down)))
	// The game outlives this tool: it must not hold on to its output.
	cmd := exec.Command("sh", "-c", o.gameCmd)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start game: %w", err)
	}
	fmt.Printf("new game pid %d\n", cmd.Process.Pid)
	var listening time.Time
	for deadline := time.Now().Add(time.Minute); ; {
		c, err := net.DialTimeout("tcp", o.game, time.Second)
		if err == nil {
			listening = time.Now()
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("game not listening on %s: %w", o.game, err)
		}
		time.Sleep(time.Millisecond)
	}
	last, err = arrived(sessions, 2*time.Minute)
	if err != nil {
		return 0, err
	}
	result("game_back_welcome_all", float64(last.Sub(listening).Microseconds())/1000, "ms")
	return cmd.Process.Pid, nil
}
