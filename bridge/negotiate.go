package bridge

import (
	"bytes"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"holdfast/backend"
	"holdfast/gateway/telnet"
)

// Subnegotiation words of TTYPE (RFC 1091), NEW-ENVIRON (RFC 1572) and
// CHARSET (RFC 2066), and MSSP's.
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

	msspVAR = 1
	msspVAL = 2
)

// mttsProxy is the MTTS bit that says the client is a proxy whose players
// share its address: the game should not count them per address.
const mttsProxy = 128

// A policy says which options the bridge agrees to, as the player's client
// would: on its own side (the game's DO) and on the game's side (WILL).
type policy struct{ us, him bool }

// options is the one table that drives the answers; any option not in it
// is refused. MCCP2 and MCCP3 are absent on purpose: the gateway compresses
// towards the player, and a compressed game stream would only cost the
// bridge a decompressor per player.
var options = map[byte]policy{
	telnet.OptEcho:       {him: true}, // the game hides a password: the player's echo goes off
	telnet.OptSGA:        {us: true, him: true},
	telnet.OptTTYPE:      {us: true},
	telnet.OptEOR:        {him: true}, // the game marks prompts with IAC EOR
	telnet.OptNAWS:       {us: true},
	telnet.OptNewEnviron: {us: true},
	telnet.OptCharset:    {us: true, him: true},
	telnet.OptGMCP:       {him: true},
}

// negotiator answers one upstream connection's negotiation as the
// player's client would, from the facts the gateway holds. The bridge
// never asks first: it only answers, so an option is either on or off on
// each side, and RFC 1143's waiting states never arise; a request that
// would not change the state is not answered, which prevents loops.
type negotiator struct {
	facts backend.Facts
	// mssp accepts the game's MSSP: on the connection that fetches it.
	mssp bool

	us, him optSet // options on, on the bridge's side and on the game's
	ttypes  int    // TTYPE answers given since the option went on
	environ bool   // a NEW-ENVIRON SEND answered since the option went on

	// factsBy is when the client's answers stop being awaited: the
	// gateway opens a session whose client has said nothing for a few
	// round trips, and passes its answers on if they come (lateFactsWait).
	// Until then, with no terminal type known, the game's questions that
	// need them wait (see answerLate).
	factsBy      time.Time
	ttypeAsked   int    // TTYPE SENDs waiting for the facts
	charsetAsked []byte // a CHARSET REQUEST's offer waits for the facts
}

// lateFactsWait is how long after a new session comes the bridge waits
// for the client's answers to reach it, at most: the gateway waits for
// them 300 ms from its offers, which went out before the session came. A
// variable for the tests.
var lateFactsWait = 300 * time.Millisecond

// maxTTYPEAsked bounds the TTYPE SENDs answered once the facts are in:
// the cycle is three answers long.
const maxTTYPEAsked = 4

// maxCharsetAsked bounds a CHARSET REQUEST kept while it waits: a game
// offers a few names.
const maxCharsetAsked = 1 << 10

// awaitingFacts reports whether the client may still tell its terminal:
// no update has come, and factsBy has not passed.
func (n *negotiator) awaitingFacts(now time.Time) bool {
	return n.facts.Terminal == "" && now.Before(n.factsBy)
}

// told records that the gateway has told the player's facts since the
// session came: it tells a late client's answers in one update, once
// they are all in, so there is nothing more to wait for.
func (n *negotiator) told() { n.factsBy = time.Time{} }

// lateQuestions returns when the questions waiting for the facts are
// answered whatever the facts say then; zero with none waiting.
func (n *negotiator) lateQuestions() time.Time {
	if n.ttypeAsked == 0 && n.charsetAsked == nil {
		return time.Time{}
	}
	return n.factsBy
}

// answerLate appends the answers to the questions that waited for the
// facts, once they are in or no longer awaited.
func (n *negotiator) answerLate(b []byte, now time.Time) []byte {
	if n.awaitingFacts(now) {
		return b
	}
	for ; n.ttypeAsked > 0; n.ttypeAsked-- {
		if n.us.has(telnet.OptTTYPE) {
			b = telnet.AppendSubneg(b, telnet.OptTTYPE, append([]byte{ttypeIS}, n.nextTTYPE()...))
		}
	}
	if n.charsetAsked != nil {
		p := n.charsetAsked
		n.charsetAsked = nil
		if n.us.has(telnet.OptCharset) || n.him.has(telnet.OptCharset) {
			b = telnet.AppendSubneg(b, telnet.OptCharset, n.charset(p))
		}
	}
	return b
}

// settled reports whether the game has asked for what it wants to know
// of the client at once: the terminal type and the environment, once it
// has had them turned on. Input waits for it on a new connection, so that
// a login typed during an outage reaches a game that knows the terminal.
func (n *negotiator) settled() bool {
	return !(n.us.has(telnet.OptTTYPE) && n.ttypes == 0) && !(n.us.has(telnet.OptNewEnviron) && !n.environ) &&
		n.ttypeAsked == 0 && n.charsetAsked == nil
}

// optSet is a set of telnet options, a bit each: a connection keeps two.
type optSet [4]uint64

func (o *optSet) has(opt byte) bool { return o[opt>>6]&(1<<(opt&63)) != 0 }

func (o *optSet) set(opt byte, on bool) {
	if on {
		o[opt>>6] |= 1 << (opt & 63)
	} else {
		o[opt>>6] &^= 1 << (opt & 63)
	}
}

// bools returns the set as a table, as a record carries it.
func (o *optSet) bools() (t [256]bool) {
	for i := range t {
		t[i] = o.has(byte(i))
	}
	return t
}

func optSetOf(t [256]bool) (o optSet) {
	for i, on := range t {
		o.set(byte(i), on)
	}
	return o
}

// negotiate answers IAC verb opt, appending the answer to b. changed
// reports that the option went on or off.
func (n *negotiator) negotiate(b []byte, verb, opt byte) (_ []byte, changed bool) {
	p := options[opt]
	if opt == telnet.OptMSSP {
		p.him = n.mssp
	}
	switch verb {
	case telnet.WILL:
		if n.him.has(opt) {
			return b, false
		}
		if !p.him {
			return append(b, telnet.IAC, telnet.DONT, opt), false
		}
		n.him.set(opt, true)
		return append(b, telnet.IAC, telnet.DO, opt), true
	case telnet.WONT:
		if !n.him.has(opt) {
			return b, false
		}
		n.him.set(opt, false)
		return append(b, telnet.IAC, telnet.DONT, opt), true
	case telnet.DO:
		if n.us.has(opt) {
			return b, false
		}
		if !p.us {
			return append(b, telnet.IAC, telnet.WONT, opt), false
		}
		n.us.set(opt, true)
		b = append(b, telnet.IAC, telnet.WILL, opt)
		switch opt {
		case telnet.OptTTYPE:
			n.ttypes, n.ttypeAsked = 0, 0
		case telnet.OptNewEnviron:
			n.environ = false
		case telnet.OptNAWS:
			b = n.appendNAWS(b)
		}
		return b, true
	case telnet.DONT:
		if !n.us.has(opt) {
			return b, false
		}
		n.us.set(opt, false)
		return append(b, telnet.IAC, telnet.WONT, opt), true
	}
	return b, false
}

// subneg answers a subnegotiation of the game, appending the answer to b.
// GMCP and MSSP are not answered but handed up by the caller.
func (n *negotiator) subneg(b []byte, opt byte, p []byte) []byte {
	switch {
	case len(p) == 0:
		return b
	case opt == telnet.OptTTYPE && n.us.has(opt) && p[0] == ttypeSEND:
		if n.ttypeAsked > 0 || n.awaitingFacts(time.Now()) {
			// Answered when the facts are in, in order; a game asks a
			// few times, one answer at a time: one that asks on and on
			// is answered once for many.
			n.ttypeAsked = min(n.ttypeAsked+1, maxTTYPEAsked)
			return b
		}
		return telnet.AppendSubneg(b, opt, append([]byte{ttypeIS}, n.nextTTYPE()...))
	case opt == telnet.OptNewEnviron && n.us.has(opt) && p[0] == envSEND:
		n.environ = true
		return telnet.AppendSubneg(b, opt, n.environVars(p[1:]))
	case opt == telnet.OptCharset && (n.us.has(opt) || n.him.has(opt)) && p[0] == charsetREQUEST:
		if n.awaitingFacts(time.Now()) && len(p) <= maxCharsetAsked {
			n.charsetAsked = bytes.Clone(p[1:]) // the latest request is the one answered
			return b
		}
		return telnet.AppendSubneg(b, opt, n.charset(p[1:]))
	}
	return b
}

// setFacts takes the facts as they are now and appends what the game must
// learn of the change: the window size, once NAWS is on.
func (n *negotiator) setFacts(b []byte, f backend.Facts) []byte {
	resized := f.Width != n.facts.Width || f.Height != n.facts.Height
	before := n.knownVars()
	n.facts = f
	if resized && n.us.has(telnet.OptNAWS) {
		b = n.appendNAWS(b)
	}
	if n.us.has(telnet.OptNewEnviron) && n.environ {
		// A game that asked for the environment hears of a change in it
		// (a client name learnt late), as RFC 1572's INFO says.
		var info []byte
		for _, kv := range n.knownVars() {
			if !slices.Contains(before, kv) {
				info = appendEnv(info, envVAR, kv[0], kv[1], true)
			}
		}
		if len(info) > 0 {
			b = telnet.AppendSubneg(b, telnet.OptNewEnviron, append([]byte{envINFO}, info...))
		}
	}
	return b
}

func (n *negotiator) appendNAWS(b []byte) []byte {
	w, h := n.facts.Width, n.facts.Height
	if w <= 0 && h <= 0 {
		return b // unknown: the game keeps its default
	}
	w, h = min(max(w, 0), 0xffff), min(max(h, 0), 0xffff)
	return telnet.AppendSubneg(b, telnet.OptNAWS, []byte{byte(w >> 8), byte(w), byte(h >> 8), byte(h)})
}

// nextTTYPE returns the next answer of the MTTS cycle: the client's name,
// its terminal type, then "MTTS n", repeated from then on so that the game
// sees the cycle end. A client whose name is unknown is named by its
// terminal type, which the game sees repeated at once: a client without
// the cycle, as the player's own client was.
func (n *negotiator) nextTTYPE() []byte {
	term := n.facts.Terminal
	if term == "" {
		term = "UNKNOWN"
	}
	name := n.facts.ClientName
	if name == "" {
		name = term
	}
	i := n.ttypes
	n.ttypes++
	switch {
	case i == 0:
		return []byte(strings.ToUpper(name))
	case i == 1 || name == term:
		return []byte(term)
	}
	return []byte("MTTS " + strconv.FormatUint(uint64(n.facts.MTTS|mttsProxy), 10))
}

// environVars answers NEW-ENVIRON SEND: the variables asked for, or all the
// bridge knows when none is named. An unknown variable is sent without a
// value, as RFC 1572 says.
func (n *negotiator) environVars(p []byte) []byte {
	out := []byte{envIS}
	known := n.knownVars()
	if len(p) == 0 {
		for _, kv := range known {
			out = appendEnv(out, envVAR, kv[0], kv[1], true)
		}
		return out
	}
	for len(p) > 0 {
		kind := p[0]
		if kind != envVAR && kind != envUSER {
			break
		}
		var name []byte
		name, p = envField(p[1:])
		if len(name) == 0 {
			// VAR or USERVAR alone: every variable of that kind.
			for _, kv := range known {
				out = appendEnv(out, kind, kv[0], kv[1], true)
			}
			continue
		}
		value, ok := "", false
		for _, kv := range known {
			if kv[0] == string(name) {
				value, ok = kv[1], true
			}
		}
		out = appendEnv(out, kind, string(name), value, ok)
	}
	return out
}

// knownVars lists the NEW-ENVIRON variables the bridge can tell, as MNES
// names them. IPADDRESS is the address the gateway saw, which a game
// cannot otherwise learn: its own connection comes from the bridge.
func (n *negotiator) knownVars() [][2]string {
	var vars [][2]string
	add := func(k, v string) {
		if v != "" {
			vars = append(vars, [2]string{k, v})
		}
	}
	if host, _, err := net.SplitHostPort(n.facts.ClientAddr); err == nil {
		add("IPADDRESS", host)
	}
	add("CLIENT_NAME", n.facts.ClientName)
	add("CLIENT_VERSION", n.facts.ClientVersion)
	add("TERMINAL_TYPE", n.facts.Terminal)
	add("CHARSET", n.facts.Charset)
	add("MTTS", strconv.FormatUint(uint64(n.facts.MTTS|mttsProxy), 10))
	return vars
}

func appendEnv(b []byte, kind byte, name, value string, known bool) []byte {
	b = appendEnvField(append(b, kind), name)
	if known {
		b = appendEnvField(append(b, envVALUE), value)
	}
	return b
}

func appendEnvField(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= envUSER {
			b = append(b, envESC)
		}
		b = append(b, s[i])
	}
	return b
}

// envField reads a NEW-ENVIRON name up to the next unescaped VAR, VALUE or
// USERVAR, which starts rest.
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

// charset answers a CHARSET REQUEST: the player's own character set if the
// game offers it, else plain ASCII, which every client shows; otherwise
// the request is rejected and the game keeps its default.
func (n *negotiator) charset(p []byte) []byte {
	if bytes.HasPrefix(p, []byte("[TTABLE]")) {
		if len(p) < 9 {
			return []byte{charsetREJECTED}
		}
		p = p[9:] // and the version byte
	}
	if len(p) < 2 {
		return []byte{charsetREJECTED}
	}
	offered := bytes.Split(p[1:], p[:1])
	mine := n.facts.Charset
	if mine == "" && n.facts.MTTS&4 != 0 {
		mine = "UTF-8"
	}
	for _, want := range []string{mine, "US-ASCII", "ASCII"} {
		if want == "" {
			continue
		}
		for _, cs := range offered {
			if strings.EqualFold(string(cs), want) {
				return append([]byte{charsetACCEPTED}, cs...)
			}
		}
	}
	return []byte{charsetREJECTED}
}

// parseMSSP reads an MSSP table (VAR name VAL value...), keeping at most
// maxMSSPVars variables of printable text.
func parseMSSP(p []byte) []backend.MSSPVar {
	var vars []backend.MSSPVar
	for len(p) > 0 && p[0] == msspVAR && len(vars) < maxMSSPVars {
		p = p[1:]
		end := bytes.IndexAny(p, "\x01\x02")
		if end < 0 {
			end = len(p)
		}
		v := backend.MSSPVar{Name: printable(p[:end])}
		p = p[end:]
		for len(p) > 0 && p[0] == msspVAL {
			p = p[1:]
			end := bytes.IndexAny(p, "\x01\x02")
			if end < 0 {
				end = len(p)
			}
			if len(v.Values) < maxMSSPVars {
				v.Values = append(v.Values, printable(p[:end]))
			}
			p = p[end:]
		}
		if v.Name != "" {
			vars = append(vars, v)
		}
	}
	return vars
}

// maxMSSPVars bounds the variables, and the values of one, kept of a
// game's MSSP table; real tables have a few dozen.
const maxMSSPVars = 128

// printable returns p as a string without bytes that would break an MSSP
// table or a log line, at most 256 bytes of it.
func printable(p []byte) string {
	return telnet.Printable(p, 256)
}
