package web

import (
	"bytes"
	"strconv"
	"unicode/utf8"

	"holdfast/gateway/telnet"
)

// terminal stands in for a telnet client on the protocols that carry plain
// text: it answers the gateway's telnet offers as a simple client would,
// takes the telnet out of the output, and makes lines of the input. The
// gateway's engine stays the one telnet implementation for every player.
type terminal struct {
	client        string // the client's name, for TTYPE
	width, height uint16 // from the page; zero when not given
	text          bool   // output goes in text frames: whole UTF-8 only

	st      tstate
	afterCR bool // the last data byte was a CR: a NUL after it is the NVT's, not text
	verb    byte
	sbOpt   byte
	sb      []byte
	partial []byte       // an unfinished UTF-8 sequence held for the next write
	ttypes  int          // TTYPE answers given
	on      [2][256]bool // options on: [0] the gateway's side, [1] this client's
}

type tstate uint8

const (
	tData tstate = iota
	tIAC
	tVerb
	tSBOpt
	tSB
	tSBIAC
)

// maxTermSubneg bounds a subnegotiation the terminal keeps to answer; the
// gateway's own are short.
const maxTermSubneg = 256

// output takes the telnet out of what the gateway writes, appending the
// text to out and the answers the client owes to reply.
func (t *terminal) output(out, reply, p []byte) ([]byte, []byte) {
	start := len(out)
	out = append(out, t.partial...)
	t.partial = t.partial[:0]
	for _, c := range p {
		switch t.st {
		case tData:
			switch {
			case c == telnet.IAC:
				t.st = tIAC
			case c == 0 && t.afterCR: // CR NUL is a CR
			default:
				out = append(out, c)
			}
			t.afterCR = c == '\r'
			if c == telnet.IAC {
				t.afterCR = false
			}
		case tIAC:
			switch c {
			case telnet.IAC:
				out = append(out, c)
				t.st = tData
			case telnet.WILL, telnet.WONT, telnet.DO, telnet.DONT:
				t.verb, t.st = c, tVerb
			case telnet.SB:
				t.st = tSBOpt
			default:
				t.st = tData // GA, EOR and the rest mean nothing to plain text
			}
		case tVerb:
			reply = t.negotiate(reply, t.verb, c)
			t.st = tData
		case tSBOpt:
			t.sbOpt, t.sb, t.st = c, t.sb[:0], tSB
		case tSB:
			if c == telnet.IAC {
				t.st = tSBIAC
			} else if len(t.sb) < maxTermSubneg {
				t.sb = append(t.sb, c)
			}
		case tSBIAC:
			switch c {
			case telnet.SE:
				reply = t.subnegotiation(reply)
				t.st = tData
			case telnet.IAC:
				if len(t.sb) < maxTermSubneg {
					t.sb = append(t.sb, c)
				}
				t.st = tSB
			default:
				t.st = tData
			}
		}
	}
	if t.text {
		// A text frame must be whole UTF-8: an unfinished sequence at the
		// end waits for the rest, and what can never be UTF-8 becomes
		// U+FFFD.
		out = t.holdPartial(out, start)
	}
	return out, reply
}

// holdPartial keeps an unfinished UTF-8 sequence at the end of out[start:]
// for the next write and replaces invalid bytes.
func (t *terminal) holdPartial(out []byte, start int) []byte {
	s := out[start:]
	cut := len(s)
	for i := len(s) - 1; i >= 0 && i >= len(s)-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			if !utf8.FullRune(s[i:]) {
				cut = i
			}
			break
		}
	}
	t.partial = append(t.partial, s[cut:]...)
	s = s[:cut]
	if utf8.Valid(s) {
		return out[:start+cut]
	}
	return append(out[:start], bytes.ToValidUTF8(s, []byte("\uFFFD"))...)
}

// negotiate answers WILL/WONT/DO/DONT as a simple client: TTYPE, NAWS when
// the page gave a size, and CHARSET are taken; everything else refused.
// A request for the state an option is already in gets no answer, so that
// no two sides ever loop (RFC 1143).
func (t *terminal) negotiate(reply []byte, verb, opt byte) []byte {
	ours := verb == telnet.DO || verb == telnet.DONT // the option is on the client's side
	yes, no, side := telnet.DO, telnet.DONT, 0
	if ours {
		yes, no, side = telnet.WILL, telnet.WONT, 1
	}
	on := &t.on[side]
	if verb == telnet.WONT || verb == telnet.DONT {
		if on[opt] {
			on[opt] = false
			reply = append(reply, telnet.IAC, no, opt)
		}
		return reply
	}
	agree := false
	switch opt {
	case telnet.OptTTYPE:
		agree = ours
	case telnet.OptNAWS:
		agree = ours && t.width > 0 && t.height > 0
	case telnet.OptCharset:
		agree = true
	}
	switch {
	case !agree:
		return append(reply, telnet.IAC, no, opt)
	case on[opt]:
		return reply
	}
	on[opt] = true
	reply = append(reply, telnet.IAC, yes, opt)
	if opt == telnet.OptNAWS {
		reply = telnet.AppendSubneg(reply, telnet.OptNAWS, []byte{byte(t.width >> 8), byte(t.width), byte(t.height >> 8), byte(t.height)})
	}
	return reply
}

// The MTTS capability bits this client claims: ANSI colour and UTF-8.
const terminalMTTS = 1 | 4

func (t *terminal) subnegotiation(reply []byte) []byte {
	switch {
	case t.sbOpt == telnet.OptTTYPE && len(t.sb) == 1 && t.sb[0] == 1: // SEND
		answers := []string{t.client, "ANSI", "MTTS " + strconv.Itoa(terminalMTTS)}
		a := answers[min(t.ttypes, len(answers)-1)]
		t.ttypes++
		reply = telnet.AppendSubneg(reply, telnet.OptTTYPE, append([]byte{0}, a...))
	case t.sbOpt == telnet.OptCharset && len(t.sb) > 1 && t.sb[0] == 1: // REQUEST
		answer := []byte{3} // REJECTED
		list := t.sb[1:]
		for _, cs := range bytes.Split(list[1:], list[:1]) { // the first byte is the separator
			if string(cs) == "UTF-8" {
				answer = append([]byte{2}, "UTF-8"...) // ACCEPTED
				break
			}
		}
		reply = telnet.AppendSubneg(reply, telnet.OptCharset, answer)
	}
	return reply
}

// input turns one message of typed text into telnet input: a message is a
// line, or lines, and one that does not end its line gets the end added.
// A byte 255 (never in UTF-8, but binary frames may hold it) is escaped.
func (t *terminal) input(dst, msg []byte) []byte {
	for _, c := range msg {
		if c == telnet.IAC {
			dst = append(dst, c)
		}
		dst = append(dst, c)
	}
	if len(msg) == 0 || msg[len(msg)-1] != '\n' {
		dst = append(dst, '\r', '\n')
	}
	return dst
}
