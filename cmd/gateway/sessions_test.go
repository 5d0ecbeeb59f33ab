package main

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"holdfast/epmd"
	"holdfast/gateway"
	"holdfast/gateway/telnet"
)

// forgedTerminal is a terminal type that, printed raw, sets the
// operator's window title, rings the bell, and starts a forged row.
const forgedTerminal = "xterm\x1b]0;pwned\x07\r\nk3f9q2xa-99\tevil\x1b[2J"

// TestSessionsForgedTerminal: a player's terminal type cannot put a
// control byte on the operator's terminal through `gateway sessions`,
// nor a row or a column of its own.
func TestSessionsForgedTerminal(t *testing.T) {
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := &epmd.Server{}
	regDone := make(chan struct{})
	go func() { reg.Serve(rl); close(regDone) }()
	defer func() { reg.Close(); <-regDone }()

	gw := &gateway.Server{Cookie: []byte("c"), EPMD: rl.Addr().String(), Registry: reg, Logger: zaptest.NewLogger(t)}
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
	ttype := string(telnet.AppendSubneg(nil, telnet.OptTTYPE, []byte("\x00"+forgedTerminal)))
	if _, err := c.Write([]byte("\xff\xfb\x18" + ttype + ttype)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if l := gw.Sessions(); len(l) == 1 && l[0].Terminal != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway did not learn the terminal type")
		}
		time.Sleep(5 * time.Millisecond) // polling the session list: there is no event to wait on
	}

	for _, args := range [][]string{{"-control", path}, {"-control", path, "-json"}} {
		var out bytes.Buffer
		if err := runSessions(args, &out); err != nil {
			t.Fatal(err)
		}
		checkPrintable(t, out.String())
		if !strings.Contains(out.String(), "xterm?]0;pwned???k3f9q2xa-99?evil?[2J") {
			t.Errorf("gateway sessions %q:\n%s", args, out.String())
		}
		if args[len(args)-1] != "-json" {
			if rows := strings.Count(out.String(), "\n"); rows != 3 {
				t.Errorf("%d rows, want 3 (header, the session, the count):\n%s", rows, out.String())
			}
		}
	}
}

// checkPrintable fails the test if out holds anything but printable
// ASCII, spaces and line ends.
func checkPrintable(t *testing.T, out string) {
	t.Helper()
	for i := 0; i < len(out); i++ {
		if c := out[i]; (c < ' ' || c > '~') && c != '\n' {
			t.Errorf("byte %#x at %d of the output:\n%q", c, i, out)
			return
		}
	}
}

// TestSessionsEscapesWhatItIsGiven: whatever the gateway reports (a
// process of an earlier version kept facts as the client sent them), the
// table shows control bytes as escapes, one session a row.
func TestSessionsEscapesWhatItIsGiven(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sessions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, []gateway.SessionInfo{
			{ID: "a-1", Client: "192.0.2.1:1", Kind: "telnet", Since: time.Now(), Terminal: forgedTerminal},
			{ID: "a-2\r\nforged", Client: "192.0.2.2:2\x1b[8m", Kind: "websocket \u202e", Since: time.Now(), Terminal: "\xff\xfe\u009b31m"},
		})
	})
	srv := &http.Server{Handler: mux}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	defer func() { srv.Close(); <-done }()

	var out bytes.Buffer
	if err := runSessions([]string{"-control", path}, &out); err != nil {
		t.Fatal(err)
	}
	checkPrintable(t, out.String())
	for _, want := range []string{
		`xterm\x1b]0;pwned\a\r\nk3f9q2xa-99\tevil\x1b[2J`,
		`a-2\r\nforged`, `192.0.2.2:2\x1b[8m`, `websocket \u202e`, `\ufffd\ufffd\u009b31m`, // JSON made the bytes that are not UTF-8 U+FFFD
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output lacks %s:\n%s", want, out.String())
		}
	}
	if rows := strings.Count(out.String(), "\n"); rows != 4 {
		t.Errorf("%d rows, want 4:\n%s", rows, out.String())
	}
}

func TestShown(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"xterm-256color", "xterm-256color"},
		{"", ""},
		{"a b", "a b"},
		{"\x1b]0;t\x07", `\x1b]0;t\a`},
		{"tab\there", `tab\there`},
		{`back\slash`, `back\\slash`},
		{`"quoted"`, `"quoted"`},
		{"é", `\u00e9`},
		{"\xc3", `\xc3`},
		{"\u202eevil", `\u202eevil`},
		{"\u009b2J", `\u009b2J`},
	} {
		if got := shown(tc.in); got != tc.want {
			t.Errorf("shown(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
