package main

import (
	"io"
	"net"
	"sync"

	"holdfast/gateway/telnet"
)

// How a load client answers the gateway's telnet offers, if at all (-answer).
const (
	answerNone   = ""       // a raw socket: it answers nothing, and the gateway waits out its offers
	answerRefuse = "refuse" // a minimal client: it refuses every option
	answerMUD    = "mud"    // a MUD client: terminal type, window size, UTF-8, prompts; the rest refused
)

// answering reads a session's socket as its client would: it answers the
// gateway's negotiation and returns the text.
type answering struct {
	conn net.Conn
	mode string
	dec  telnet.Decoder
	buf  []byte
	wmu  *sync.Mutex // shared with the session's sends

	on     [2][256]bool
	ttypes int
}

func (a *answering) Read(p []byte) (int, error) {
	for {
		n, err := a.conn.Read(a.buf)
		text := a.dec.Decode(p[:0], a.buf[:n], a)
		if len(text) > 0 || err != nil {
			return len(text), err
		}
	}
}

func (a *answering) reply(b []byte) {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	a.conn.Write(b)
}

// Negotiate answers as the mode's client does, once per change of state.
func (a *answering) Negotiate(verb, opt byte) {
	ours := verb == telnet.DO || verb == telnet.DONT
	yes, no, side := telnet.DO, telnet.DONT, 0
	if ours {
		yes, no, side = telnet.WILL, telnet.WONT, 1
	}
	if verb == telnet.WONT || verb == telnet.DONT {
		if a.on[side][opt] {
			a.on[side][opt] = false
			a.reply([]byte{telnet.IAC, no, opt})
		}
		return
	}
	agree := false
	if a.mode == answerMUD {
		switch opt {
		case telnet.OptTTYPE, telnet.OptNAWS:
			agree = ours
		case telnet.OptEOR, telnet.OptSGA:
			agree = !ours
		case telnet.OptCharset:
			agree = true
		}
	}
	switch {
	case !agree:
		a.reply([]byte{telnet.IAC, no, opt})
		return
	case a.on[side][opt]:
		return
	}
	a.on[side][opt] = true
	a.reply([]byte{telnet.IAC, yes, opt})
	if opt == telnet.OptNAWS {
		a.reply(telnet.AppendSubneg(nil, telnet.OptNAWS, []byte{0, 80, 0, 24}))
	}
}

func (a *answering) Subnegotiation(opt byte, p []byte, truncated bool) {
	switch {
	case opt == telnet.OptTTYPE && len(p) == 1 && p[0] == 1:
		names := []string{"holdfast-load", "XTERM-256COLOR", "MTTS 13"}
		name := names[min(a.ttypes, len(names)-1)]
		a.ttypes++
		a.reply(telnet.AppendSubneg(nil, telnet.OptTTYPE, append([]byte{0}, name...)))
	case opt == telnet.OptCharset && len(p) > 0 && p[0] == 1:
		a.reply(telnet.AppendSubneg(nil, telnet.OptCharset, append([]byte{2}, "UTF-8"...)))
	}
}

func (a *answering) Command(byte) {}

var _ io.Reader = (*answering)(nil)
