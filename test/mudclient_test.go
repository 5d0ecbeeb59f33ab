package test

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"holdfast/gateway/telnet"
)

// mudClient is a scripted MUD client: it answers the gateway's offers as
// its table says, runs the terminal type cycle, decompresses MCCP2, and
// writes down the GMCP, MSSP and protocol events it sees.
type mudClient struct {
	t      *testing.T
	conn   net.Conn
	agree  map[byte]bool // options it accepts, on either side
	ttypes []string      // its answers to the terminal type cycle
	width  uint16
	height uint16

	raw          io.Reader // the server's bytes, decompressed once MCCP2 starts
	compressed   bool
	dec          telnet.Decoder
	text         []byte
	gmcp         []string
	mssp         []byte
	events       []string // "WILL 1", "SB 24", "EOR" ... in order, with the text length at the time
	ttypeSent    int
	slowTerminal time.Duration // how long it takes to give its second answer
	werr         error         // a reply that could not be written
	silent       map[byte]bool // options whose subnegotiations it leaves unanswered
}

// dialMUD connects a prompt client: it says something in telnet as soon
// as it connects (a NOP), so that however long this loaded machine takes
// to run its answers, the gateway knows it for a telnet client and waits
// for them. A client that says nothing for a few round trips is taken for
// a raw socket, and its answers reach the game after its greeting.
func dialMUD(t *testing.T, addr string, agree ...byte) *mudClient {
	t.Helper()
	m := dialQuietMUD(t, addr, agree...)
	if err := m.write([]byte{telnet.IAC, telnet.NOP}); err != nil {
		t.Fatal(err)
	}
	return m
}

// dialQuietMUD connects a client that says nothing until it has the
// offers, as TinTin++, Mudlet and Debian's telnet do; it reads (and
// answers) only once the test reads.
func dialQuietMUD(t *testing.T, addr string, agree ...byte) *mudClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m := &mudClient{t: t, conn: c, agree: map[byte]bool{}, width: 80, height: 24,
		ttypes: []string{"TESTCLIENT", "XTERM-256COLOR", "MTTS 15"}}
	for _, o := range agree {
		m.agree[o] = true
	}
	m.raw = &mccpWatch{m: m}
	return m
}

// mccpWatch passes the server's bytes through until the MCCP2 start
// sequence, and decompresses everything after it.
type mccpWatch struct {
	m *mudClient
	z io.Reader
}

var mccpStart = []byte{telnet.IAC, telnet.SB, telnet.OptMCCP2, telnet.IAC, telnet.SE}

func (w *mccpWatch) Read(p []byte) (int, error) {
	if w.z != nil {
		return w.z.Read(p)
	}
	n, err := w.m.conn.Read(p)
	if i := bytes.Index(p[:n], mccpStart); i >= 0 {
		rest := bytes.Clone(p[i+len(mccpStart) : n])
		z, zerr := zlib.NewReader(io.MultiReader(bytes.NewReader(rest), w.m.conn))
		if zerr != nil {
			return 0, zerr
		}
		w.z, w.m.compressed = z, true
		return i + len(mccpStart), nil
	}
	return n, err
}

func (m *mudClient) send(b []byte) {
	m.t.Helper()
	if err := m.write(b); err != nil {
		m.t.Fatal(err)
	}
}

func (m *mudClient) write(b []byte) error {
	m.conn.SetWriteDeadline(time.Now().Add(waitFor))
	_, err := m.conn.Write(b)
	return err
}

// reply answers the server from inside the decoder; a failure is kept
// for the read loop to report.
func (m *mudClient) reply(b []byte) {
	if err := m.write(b); err != nil && m.werr == nil {
		m.werr = err
	}
}

func (m *mudClient) line(s string) { m.send([]byte(s + "\r\n")) }

// Negotiate answers as a Q-method client that agrees to its table.
func (m *mudClient) Negotiate(verb, opt byte) {
	m.events = append(m.events, verbName(verb)+" "+itoa(int(opt)))
	var reply byte
	switch verb {
	case telnet.DO:
		reply = telnet.WONT
		if m.agree[opt] {
			reply = telnet.WILL
		}
	case telnet.WILL:
		reply = telnet.DONT
		if m.agree[opt] {
			reply = telnet.DO
		}
	}
	if reply != 0 {
		m.reply([]byte{telnet.IAC, reply, opt})
	}
	if verb == telnet.DO && opt == telnet.OptNAWS && m.agree[opt] {
		m.naws(m.width, m.height)
	}
}

func (m *mudClient) naws(w, h uint16) {
	m.width, m.height = w, h
	m.reply([]byte{telnet.IAC, telnet.SB, telnet.OptNAWS, byte(w >> 8), byte(w), byte(h >> 8), byte(h), telnet.IAC, telnet.SE})
}

func (m *mudClient) Subnegotiation(opt byte, p []byte, _ bool) {
	m.events = append(m.events, "SB "+itoa(int(opt)))
	if m.silent[opt] {
		return
	}
	switch opt {
	case telnet.OptTTYPE:
		if len(p) == 1 && p[0] == 1 {
			i := min(m.ttypeSent, len(m.ttypes)-1)
			m.ttypeSent++
			if i == 1 {
				time.Sleep(m.slowTerminal)
			}
			m.reply(append(append([]byte{telnet.IAC, telnet.SB, telnet.OptTTYPE, 0}, m.ttypes[i]...), telnet.IAC, telnet.SE))
		}
	case telnet.OptGMCP:
		m.gmcp = append(m.gmcp, string(p))
	case telnet.OptMSSP:
		m.mssp = bytes.Clone(p)
	}
}

func (m *mudClient) Command(c byte) {
	if c == telnet.EOR {
		m.events = append(m.events, "EOR after "+lastLine(m.text))
	}
}

func lastLine(b []byte) string {
	s := string(b)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// until reads until cond holds; a closed connection fails the test.
func (m *mudClient) until(what string, cond func() bool) {
	m.t.Helper()
	if err := m.read(what, cond); err != nil {
		m.t.Fatal(err)
	}
}

// read reads until cond holds, and may run on any goroutine.
func (m *mudClient) read(what string, cond func() bool) error {
	buf := make([]byte, 4096)
	deadline := time.Now().Add(waitFor)
	for !cond() {
		m.conn.SetReadDeadline(deadline)
		n, err := m.raw.Read(buf)
		// A byte at a time, so that an event sees the text before it.
		for i := 0; i < n; i++ {
			m.text = m.dec.Decode(m.text, buf[i:i+1], m)
		}
		if err == nil {
			err = m.werr
		}
		if err != nil && !cond() {
			return fmt.Errorf("waiting for %s: %v (compressed %v, events %v)\ntext so far: %q", what, err, m.compressed, m.events, m.text)
		}
	}
	return nil
}

func (m *mudClient) expect(s string) {
	m.t.Helper()
	if err := m.tryExpect(s); err != nil {
		m.t.Fatal(err)
	}
}

func (m *mudClient) tryExpect(s string) error {
	start := len(m.text)
	return m.read(s, func() bool { return bytes.Contains(m.text[max(0, start-len(s)):], []byte(s)) })
}

// facts runs the demo's session command and returns its key: value lines.
func (m *mudClient) facts() map[string]string {
	m.t.Helper()
	f, err := m.tryFacts()
	if err != nil {
		m.t.Fatal(err)
	}
	return f
}

func (m *mudClient) tryFacts() (map[string]string, error) {
	start := len(m.text)
	if err := m.write([]byte("session\r\n")); err != nil {
		return nil, err
	}
	err := m.read("session facts", func() bool {
		return bytes.Contains(m.text[start:], []byte("client_ip: ")) && bytes.HasSuffix(m.text, []byte("\n"))
	})
	if err != nil {
		return nil, err
	}
	f := map[string]string{}
	for _, l := range strings.Split(string(m.text[start:]), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			f[k] = v
		}
	}
	return f, nil
}

func verbName(v byte) string {
	return map[byte]string{telnet.WILL: "WILL", telnet.WONT: "WONT", telnet.DO: "DO", telnet.DONT: "DONT"}[v]
}

func itoa(n int) string { return strconv.Itoa(n) }

// crawl asks for MSSP as a crawler does and returns the variables.
func crawl(t *testing.T, addr string) map[string]string {
	t.Helper()
	c := dialMUD(t, addr, telnet.OptMSSP)
	c.until("MSSP", func() bool { return c.mssp != nil })
	vars := map[string]string{}
	for _, v := range bytes.Split(c.mssp, []byte{1})[1:] {
		name, val, _ := bytes.Cut(v, []byte{2})
		vars[string(name)] = string(val)
	}
	c.conn.Close()
	return vars
}

// TestMUDProtocols drives the gateway with a scripted MUD client: the
// terminal type cycle, window size, GMCP, MSSP (also while the game is
// down), MCCP2 compression across a backend restart, echo off for a
// password, and EOR after prompts.
func TestMUDProtocols(t *testing.T) {
	sys := startSystem(t)
	be := sys.startBackend()

	// The game sends its MSSP variables once linked; a crawler may come
	// first and get the gateway's own, and a crawler that has just closed
	// may still count as a player for a moment.
	var vars map[string]string
	eventually(t, "MSSP has the game's name and no players", func() bool {
		vars = crawl(t, sys.telnet)
		return vars["NAME"] == "holdfast demo talker" && vars["PLAYERS"] == "0"
	})
	if vars["UPTIME"] == "" {
		t.Errorf("MSSP with the game up: %v", vars)
	}

	m := dialMUD(t, sys.telnet, telnet.OptTTYPE, telnet.OptNAWS, telnet.OptEOR, telnet.OptGMCP, telnet.OptMCCP2, telnet.OptEcho)
	m.expect("What is your name?")
	if !m.compressed {
		t.Fatal("MCCP2 did not start although the client agreed")
	}
	m.send([]byte("\xff\xfa\xc9Core.Hello {\"client\":\"test\",\"version\":\"1\"}\xff\xf0"))
	m.line("Gmcp")
	m.expect("Welcome, Gmcp.")
	m.until("GMCP Char.Status", func() bool { return len(m.gmcp) > 0 })
	if !strings.HasPrefix(m.gmcp[0], `Char.Status {"name":"Gmcp"`) {
		t.Errorf("GMCP from the game: %q", m.gmcp)
	}
	want := map[string]string{"client": "TESTCLIENT", "terminal": "XTERM-256COLOR", "mtts": "15", "width": "80", "height": "24"}
	f := m.facts()
	for k, v := range want {
		if f[k] != v {
			t.Errorf("session %s: %q, want %q (all: %v)", k, f[k], v, f)
		}
	}
	m.naws(132, 50)
	if f := m.facts(); f["width"] != "132" || f["height"] != "50" {
		t.Errorf("after a resize: %v", f)
	}

	// The password: echo off, a prompt marked with EOR, echo on again.
	m.line("password")
	m.expect("Password: ")
	m.until("WILL ECHO", func() bool { return contains(m.events, "WILL 1") })
	m.until("EOR after the prompt", func() bool { return contains(m.events, "EOR after Password: ") })
	m.line("secret")
	m.expect("Password of 6 characters noted.")
	if !contains(m.events, "WONT 1") {
		t.Errorf("echo was not turned back on: %v", m.events)
	}

	// The game goes away: compression, facts and MSSP carry on.
	be.kill(syscall.SIGKILL)
	be.wait()
	m.expect("[holdfast] The game is restarting.")
	vars = crawl(t, sys.telnet)
	if vars["NAME"] != "holdfast demo talker" || vars["PLAYERS"] != "1" {
		t.Errorf("MSSP while the game is down: %v", vars)
	}
	asked := m.ttypeSent
	sys.startBackend()
	m.expect("[holdfast] The game is back.")
	f = m.facts()
	if f["resumed"] != "1" || f["terminal"] != "XTERM-256COLOR" || f["width"] != "132" || f["mtts"] != "15" {
		t.Errorf("after the restart: %v", f)
	}
	if m.ttypeSent != asked {
		t.Errorf("the terminal type was asked for again after the restart (%d times, then %d)", asked, m.ttypeSent)
	}
	m.line("echo compressed all along")
	m.expect("echo: compressed all along")
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}
