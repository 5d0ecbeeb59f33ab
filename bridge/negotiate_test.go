package bridge

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"holdfast/backend"
	"holdfast/gateway/telnet"
)

var mudlet = backend.Facts{
	ClientAddr: "203.0.113.7:50123", Terminal: "XTERM-256COLOR", MTTS: 15, Width: 120, Height: 40,
	Charset: "UTF-8", ClientName: "Mudlet", ClientVersion: "4.17",
}

// answers feeds the game's bytes to a negotiator and returns its answers,
// decoded as the game would read them.
func answers(n *negotiator, game []byte) []string {
	var out []byte
	h := &answerer{n: n, out: &out}
	var d decoder
	d.decode(game, h)
	var r recorder
	var d2 decoder
	d2.decode(out, &r)
	return r.events
}

type answerer struct {
	n   *negotiator
	out *[]byte
}

func (a *answerer) text([]byte) {}
func (a *answerer) negotiate(verb, opt byte) {
	*a.out, _ = a.n.negotiate(*a.out, verb, opt)
}
func (a *answerer) subneg(opt byte, p []byte, truncated bool) {
	if !truncated {
		*a.out = a.n.subneg(*a.out, opt, p)
	}
}
func (a *answerer) command(byte) {}

func sbytes(opt byte, p ...byte) []byte { return telnet.AppendSubneg(nil, opt, p) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestNegotiation(t *testing.T) {
	tests := []struct {
		name  string
		facts backend.Facts
		game  []byte
		want  []string
	}{
		{"echo for a password, once", mudlet, []byte{iac, telnet.WILL, 1, iac, telnet.WILL, 1, iac, telnet.WONT, 1}, []string{"DO 1", "DONT 1"}},
		{"MCCP declined, unknown options refused", mudlet,
			[]byte{iac, telnet.WILL, 86, iac, telnet.WILL, 87, iac, telnet.DO, 99, iac, telnet.WILL, 70, iac, telnet.DO, 1},
			[]string{"DONT 86", "DONT 87", "WONT 99", "DONT 70", "WONT 1"}},
		{"the MTTS cycle", mudlet,
			cat([]byte{iac, telnet.DO, 24}, sbytes(24, 1), sbytes(24, 1), sbytes(24, 1), sbytes(24, 1)),
			[]string{"WILL 24", `SB 24 "\x00MUDLET" false`, `SB 24 "\x00XTERM-256COLOR" false`, `SB 24 "\x00MTTS 143" false`, `SB 24 "\x00MTTS 143" false`}},
		{"a client without the cycle repeats its terminal", backend.Facts{Terminal: "XTERM"},
			cat([]byte{iac, telnet.DO, 24}, sbytes(24, 1), sbytes(24, 1), sbytes(24, 1)),
			[]string{"WILL 24", `SB 24 "\x00XTERM" false`, `SB 24 "\x00XTERM" false`, `SB 24 "\x00XTERM" false`}},
		{"window size at once", mudlet, []byte{iac, telnet.DO, 31}, []string{"WILL 31", `SB 31 "\x00x\x00(" false`}},
		{"window size unknown", backend.Facts{}, []byte{iac, telnet.DO, 31}, []string{"WILL 31"}},
		{"window size with 255 in it", backend.Facts{Width: 255, Height: 0x1ff}, []byte{iac, telnet.DO, 31}, []string{"WILL 31", `SB 31 "\x00\xff\x01\xff" false`}},
		{"NEW-ENVIRON asked by name", mudlet,
			cat([]byte{iac, telnet.DO, 39}, sbytes(39, envSEND, envVAR, 'I', 'P', 'A', 'D', 'D', 'R', 'E', 'S', 'S', envUSER, 'U', 'S', 'E', 'R')),
			[]string{"WILL 39", `SB 39 "\x00\x00IPADDRESS\x01203.0.113.7\x03USER" false`}},
		{"NEW-ENVIRON, all of it", mudlet,
			cat([]byte{iac, telnet.DO, 39}, sbytes(39, envSEND)),
			[]string{"WILL 39", `SB 39 "\x00\x00IPADDRESS\x01203.0.113.7\x00CLIENT_NAME\x01Mudlet\x00CLIENT_VERSION\x014.17\x00TERMINAL_TYPE\x01XTERM-256COLOR\x00CHARSET\x01UTF-8\x00MTTS\x01143" false`}},
		{"NEW-ENVIRON before it is on", mudlet, sbytes(39, envSEND), nil},
		{"CHARSET: the client's", mudlet,
			cat([]byte{iac, telnet.WILL, 42, iac, telnet.DO, 42}, sbytes(42, append([]byte{charsetREQUEST}, ";ISO-8859-1;utf-8"...)...)),
			[]string{"DO 42", "WILL 42", `SB 42 "\x02utf-8" false`}},
		{"CHARSET: ASCII rather than nothing", backend.Facts{},
			cat([]byte{iac, telnet.WILL, 42}, sbytes(42, append([]byte{charsetREQUEST}, " UTF-8 US-ASCII"...)...)),
			[]string{"DO 42", `SB 42 "\x02US-ASCII" false`}},
		{"CHARSET: nothing that fits", backend.Facts{},
			cat([]byte{iac, telnet.WILL, 42}, sbytes(42, append([]byte{charsetREQUEST}, "[TTABLE]\x01;KOI8-R"...)...)),
			[]string{"DO 42", `SB 42 "\x03" false`}},
		{"prompt marks and GMCP", mudlet, []byte{iac, telnet.WILL, 25, iac, telnet.WILL, 201, iac, telnet.DO, 25}, []string{"DO 25", "DO 201", "WONT 25"}},
		{"SGA both ways", mudlet, []byte{iac, telnet.WILL, 3, iac, telnet.DO, 3}, []string{"DO 3", "WILL 3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := &negotiator{facts: tc.facts}
			if got := answers(n, tc.game); !slices.Equal(got, tc.want) {
				t.Errorf("answers %q\nwant     %q", got, tc.want)
			}
		})
	}
}

func TestNegotiationFactsChange(t *testing.T) {
	n := &negotiator{facts: mudlet}
	if b := n.setFacts(nil, backend.Facts{Width: 90, Height: 30}); len(b) != 0 {
		t.Errorf("a resize before NAWS is on sends %q", b)
	}
	answers(n, []byte{iac, telnet.DO, 31})
	f := mudlet
	f.Width = 100
	var r recorder
	var d decoder
	d.decode(n.setFacts(nil, f), &r)
	if want := []string{`SB 31 "\x00d\x00(" false`}; !slices.Equal(r.events, want) {
		t.Errorf("a resize sends %q, want %q", r.events, want)
	}
	f.Terminal = "ANSI"
	if b := n.setFacts(nil, f); len(b) != 0 {
		t.Errorf("another change sends %q; only a resize has something to send", b)
	}
}

func TestNegotiationEnvironInfo(t *testing.T) {
	n := &negotiator{facts: backend.Facts{ClientAddr: "203.0.113.7:5"}}
	answers(n, cat([]byte{iac, telnet.DO, 39}, sbytes(39, envSEND)))
	f := n.facts
	f.ClientName = "Mudlet"
	var r recorder
	var d decoder
	d.decode(n.setFacts(nil, f), &r)
	if want := []string{`SB 39 "\x02\x00CLIENT_NAME\x01Mudlet" false`}; !slices.Equal(r.events, want) {
		t.Errorf("a client name learnt late sends %q, want %q", r.events, want)
	}
	if b := n.setFacts(nil, f); len(b) != 0 {
		t.Errorf("no change sends %q", b)
	}
}

func TestSettled(t *testing.T) {
	n := &negotiator{facts: mudlet}
	if !n.settled() {
		t.Fatal("a game that asked nothing is waited for")
	}
	answers(n, []byte{iac, telnet.DO, 24, iac, telnet.DO, 39})
	if n.settled() {
		t.Fatal("settled before the game asked for the terminal type it turned on")
	}
	answers(n, sbytes(24, 1))
	if n.settled() {
		t.Fatal("settled before the game asked for the environment it turned on")
	}
	answers(n, sbytes(39, envSEND))
	if !n.settled() {
		t.Fatal("not settled once the game has asked")
	}
}

func TestParseMSSP(t *testing.T) {
	p := []byte("\x01NAME\x02Tiny\x01PLAYERS\x023\x01PORT\x024000\x024001\x01\x02x\x01BAD\xff\x02v")
	got := parseMSSP(p)
	want := []backend.MSSPVar{
		{Name: "NAME", Values: []string{"Tiny"}},
		{Name: "PLAYERS", Values: []string{"3"}},
		{Name: "PORT", Values: []string{"4000", "4001"}},
		{Name: "BAD?", Values: []string{"v"}},
	}
	if !slices.EqualFunc(got, want, func(a, b backend.MSSPVar) bool { return a.Name == b.Name && slices.Equal(a.Values, b.Values) }) {
		t.Fatalf("parseMSSP = %q, want %q", got, want)
	}
}

// FuzzAnswers: whatever the game sends, the bridge's answers are telnet
// that carries no text, each subnegotiation closed, and an MSSP table
// parses into bounded, printable variables.
func FuzzAnswers(f *testing.F) {
	for _, tc := range decoderCases {
		f.Add(tc.in)
	}
	f.Add(cat([]byte{iac, telnet.DO, 24}, sbytes(24, 1), sbytes(24, 1), sbytes(24, 1)))
	f.Add(cat([]byte{iac, telnet.DO, 39}, sbytes(39, envSEND, envVAR, envESC, 0, envUSER)))
	f.Add(cat([]byte{iac, telnet.WILL, 42}, sbytes(42, charsetREQUEST, '[', 'T', 'T', 'A', 'B', 'L', 'E', ']')))
	f.Add([]byte("\x01NAME\x02Tiny\x01PORT\x024000\x024001"))
	f.Fuzz(func(t *testing.T, game []byte) {
		n := &negotiator{facts: mudlet, mssp: true}
		for _, e := range answers(n, game) {
			if len(e) > 5 && e[:5] == "text " {
				t.Fatalf("an answer holds text: %q", e)
			}
			if len(e) > 3 && e[:3] == "SB " && e[len(e)-5:] == " true" {
				t.Fatalf("an answer's subnegotiation is not closed: %q", e)
			}
		}
		vars := parseMSSP(game)
		if len(vars) > maxMSSPVars {
			t.Fatalf("%d MSSP variables kept", len(vars))
		}
		for _, v := range vars {
			if v.Name == "" || len(v.Values) > maxMSSPVars {
				t.Fatalf("MSSP variable %q with %d values", v.Name, len(v.Values))
			}
			for _, s := range append([]string{v.Name}, v.Values...) {
				for _, c := range []byte(s) {
					if c < ' ' || c > '~' {
						t.Fatalf("MSSP text %q is not printable", s)
					}
				}
			}
		}
	})
}

// TestNegotiationLateFacts: a new session's client may answer the
// gateway after the game asks; the game's questions that need the
// answers (the terminal type, the character set) wait for them, until
// factsBy at most, and are answered in order when they come; a session
// with nothing to wait for is answered at once.
func TestNegotiationLateFacts(t *testing.T) {
	ask := cat([]byte{iac, telnet.DO, 24, iac, telnet.WILL, 42}, sbytes(24, ttypeSEND),
		sbytes(42, append([]byte{charsetREQUEST}, ";ISO-8859-1;UTF-8"...)...), sbytes(24, ttypeSEND))
	decode := func(b []byte) []string {
		var r recorder
		var d decoder
		d.decode(b, &r)
		return r.events
	}
	now := time.Now()
	tests := []struct {
		name    string
		factsBy time.Time
		late    *backend.Facts // the facts that come after the questions; nil: none
		at      time.Time      // when the waiting questions are looked at again
		asked   []string       // the answers at once
		then    []string       // the answers after
	}{
		{"the facts come", now.Add(time.Second), &mudlet, now,
			[]string{"WILL 24", "DO 42"}, []string{`SB 24 "\x00MUDLET" false`, `SB 24 "\x00XTERM-256COLOR" false`, `SB 42 "\x02UTF-8" false`}},
		{"they do not come in time", now.Add(time.Second), nil, now.Add(time.Second),
			[]string{"WILL 24", "DO 42"}, []string{`SB 24 "\x00UNKNOWN" false`, `SB 24 "\x00UNKNOWN" false`, `SB 42 "\x03" false`}},
		{"not yet", now.Add(time.Second), nil, now, []string{"WILL 24", "DO 42"}, nil},
		{"a resumed session's", time.Time{}, nil, now,
			[]string{"WILL 24", "DO 42", `SB 24 "\x00UNKNOWN" false`, `SB 42 "\x03" false`, `SB 24 "\x00UNKNOWN" false`}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := &negotiator{factsBy: tc.factsBy}
			if got := answers(n, ask); !slices.Equal(got, tc.asked) {
				t.Errorf("answers %q\nwant     %q", got, tc.asked)
			}
			var b []byte
			if tc.late != nil {
				b = n.setFacts(b, *tc.late)
			}
			if got := decode(n.answerLate(b, tc.at)); !slices.Equal(got, tc.then) {
				t.Errorf("then %q\nwant %q", got, tc.then)
			}
			if n.lateQuestions().IsZero() != (tc.then != nil || tc.factsBy.IsZero()) {
				t.Errorf("questions waiting until %v after the answers %q", n.lateQuestions(), tc.then)
			}
			if got := answers(n, sbytes(24, ttypeSEND)); tc.late != nil && len(got) != 1 {
				t.Errorf("a question after the facts came answered with %q, want one answer at once", got)
			}
		})
	}
}
