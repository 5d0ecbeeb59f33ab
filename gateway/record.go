package gateway

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"net/netip"
	"time"

	"holdfast/gateway/telnet"
	"holdfast/link"
)

// record is what of a session lasts beyond one process and one backend
// stream. The session embeds it; a backend's Open is built from it
// (open); a move to another gateway process carries it whole, with what
// the session's parts save of themselves (Parts). It is serialised one
// way, MarshalBinary, with a format version. Adding a field here is all it
// takes for the field to move and come back: TestRecordCarried fails for a
// field that does not.
type record struct {
	ID    string
	Since time.Time
	IP    netip.Addr // what the per-address limit counts
	TLS   bool       // the player speaks TLS to this process, or to the one that relays it
	Kind  string     // what the player connected with, for operators: "telnet", "telnet+tls", "websocket ..."

	// In holds input no backend has acknowledged; In[0] is input byte
	// InOff of the session.
	In    []byte
	InOff uint64
	State []byte // the application's, from its last State frame
	// Resumed counts the backends the session was opened on after its
	// first; Opened is set once it was opened on one.
	Resumed uint32
	Opened  bool
	Noticed bool      // the player was told the game is away
	Lost    time.Time // when the session lost its backend, until resumed
	Facts   link.Facts
	Hello   [][]byte // the client's GMCP Core.Hello and Core.Supports.*, for each new backend
	// OutOff counts the game's output to the session, the bytes of its
	// Output frames and broadcast lines: a player who may come back
	// through another gateway acknowledges output by it (see keep.go).
	OutOff uint64
	// MoveFrom names the backend instance that holds the session away
	// after a move, until the next attach: on that backend the session
	// carries on instead of being resumed.
	MoveFrom string
	// Quiet is set when the session moved with its stream parked or held,
	// and nothing of its own to send: the next process has the backend
	// hold it (see link's Holding) instead of opening it, until it has.
	Quiet bool

	// Parts is what the session's parts save of themselves, for a move
	// only: a live session's parts are its telnet engine, encoder,
	// compressor, output queue and connection, and its Parts is nil (a
	// pointer: held by every live session, the parts' zero values would
	// cost 376 bytes each).
	Parts *parts
}

// parts is what a session's components save of themselves for a move.
// Each marshals itself.
type parts struct {
	BytesIn, BytesOut uint64 // on the player's socket
	Engine            telnet.EngineState
	Encoder           telnet.EncoderState
	Compressing       bool
	Compressor        telnet.CompressorState
	Out               outboxState
	// Conn is the state of a connection that moves without a socket (a
	// resumable WebSocket); nil for one whose socket goes with it.
	Conn []byte
}

// recordVersion is the format of a record between gateway processes. A
// process refuses a record of a format it does not read: the upgrade then
// fails and the old process keeps the session.
const recordVersion = 1

// MarshalBinary encodes the record: its format version, then the fields.
func (r *record) MarshalBinary() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte(recordVersion)
	if err := gob.NewEncoder(&buf).Encode((*recordFields)(r)); err != nil {
		return nil, fmt.Errorf("gateway: record: %w", err)
	}
	return buf.Bytes(), nil
}

// UnmarshalBinary decodes a record of this format.
func (r *record) UnmarshalBinary(b []byte) error {
	if err := checkVersion(b); err != nil {
		return err
	}
	*r = record{}
	if err := gob.NewDecoder(bytes.NewReader(b[1:])).Decode((*recordFields)(r)); err != nil {
		return fmt.Errorf("gateway: record: %w", err)
	}
	return nil
}

// recordFields is the record without its methods, for gob.
type recordFields record

// open is the Open that starts the session on a backend stream.
func (r *record) open(handedOver bool) link.Open {
	return link.Open{ID: r.ID, Resumed: r.Resumed, Offset: r.InOff, Facts: r.Facts, State: r.State, HandedOver: handedOver}
}

// marshalBatch encodes the records of a batch of sessions: the format
// version once, then the records' fields, as MarshalBinary encodes one
// (one encoder for the batch: gob describes the types once, not for each
// session).
func marshalBatch(recs []record) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte(recordVersion)
	fields := make([]recordFields, len(recs))
	for i := range recs {
		fields[i] = recordFields(recs[i])
	}
	if err := gob.NewEncoder(&buf).Encode(fields); err != nil {
		return nil, fmt.Errorf("gateway: encoding sessions: %w", err)
	}
	return buf.Bytes(), nil
}

// unmarshalBatch decodes a batch of records of this format, or of the
// gateways before formats had versions.
func unmarshalBatch(b []byte) ([]record, error) {
	if err := checkVersion(b); err != nil {
		if recs, lerr := unmarshalLegacy(b); lerr == nil {
			return recs, nil
		}
		return nil, err
	}
	var fields []recordFields
	if err := gob.NewDecoder(bytes.NewReader(b[1:])).Decode(&fields); err != nil {
		return nil, fmt.Errorf("gateway: decoding sessions: %w", err)
	}
	recs := make([]record, len(fields))
	for i := range fields {
		recs[i] = record(fields[i])
	}
	return recs, nil
}

// checkVersion refuses an encoding of another format than this one.
func checkVersion(b []byte) error {
	if len(b) == 0 || b[0] != recordVersion {
		v := -1
		if len(b) > 0 {
			v = int(b[0])
		}
		return fmt.Errorf("gateway: a session record of format %d; this process reads %d", v, recordVersion)
	}
	return nil
}

// legacySession is a session as the gateways before record formats sent
// it in an upgrade's batch: gob of a list of these, with no version. This
// version reads it, so that a gateway of the release before can upgrade
// to it (its players are held; the backend must be deployed again, since
// the link's handshake changed).
type legacySession struct {
	ID          string
	Since       time.Time
	IP          netip.Addr
	TLS         bool
	Kind        string
	BytesIn     uint64
	BytesOut    uint64
	Engine      telnet.EngineState
	Encoder     telnet.EncoderState
	Compressing bool
	Compressor  telnet.CompressorState
	Out         outboxState
	In          []byte
	InOff       uint64
	State       []byte
	Resumed     uint32
	Opened      bool
	Noticed     bool
	Lost        time.Time
	Facts       link.Facts
	Hello       [][]byte
	MoveFrom    string
	Conn        []byte
}

func unmarshalLegacy(b []byte) ([]record, error) {
	var old []legacySession
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&old); err != nil {
		return nil, err
	}
	recs := make([]record, len(old))
	for i, m := range old {
		recs[i] = record{
			ID: m.ID, Since: m.Since, IP: m.IP, TLS: m.TLS, Kind: m.Kind,
			In: m.In, InOff: m.InOff, State: m.State, Resumed: m.Resumed, Opened: m.Opened,
			Noticed: m.Noticed, Lost: m.Lost, Facts: m.Facts, Hello: m.Hello, MoveFrom: m.MoveFrom,
			Parts: &parts{
				BytesIn: m.BytesIn, BytesOut: m.BytesOut, Engine: m.Engine, Encoder: m.Encoder,
				Compressing: m.Compressing, Compressor: m.Compressor, Out: m.Out, Conn: m.Conn,
			},
		}
	}
	return recs, nil
}
