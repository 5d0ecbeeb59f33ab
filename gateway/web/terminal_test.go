package web

import (
	"bytes"
	"testing"
	"unicode/utf8"

	"holdfast/gateway/telnet"
)

const (
	iac  = telnet.IAC
	will = telnet.WILL
	wont = telnet.WONT
	do   = telnet.DO
	dont = telnet.DONT
	sb   = telnet.SB
	se   = telnet.SE
)

func TestTerminalNegotiation(t *testing.T) {
	sized := func() *terminal { return &terminal{client: "Page", width: 100, height: 30} }
	for _, tc := range []struct {
		name      string
		term      *terminal
		in        []byte
		wantText  string
		wantReply []byte
	}{
		{"text passes", sized(), []byte("hello\r\n"), "hello\r\n", nil},
		{"doubled IAC is a byte", sized(), []byte{'a', iac, iac, 'b'}, "a\xffb", nil},
		{"TTYPE taken", sized(), []byte{iac, do, telnet.OptTTYPE}, "", []byte{iac, will, telnet.OptTTYPE}},
		{"TTYPE cycle", sized(), []byte{iac, do, telnet.OptTTYPE, iac, sb, telnet.OptTTYPE, 1, iac, se, iac, sb, telnet.OptTTYPE, 1, iac, se, iac, sb, telnet.OptTTYPE, 1, iac, se, iac, sb, telnet.OptTTYPE, 1, iac, se},
			"", append(append(append(append([]byte{iac, will, telnet.OptTTYPE},
				telnet.AppendSubneg(nil, telnet.OptTTYPE, []byte("\x00Page"))...),
				telnet.AppendSubneg(nil, telnet.OptTTYPE, []byte("\x00ANSI"))...),
				telnet.AppendSubneg(nil, telnet.OptTTYPE, []byte("\x00MTTS 5"))...),
				telnet.AppendSubneg(nil, telnet.OptTTYPE, []byte("\x00MTTS 5"))...)},
		{"NAWS with a size", sized(), []byte{iac, do, telnet.OptNAWS}, "", append([]byte{iac, will, telnet.OptNAWS}, telnet.AppendSubneg(nil, telnet.OptNAWS, []byte{0, 100, 0, 30})...)},
		{"NAWS without one", &terminal{client: "x"}, []byte{iac, do, telnet.OptNAWS}, "", []byte{iac, wont, telnet.OptNAWS}},
		{"CHARSET UTF-8", sized(), []byte{iac, will, telnet.OptCharset, iac, sb, telnet.OptCharset, 1, ';', 'U', 'T', 'F', '-', '8', iac, se},
			"", append([]byte{iac, do, telnet.OptCharset}, telnet.AppendSubneg(nil, telnet.OptCharset, []byte("\x02UTF-8"))...)},
		{"CHARSET without UTF-8", sized(), []byte{iac, sb, telnet.OptCharset, 1, ';', 'K', 'O', 'I', '8', iac, se}, "", telnet.AppendSubneg(nil, telnet.OptCharset, []byte{3})},
		{"MCCP2 refused", sized(), []byte{iac, will, telnet.OptMCCP2}, "", []byte{iac, dont, telnet.OptMCCP2}},
		{"ECHO refused", sized(), []byte{iac, will, telnet.OptEcho, 'x'}, "x", []byte{iac, dont, telnet.OptEcho}},
		{"GMCP refused, its message dropped", sized(), []byte{iac, will, telnet.OptGMCP, iac, sb, telnet.OptGMCP, 'C', iac, se, 'y'}, "y", []byte{iac, dont, telnet.OptGMCP}},
		{"WONT for an option off: no answer", sized(), []byte{iac, wont, telnet.OptEOR}, "", nil},
		{"EOR and GA dropped", sized(), []byte{'>', ' ', iac, telnet.EOR, iac, telnet.GA}, "> ", nil},
		{"a DO twice is answered once", sized(), []byte{iac, do, telnet.OptTTYPE, iac, do, telnet.OptTTYPE}, "", []byte{iac, will, telnet.OptTTYPE}},
		{"DONT after DO", sized(), []byte{iac, do, telnet.OptTTYPE, iac, dont, telnet.OptTTYPE}, "", []byte{iac, will, telnet.OptTTYPE, iac, wont, telnet.OptTTYPE}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Byte by byte, as the worst split of writes would give it.
			var text, reply []byte
			for i := range tc.in {
				text, reply = tc.term.output(text, reply, tc.in[i:i+1])
			}
			if string(text) != tc.wantText || !bytes.Equal(reply, tc.wantReply) {
				t.Errorf("text %q reply %v, want %q %v", text, reply, tc.wantText, tc.wantReply)
			}
		})
	}
}

func TestTerminalTextIsUTF8(t *testing.T) {
	term := &terminal{text: true}
	in := []byte("grüße ✓ \xfe bad")
	var all []byte
	for i := range in {
		out, _ := term.output(nil, nil, in[i:i+1])
		if !utf8.Valid(out) {
			t.Fatalf("a text message that is not UTF-8: %q", out)
		}
		all = append(all, out...)
	}
	if want := "grüße ✓ \uFFFD bad"; string(all) != want {
		t.Errorf("got %q, want %q", all, want)
	}
}

// TestTerminalCRNUL: CR NUL, the telnet for a bare CR (which the gateway
// sends to a page that counts the game's bytes), is a CR in the text,
// also across writes; a NUL elsewhere is the game's.
func TestTerminalCRNUL(t *testing.T) {
	term := &terminal{}
	var all []byte
	for _, p := range []string{"a\r", "\x00b\r\n", "\x00c"} {
		out, _ := term.output(nil, nil, []byte(p))
		all = append(all, out...)
	}
	if want := "a\rb\r\n\x00c"; string(all) != want {
		t.Errorf("got %q, want %q", all, want)
	}
}

func TestTerminalInput(t *testing.T) {
	var term terminal
	for _, tc := range []struct{ in, want string }{
		{"look", "look\r\n"},
		{"say hi\n", "say hi\n"},
		{"", "\r\n"},
		{"a\xffb", "a\xff\xffb\r\n"},
		{"two\nlines", "two\nlines\r\n"},
	} {
		if got := string(term.input(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("input %q: %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzTerminal feeds the terminal whatever a gateway could write: it never
// panics, keeps its subnegotiation bounded, and a text client gets whole
// UTF-8.
func FuzzTerminal(f *testing.F) {
	f.Add([]byte{iac, do, telnet.OptTTYPE, iac, sb, telnet.OptTTYPE, 1, iac, se}, 3)
	f.Add([]byte("caf\xc3\xa9 \xe2\x9c"), 1)
	f.Add([]byte{iac, sb, telnet.OptCharset, 1, ';', iac, iac, iac, se, iac}, 2)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		term := &terminal{client: "f", width: 80, height: 24, text: true}
		if split <= 0 {
			split = 1
		}
		for len(b) > 0 {
			n := min(split, len(b))
			out, reply := term.output(nil, nil, b[:n])
			b = b[n:]
			if !utf8.Valid(out) {
				t.Fatalf("not UTF-8: %q", out)
			}
			if len(term.sb) > maxTermSubneg || len(term.partial) >= utf8.UTFMax {
				t.Fatalf("unbounded: subnegotiation %d, partial %d", len(term.sb), len(term.partial))
			}
			var d telnet.Decoder
			d.Decode(nil, reply, nopHandler{})
		}
	})
}

type nopHandler struct{}

func (nopHandler) Negotiate(byte, byte)              {}
func (nopHandler) Subnegotiation(byte, []byte, bool) {}
func (nopHandler) Command(byte)                      {}
