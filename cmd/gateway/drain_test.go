package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"holdfast/epmd"
	"holdfast/gateway"
)

// TestDrainCommand: `gateway drain` on a gateway with one telnet player
// prints the players left, by kind, until the deadline has disconnected
// the player, and succeeds; meanwhile an upgrade is refused.
func TestDrainCommand(t *testing.T) {
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := &epmd.Server{}
	regDone := make(chan struct{})
	go func() { reg.Serve(rl); close(regDone) }()
	defer func() { reg.Close(); <-regDone }()

	gw := &gateway.Server{Cookie: []byte("c"), EPMD: rl.Addr().String(), Registry: reg, Logger: zaptest.NewLogger(t),
		DrainTimeout: time.Second, DrainMessage: "Back soon."}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln) }()
	defer func() {
		gw.Close()
		if err := <-served; !errors.Is(err, gateway.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	path := filepath.Join(t.TempDir(), "control")
	cl, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctl := serveControl(zaptest.NewLogger(t), cl, gw, http.NotFoundHandler(), nil)
	defer ctl.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for !strings.Contains(must(r.ReadString('\n'))(t), "The game is not running") {
	}

	var out bytes.Buffer
	if err := runDrain([]string{"-control", path}, &out); err != nil {
		t.Fatalf("gateway drain: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "draining: 1 players left (telnet 1, telnet+tls 0, web 0)") ||
		lines[len(lines)-1] != "drained: no player is left; the gateway exits" {
		t.Errorf("gateway drain printed:\n%s", out.String())
	}
	rest, _ := io.ReadAll(r)
	if n := strings.Count(string(rest), "[holdfast] Back soon."); n != 2 {
		t.Errorf("the player read the message %d times, want 2 (as the drain began and at its deadline): %q", n, rest)
	}
	if _, err := ask(http.MethodPost, path, "/upgrade", ""); err == nil || !strings.Contains(err.Error(), "draining") {
		t.Errorf("an upgrade during the drain: %v, want it refused", err)
	}
	// A second drain finds it done at once.
	out.Reset()
	if err := runDrain([]string{"-control", path, "-json"}, &out); err != nil || !strings.Contains(out.String(), `"done":true`) {
		t.Errorf("a second drain: %v\n%s", err, out.String())
	}
}

func must(s string, err error) func(*testing.T) string {
	return func(t *testing.T) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// TestDrainFlags: the drain's flags are checked at start.
func TestDrainFlags(t *testing.T) {
	parse := func(args ...string) (*config, error) {
		var c config
		fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.register(fs)
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		return &c, c.validate()
	}
	c, err := parse()
	if err != nil || c.drainTimeout != 10*time.Minute || c.drainMessage != gateway.DefaultDrainMessage {
		t.Fatalf("by default: %v, %q, %v", c.drainTimeout, c.drainMessage, err)
	}
	for _, bad := range [][]string{
		{"-drain-timeout", "-1s"},
		{"-drain-message", " "},
		{"-drain-message", "two\nlines"},
		{"-drain-message", strings.Repeat("x", maxDrainMessage+1)},
	} {
		if _, err := parse(bad...); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%q: %v, want it refused", bad, err)
		}
	}
}

// TestDrainLine: what the command prints for each state of a drain.
func TestDrainLine(t *testing.T) {
	now := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		st   gateway.DrainStatus
		want string
	}{
		{gateway.DrainStatus{Draining: true, Telnet: 2, TelnetTLS: 1, Web: 3, Deadline: now.Add(9 * time.Minute)},
			"draining: 6 players left (telnet 2, telnet+tls 1, web 3); the telnet players are disconnected in 9m0s"},
		{gateway.DrainStatus{Draining: true, Telnet: 1, Deadline: now.Add(-time.Second)},
			"draining: 1 players left (telnet 1, telnet+tls 0, web 0); disconnecting the telnet players"},
		{gateway.DrainStatus{Draining: true, Web: 1, Deadline: now.Add(time.Minute)},
			"draining: 1 players left (telnet 0, telnet+tls 0, web 1)"},
		{gateway.DrainStatus{Draining: true, Done: true}, "drained: no player is left; the gateway exits"},
	} {
		if got := drainLine(tc.st, now); got != tc.want {
			t.Errorf("%+v:\n got %q\nwant %q", tc.st, got, tc.want)
		}
	}
}
