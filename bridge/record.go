package bridge

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"time"
)

// recordVersion is the format of a session's record in a handover; a
// successor refuses another.
const recordVersion = 1

// record is one session as a bridge hands it to its successor: with it,
// unless Conn is false, goes the descriptor of its connection to the
// game, so that the game sees no disconnect.
type record struct {
	Version uint8
	ID      string
	Conn    bool   // the connection's descriptor comes with the record
	Neg     []byte // the negotiator, marshalled
	Dec     []byte // the decoder, marshalled
	Out     []byte // answers for the game not yet written
	Held    []byte // the player's input not yet written to the game
	// GMCP is the client's GMCP not yet written to the game, each at its
	// place in Held.
	GMCP []heldGMCP
	// InputEnd is the player's input offset at the end of Held: what
	// the gateway gives the successor again up to it was passed on.
	InputEnd uint64
	Text     []byte   // the game's text not yet written to the player
	Hello    [][]byte // the client's Core.Hello and Core.Supports
	Flowing  bool     // the game had greeted the player: input goes at once
	EchoOff  bool     // the game had hidden the player's echo
}

// recordFields is a record without its methods, for gob, which would
// otherwise call MarshalBinary again.
type recordFields record

func (r *record) MarshalBinary() ([]byte, error) {
	r.Version = recordVersion
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode((*recordFields)(r)); err != nil {
		return nil, fmt.Errorf("bridge: record: %w", err)
	}
	return b.Bytes(), nil
}

func (r *record) UnmarshalBinary(p []byte) error {
	var got recordFields
	if err := gob.NewDecoder(bytes.NewReader(p)).Decode(&got); err != nil {
		return fmt.Errorf("bridge: record: %w", err)
	}
	if got.Version != recordVersion {
		return fmt.Errorf("bridge: record of version %d, want %d", got.Version, recordVersion)
	}
	at := 0
	for _, g := range got.GMCP {
		if g.At < at || g.At > len(got.Held) {
			return fmt.Errorf("bridge: record: a GMCP message at %d of %d bytes of input, after one at %d", g.At, len(got.Held), at)
		}
		at = g.At
	}
	*r = record(got)
	return nil
}

// negotiatorState is a negotiator as a record carries it. The facts are
// not in it: the successor has them from the gateway.
type negotiatorState struct {
	MSSP    bool
	Us, Him [256]bool
	TTYPEs  int
	Environ bool
	// The game's questions waiting for the client's late answers.
	FactsBy      time.Time
	TTYPEAsked   int
	CharsetAsked []byte
}

func (n *negotiator) MarshalBinary() ([]byte, error) {
	var b bytes.Buffer
	err := gob.NewEncoder(&b).Encode(negotiatorState{MSSP: n.mssp, Us: n.us.bools(), Him: n.him.bools(), TTYPEs: n.ttypes, Environ: n.environ,
		FactsBy: n.factsBy, TTYPEAsked: n.ttypeAsked, CharsetAsked: n.charsetAsked})
	return b.Bytes(), err
}

func (n *negotiator) UnmarshalBinary(p []byte) error {
	var st negotiatorState
	if err := gob.NewDecoder(bytes.NewReader(p)).Decode(&st); err != nil {
		return fmt.Errorf("bridge: negotiator: %w", err)
	}
	if st.TTYPEAsked < 0 || st.TTYPEAsked > maxTTYPEAsked || len(st.CharsetAsked) > maxCharsetAsked {
		return fmt.Errorf("bridge: negotiator: %d TTYPE and %d bytes of CHARSET asked is not a state", st.TTYPEAsked, len(st.CharsetAsked))
	}
	n.mssp, n.us, n.him, n.ttypes, n.environ = st.MSSP, optSetOf(st.Us), optSetOf(st.Him), st.TTYPEs, st.Environ
	n.factsBy, n.ttypeAsked, n.charsetAsked = st.FactsBy, st.TTYPEAsked, st.CharsetAsked
	return nil
}

// decoderState is a decoder between two reads, as a record carries it.
type decoderState struct {
	St, Back  uint8
	Verb, Opt byte
	SB        []byte
	Truncated bool
}

func (d *decoder) MarshalBinary() ([]byte, error) {
	var b bytes.Buffer
	err := gob.NewEncoder(&b).Encode(decoderState{St: uint8(d.st), Back: uint8(d.back), Verb: d.verb, Opt: d.opt, SB: d.sb, Truncated: d.truncated})
	return b.Bytes(), err
}

func (d *decoder) UnmarshalBinary(p []byte) error {
	var st decoderState
	if err := gob.NewDecoder(bytes.NewReader(p)).Decode(&st); err != nil {
		return fmt.Errorf("bridge: decoder: %w", err)
	}
	if st.St > uint8(decSBIAC) || st.Back > uint8(decSBIAC) || len(st.SB) > maxSubneg {
		return fmt.Errorf("bridge: decoder: state %d/%d with %d bytes is not one", st.St, st.Back, len(st.SB))
	}
	d.st, d.back, d.verb, d.opt, d.sb, d.truncated = decState(st.St), decState(st.Back), st.Verb, st.Opt, st.SB, st.Truncated
	return nil
}
