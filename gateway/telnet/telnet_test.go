package telnet

import (
	"bytes"
	"fmt"
	"testing"
)

// recorder is a Handler that writes every event down.
type recorder struct{ events []string }

func (r *recorder) Negotiate(verb, opt byte) {
	r.events = append(r.events, fmt.Sprintf("neg %d %d", verb, opt))
}
func (r *recorder) Subnegotiation(opt byte, p []byte, trunc bool) {
	r.events = append(r.events, fmt.Sprintf("sb %d %q %v", opt, p, trunc))
}
func (r *recorder) Command(c byte) { r.events = append(r.events, fmt.Sprintf("cmd %d", c)) }

var decodeCases = []struct {
	name   string
	in     string
	data   string
	events []string
}{
	{"plain", "hello", "hello", nil},
	{"CR LF", "say hi\r\n", "say hi\n", nil},
	{"CR NUL", "say hi\r\x00", "say hi\n", nil},
	{"bare LF", "a\nb\n", "a\nb\n", nil},
	{"bare CR", "a\rb\r", "a\nb\n", nil},
	{"CR CR LF", "a\r\r\n", "a\n\n", nil},
	{"NUL dropped", "a\x00\x00b", "ab", nil},
	{"IAC IAC is 255", "a\xff\xffb", "a\xffb", nil},
	{"WILL", "\xff\xfb\x18x", "x", []string{"neg 251 24"}},
	{"DO DONT WONT", "\xff\xfd\x01\xff\xfe\x03\xff\xfc\x1f", "", []string{"neg 253 1", "neg 254 3", "neg 252 31"}},
	{"NOP AYT GA", "a\xff\xf1b\xff\xf6c\xff\xf9", "abc", []string{"cmd 241", "cmd 246", "cmd 249"}},
	{"unknown command byte", "\xff\x07x", "x", []string{"cmd 7"}},
	{"NAWS", "\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0ok", "ok", []string{`sb 31 "\x00P\x00\x18" false`}},
	{"SB with IAC IAC", "\xff\xfa\x1f\x00\xff\xff\x00\x18\xff\xf0", "", []string{`sb 31 "\x00\xff\x00\x18" false`}},
	{"SB with CR LF inside", "\xff\xfa\xc9a\r\nb\xff\xf0", "", []string{`sb 201 "a\r\nb" false`}},
	{"SB cut by IAC WILL", "\xff\xfa\x18abc\xff\xfb\x01x", "x", []string{`sb 24 "abc" true`, "neg 251 1"}},
	{"CR then IAC then LF", "a\r\xff\xf1\nb", "a\nb", []string{"cmd 241"}},
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			var d Decoder
			var r recorder
			got := d.Decode(nil, []byte(tc.in), &r)
			if string(got) != tc.data {
				t.Errorf("data %q, want %q", got, tc.data)
			}
			if fmt.Sprint(r.events) != fmt.Sprint(tc.events) {
				t.Errorf("events %q, want %q", r.events, tc.events)
			}
		})
	}
}

// TestDecodeSplit feeds every case in two pieces split at every position:
// a command may arrive across any two reads.
func TestDecodeSplit(t *testing.T) {
	for _, tc := range decodeCases {
		for i := 0; i <= len(tc.in); i++ {
			var d Decoder
			var r recorder
			got := d.Decode(nil, []byte(tc.in[:i]), &r)
			got = d.Decode(got, []byte(tc.in[i:]), &r)
			if string(got) != tc.data || fmt.Sprint(r.events) != fmt.Sprint(tc.events) {
				t.Errorf("%s split at %d: data %q events %q, want %q %q", tc.name, i, got, r.events, tc.data, tc.events)
			}
		}
	}
}

func TestDecodeBoundsSubnegotiation(t *testing.T) {
	d := Decoder{MaxSubneg: 16}
	var r recorder
	endless := append([]byte{IAC, SB, 24}, bytes.Repeat([]byte("x"), 1<<20)...)
	d.Decode(nil, endless, &r)
	if len(d.sb) > 16 {
		t.Fatalf("kept %d bytes of an endless subnegotiation, bound 16", len(d.sb))
	}
	got := d.Decode(nil, []byte("\xff\xf0after"), &r)
	if string(got) != "after" || len(r.events) != 1 || r.events[0] != fmt.Sprintf("sb 24 %q true", bytes.Repeat([]byte("x"), 16)) {
		t.Fatalf("after the overlong SB: data %q events %q", got, r.events)
	}
}

func TestEncode(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"hello\n", "hello\r\n"},
		{"a\r\nb", "a\r\nb"},
		{"\xff", "\xff\xff"},
		{"x\n\ny", "x\r\n\r\ny"},
	} {
		var e Encoder
		if got := e.Encode(nil, []byte(tc.in)); string(got) != tc.want {
			t.Errorf("Encode(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// CR at the end of one write and LF at the start of the next.
	var e Encoder
	got := e.Encode(e.Encode(nil, []byte("a\r")), []byte("\nb"))
	if string(got) != "a\r\nb" {
		t.Errorf("split CR LF encoded as %q", got)
	}
	// Exact: each byte one unit, whatever came before.
	for _, tc := range []struct{ in, want string }{
		{"hello\n", "hello\r\n"},
		{"a\r\nb", "a\r\x00\r\nb"},
		{"\r", "\r\x00"},
		{"\x00\xff", "\x00\xff\xff"},
	} {
		e := Encoder{Exact: true}
		if got := e.Encode(nil, []byte(tc.in)); string(got) != tc.want {
			t.Errorf("exact Encode(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// countUnits counts the application's bytes in an exactly encoded stream,
// as a client does: IAC IAC is one, and so are CR LF and CR NUL.
func countUnits(wire []byte) int {
	n, cr, iac := 0, false, false
	for _, c := range wire {
		switch {
		case iac:
			iac = false
			n++ // IAC IAC: the only command in encoded text
			cr = false
		case c == IAC:
			iac = true
		case cr && (c == '\n' || c == 0):
			cr = false
		default:
			n++
			cr = c == '\r'
		}
	}
	return n
}

func TestRefusal(t *testing.T) {
	for _, tc := range []struct {
		verb, reply byte
		ok          bool
	}{{WILL, DONT, true}, {DO, WONT, true}, {WONT, 0, false}, {DONT, 0, false}} {
		reply, ok := Refusal(tc.verb)
		if reply != tc.reply || ok != tc.ok {
			t.Errorf("Refusal(%d) = %d %v, want %d %v", tc.verb, reply, ok, tc.reply, tc.ok)
		}
	}
}

// FuzzDecode checks that no input panics, that the data never holds more
// bytes than the input, that subnegotiations stay bounded, and that where the
// input is split makes no difference, down to a byte at a time (where the
// decoder's runs of text are a byte each).
func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add([]byte(tc.in), uint8(len(tc.in)/2))
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		d := Decoder{MaxSubneg: 64}
		var r1 recorder
		whole := d.Decode(nil, in, &r1)
		if len(whole) > len(in) {
			t.Fatalf("decoded %d bytes from %d", len(whole), len(in))
		}
		if len(d.sb) > 64 {
			t.Fatalf("subnegotiation buffer %d > 64", len(d.sb))
		}
		i := int(split) % (len(in) + 1)
		d2 := Decoder{MaxSubneg: 64}
		var r2 recorder
		parts := d2.Decode(nil, in[:i], &r2)
		parts = d2.Decode(parts, in[i:], &r2)
		if !bytes.Equal(whole, parts) || fmt.Sprint(r1.events) != fmt.Sprint(r2.events) {
			t.Fatalf("split at %d changes the result: %q %q vs %q %q", i, whole, r1.events, parts, r2.events)
		}
		d4 := Decoder{MaxSubneg: 64}
		var r4 recorder
		var bytewise []byte
		for i := range in {
			bytewise = d4.Decode(bytewise, in[i:i+1], &r4)
		}
		if !bytes.Equal(whole, bytewise) || fmt.Sprint(r1.events) != fmt.Sprint(r4.events) {
			t.Fatalf("byte at a time: %q %q vs %q %q", whole, r1.events, bytewise, r4.events)
		}
		d3 := Decoder{MaxSubneg: 64}
		buf := bytes.Clone(in)
		if inPlace := d3.Decode(buf[:0], buf, &recorder{}); !bytes.Equal(inPlace, whole) {
			t.Fatalf("decoding in place gives %q, elsewhere %q", inPlace, whole)
		}
	})
}

// FuzzEncode checks that encoded output decodes back to the input, with
// newlines normalised, and that encoding a byte at a time (where the
// encoder's runs of text are a byte each) gives the same.
func FuzzEncode(f *testing.F) {
	f.Add([]byte("hello\n\xff world\r\n"))
	f.Add([]byte("\r\n\n\r\rtext\xff\xff\x00end"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var e Encoder
		enc := e.Encode(nil, in)
		for _, exact := range []bool{false, true} {
			whole, bytewise := Encoder{Exact: exact}, Encoder{Exact: exact}
			w := whole.Encode(nil, in)
			var b []byte
			for i := range in {
				b = bytewise.Encode(b, in[i:i+1])
			}
			if !bytes.Equal(w, b) {
				t.Fatalf("exact %v: %q whole %q, a byte at a time %q", exact, in, w, b)
			}
		}
		var d Decoder
		var r recorder
		got := d.Decode(nil, enc, &r)
		if len(r.events) != 0 {
			t.Fatalf("encoded text decodes to protocol events %q", r.events)
		}
		want := bytes.ReplaceAll(in, []byte("\r\n"), []byte("\n"))
		want = bytes.ReplaceAll(want, []byte("\r"), []byte("\n"))
		want = bytes.ReplaceAll(want, []byte{0}, nil)
		if !bytes.Equal(got, want) {
			t.Fatalf("round trip %q -> %q -> %q, want %q", in, enc, got, want)
		}
		// Exactly encoded, in two writes, a client counts every byte.
		x := Encoder{Exact: true}
		half := len(in) / 2
		exact := x.Encode(x.Encode(nil, in[:half]), in[half:])
		if n := countUnits(exact); n != len(in) {
			t.Fatalf("exact %q -> %q counts %d, want %d", in, exact, n, len(in))
		}
	})
}

// TestDecodeInPlace: the gateway decodes into the buffer it read into,
// which is safe because the decoder never writes ahead of its input.
func TestDecodeInPlace(t *testing.T) {
	for _, tc := range decodeCases {
		buf := []byte(tc.in)
		var d Decoder
		var r recorder
		if got := d.Decode(buf[:0], buf, &r); string(got) != tc.data {
			t.Errorf("%s in place: %q, want %q", tc.name, got, tc.data)
		}
	}
}
