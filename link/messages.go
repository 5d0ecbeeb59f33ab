package link

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Facts are what the gateway learnt about a player's connection. Each is
// empty or zero while unknown.
type Facts struct {
	ClientAddr    string // the player's address as the gateway sees it, host:port
	Terminal      string // terminal type (TTYPE), as the client sent it
	MTTS          uint32 // MTTS capability bits
	Width         uint16 // window size (NAWS)
	Height        uint16
	Charset       string // negotiated character set ("UTF-8")
	ClientName    string // the client program (MTTS cycle or NEW-ENVIRON)
	ClientVersion string // NEW-ENVIRON CLIENT_VERSION
	ReportedIP    string // NEW-ENVIRON IPADDRESS: the address the client says it has
}

// Open is the first frame of a session stream.
type Open struct {
	ID      string
	Resumed uint32 // how many times the session was resumed on a new backend
	Offset  uint64 // input bytes the application has consumed before
	Facts   Facts
	State   []byte
	// HandedOver says that the previous backend handed the session to this
	// one (a deploy), rather than going away (a restart or a crash).
	HandedOver bool
	// Keep asks the backend to keep the session's output until the gateway
	// says the player has it (FrameOutAck), within MaxKept: the player may
	// come back through another gateway, which claims the session.
	Keep bool
	// Output is the session's output offset at the gateway (see OutAck):
	// where the backend's count goes on from. With a Claim, the output
	// the player has: what follows, of what is kept, is sent again.
	Output uint64
	// Claim is a token of the session's (FrameTokens): the gateway that
	// opens the stream takes the session from wherever it is, and the
	// output kept is sent again. An Open with a Claim never starts a new
	// session.
	Claim string
	// HelloAgain is how many GMCPIn frames after the Open repeat the
	// client's hello that an OpenHeld brought: a backend that has the
	// session (it read the OpenHeld) skips them, and one that does not
	// (the stream came first) starts the session with them.
	HelloAgain uint8
}

// MaxKept bounds the output a backend keeps for a session that may be
// claimed elsewhere (Open.Keep): past it the oldest is forgotten, a
// quarter of it at a time, so that it keeps at least the last MaxKept
// bytes and at most a quarter more.
const MaxKept = 256 << 10

// MaxClaim bounds a claim's token.
const MaxClaim = 256

func appendStr16(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// decoder reads fields from a payload and remembers the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil || n < 0 || n > len(d.b) {
		if d.err == nil {
			d.err = fmt.Errorf("%w: short payload", ErrProtocol)
		}
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) str16() string { return string(d.take(int(d.u16()))) }

// Append encodes o as an Open payload.
func (o *Open) Append(b []byte) []byte {
	b = appendStr16(b, o.ID)
	b = binary.BigEndian.AppendUint32(b, o.Resumed)
	b = binary.BigEndian.AppendUint64(b, o.Offset)
	b = o.Facts.Append(b)
	b = binary.BigEndian.AppendUint32(b, uint32(len(o.State)))
	b = append(b, o.State...)
	var flags byte
	if o.HandedOver {
		flags |= 1
	}
	if o.Keep {
		flags |= 2
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, o.Output)
	if o.Claim != "" || o.HelloAgain > 0 {
		b = appendStr16(b, o.Claim)
	}
	if o.HelloAgain > 0 {
		b = append(b, o.HelloAgain)
	}
	return b
}

// Append encodes f.
func (f *Facts) Append(b []byte) []byte {
	b = appendStr16(b, f.ClientAddr)
	b = appendStr16(b, f.Terminal)
	b = binary.BigEndian.AppendUint32(b, f.MTTS)
	b = binary.BigEndian.AppendUint16(b, f.Width)
	b = binary.BigEndian.AppendUint16(b, f.Height)
	b = appendStr16(b, f.Charset)
	b = appendStr16(b, f.ClientName)
	b = appendStr16(b, f.ClientVersion)
	return appendStr16(b, f.ReportedIP)
}

// FactFields names fields of Facts, a bit each, in the order they are
// encoded: a FactsUpdate carries the fields it names.
type FactFields uint16

// The fields of Facts. Width and Height travel together, as NAWS sends
// them.
const (
	FactClientAddr FactFields = 1 << iota
	FactTerminal
	FactMTTS
	FactWindow
	FactCharset
	FactClientName
	FactClientVersion
	FactReportedIP

	// FactsAll names every field this version knows.
	FactsAll = 1<<iota - 1
)

var factNames = [...]string{"client", "terminal", "mtts", "window", "charset", "clientname", "clientversion", "reportedip"}

// String names the fields, "window|terminal"; a bit this version does not
// know is shown as its number.
func (w FactFields) String() string {
	if w == 0 {
		return "none"
	}
	var b []byte
	for i := range 16 {
		if w&(1<<i) == 0 {
			continue
		}
		if len(b) > 0 {
			b = append(b, '|')
		}
		if i < len(factNames) {
			b = append(b, factNames[i]...)
		} else {
			b = fmt.Appendf(b, "bit%d", i)
		}
	}
	return string(b)
}

// Diff returns the fields in which f and g differ.
func (f *Facts) Diff(g *Facts) FactFields {
	var d FactFields
	set := func(bit FactFields, differ bool) {
		if differ {
			d |= bit
		}
	}
	set(FactClientAddr, f.ClientAddr != g.ClientAddr)
	set(FactTerminal, f.Terminal != g.Terminal)
	set(FactMTTS, f.MTTS != g.MTTS)
	set(FactWindow, f.Width != g.Width || f.Height != g.Height)
	set(FactCharset, f.Charset != g.Charset)
	set(FactClientName, f.ClientName != g.ClientName)
	set(FactClientVersion, f.ClientVersion != g.ClientVersion)
	set(FactReportedIP, f.ReportedIP != g.ReportedIP)
	return d
}

// AppendUpdate encodes a FactsUpdate payload that carries the fields of f
// named in which: fields:u16, then each named field as in Facts, in order.
func (f *Facts) AppendUpdate(b []byte, which FactFields) []byte {
	which &= FactsAll
	b = binary.BigEndian.AppendUint16(b, uint16(which))
	if which&FactClientAddr != 0 {
		b = appendStr16(b, f.ClientAddr)
	}
	if which&FactTerminal != 0 {
		b = appendStr16(b, f.Terminal)
	}
	if which&FactMTTS != 0 {
		b = binary.BigEndian.AppendUint32(b, f.MTTS)
	}
	if which&FactWindow != 0 {
		b = binary.BigEndian.AppendUint16(b, f.Width)
		b = binary.BigEndian.AppendUint16(b, f.Height)
	}
	if which&FactCharset != 0 {
		b = appendStr16(b, f.Charset)
	}
	if which&FactClientName != 0 {
		b = appendStr16(b, f.ClientName)
	}
	if which&FactClientVersion != 0 {
		b = appendStr16(b, f.ClientVersion)
	}
	if which&FactReportedIP != 0 {
		b = appendStr16(b, f.ReportedIP)
	}
	return b
}

// ApplyUpdate decodes a FactsUpdate payload into f: each field it carries
// replaces f's, the others stay. It returns the fields it carried that
// this version knows; the fields of a later version come after them, and
// they and any bytes after the known fields are ignored. On an error f is
// left as it was.
func (f *Facts) ApplyUpdate(p []byte) (FactFields, error) {
	d := decoder{b: p}
	which := FactFields(d.u16()) & FactsAll
	g := *f
	if which&FactClientAddr != 0 {
		g.ClientAddr = d.str16()
	}
	if which&FactTerminal != 0 {
		g.Terminal = d.str16()
	}
	if which&FactMTTS != 0 {
		g.MTTS = d.u32()
	}
	if which&FactWindow != 0 {
		g.Width = d.u16()
		g.Height = d.u16()
	}
	if which&FactCharset != 0 {
		g.Charset = d.str16()
	}
	if which&FactClientName != 0 {
		g.ClientName = d.str16()
	}
	if which&FactClientVersion != 0 {
		g.ClientVersion = d.str16()
	}
	if which&FactReportedIP != 0 {
		g.ReportedIP = d.str16()
	}
	if d.err != nil {
		return 0, d.err
	}
	*f = g
	return which, nil
}

func (f *Facts) decode(d *decoder) {
	f.ClientAddr = d.str16()
	f.Terminal = d.str16()
	f.MTTS = d.u32()
	f.Width = d.u16()
	f.Height = d.u16()
	f.Charset = d.str16()
	f.ClientName = d.str16()
	f.ClientVersion = d.str16()
	f.ReportedIP = d.str16()
}

// ParseFacts decodes a Facts payload: the whole record, as gateways of an
// earlier version sent it on each change (this version sends FactsUpdate).
func ParseFacts(b []byte) (Facts, error) {
	d := decoder{b: b}
	var f Facts
	f.decode(&d)
	return f, d.err
}

// ParseOpen decodes an Open payload. Bytes after the known fields are
// ignored, so that a later version may add fields at the end.
func ParseOpen(b []byte) (Open, error) {
	d := decoder{b: b}
	var o Open
	o.ID = d.str16()
	o.Resumed = d.u32()
	o.Offset = d.u64()
	o.Facts.decode(&d)
	n := d.u32()
	if n > MaxState {
		return o, fmt.Errorf("%w: state of %d bytes", ErrProtocol, n)
	}
	o.State = append([]byte(nil), d.take(int(n))...)
	if d.err == nil && len(d.b) > 0 {
		// Flags, from a gateway of this version or later.
		flags := d.take(1)[0]
		o.HandedOver, o.Keep = flags&1 != 0, flags&2 != 0
	}
	if d.err == nil && len(d.b) > 0 {
		o.Output = d.u64()
	}
	if d.err == nil && len(d.b) > 0 {
		o.Claim = d.str16()
		if len(o.Claim) > MaxClaim {
			return o, fmt.Errorf("%w: a claim of %d bytes", ErrProtocol, len(o.Claim))
		}
	}
	if d.err == nil && len(d.b) > 0 {
		o.HelloAgain = d.take(1)[0]
	}
	return o, d.err
}

// AppendTokens encodes a Tokens payload: the hashes, each 32 bytes.
func AppendTokens(b []byte, hashes [][32]byte) []byte {
	for _, h := range hashes {
		b = append(b, h[:]...)
	}
	return b
}

// ParseTokens decodes a Tokens payload: at most two hashes.
func ParseTokens(b []byte) ([][32]byte, error) {
	if len(b)%32 != 0 || len(b) > 64 {
		return nil, fmt.Errorf("%w: tokens of %d bytes", ErrProtocol, len(b))
	}
	var hs [][32]byte
	for ; len(b) > 0; b = b[32:] {
		hs = append(hs, [32]byte(b[:32]))
	}
	return hs, nil
}

// AppendAck encodes an Ack payload.
func AppendAck(b []byte, offset uint64) []byte { return binary.BigEndian.AppendUint64(b, offset) }

// ParseAck decodes an Ack payload.
func ParseAck(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: ack of %d bytes", ErrProtocol, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// AppendMSSPVar encodes one MSSP variable as it goes on the wire: VAR name
// then VAL value for each value. Bytes MSSP reserves (NUL, VAR, VAL, IAC)
// are dropped.
func AppendMSSPVar(b []byte, name string, values ...string) []byte {
	b = append(b, 1)
	b = appendMSSPText(b, name)
	for _, v := range values {
		b = append(b, 2)
		b = appendMSSPText(b, v)
	}
	return b
}

func appendMSSPText(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0, 1, 2, 255:
		default:
			b = append(b, c)
		}
	}
	return b
}

// TakeoverSuffix is added to a backend's name by a successor that is ready
// to take over from it: "game~next" while "game" still runs.
const TakeoverSuffix = "~next"

// AppendMove encodes a Move payload: count:u32 then each id:str16.
func AppendMove(b []byte, ids []string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		b = appendStr16(b, id)
	}
	return b
}

// ParseMove decodes a Move payload; it names at most MaxMove sessions.
func ParseMove(p []byte) ([]string, error) {
	d := decoder{b: p}
	n := d.u32()
	if n > MaxMove {
		return nil, fmt.Errorf("%w: move of %d sessions", ErrProtocol, n)
	}
	ids := make([]string, 0, n)
	for range n {
		ids = append(ids, d.str16())
	}
	if d.err == nil && len(d.b) > 0 {
		return nil, fmt.Errorf("%w: %d bytes after a move", ErrProtocol, len(d.b))
	}
	return ids, d.err
}

// Features is what a backend can do, beyond what every backend of this
// link version does: a bit each. A gateway uses a feature only once the
// backend has said it has it.
type Features uint32

// Features, as a backend or a gateway says it has them.
const (
	// FeatureHold: the backend takes Hold and Drop, and answers Unheld (see
	// Holding in the package documentation).
	FeatureHold Features = 1
	// FeatureMovedParked: the gateway takes MovedParked.
	FeatureMovedParked Features = 2
	// FeatureOpenHeld: the backend takes OpenHeld.
	FeatureOpenHeld Features = 4
	// FeatureReleasedParked: the gateway takes, in the MovedParked that
	// answers a Release, sessions whose streams were parked, each with
	// its Parked number.
	FeatureReleasedParked Features = 8
	// FeatureHeldFrames: of a backend, it takes Want and input in
	// OpenHeld, and sends a held session's frames in HeldFrames to a
	// gateway that has it; of a gateway, it takes HeldFrames, and waits
	// for the held sessions of a Move in MovedParked (see Holding).
	FeatureHeldFrames Features = 16
	// FeatureStow: the backend takes Stow (see Holding).
	FeatureStow Features = 32
	// FeatureStowKept: the backend stows a kept session (a browser
	// page's) too, and takes HeldOutAck for it.
	FeatureStowKept Features = 64
)

// heldFrameTypes are the frames a held session may send on the control
// stream: the ones that need no answer and end nothing.
var heldFrameTypes = [256]bool{
	FrameOutput: true, FramePrompt: true, FrameState: true, FrameAck: true,
	FrameGMCPOut: true, FrameEcho: true,
}

// HeldFrame reports whether a held session's frame of type t may go in
// HeldFrames.
func HeldFrame(t FrameType) bool { return heldFrameTypes[t] }

// AppendHeldFrames encodes a HeldFrames payload: id:str16, then frames,
// encoded as on the session's stream, each of a type HeldFrame accepts.
func AppendHeldFrames(b []byte, id string, frames []byte) []byte {
	return append(appendStr16(b, id), frames...)
}

// AppendHeldOutAck encodes a HeldOutAck payload: id:str16, offset:u64.
func AppendHeldOutAck(b []byte, id string, off uint64) []byte {
	return AppendAck(appendStr16(b, id), off)
}

// ParseHeldOutAck decodes a HeldOutAck payload.
func ParseHeldOutAck(p []byte) (id string, off uint64, err error) {
	d := decoder{b: p}
	id = d.str16()
	if d.err != nil {
		return "", 0, d.err
	}
	if id == "" {
		return "", 0, fmt.Errorf("%w: an output acknowledgement without a session", ErrProtocol)
	}
	off, err = ParseAck(d.b)
	return id, off, err
}

// ParseHeldFrames decodes a HeldFrames payload. The frames it returns are
// whole, each of a type HeldFrame accepts; they share p's memory.
func ParseHeldFrames(p []byte) (id string, frames []byte, err error) {
	d := decoder{b: p}
	id = d.str16()
	if d.err != nil {
		return "", nil, d.err
	}
	if id == "" {
		return "", nil, fmt.Errorf("%w: held frames without a session", ErrProtocol)
	}
	if err := CheckHeldFrames(d.b); err != nil {
		return "", nil, err
	}
	return id, d.b, nil
}

// CheckHeldFrames reports why frames, encoded one after another, may not
// go in HeldFrames: one cut short, or of a type HeldFrame refuses.
func CheckHeldFrames(frames []byte) error {
	return eachFrame(frames, func(t FrameType) error {
		if !HeldFrame(t) {
			return fmt.Errorf("%w: %v in held frames", ErrProtocol, t)
		}
		return nil
	})
}

// HasFrame reports whether frames, whole frames encoded one after
// another, include one of type t.
func HasFrame(frames []byte, t FrameType) bool {
	found := errors.New("found")
	return eachFrame(frames, func(ft FrameType) error {
		if ft == t {
			return found
		}
		return nil
	}) == found
}

// eachFrame calls f with the type of each frame in b, frames encoded one
// after another, until f returns an error; it reports that error, or why
// b does not hold whole frames.
func eachFrame(b []byte, f func(FrameType) error) error {
	for len(b) > 0 {
		if len(b) < HeaderLen {
			return fmt.Errorf("%w: %d bytes of a frame's header", ErrProtocol, len(b))
		}
		t, n := FrameType(b[0]), binary.BigEndian.Uint32(b[1:HeaderLen])
		if err := f(t); err != nil {
			return err
		}
		if uint64(n) > uint64(len(b)-HeaderLen) {
			return fmt.Errorf("%w: %v of %d bytes, %d there", ErrProtocol, t, n, len(b)-HeaderLen)
		}
		b = b[HeaderLen+int(n):]
	}
	return nil
}

// HeldOpen is one session of an OpenHeld frame: its Open, and the frames a
// stream would have carried after it (the client's GMCP hello), which the
// session reads first.
type HeldOpen struct {
	Open  Open
	After []byte
}

// AppendHeldOpen encodes one session of an OpenHeld payload: open:u32+bytes
// after:u32+bytes.
func AppendHeldOpen(b []byte, o *Open, after []byte) []byte {
	n := len(b)
	b = append(b, 0, 0, 0, 0)
	b = o.Append(b)
	binary.BigEndian.PutUint32(b[n:], uint32(len(b)-n-4))
	b = binary.BigEndian.AppendUint32(b, uint32(len(after)))
	return append(b, after...)
}

// ParseOpenHeld decodes an OpenHeld payload: one HeldOpen after another,
// each Open as ParseOpen takes it, each After bounded by the frame's own
// bound.
func ParseOpenHeld(p []byte) ([]HeldOpen, error) {
	var out []HeldOpen
	for d := (decoder{b: p}); len(d.b) > 0; {
		o, err := ParseOpen(d.take(int(d.u32())))
		if d.err != nil {
			return nil, d.err
		}
		if err != nil {
			return nil, err
		}
		after := bytes.Clone(d.take(int(d.u32())))
		if d.err != nil {
			return nil, d.err
		}
		out = append(out, HeldOpen{Open: o, After: after})
	}
	return out, nil
}

// AppendFeatures encodes a Features payload.
func AppendFeatures(b []byte, f Features) []byte { return binary.BigEndian.AppendUint32(b, uint32(f)) }

// ParseFeatures decodes a Features payload. Bytes after the first four are
// a later version's, and are ignored.
func ParseFeatures(p []byte) (Features, error) {
	if len(p) < 4 {
		return 0, fmt.Errorf("%w: features of %d bytes", ErrProtocol, len(p))
	}
	return Features(binary.BigEndian.Uint32(p)), nil
}

// Broadcast is output for many sessions at once, each of whose streams
// the backend has parked (see the package documentation, Parking).
type Broadcast struct {
	Text []byte // as in Output
	To   []Parked
}

// Parked names a recipient of a Broadcast and the Parked it follows: the
// number of Parked frames written on its stream so far.
type Parked struct {
	ID   string
	Park uint32
}

// Append encodes b as a Broadcast payload.
func (b *Broadcast) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b.To)))
	for _, r := range b.To {
		dst = appendStr16(dst, r.ID)
		dst = binary.BigEndian.AppendUint32(dst, r.Park)
	}
	return append(dst, b.Text...)
}

// ParseBroadcast decodes a Broadcast payload: at most MaxMove recipients
// and MaxChunk bytes of text.
func ParseBroadcast(p []byte) (Broadcast, error) {
	d := decoder{b: p}
	n := d.u32()
	if n > MaxMove {
		return Broadcast{}, fmt.Errorf("%w: broadcast to %d sessions", ErrProtocol, n)
	}
	var b Broadcast
	for range n {
		b.To = append(b.To, Parked{ID: d.str16(), Park: d.u32()})
	}
	if d.err != nil {
		return Broadcast{}, d.err
	}
	if len(d.b) > MaxChunk {
		return Broadcast{}, fmt.Errorf("%w: broadcast of %d bytes", ErrProtocol, len(d.b))
	}
	b.Text = d.b
	return b, nil
}
