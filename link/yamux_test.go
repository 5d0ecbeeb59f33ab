package link

import (
	"net"
	"slices"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// closeNoting is a connection whose Close is noted.
type closeNoting struct {
	net.Conn
	note func(string)
}

func (c closeNoting) Close() error {
	c.note("close")
	return c.Conn.Close()
}

// TestBrokenBeforeClose: when yamux closes the connection (its owner or
// yamux itself ended the session), broken runs first, once, though the
// read that fails after runs it too.
func TestBrokenBeforeClose(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	var mu sync.Mutex
	var order []string
	note := func(s string) {
		mu.Lock()
		order = append(order, s)
		mu.Unlock()
	}
	c := Coalesce(closeNoting{a, note}, func() { note("broken") })
	c.Close()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a read after Close succeeded")
	}
	c.Close()
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"broken", "close"}; !slices.Equal(order, want) {
		t.Fatalf("order %q, want %q", order, want)
	}
}

// TestYamuxLogger: yamux's errors are warnings; its other messages, debug.
func TestYamuxLogger(t *testing.T) {
	for _, tc := range []struct {
		in    string
		level zapcore.Level
		msg   string
	}{
		{"[ERR] yamux: keepalive failed: i/o deadline reached", zapcore.WarnLevel, "link: yamux: keepalive failed: i/o deadline reached"},
		{"[ERR] yamux: Invalid protocol version: 9", zapcore.WarnLevel, "link: yamux: Invalid protocol version: 9"},
		{"[WARN] yamux: frame for missing stream: Vsn:0 Type:1", zapcore.DebugLevel, "[WARN] yamux: frame for missing stream: Vsn:0 Type:1"},
		{"", zapcore.DebugLevel, ""},
	} {
		core, logs := observer.New(zapcore.DebugLevel)
		yamuxLogger{zap.New(core)}.Printf("%s", tc.in)
		got := logs.All()
		if len(got) != 1 || got[0].Level != tc.level || got[0].Message != tc.msg {
			t.Errorf("%q: logged %v, want %v %q", tc.in, got, tc.level, tc.msg)
		}
	}
}
