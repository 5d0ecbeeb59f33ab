package telnet

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// EngineState is everything an Engine knows, so that a connection can
// carry on in another process (a gateway upgrade) with its negotiation,
// facts and half-parsed input exactly as they were: the client notices
// nothing.
type EngineState struct {
	Decoder    DecoderState
	Options    []OptionState
	Facts      Facts
	TTypes     []string
	Changed    bool
	GMCP       [][]byte
	Pending    int
	Spoken     bool
	NoCompress bool
}

// OptionState is one option's RFC 1143 state, both sides.
type OptionState struct {
	Opt     byte
	Us, Him uint8
}

// DecoderState is where a Decoder stands in the client's byte stream.
type DecoderState struct {
	State, AfterIAC, Verb, Opt uint8
	SB                         []byte
	Truncated                  bool
}

// Save returns the engine's state.
func (e *Engine) Save() EngineState {
	st := EngineState{
		Decoder: DecoderState{
			State: uint8(e.st), AfterIAC: uint8(e.afterIAC), Verb: e.verb, Opt: e.opt,
			SB: append([]byte(nil), e.sb...), Truncated: e.truncated,
		},
		Facts:      e.facts,
		TTypes:     append([]string(nil), e.ttypes...),
		Changed:    e.changed,
		GMCP:       e.gmcp,
		Pending:    e.pending,
		Spoken:     e.spoken,
		NoCompress: e.NoCompress,
	}
	for i, o := range supported {
		st.Options = append(st.Options, OptionState{Opt: o.opt, Us: uint8(e.q[i][us]), Him: uint8(e.q[i][him])})
	}
	return st
}

// Restore puts an engine made by NewEngine into a saved state. An option
// this version does not support stays off; a state out of range is an
// error, and leaves the engine as it was.
func (e *Engine) Restore(st EngineState) error {
	if st.Decoder.State > uint8(stSBIAC) || st.Decoder.AfterIAC > uint8(stSBIAC) {
		return fmt.Errorf("telnet: restore: decoder state %d/%d", st.Decoder.State, st.Decoder.AfterIAC)
	}
	var q [numOptions][2]qstate
	for _, o := range st.Options {
		i := slot[o.Opt]
		if i < 0 {
			continue
		}
		if qstate(o.Us) > qWantYes|qOpposite || qstate(o.Him) > qWantYes|qOpposite {
			return fmt.Errorf("telnet: restore: option %d state %d/%d", o.Opt, o.Us, o.Him)
		}
		q[i] = [2]qstate{us: qstate(o.Us), him: qstate(o.Him)}
	}
	e.q = q
	e.st, e.afterIAC = state(st.Decoder.State), state(st.Decoder.AfterIAC)
	e.verb, e.opt = st.Decoder.Verb, st.Decoder.Opt
	e.sb, e.truncated = st.Decoder.SB, st.Decoder.Truncated
	// A state saved by an earlier version may hold facts learnt before
	// they were bounded: they are bounded as if learnt now.
	ttypes := st.TTypes[:min(len(st.TTypes), maxTTypeCycle)]
	for i, t := range ttypes {
		ttypes[i] = Printable([]byte(t), MaxTerminal)
	}
	e.facts, e.ttypes, e.changed = st.Facts.bounded(), ttypes, st.Changed
	e.gmcp, e.pending, e.spoken, e.NoCompress = st.GMCP, st.Pending, st.Spoken, st.NoCompress
	return nil
}

// CompressorState is an MCCP2 stream's state between batches: whether it
// has started, and its running checksum.
type CompressorState struct {
	Started bool
	Sum     []byte
}

// Save returns the compressor's state. Its Sum is as hash/adler32
// marshals its state, which earlier versions kept and a process taking
// over may still read.
func (c *Compressor) Save() CompressorState {
	if !c.started {
		return CompressorState{}
	}
	return CompressorState{Started: true, Sum: binary.BigEndian.AppendUint32([]byte(adlerMagic), c.sum)}
}

// adlerMagic starts hash/adler32's marshalled state.
const adlerMagic = "adl\x01"

// Restore puts a zero Compressor into a saved state, so that the stream
// carries on where it stood.
func (c *Compressor) Restore(st CompressorState) error {
	*c = Compressor{}
	if !st.Started {
		return nil
	}
	sum, ok := strings.CutPrefix(string(st.Sum), adlerMagic)
	if !ok || len(sum) != 4 {
		return fmt.Errorf("telnet: restore: compressor: bad checksum state %q", st.Sum)
	}
	c.started, c.sum = true, binary.BigEndian.Uint32([]byte(sum))
	return nil
}

// EncoderState is where an Encoder stands: whether the last byte it
// encoded was a CR, so that a LF after it is not doubled.
type EncoderState struct{ LastCR bool }

// Save returns the encoder's state.
func (e *Encoder) Save() EncoderState { return EncoderState{LastCR: e.lastCR} }

// Restore puts an encoder into a saved state.
func (e *Encoder) Restore(st EncoderState) { e.lastCR = st.LastCR }
