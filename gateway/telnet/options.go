package telnet

// Option codes the engine knows by name.
const (
	OptEcho       byte = 1
	OptSGA        byte = 3
	OptTTYPE      byte = 24
	OptEOR        byte = 25
	OptNAWS       byte = 31
	OptLinemode   byte = 34
	OptNewEnviron byte = 39
	OptCharset    byte = 42
	OptMSDP       byte = 69
	OptMSSP       byte = 70
	OptMCCP2      byte = 86
	OptMCCP3      byte = 87
	OptGMCP       byte = 201
)

// EOR is the command that ends a prompt once the EOR option is on.
const EOR byte = 239

// support says, for one option, whether the gateway agrees to enable it on
// its own side (WILL) and on the client's side (DO), and what it offers
// when a connection starts.
type support struct {
	opt      byte
	us, him  bool // agree to enable on our side / the client's side
	offerUs  bool // send WILL at start
	offerHim bool // send DO at start
}

// supported is the one table that drives negotiation; every option not in
// it is refused. The index of an option here is its slot in Engine's state.
var supported = [...]support{
	{opt: OptEcho, us: true},                        // WILL ECHO on the application's request: password entry
	{opt: OptSGA, us: true, him: true},              // accepted when a client asks
	{opt: OptTTYPE, him: true, offerHim: true},      // terminal type and the MTTS cycle
	{opt: OptEOR, us: true, offerUs: true},          // IAC EOR marks prompt ends
	{opt: OptNAWS, him: true, offerHim: true},       // window size and every resize
	{opt: OptNewEnviron, him: true, offerHim: true}, // client name, version, address
	{opt: OptCharset, us: true, him: true, offerUs: true},
	{opt: OptMSSP, us: true, offerUs: true},  // crawlers' server status
	{opt: OptMCCP2, us: true, offerUs: true}, // output compression, unless switched off
	{opt: OptGMCP, us: true, him: true, offerUs: true},
}

const numOptions = len(supported)

// slot maps an option code to its index in supported, or -1.
var slot = func() (s [256]int8) {
	for i := range s {
		s[i] = -1
	}
	for i, o := range supported {
		s[o.opt] = int8(i)
	}
	return s
}()
