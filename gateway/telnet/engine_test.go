package telnet

import (
	"bytes"
	"testing"
)

// TestQMethod walks RFC 1143's tables: the answer to every verb in every
// state, for an option we agree to and one we refuse.
func TestQMethod(t *testing.T) {
	for _, tc := range []struct {
		q       qstate
		enable  bool
		agree   bool
		next    qstate
		reply   byte
		changed int
	}{
		{qNo, true, true, qYes, DO, +1},
		{qNo, true, false, qNo, DONT, 0},
		{qYes, true, true, qYes, 0, 0}, // no answer: this is what prevents loops
		{qWantNo, true, true, qNo, 0, 0},
		{qWantNo | qOpposite, true, true, qYes, 0, +1},
		{qWantYes, true, true, qYes, 0, +1},
		{qWantYes | qOpposite, true, true, qWantNo, DONT, 0},
		{qNo, false, true, qNo, 0, 0},
		{qYes, false, true, qNo, DONT, -1},
		{qWantNo, false, true, qNo, 0, -1},
		{qWantNo | qOpposite, false, true, qWantYes, DO, -1},
		{qWantYes, false, true, qNo, 0, 0},
		{qWantYes | qOpposite, false, true, qNo, 0, 0},
	} {
		next, reply, changed := receive(tc.q, tc.enable, tc.agree, him)
		if next != tc.next || reply != tc.reply || changed != tc.changed {
			t.Errorf("him %v (queued %v) receives enable=%v agree=%v: %v %d %d, want %v %d %d",
				tc.q, tc.q.queued(), tc.enable, tc.agree, next, reply, changed, tc.next, tc.reply, tc.changed)
		}
	}
	for _, tc := range []struct {
		q      qstate
		enable bool
		next   qstate
		send   byte
	}{
		{qNo, true, qWantYes, WILL},
		{qYes, true, qYes, 0},
		{qWantNo, true, qWantNo | qOpposite, 0},
		{qWantYes | qOpposite, true, qWantYes, 0},
		{qYes, false, qWantNo, WONT},
		{qNo, false, qNo, 0},
		{qWantYes, false, qWantYes | qOpposite, 0},
		{qWantNo | qOpposite, false, qWantNo, 0},
	} {
		next, send := request(tc.q, tc.enable, us)
		if next != tc.next || send != tc.send {
			t.Errorf("us %v request enable=%v: %v %d, want %v %d", tc.q, tc.enable, next, send, tc.next, tc.send)
		}
	}
}

// host records what an engine sends.
type host struct {
	sent       []byte
	compress   int
	uncompress int
	mssp       []byte
}

func (h *host) Send(b []byte)          { h.sent = append(h.sent, b...) }
func (h *host) StartCompress(b []byte) { h.sent = append(h.sent, b...); h.compress++ }
func (h *host) StopCompress()          { h.uncompress++ }
func (h *host) MSSP() []byte           { return h.mssp }
func (h *host) take() string           { s := string(h.sent); h.sent = nil; return s }
func iac(b ...byte) string             { return string(append([]byte{IAC}, b...)) }
func sb(opt byte, p string) string     { return string(AppendSubneg(nil, opt, []byte(p))) }

const offers = "\xff\xfd\x18\xff\xfb\x19\xff\xfd\x1f\xff\xfd\x27\xff\xfb\x2a\xff\xfb\x46\xff\xfb\x56\xff\xfb\xc9"

func TestOffers(t *testing.T) {
	h := &host{}
	e := NewEngine(h, false)
	e.Start()
	if got := h.take(); got != offers {
		t.Fatalf("offers %q, want %q", got, offers)
	}
	h2 := &host{}
	NewEngine(h2, true).Start()
	if bytes.Contains(h2.sent, []byte{IAC, WILL, OptMCCP2}) {
		t.Fatal("MCCP2 offered although switched off")
	}
}

// TestTinTin replays what TinTin++ 2.02 answered to the offers.
func TestTinTin(t *testing.T) {
	h := &host{mssp: []byte("\x01NAME\x02demo")}
	e := NewEngine(h, false)
	e.Start()
	h.take()
	var data []byte
	feed := func(s string) { data = e.Feed(data, []byte(s)) }
	feed("\xff\xfb\x18\xff\xfb\x1f\xff\xfa\x1f\x00x\x00(\xff\xf0\xff\xfd\x19\xff\xfd*\xff\xfb'\xff\xfe\xc9\xff\xfdV\xff\xfeF")
	sent := h.take()
	for _, want := range []string{sb(OptTTYPE, "\x01"), sb(OptNewEnviron, "\x01\x00CLIENT_NAME\x00CLIENT_VERSION\x00IPADDRESS\x00CHARSET\x00MTTS"), sb(OptCharset, "\x01;UTF-8"), sb(OptMCCP2, "")} {
		if !bytes.Contains([]byte(sent), []byte(want)) {
			t.Errorf("after the answers the engine sent %q, missing %q", sent, want)
		}
	}
	if h.compress != 1 {
		t.Errorf("compression started %d times", h.compress)
	}
	if e.Settled() {
		t.Error("settled while the terminal type cycle has only begun")
	}
	feed("\xff\xfa\x18\x00TINTIN++\xff\xf0")
	feed("\xff\xfa\x18\x00tmux-256color\xff\xf0")
	feed("\xff\xfa\x18\x00MTTS 271\xff\xf0")
	if n := bytes.Count([]byte(h.take()), []byte(sb(OptTTYPE, "\x01"))); n != 2 {
		t.Errorf("asked for the terminal type %d more times, want 2", n)
	}
	feed("\xff\xfa*\x02UTF-8\xff\xf0")
	feed("\xff\xfa'\x00\x00CLIENT_NAME\x01TinTin++\xff\xf0\xff\xfa'\x00\x00CLIENT_VERSION\x012.02.20 \xff\xf0\xff\xfa'\x00\x00MTTS\x01783\xff\xf0")
	feed("look\r\n")
	want := Facts{ClientName: "TinTin++", ClientVersion: "2.02.20", Terminal: "tmux-256color", MTTS: 271, Width: 120, Height: 40, Charset: "UTF-8"}
	if f := e.Facts(); f != want {
		t.Errorf("facts %+v\nwant  %+v", f, want)
	}
	if string(data) != "look\n" {
		t.Errorf("data %q", data)
	}
	if !e.Settled() || !e.TakeChanged() {
		t.Error("not settled, or no change reported")
	}
	if got := e.PromptEnd(); string(got) != iac(EOR) {
		t.Errorf("prompt end %q, want IAC EOR", got)
	}
	feed("\xff\xfa\x1f\x00\x64\x00\x1e\xff\xf0") // a resize to 100x30
	if f := e.Facts(); f.Width != 100 || f.Height != 30 || !e.TakeChanged() {
		t.Errorf("after a resize: %+v", f)
	}
}

// TestNetkitTelnet replays Debian's telnet: no MTTS cycle, no EOR.
func TestNetkitTelnet(t *testing.T) {
	h := &host{}
	e := NewEngine(h, false)
	e.Start()
	e.Feed(nil, []byte("\xff\xfb\x18\xff\xfe\x19\xff\xfb\x1f\xff\xfb'\xff\xfe*\xff\xfeF\xff\xfeV\xff\xfe\xc9"))
	e.Feed(nil, []byte("\xff\xfa\x18\x00XTERM\xff\xf0\xff\xfa'\x00\x03CLIENT_NAME\x03CLIENT_VERSION\xff\xf0"))
	e.Feed(nil, []byte("\xff\xfa\x18\x00XTERM\xff\xf0"))
	if f := e.Facts(); f.Terminal != "XTERM" || f.ClientName != "" {
		t.Errorf("facts %+v", f)
	}
	if !e.Settled() {
		t.Error("not settled")
	}
	if got := e.PromptEnd(); string(got) != iac(GA) {
		t.Errorf("prompt end %q, want IAC GA", got)
	}
	h.take()
	e.EchoOff(true)
	if got := h.take(); got != iac(WILL, OptEcho) {
		t.Fatalf("echo off sent %q", got)
	}
	e.Feed(nil, []byte(iac(DO, OptEcho)))
	e.EchoOff(false)
	if got := h.take(); got != iac(WONT, OptEcho) {
		t.Fatalf("echo on sent %q", got)
	}
	e.Feed(nil, []byte(iac(DONT, OptEcho)))
	if e.Echoing() || h.take() != "" {
		t.Fatal("echo state or a reply after DONT ECHO")
	}
}

func TestRawClient(t *testing.T) {
	h := &host{}
	e := NewEngine(h, false)
	e.Start()
	if got := e.Feed(nil, []byte("hello\n")); string(got) != "hello\n" {
		t.Fatalf("data %q", got)
	}
	if e.Settled() {
		t.Error("a client that answered nothing counts as settled")
	}
	if got := e.PromptEnd(); got != nil {
		t.Errorf("prompt end %q for a raw socket, want none", got)
	}
}

func TestNoAnswerToRepeats(t *testing.T) {
	h := &host{}
	e := NewEngine(h, false)
	e.Feed(nil, []byte(iac(WILL, OptNAWS)))
	if got := h.take(); got != iac(DO, OptNAWS) {
		t.Fatalf("first WILL NAWS answered %q", got)
	}
	e.Feed(nil, []byte(iac(WILL, OptNAWS)+iac(DO, OptSGA)+iac(DO, OptSGA)))
	if got := h.take(); got != iac(WILL, OptSGA) {
		t.Fatalf("repeats answered %q, want only WILL SGA once", got)
	}
	e.Feed(nil, []byte(iac(WONT, 99)+iac(DONT, 99)))
	if got := h.take(); got != "" {
		t.Fatalf("WONT/DONT of an option that is off answered %q", got)
	}
}

func TestGMCPAndMSSP(t *testing.T) {
	h := &host{mssp: []byte("\x01NAME\x02demo")} // as link.AppendMSSPVar encodes it
	e := NewEngine(h, false)
	if e.SendGMCP([]byte("Char.Vitals {}")) {
		t.Fatal("GMCP sent before the client agreed")
	}
	e.Feed(nil, []byte(iac(DO, OptGMCP)+iac(DO, OptMSSP)))
	if got := h.take(); got != iac(WILL, OptGMCP)+iac(WILL, OptMSSP)+sb(OptMSSP, "\x01NAME\x02demo") {
		t.Fatalf("sent %q", got)
	}
	e.Feed(nil, []byte(sb(OptGMCP, `Core.Hello {"client":"Mudlet"}`)))
	if m := e.TakeGMCP(); len(m) != 1 || string(m[0]) != `Core.Hello {"client":"Mudlet"}` {
		t.Fatalf("GMCP received %q", m)
	}
	e.SendGMCP([]byte("Room.Info {\"x\":\"\xff\"}"))
	if got := h.take(); got != "\xff\xfa\xc9Room.Info {\"x\":\"\xff\xff\"}\xff\xf0" {
		t.Fatalf("GMCP sent as %q", got)
	}
}

func TestCharsetRequestFromClient(t *testing.T) {
	h := &host{}
	e := NewEngine(h, false)
	e.Feed(nil, []byte(iac(WILL, OptCharset)))
	h.take()
	e.Feed(nil, []byte(sb(OptCharset, "\x01 ISO-8859-1 utf-8")))
	if got := h.take(); got != sb(OptCharset, "\x02UTF-8") || e.Facts().Charset != "UTF-8" {
		t.Fatalf("answered %q, charset %q", got, e.Facts().Charset)
	}
	e.Feed(nil, []byte(sb(OptCharset, "\x01;KOI8-R")))
	if got := h.take(); got != sb(OptCharset, "\x03") {
		t.Fatalf("answered %q, want REJECTED", got)
	}
}

func TestMCCP2Refused(t *testing.T) {
	h := &host{}
	e := NewEngine(h, true)
	e.Feed(nil, []byte(iac(DO, OptMCCP2)))
	if got := h.take(); got != iac(WONT, OptMCCP2) || h.compress != 0 {
		t.Fatalf("DO MCCP2 with compression off: %q, started %d", got, h.compress)
	}
}

// client is the other end of a negotiation: a Q-method client that agrees
// to what its table says, used to show that no exchange loops.
type client struct {
	e     *Engine
	agree [256]bool
	q     [256][2]qstate
}

func (c *client) answer(b []byte) []byte {
	var d Decoder
	var out []byte
	d.Decode(nil, b, handlerFunc(func(verb, opt byte) {
		s, enable := us, verb == DO // the gateway's DO is about the client's side
		if verb == WILL || verb == WONT {
			s, enable = him, verb == WILL
		}
		next, reply, _ := receive(c.q[opt][s], enable, c.agree[opt], flip(s))
		c.q[opt][s] = next
		if reply != 0 {
			out = append(out, IAC, reply, opt)
		}
	}))
	return out
}

func flip(s side) side { return 1 - s }

type handlerFunc func(verb, opt byte)

func (f handlerFunc) Negotiate(verb, opt byte)        { f(verb, opt) }
func (handlerFunc) Subnegotiation(byte, []byte, bool) {}
func (handlerFunc) Command(byte)                      {}

// TestNoNegotiationLoop plays the engine against clients that agree to
// different sets of options, and to none: every exchange ends.
func TestNoNegotiationLoop(t *testing.T) {
	for _, pattern := range []uint64{0, ^uint64(0), 0x5555555555555555, 0x0f0f0f0f0f0f0f0f} {
		h := &host{}
		e := NewEngine(h, false)
		c := &client{e: e}
		for i := 0; i < 256; i++ {
			c.agree[i] = pattern>>(uint(i)%64)&1 == 1
		}
		e.Start()
		e.EchoOff(true)
		rounds := 0
		for out := h.take(); out != ""; out = h.take() {
			if rounds++; rounds > 20 {
				t.Fatalf("pattern %x: still negotiating after 20 rounds", pattern)
			}
			e.Feed(nil, c.answer([]byte(out)))
		}
	}
}

func FuzzEngine(f *testing.F) {
	f.Add([]byte("\xff\xfb\x18\xff\xfb\x1f\xff\xfa\x1f\x00x\x00(\xff\xf0\xff\xfd\x19\xff\xfd*"))
	f.Add([]byte("\xff\xfa\x18\x00TINTIN++\xff\xf0\xff\xfa'\x00\x00CLIENT_NAME\x01x\xff\xf0"))
	f.Add([]byte("\xff\xfd\xc9\xff\xfa\xc9Core.Hello {}\xff\xf0\xff\xfa\x2a\x01;UTF-8\xff\xf0"))
	f.Add([]byte("\xff\xfd\x56\xff\xfe\x56\xff\xfd\x46\xff\xf6"))
	f.Add([]byte("\xff\xfb\x18\xff\xfa\x18\x00xterm\x1b]0;t\x07\r\n\xff\xf0\xff\xfb'\xff\xfa'\x00\x00IPADDRESS\x01\x02\x01\x1b\xff\xf0"))
	f.Fuzz(func(t *testing.T, in []byte) {
		h := &host{mssp: []byte("\x01NAME\x02x")}
		e := NewEngine(h, false)
		e.MaxSubneg = 256
		e.Start()
		h.take()
		e.Feed(nil, in)
		// Every answer is caused by the input: bounded by it, never a loop.
		if len(h.sent) > 64+len(in)*16 {
			t.Fatalf("%d input bytes made %d output bytes", len(in), len(h.sent))
		}
		if len(e.gmcp) > 64 || len(e.sb) > 256 || len(e.ttypes) > maxTTypeCycle {
			t.Fatalf("state grew: %d GMCP, %d SB, %d TTYPE", len(e.gmcp), len(e.sb), len(e.ttypes))
		}
		f := e.Facts()
		for _, v := range []string{f.Terminal, f.ClientName, f.ClientVersion, f.IPAddress, f.Charset} {
			if len(v) > MaxEnvValue || Printable([]byte(v), -1) != v {
				t.Fatalf("a fact of %d bytes, or not printable: %q", len(v), v)
			}
		}
		if len(f.Terminal) > MaxTerminal {
			t.Fatalf("a terminal type of %d bytes", len(f.Terminal))
		}
	})
}
