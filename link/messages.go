package link

import (
	"encoding/binary"
	"fmt"
)

// Facts are what the gateway learnt about a player's connection.
type Facts struct {
	ClientAddr string // the player's address, host:port
	Terminal   string // terminal type (TTYPE), upper case; empty if unknown
	MTTS       uint32 // MTTS capability bits; 0 if unknown
	Width      uint16 // window size (NAWS); 0 if unknown
	Height     uint16
	Charset    string // negotiated character set; empty if unknown
}

// Open is the first frame of a session stream.
type Open struct {
	ID      string
	Resumed uint32 // how many times the session was resumed on a new backend
	Offset  uint64 // input bytes the application has consumed before
	Facts   Facts
	State   []byte
}

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
	if d.err != nil || n > len(d.b) {
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
	return append(b, o.State...)
}

// Append encodes f.
func (f *Facts) Append(b []byte) []byte {
	b = appendStr16(b, f.ClientAddr)
	b = appendStr16(b, f.Terminal)
	b = binary.BigEndian.AppendUint32(b, f.MTTS)
	b = binary.BigEndian.AppendUint16(b, f.Width)
	b = binary.BigEndian.AppendUint16(b, f.Height)
	return appendStr16(b, f.Charset)
}

func (f *Facts) decode(d *decoder) {
	f.ClientAddr = d.str16()
	f.Terminal = d.str16()
	f.MTTS = d.u32()
	f.Width = d.u16()
	f.Height = d.u16()
	f.Charset = d.str16()
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
	return o, d.err
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
