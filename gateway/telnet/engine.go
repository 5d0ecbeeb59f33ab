package telnet

import (
	"bytes"
	"strconv"
	"strings"
)

// Subnegotiation commands.
const (
	ttypeIS   = 0
	ttypeSEND = 1

	envIS    = 0
	envSEND  = 1
	envINFO  = 2
	envVAR   = 0
	envVALUE = 1
	envESC   = 2
	envUSER  = 3

	charsetREQUEST  = 1
	charsetACCEPTED = 2
	charsetREJECTED = 3
)

// maxTTypeCycle is how many times the terminal type is asked for: the
// client name, the terminal, then "MTTS n".
const maxTTypeCycle = 4

// Bounds on what the engine keeps of what a client says about itself. A
// longer answer is cut to the bound; the facts go to the backend and to
// operators, and a client must not make them large.
const (
	// MaxTerminal bounds a terminal type (TTYPE), and a client name learnt
	// from the MTTS cycle: real ones are a few dozen bytes at most.
	MaxTerminal = 64
	// MaxEnvValue bounds a NEW-ENVIRON value the engine keeps
	// (CLIENT_NAME, CLIENT_VERSION, IPADDRESS).
	MaxEnvValue = 256
)

// Printable returns b as printable ASCII, cut to max bytes (no bound if
// max is negative): each byte outside ' '..'~' becomes '?'. What a client
// may put in TTYPE and NEW-ENVIRON is printable ASCII (RFC 1091, RFC
// 1572), and these facts end up before an operator, in the gateway's
// sessions view and the game's logs: a control byte there could set the
// operator's terminal title or forge a row.
func Printable(b []byte, max int) string {
	if max >= 0 && len(b) > max {
		b = b[:max]
	}
	clean := true
	for _, c := range b {
		if c < ' ' || c > '~' {
			clean = false
			break
		}
	}
	if clean {
		return string(b)
	}
	out := make([]byte, len(b))
	for i, c := range b {
		if c < ' ' || c > '~' {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}

// Facts are what negotiation has taught the engine about the client.
type Facts struct {
	ClientName    string // TTYPE's first answer in an MTTS cycle, or NEW-ENVIRON's CLIENT_NAME
	ClientVersion string // NEW-ENVIRON CLIENT_VERSION
	Terminal      string // the terminal type
	MTTS          uint32 // MTTS capability bits
	Width, Height uint16 // NAWS
	Charset       string // "UTF-8" once the client accepted it
	IPAddress     string // NEW-ENVIRON IPADDRESS, as the client reports it
}

// bounded returns f with each text made printable and cut to its bound,
// as the engine learns it.
func (f Facts) bounded() Facts {
	f.ClientName = Printable([]byte(f.ClientName), MaxEnvValue)
	f.ClientVersion = Printable([]byte(f.ClientVersion), MaxEnvValue)
	f.Terminal = Printable([]byte(f.Terminal), MaxTerminal)
	f.Charset = Printable([]byte(f.Charset), MaxTerminal)
	f.IPAddress = Printable([]byte(f.IPAddress), MaxEnvValue)
	return f
}

// Host is what the engine needs from the session it serves.
type Host interface {
	// Send queues protocol bytes for the client, in order with the output.
	Send(b []byte)
	// StartCompress is called once the client agreed to MCCP2, with the
	// start sequence: it queues it, and compresses everything after it.
	// One call, so that output queued meanwhile by another goroutine
	// cannot fall between the two, uncompressed where the client expects
	// compression.
	StartCompress(start []byte)
	// StopCompress ends compression after the client turned MCCP2 off.
	StopCompress()
	// MSSP returns the server status variables for a crawler, encoded.
	MSSP() []byte
}

// Engine is one client connection's telnet protocol: the decoder, RFC 1143
// negotiation for the options in the supported table, and the MUD
// protocols on top. It is not safe for concurrent use. Its output goes to
// the Host; what it learnt, to Facts and to the GMCP queue.
//
// Every held player keeps one, so its small fields go together, where
// the padding between larger ones would cost each player a size class.
type Engine struct {
	Decoder
	q [numOptions][2]qstate
	// NoCompress declines MCCP2: it is neither offered nor accepted.
	NoCompress bool
	// changed is set when Facts changed; the owner clears it.
	changed bool
	spoken  bool // the client has sent telnet commands: it is no raw socket

	host   Host
	facts  Facts
	ttypes []string // answers so far in the TTYPE cycle
	// gmcp holds GMCP messages received from the client until taken.
	gmcp    [][]byte
	pending int // requests sent at start that await an answer
}

// NewEngine returns an engine that talks through host.
func NewEngine(host Host, noCompress bool) *Engine {
	return &Engine{host: host, NoCompress: noCompress}
}

// Start sends the gateway's offers: what a MUD server proposes to every
// new client.
func (e *Engine) Start() {
	var b []byte
	for i, o := range supported {
		if o.opt == OptMCCP2 && e.NoCompress {
			continue
		}
		if o.offerUs {
			b = e.requestLocked(b, i, us, true)
			e.pending++
		}
		if o.offerHim {
			b = e.requestLocked(b, i, him, true)
			e.pending++
		}
	}
	e.send(b)
}

// Spoken reports whether the client has sent a telnet command: it is a
// telnet client, not a raw socket.
func (e *Engine) Spoken() bool { return e.spoken }

// Awaiting returns how many of the offers made at Start await an answer.
func (e *Engine) Awaiting() int { return e.pending }

// Settled reports whether every offer made at Start has been answered and
// the terminal type cycle is over, so that the facts are as complete as
// they will get without waiting.
func (e *Engine) Settled() bool {
	return e.pending <= 0 && !e.ttypeCycling()
}

func (e *Engine) ttypeCycling() bool {
	return e.enabled(OptTTYPE, him) && !e.ttypeDone()
}

func (e *Engine) ttypeDone() bool {
	n := len(e.ttypes)
	return n >= maxTTypeCycle || n >= 2 && e.ttypes[n-1] == e.ttypes[n-2] || n > 0 && strings.HasPrefix(e.ttypes[n-1], "MTTS ")
}

// Feed parses input from the client and appends its application data to dst.
func (e *Engine) Feed(dst, src []byte) []byte { return e.Decode(dst, src, e) }

// Facts returns what the engine knows of the client.
func (e *Engine) Facts() Facts { return e.facts }

// TakeChanged reports whether the facts changed since the last call.
func (e *Engine) TakeChanged() bool {
	c := e.changed
	e.changed = false
	return c
}

// TakeGMCP returns the GMCP messages received since the last call.
func (e *Engine) TakeGMCP() [][]byte {
	m := e.gmcp
	e.gmcp = nil
	return m
}

// Enabled reports whether an option is on for a side: us for the gateway's.
func (e *Engine) enabled(opt byte, s side) bool {
	i := slot[opt]
	return i >= 0 && e.q[i][s] == qYes
}

// On reports whether opt is enabled on either side.
func (e *Engine) On(opt byte) bool { return e.enabled(opt, us) || e.enabled(opt, him) }

// EchoOff asks the client to stop echoing what the player types (the
// gateway WILL ECHO) or to echo again.
func (e *Engine) EchoOff(off bool) {
	e.send(e.requestLocked(nil, int(slot[OptEcho]), us, off))
}

// Echoing reports whether the gateway has taken over echo (a password).
func (e *Engine) Echoing() bool {
	return e.q[slot[OptEcho]][us].base() == qYes || e.q[slot[OptEcho]][us].base() == qWantYes
}

// PromptEnd returns what marks the end of a prompt for this client: IAC EOR
// once EOR is on; else IAC GA, unless go-ahead is suppressed or the client
// has never spoken telnet (a raw socket would show the bytes); else nothing.
func (e *Engine) PromptEnd() []byte {
	switch {
	case e.enabled(OptEOR, us):
		return []byte{IAC, EOR}
	case e.spoken && !e.enabled(OptSGA, us):
		return []byte{IAC, GA}
	}
	return nil
}

// GMCPEnabled reports whether GMCP is on, either way round.
func (e *Engine) GMCPEnabled() bool { return e.enabled(OptGMCP, us) || e.enabled(OptGMCP, him) }

// SendGMCP sends one GMCP message ("Package.Message json") if GMCP is on.
// It reports whether it was sent.
func (e *Engine) SendGMCP(msg []byte) bool {
	if !e.GMCPEnabled() {
		return false
	}
	e.send(AppendSubneg(nil, OptGMCP, msg))
	return true
}

// requestLocked appends the verb that asks for an option's change, if any.
func (e *Engine) requestLocked(b []byte, i int, s side, enable bool) []byte {
	next, verb := request(e.q[i][s], enable, s)
	e.q[i][s] = next
	if verb != 0 {
		b = append(b, IAC, verb, supported[i].opt)
	}
	return b
}

func (e *Engine) send(b []byte) {
	if len(b) > 0 {
		e.host.Send(b)
	}
}

// Negotiate handles WILL/WONT/DO/DONT from the client.
func (e *Engine) Negotiate(verb, opt byte) {
	e.spoken = true
	i := slot[opt]
	if i < 0 {
		if reply, ok := Refusal(verb); ok {
			e.send([]byte{IAC, reply, opt})
		}
		return
	}
	s, enable := him, verb == WILL
	if verb == DO || verb == DONT {
		s, enable = us, verb == DO
	}
	agree := supported[i].us
	if s == him {
		agree = supported[i].him
	}
	if opt == OptMCCP2 && e.NoCompress {
		agree = false
	}
	before := e.q[i][s]
	next, reply, changed := receive(before, enable, agree, s)
	e.q[i][s] = next
	if before.base() == qWantYes && next.base() != qWantYes && e.pending > 0 && (supported[i].offerUs && s == us || supported[i].offerHim && s == him) {
		e.pending--
	}
	if reply != 0 {
		e.send([]byte{IAC, reply, opt})
	}
	switch {
	case changed > 0:
		e.turnedOn(opt, s)
	case changed < 0:
		e.turnedOff(opt, s)
	}
}

// turnedOn starts what an option does once it is on.
func (e *Engine) turnedOn(opt byte, s side) {
	switch {
	case opt == OptTTYPE && s == him:
		e.ttypes = e.ttypes[:0]
		e.send(AppendSubneg(nil, OptTTYPE, []byte{ttypeSEND}))
	case opt == OptNewEnviron && s == him:
		b := []byte{envSEND}
		for _, v := range []string{"CLIENT_NAME", "CLIENT_VERSION", "IPADDRESS", "CHARSET", "MTTS"} {
			b = append(append(b, envVAR), v...)
		}
		e.send(AppendSubneg(nil, OptNewEnviron, b))
	case opt == OptCharset && s == us:
		e.send(AppendSubneg(nil, OptCharset, append([]byte{charsetREQUEST}, ";UTF-8"...)))
	case opt == OptMSSP && s == us:
		e.sendMSSP()
	case opt == OptMCCP2 && s == us:
		e.host.StartCompress([]byte{IAC, SB, OptMCCP2, IAC, SE})
	}
}

func (e *Engine) turnedOff(opt byte, s side) {
	if opt == OptMCCP2 && s == us {
		e.host.StopCompress()
	}
}

// sendMSSP answers a crawler with the host's variables.
func (e *Engine) sendMSSP() {
	if vars := e.host.MSSP(); len(vars) > 0 {
		e.send(AppendSubneg(nil, OptMSSP, vars))
	}
}

// Subnegotiation handles IAC SB ... IAC SE from the client.
func (e *Engine) Subnegotiation(opt byte, p []byte, truncated bool) {
	e.spoken = true
	if truncated {
		return // cut to the bound: whatever it says, it is not whole
	}
	switch {
	case opt == OptTTYPE && e.enabled(OptTTYPE, him):
		e.ttype(p)
	case opt == OptNAWS && e.enabled(OptNAWS, him):
		if len(p) == 4 {
			w, h := uint16(p[0])<<8|uint16(p[1]), uint16(p[2])<<8|uint16(p[3])
			if w != e.facts.Width || h != e.facts.Height {
				e.facts.Width, e.facts.Height = w, h
				e.changed = true
			}
		}
	case opt == OptNewEnviron && e.enabled(OptNewEnviron, him):
		e.environ(p)
	case opt == OptCharset && (e.enabled(OptCharset, us) || e.enabled(OptCharset, him)):
		e.charset(p)
	case opt == OptGMCP && e.GMCPEnabled():
		if len(e.gmcp) < 64 { // a client flooding GMCP loses the excess
			e.gmcp = append(e.gmcp, bytes.Clone(p))
		}
	}
}

// Command handles the other IAC commands. None of them ends a session;
// AYT gets the customary answer.
func (e *Engine) Command(c byte) {
	e.spoken = true
	if c == AYT {
		e.send([]byte("\r\n[holdfast: yes]\r\n"))
	}
}

func (e *Engine) ttype(p []byte) {
	if len(p) < 1 || p[0] != ttypeIS || e.ttypeDone() {
		return
	}
	name := Printable(p[1:], MaxTerminal)
	e.ttypes = append(e.ttypes, name)
	if m, ok := strings.CutPrefix(name, "MTTS "); ok {
		if v, err := strconv.ParseUint(m, 10, 32); err == nil {
			e.facts.MTTS = uint32(v)
		}
	}
	// The cycle: client name, terminal type, MTTS. A client that repeats
	// itself has no cycle, and its one answer is the terminal type.
	distinct := e.ttypes
	if n := len(distinct); n >= 2 && distinct[n-1] == distinct[n-2] {
		distinct = distinct[:n-1]
	}
	if n := len(distinct); n > 0 && strings.HasPrefix(distinct[n-1], "MTTS ") {
		distinct = distinct[:n-1]
	}
	switch len(distinct) {
	case 1:
		e.facts.Terminal = distinct[0]
	default:
		if e.facts.ClientName == "" { // NEW-ENVIRON's CLIENT_NAME is more exact
			e.facts.ClientName = distinct[0]
		}
		e.facts.Terminal = distinct[1]
	}
	e.changed = true
	if !e.ttypeDone() {
		e.send(AppendSubneg(nil, OptTTYPE, []byte{ttypeSEND}))
	}
}

func (e *Engine) environ(p []byte) {
	if len(p) < 1 || p[0] != envIS && p[0] != envINFO {
		return
	}
	p = p[1:]
	for len(p) > 0 {
		if p[0] != envVAR && p[0] != envUSER {
			return
		}
		var name, value []byte
		name, p = envField(p[1:])
		if len(p) > 0 && p[0] == envVALUE {
			value, p = envField(p[1:])
		}
		v := Printable(value, MaxEnvValue)
		switch string(name) {
		case "CLIENT_NAME":
			e.facts.ClientName = v
		case "CLIENT_VERSION":
			e.facts.ClientVersion = strings.TrimSpace(v)
		case "IPADDRESS":
			e.facts.IPAddress = v
		case "CHARSET":
			if strings.EqualFold(v, "UTF-8") && e.facts.Charset == "" {
				e.facts.Charset = "UTF-8"
			}
		case "MTTS":
			if n, err := strconv.ParseUint(v, 10, 32); err == nil && e.facts.MTTS == 0 {
				e.facts.MTTS = uint32(n)
			}
		default:
			continue
		}
		e.changed = true
	}
}

// envField reads a NEW-ENVIRON name or value up to the next unescaped
// VAR, VALUE or USERVAR.
func envField(p []byte) (field, rest []byte) {
	var out []byte
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case envVAR, envVALUE, envUSER:
			return out, p[i:]
		case envESC:
			if i+1 < len(p) {
				i++
				out = append(out, p[i])
			}
		default:
			out = append(out, c)
		}
	}
	return out, nil
}

func (e *Engine) charset(p []byte) {
	if len(p) < 1 {
		return
	}
	switch p[0] {
	case charsetACCEPTED:
		if strings.EqualFold(string(p[1:]), "UTF-8") {
			e.facts.Charset = "UTF-8"
			e.changed = true
		}
	case charsetREQUEST:
		// The client offers character sets: take UTF-8 if it is there.
		list := p[1:]
		if bytes.HasPrefix(list, []byte("[TTABLE]")) && len(list) > 9 {
			list = list[9:]
		}
		if len(list) > 1 {
			for _, cs := range bytes.Split(list[1:], list[:1]) {
				if strings.EqualFold(string(cs), "UTF-8") {
					e.send(AppendSubneg(nil, OptCharset, append([]byte{charsetACCEPTED}, "UTF-8"...)))
					e.facts.Charset = "UTF-8"
					e.changed = true
					return
				}
			}
		}
		e.send(AppendSubneg(nil, OptCharset, []byte{charsetREJECTED}))
	}
}

// AppendSubneg appends IAC SB opt payload IAC SE, doubling IAC inside.
func AppendSubneg(b []byte, opt byte, payload []byte) []byte {
	b = append(b, IAC, SB, opt)
	for _, c := range payload {
		if c == IAC {
			b = append(b, IAC)
		}
		b = append(b, c)
	}
	return append(b, IAC, SE)
}
