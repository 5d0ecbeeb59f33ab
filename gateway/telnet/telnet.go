// Package telnet is the gateway's telnet codec: it turns the bytes a
// player's client sends into clean application input plus protocol events,
// and application output into telnet's network virtual terminal form.
package telnet

import "io"

// Commands and option verbs (RFC 854).
const (
	SE   byte = 240
	NOP  byte = 241
	DM   byte = 242
	BRK  byte = 243
	IP   byte = 244
	AO   byte = 245
	AYT  byte = 246
	EC   byte = 247
	EL   byte = 248
	GA   byte = 249
	SB   byte = 250
	WILL byte = 251
	WONT byte = 252
	DO   byte = 253
	DONT byte = 254
	IAC  byte = 255
)

// DefaultMaxSubneg bounds a subnegotiation's payload when the Decoder's
// MaxSubneg is zero.
const DefaultMaxSubneg = 8 << 10

// Handler receives the protocol events found by a Decoder.
type Handler interface {
	// Negotiate is called for IAC WILL/WONT/DO/DONT opt.
	Negotiate(verb, opt byte)
	// Subnegotiation is called for IAC SB opt ... IAC SE with the unescaped
	// payload, valid only during the call. truncated reports a payload that
	// exceeded the bound and was cut.
	Subnegotiation(opt byte, payload []byte, truncated bool)
	// Command is called for any other IAC command (NOP, AYT, GA, ...).
	Command(cmd byte)
}

type state uint8

const (
	stData  state = iota
	stCR          // after CR in data: a following LF or NUL belongs to it
	stIAC         // after IAC in data
	stVerb        // after IAC WILL/WONT/DO/DONT
	stSBOpt       // after IAC SB
	stSB          // inside a subnegotiation
	stSBIAC       // after IAC inside a subnegotiation
)

// Decoder parses a client's byte stream. It keeps its state between calls,
// so a command may be split across any two reads, and it never waits for more
// input than it has. The zero value is ready to use.
type Decoder struct {
	// MaxSubneg bounds the payload kept from one subnegotiation. Zero means
	// DefaultMaxSubneg; the rest of an overlong one is discarded.
	MaxSubneg int

	sb        []byte
	st        state
	afterIAC  state // the data state to return to after a command
	verb      byte
	opt       byte
	truncated bool
}

func (d *Decoder) maxSubneg() int {
	if d.MaxSubneg <= 0 {
		return DefaultMaxSubneg
	}
	return d.MaxSubneg
}

// Decode parses src, appends the application data it holds to dst and
// returns dst. Line endings CR LF, CR NUL, bare CR and bare LF all become
// "\n"; other NUL bytes are dropped. Protocol events go to h.
func (d *Decoder) Decode(dst, src []byte, h Handler) []byte {
	for i := 0; i < len(src); i++ {
		if d.st == stData {
			// Most input is text: take a run of it at once.
			j := i
			for j < len(src) && !dataStops[src[j]] {
				j++
			}
			dst = append(dst, src[i:j]...)
			if i = j; i == len(src) {
				break
			}
		}
		c := src[i]
		switch d.st {
		case stData, stCR:
			if c == IAC {
				d.afterIAC, d.st = d.st, stIAC
				continue
			}
			prevCR := d.st == stCR
			d.st = stData
			switch {
			case c == '\r':
				dst = append(dst, '\n')
				d.st = stCR
			case (c == '\n' || c == 0) && prevCR:
				// the second half of CR LF or CR NUL
			case c == 0:
			default:
				dst = append(dst, c)
			}
		case stIAC:
			d.st = stData
			switch c {
			case IAC:
				dst = append(dst, IAC)
			case WILL, WONT, DO, DONT:
				d.verb, d.st = c, stVerb
			case SB:
				d.st = stSBOpt
			default:
				h.Command(c)
				d.st = d.afterIAC
			}
		case stVerb:
			d.st = stData
			h.Negotiate(d.verb, c)
		case stSBOpt:
			d.opt, d.st = c, stSB
			d.sb, d.truncated = d.sb[:0], false
		case stSB:
			if c == IAC {
				d.st = stSBIAC
				continue
			}
			d.sbByte(c)
		case stSBIAC:
			switch c {
			case SE:
				d.st = stData
				h.Subnegotiation(d.opt, d.sb, d.truncated)
				if cap(d.sb) > 256 {
					d.sb = nil // do not keep a large buffer for an idle session
				}
			case IAC:
				d.st = stSB
				d.sbByte(IAC)
			default:
				// IAC followed by anything else inside SB: a client that
				// forgot to close it. End the subnegotiation and treat the
				// byte as the command it would be outside.
				d.st, d.afterIAC = stIAC, stData
				h.Subnegotiation(d.opt, d.sb, true)
				i--
			}
		}
	}
	return dst
}

func (d *Decoder) sbByte(c byte) {
	if len(d.sb) >= d.maxSubneg() {
		d.truncated = true
		return
	}
	d.sb = append(d.sb, c)
}

// Encoder converts application output to the network virtual terminal:
// IAC is doubled and a "\n" not preceded by "\r" becomes "\r\n". It keeps
// the last byte between calls. The zero value is ready to use.
type Encoder struct {
	lastCR bool
	// Exact makes each byte of the application's one unit on the wire,
	// so that a client can count them: "\r" becomes "\r\0" and "\n"
	// always "\r\n" (RFC 854's NVT, each taken literally).
	Exact bool
}

// dataStops are the bytes that end a run of plain text in the decoder's
// data state, and encodeStops those the encoder changes.
var dataStops, encodeStops [256]bool

func init() {
	for _, c := range []byte{IAC, '\r', 0} {
		dataStops[c] = true
	}
	for _, c := range []byte{IAC, '\r', '\n'} {
		encodeStops[c] = true
	}
}

// Encode appends the encoded form of src to dst and returns it.
func (e *Encoder) Encode(dst, src []byte) []byte {
	for i := 0; i < len(src); i++ {
		// Most output is text: take a run of it at once.
		j := i
		for j < len(src) && !encodeStops[src[j]] {
			j++
		}
		if j > i {
			dst = append(dst, src[i:j]...)
			e.lastCR = false
			if i = j; i == len(src) {
				break
			}
		}
		c := src[i]
		switch c {
		case IAC:
			dst = append(dst, IAC, IAC)
		case '\r':
			dst = append(dst, '\r')
			if e.Exact {
				dst = append(dst, 0)
			}
		case '\n':
			if !e.lastCR || e.Exact {
				dst = append(dst, '\r')
			}
			dst = append(dst, '\n')
		}
		e.lastCR = c == '\r'
	}
	return dst
}

// Refusal returns the answer to a request for an option the gateway does not
// support: DONT to WILL and WONT to DO. It returns false for WONT and DONT,
// which need no answer when the option is already off (RFC 1143), so that
// refusing never starts a negotiation loop.
func Refusal(verb byte) (byte, bool) {
	switch verb {
	case WILL:
		return DONT, true
	case DO:
		return WONT, true
	}
	return 0, false
}

// Strip returns a reader of r's data with the telnet commands removed and
// nothing answered: the stream as a client that speaks no telnet (nc, a
// raw socket) would show it. Load tools and tests read the gateway so.
func Strip(r io.Reader) io.Reader { return &stripper{r: r} }

type stripper struct {
	r   io.Reader
	dec Decoder
}

func (s *stripper) Read(p []byte) (int, error) {
	for {
		n, err := s.r.Read(p)
		// Decoded in place: the decoder never writes ahead of its input.
		out := s.dec.Decode(p[:0], p[:n], ignore{})
		if len(out) > 0 || err != nil {
			return len(out), err
		}
	}
}

type ignore struct{}

func (ignore) Negotiate(byte, byte)              {}
func (ignore) Subnegotiation(byte, []byte, bool) {}
func (ignore) Command(byte)                      {}
