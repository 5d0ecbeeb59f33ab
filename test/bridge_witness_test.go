package test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"holdfast/gateway/telnet"
)

// TestBridgeTinyMUXWitnesses: with three players on TinyMUX through the
// bridge, one who QUITs is disconnected while the others play on (their
// connections say the game is up), and TinyMUX killed and started again at
// once has the other two told once and welcomed again: every connection
// dropped together.
func TestBridgeTinyMUXWitnesses(t *testing.T) {
	t.Parallel()
	mux := startTinyMUX(t)
	sys := startSystem(t)
	br := sys.startBridge(mux.addr)

	var ms []*mudClient
	for range 3 {
		m := dialMUD(t, sys.telnet, telnet.OptTTYPE, telnet.OptNAWS, telnet.OptSGA, telnet.OptEOR)
		m.expect("Welcome to TinyMUX")
		m.line("connect wizard potrzebie")
		m.expect("Last connect")
		ms = append(ms, m)
	}

	ms[0].line("QUIT")
	if err := ms[0].read("the gateway to close the connection", func() bool { return false }); err == nil || !strings.Contains(err.Error(), "EOF") {
		t.Fatalf("after QUIT: %v, want the connection closed", err)
	}
	for i, m := range ms[1:] {
		if got := m.think(fmt.Sprintf("P%d", i), "name(me)"); got != "Wizard" {
			t.Errorf("player %d: name(me) = %q after another's QUIT, want Wizard", i+1, got)
		}
	}
	if n := br.count("bridge: the game ended the player's connection"); n != 1 {
		t.Errorf("the bridge saw the game end %d players' connections, want 1", n)
	}

	starts := make([]int, len(ms))
	for i, m := range ms {
		starts[i] = len(m.text)
	}
	mux.kill()
	mux.start()
	for i, m := range ms[1:] {
		i++
		m.until("the welcome again", func() bool { return bytes.Contains(m.text[starts[i]:], []byte("Welcome to TinyMUX")) })
		if n := bytes.Count(m.text[starts[i]:], []byte(bridgeNotice)); n != 1 {
			t.Errorf("player %d was told %d times that the game is restarting, want once", i, n)
		}
		m.line("connect wizard potrzebie")
		m.expect("Last connect")
	}
	if n := br.count("bridge: the game ended the player's connection"); n != 1 {
		t.Errorf("the bridge took the restart for the game ending %d more players", n-1)
	}
}
