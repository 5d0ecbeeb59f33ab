package bridge

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"holdfast/gateway/telnet"
)

// recorder writes down what a decoder finds, text merged between events.
type recorder struct{ events []string }

func (r *recorder) text(p []byte) {
	if n := len(r.events); n > 0 && strings.HasPrefix(r.events[n-1], "text ") {
		r.events[n-1] += string(p)
		return
	}
	r.events = append(r.events, "text "+string(p))
}

func (r *recorder) negotiate(verb, opt byte) {
	r.events = append(r.events, fmt.Sprintf("%s %d", verbName(verb), opt))
}

func (r *recorder) subneg(opt byte, p []byte, truncated bool) {
	r.events = append(r.events, fmt.Sprintf("SB %d %q %v", opt, p, truncated))
}

func (r *recorder) command(c byte) { r.events = append(r.events, fmt.Sprintf("CMD %d", c)) }

const (
	iac = telnet.IAC
	sb  = telnet.SB
	se  = telnet.SE
)

var decoderCases = []struct {
	name string
	in   []byte
	want []string
}{
	{"text keeps its line endings", []byte("a\r\nb\n\rc\rd"), []string{"text a\r\nb\n\rc\rd"}},
	{"CR NUL is a bare CR", []byte("a\r\x00b"), []string{"text a\rb"}},
	{"other NULs stay", []byte("a\x00b"), []string{"text a\x00b"}},
	{"IAC IAC is 255", []byte{'a', iac, iac, 'b'}, []string{"text a\xffb"}},
	{"negotiation between text", []byte{'a', iac, telnet.WILL, 1, 'b'}, []string{"text a", "WILL 1", "text b"}},
	{"prompt mark after text", []byte{'>', ' ', iac, telnet.GA}, []string{"text > ", "CMD 249"}},
	{"EOR", []byte{'>', iac, telnet.EOR}, []string{"text >", "CMD 239"}},
	{"subnegotiation with IAC doubled", []byte{iac, sb, 201, 'x', iac, iac, 'y', iac, se}, []string{`SB 201 "x\xffy" false`}},
	{"subnegotiation left open", []byte{iac, sb, 24, 1, iac, telnet.DO, 31, 'z'}, []string{`SB 24 "\x01" true`, "DO 31", "text z"}},
	{"CR then IAC then NUL", []byte{'\r', iac, telnet.NOP, 0}, []string{"text \r", "CMD 241"}},
	{"unknown command", []byte{iac, 7, 'q'}, []string{"CMD 7", "text q"}},
}

func TestDecoder(t *testing.T) {
	for _, tc := range decoderCases {
		t.Run(tc.name, func(t *testing.T) {
			var whole, split recorder
			var d1, d2 decoder
			d1.decode(tc.in, &whole)
			for i := range tc.in {
				d2.decode(tc.in[i:i+1], &split)
			}
			if !slices.Equal(whole.events, tc.want) {
				t.Errorf("whole: %q, want %q", whole.events, tc.want)
			}
			if !slices.Equal(split.events, tc.want) {
				t.Errorf("a byte at a time: %q, want %q", split.events, tc.want)
			}
		})
	}
}

func TestDecoderBoundsSubnegotiation(t *testing.T) {
	var r recorder
	var d decoder
	d.decode([]byte{iac, sb, 201}, &r)
	chunk := bytes.Repeat([]byte("x"), 4096)
	for range 2 * maxSubneg / len(chunk) {
		d.decode(chunk, &r)
	}
	d.decode([]byte{iac, se, 'k'}, &r)
	if len(r.events) != 2 || !strings.HasSuffix(r.events[0], " true") || len(r.events[0]) > maxSubneg+32 || r.events[1] != "text k" {
		t.Fatalf("an overlong subnegotiation: %d events, first %d bytes; want it cut and reported", len(r.events), len(r.events[0]))
	}
	if cap(d.sb) > 1<<10 {
		t.Errorf("the decoder keeps a %d-byte buffer after the subnegotiation", cap(d.sb))
	}
}

func TestAppendInput(t *testing.T) {
	got := appendInput(nil, []byte("say \xff\nnext\n"))
	if want := []byte("say \xff\xff\r\nnext\r\n"); !bytes.Equal(got, want) {
		t.Fatalf("appendInput = %q, want %q", got, want)
	}
}

// FuzzDecoder: the game's stream, whatever it holds, decodes to the same
// events whether it arrives whole or cut anywhere, and text holds no IAC
// command.
func FuzzDecoder(f *testing.F) {
	for _, tc := range decoderCases {
		f.Add(tc.in, uint16(1))
	}
	f.Add([]byte{iac, sb, 42, 1, ';', 'U', 'T', 'F', '-', '8', iac, se}, uint16(3))
	f.Add([]byte{iac, iac, iac, sb, iac, iac, iac, se, '\r', 0, '\r'}, uint16(2))
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		var whole, split recorder
		var d1, d2 decoder
		d1.decode(in, &whole)
		at := int(cut) % (len(in) + 1)
		d2.decode(in[:at], &split)
		d2.decode(in[at:], &split)
		if !slices.Equal(whole.events, split.events) {
			t.Fatalf("whole %q, cut at %d %q", whole.events, at, split.events)
		}
		text := 0
		for _, e := range whole.events {
			if strings.HasPrefix(e, "text ") {
				text += len(e) - len("text ")
			}
		}
		if text > len(in) {
			t.Fatalf("%d bytes of text out of %d in", text, len(in))
		}
	})
}
