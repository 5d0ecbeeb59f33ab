package bridge

import "holdfast/gateway/telnet"

// maxSubneg bounds the payload kept from one subnegotiation of the game:
// GMCP messages and MSSP tables are the largest, a few KiB.
const maxSubneg = 32 << 10

// handler receives what a decoder finds in the game's stream, in the order
// the game sent it: text before a prompt mark stays before it.
type handler interface {
	// text is called with application bytes, valid only during the call.
	text(p []byte)
	negotiate(verb, opt byte)
	// subneg is called for IAC SB opt ... IAC SE with the payload unescaped,
	// valid only during the call; truncated reports one cut to maxSubneg.
	subneg(opt byte, p []byte, truncated bool)
	command(c byte)
}

type decState uint8

const (
	decText  decState = iota
	decCR             // after CR in text: a NUL that follows belongs to it
	decIAC            // after IAC
	decVerb           // after IAC WILL/WONT/DO/DONT
	decSBOpt          // after IAC SB
	decSB             // inside a subnegotiation
	decSBIAC          // after IAC inside a subnegotiation
)

// decoder parses the game's side of a telnet connection. Unlike the
// gateway's decoder, which reads players and makes every line ending "\n",
// it leaves the game's line endings as they are (many games end lines with
// "\n\r", and the player's client must see what it would see connected
// directly): only CR NUL becomes CR, and IAC IAC one 255. It keeps its
// state between calls, so a command may be split across any two reads. The
// zero value is ready to use.
type decoder struct {
	st        decState
	back      decState // the text state to return to after a command
	verb, opt byte
	sb        []byte
	truncated bool
	out       []byte // text gathered until the next event or the end of src
}

// decode parses src and hands what it holds to h.
func (d *decoder) decode(src []byte, h handler) {
	d.out = d.out[:0]
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch d.st {
		case decText, decCR:
			if c == telnet.IAC {
				d.back, d.st = d.st, decIAC
				continue
			}
			if c == 0 && d.st == decCR {
				d.st = decText
				continue // CR NUL: a bare carriage return
			}
			d.st = decText
			if c == '\r' {
				d.st = decCR
			}
			d.out = append(d.out, c)
		case decIAC:
			d.st = decText
			switch c {
			case telnet.IAC:
				d.out = append(d.out, telnet.IAC)
			case telnet.WILL, telnet.WONT, telnet.DO, telnet.DONT:
				d.verb, d.st = c, decVerb
			case telnet.SB:
				d.st = decSBOpt
			default:
				d.flush(h)
				h.command(c)
				d.st = d.back
			}
		case decVerb:
			d.st = decText
			d.flush(h)
			h.negotiate(d.verb, c)
		case decSBOpt:
			d.opt, d.st = c, decSB
			d.sb, d.truncated = d.sb[:0], false
		case decSB:
			if c == telnet.IAC {
				d.st = decSBIAC
				continue
			}
			d.sbByte(c)
		case decSBIAC:
			switch c {
			case telnet.SE:
				d.st = decText
				d.flush(h)
				h.subneg(d.opt, d.sb, d.truncated)
				if cap(d.sb) > 1<<10 {
					d.sb = nil // an idle connection keeps no large buffer
				}
			case telnet.IAC:
				d.st = decSB
				d.sbByte(telnet.IAC)
			default:
				// IAC and anything else inside SB: a game that forgot to
				// close it. The subnegotiation ends cut, and the byte is
				// read as the command it would be outside.
				d.st, d.back = decIAC, decText
				d.flush(h)
				h.subneg(d.opt, d.sb, true)
				i--
			}
		}
	}
	d.flush(h)
	if cap(d.out) > 64<<10 {
		d.out = nil
	}
}

func (d *decoder) flush(h handler) {
	if len(d.out) > 0 {
		h.text(d.out)
		d.out = d.out[:0]
	}
}

func (d *decoder) sbByte(c byte) {
	if len(d.sb) >= maxSubneg {
		d.truncated = true
		return
	}
	d.sb = append(d.sb, c)
}

// appendInput appends the player's input as telnet for the game: IAC
// doubled, and each "\n" (the gateway ends every line so) as CR LF.
func appendInput(b, p []byte) []byte {
	for _, c := range p {
		switch c {
		case telnet.IAC:
			b = append(b, telnet.IAC, telnet.IAC)
		case '\n':
			b = append(b, '\r', '\n')
		default:
			b = append(b, c)
		}
	}
	return b
}
