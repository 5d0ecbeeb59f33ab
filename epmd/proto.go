package epmd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"unicode/utf8"
)

// DefaultPort is the registry's well-known port when ERL_EPMD_PORT is unset.
const DefaultPort = 4369

// Request and response tags (the first byte of a packet).
const (
	tagAlive2Req   = 120 // 'x'
	tagAlive2Resp  = 121 // 'y': 16-bit creation
	tagAlive2XResp = 118 // 'v': 32-bit creation
	tagPortPlease2 = 122 // 'z'
	tagPort2Resp   = 119 // 'w'
	tagNamesReq    = 110 // 'n'
	tagDumpReq     = 100 // 'd'
	tagKillReq     = 107 // 'k'
	tagStopReq     = 115 // 's'
)

// Framing limits, as Erlang's epmd enforces them: a request is Len:u16 then
// Len bytes, and Len+2 must lie in [3, 3060).
const (
	minRequestLen = 1
	maxRequestLen = 3057
	maxNameLen    = 255
	maxExtraLen   = 1020
	// minAlive2Len is the shortest ALIVE2 body Erlang's epmd reads: the
	// fixed fields, the two length fields and a name of at least one byte.
	minAlive2Len = 14
)

// NodeType values Erlang uses in ALIVE2 requests.
const (
	NodeTypeNormal = 77  // 'M': an Erlang node, hidden or not
	NodeTypeHidden = 104 // 'h': a C node
)

// Errors a client or server reports. Test them with errors.Is.
var (
	ErrNotFound     = errors.New("epmd: name not registered")
	ErrRefused      = errors.New("epmd: registration refused")
	ErrMalformed    = errors.New("epmd: malformed packet")
	ErrServerClosed = errors.New("epmd: server closed")
)

// Node is one registration: what ALIVE2 stores and PORT_PLEASE2 returns.
type Node struct {
	Name        string
	Port        uint16
	NodeType    uint8
	Protocol    uint8
	HighVersion uint16
	LowVersion  uint16
	Extra       []byte
}

// PortFromEnv returns ERL_EPMD_PORT when it holds a valid port, else DefaultPort.
func PortFromEnv() int {
	if p, err := strconv.Atoi(os.Getenv("ERL_EPMD_PORT")); err == nil && p > 0 && p < 65536 {
		return p
	}
	return DefaultPort
}

// validName reports whether s may be registered: non-empty, at most 255
// bytes, valid UTF-8 and free of NUL.
func validName(s string) bool {
	if s == "" || len(s) > maxNameLen || !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return false
		}
	}
	return true
}

// readRequest reads one length-prefixed request body, rejecting lengths
// outside the limits before allocating.
func readRequest(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n < minRequestLen || n > maxRequestLen {
		return nil, fmt.Errorf("%w: request length %d", ErrMalformed, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return body, nil
}

// appendRequest frames body as a request.
func appendRequest(b, body []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

// appendAlive2Req encodes n as an ALIVE2_REQ body.
func appendAlive2Req(b []byte, n *Node) []byte {
	return appendNode(append(b, tagAlive2Req), n)
}

// appendNode encodes a node as ALIVE2_REQ and PORT2_RESP both carry it:
// port, type, protocol, versions, name and extra.
func appendNode(b []byte, n *Node) []byte {
	b = binary.BigEndian.AppendUint16(b, n.Port)
	b = append(b, n.NodeType, n.Protocol)
	b = binary.BigEndian.AppendUint16(b, n.HighVersion)
	b = binary.BigEndian.AppendUint16(b, n.LowVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(n.Name)))
	b = append(b, n.Name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(n.Extra)))
	return append(b, n.Extra...)
}

// errAlive2Invalid marks an ALIVE2 request that is well framed but must be
// answered with an error result rather than a silent close.
var errAlive2Invalid = errors.New("epmd: invalid registration")

// parseAlive2Req decodes an ALIVE2_REQ body. It returns ErrMalformed for
// requests the server closes silently, and errAlive2Invalid (with the node
// decoded as far as possible) for those it answers with an error.
func parseAlive2Req(body []byte) (Node, error) {
	var n Node
	if len(body) < minAlive2Len || body[0] != tagAlive2Req {
		return n, fmt.Errorf("%w: short ALIVE2 request", ErrMalformed)
	}
	n.Port = binary.BigEndian.Uint16(body[1:])
	n.NodeType = body[3]
	n.Protocol = body[4]
	n.HighVersion = binary.BigEndian.Uint16(body[5:])
	n.LowVersion = binary.BigEndian.Uint16(body[7:])
	nlen := int(binary.BigEndian.Uint16(body[9:]))
	rest := body[11:]
	if nlen+2 > len(rest) {
		return n, fmt.Errorf("%w: name overruns ALIVE2 request", ErrMalformed)
	}
	name := rest[:nlen]
	rest = rest[nlen:]
	elen := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if elen > len(rest) {
		return n, fmt.Errorf("%w: extra overruns ALIVE2 request", ErrMalformed)
	}
	for _, c := range name {
		if c == 0 {
			return n, fmt.Errorf("%w: NUL in name", ErrMalformed)
		}
	}
	n.Name = string(name)
	n.Extra = append([]byte(nil), rest[:elen]...)
	if nlen == 0 || nlen > maxNameLen || !utf8.Valid(name) || elen > maxExtraLen {
		return n, errAlive2Invalid
	}
	return n, nil
}

// appendAlive2Resp encodes the answer in the form the requester understands.
func appendAlive2Resp(b []byte, highVersion uint16, result uint8, creation uint32) []byte {
	if highVersion >= 6 {
		b = append(b, tagAlive2XResp, result)
		return binary.BigEndian.AppendUint32(b, creation)
	}
	b = append(b, tagAlive2Resp, result)
	return binary.BigEndian.AppendUint16(b, uint16(creation))
}

// parseAlive2Resp decodes either ALIVE2 response form from its first bytes;
// need reports how many bytes the full response has.
func alive2RespLen(tag byte) (int, error) {
	switch tag {
	case tagAlive2XResp:
		return 6, nil
	case tagAlive2Resp:
		return 4, nil
	}
	return 0, fmt.Errorf("%w: ALIVE2 response tag %d", ErrMalformed, tag)
}

func parseAlive2Resp(b []byte) (result uint8, creation uint32) {
	if b[0] == tagAlive2XResp {
		return b[1], binary.BigEndian.Uint32(b[2:])
	}
	return b[1], uint32(binary.BigEndian.Uint16(b[2:]))
}

// appendPort2Resp encodes a successful PORT_PLEASE2 answer.
func appendPort2Resp(b []byte, n *Node) []byte {
	return appendNode(append(b, tagPort2Resp, 0), n)
}

// parsePort2Resp decodes a PORT2_RESP, success or not.
func parsePort2Resp(b []byte) (Node, error) {
	var n Node
	if len(b) < 2 || b[0] != tagPort2Resp {
		return n, fmt.Errorf("%w: PORT2 response", ErrMalformed)
	}
	if b[1] != 0 {
		return n, ErrNotFound
	}
	if len(b) < 12 {
		return n, fmt.Errorf("%w: short PORT2 response", ErrMalformed)
	}
	n.Port = binary.BigEndian.Uint16(b[2:])
	n.NodeType = b[4]
	n.Protocol = b[5]
	n.HighVersion = binary.BigEndian.Uint16(b[6:])
	n.LowVersion = binary.BigEndian.Uint16(b[8:])
	nlen := int(binary.BigEndian.Uint16(b[10:]))
	rest := b[12:]
	if nlen+2 > len(rest) {
		return n, fmt.Errorf("%w: PORT2 response name", ErrMalformed)
	}
	n.Name = string(rest[:nlen])
	rest = rest[nlen:]
	elen := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if elen > len(rest) {
		return n, fmt.Errorf("%w: PORT2 response extra", ErrMalformed)
	}
	n.Extra = append([]byte(nil), rest[:elen]...)
	return n, nil
}

// parsePortPlease2 extracts the looked-up name; one trailing NUL is tolerated.
func parsePortPlease2(body []byte) (string, error) {
	name := body[1:]
	if len(name) > 0 && name[len(name)-1] == 0 {
		name = name[:len(name)-1]
	}
	if !validName(string(name)) {
		return "", fmt.Errorf("%w: PORT_PLEASE2 name", ErrMalformed)
	}
	return string(name), nil
}

// NameEntry is one line of a NAMES answer.
type NameEntry struct {
	Name string
	Port int
}

func appendNamesLine(b []byte, name string, port uint16) []byte {
	b = append(b, "name "...)
	b = append(b, name...)
	b = append(b, " at port "...)
	b = strconv.AppendUint(b, uint64(port), 10)
	return append(b, '\n')
}

// appendDumpActive and appendDumpOld write DUMP lines exactly as Erlang's
// epmd does, NUL included.
func appendDumpActive(b []byte, name string, port uint16, fd int) []byte {
	b = append(b, "active name     <"...)
	b = append(b, name...)
	b = append(b, "> at port "...)
	b = strconv.AppendUint(b, uint64(port), 10)
	b = append(b, ", fd = "...)
	b = strconv.AppendInt(b, int64(fd), 10)
	return append(b, '\n', 0)
}

func appendDumpOld(b []byte, name string, port uint16, fd int) []byte {
	b = append(b, "old/unused name <"...)
	b = append(b, name...)
	b = append(b, ">, port = "...)
	b = strconv.AppendUint(b, uint64(port), 10)
	b = append(b, ", fd = "...)
	b = strconv.AppendInt(b, int64(fd), 10)
	return append(b, ' ', '\n', 0)
}
