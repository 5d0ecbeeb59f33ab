package gateway

import (
	"cmp"
	"crypto/tls"
	"slices"
	"strconv"
	"time"
)

// SessionInfo describes one held session for an operator.
type SessionInfo struct {
	ID        string    `json:"id"`
	Client    string    `json:"client"` // the player's address, after any PROXY header
	TLS       bool      `json:"tls"`
	Since     time.Time `json:"since"`
	Terminal  string    `json:"terminal"`
	ClientApp string    `json:"client_app"` // the client program, when it says
	Width     uint16    `json:"width"`
	Height    uint16    `json:"height"`
	Attached  bool      `json:"attached"` // a backend has the session now
	Resumed   uint32    `json:"resumed"`  // times resumed on a new backend
	HeldInput int       `json:"held_input"`
	BytesIn   uint64    `json:"bytes_in"`
	BytesOut  uint64    `json:"bytes_out"`
}

// Sessions describes the sessions held now, oldest first.
func (s *Server) Sessions() []SessionInfo {
	s.init()
	var out []SessionInfo
	for _, ss := range s.list() {
		_, isTLS := ss.conn.(*tls.Conn)
		ss.mu.Lock()
		out = append(out, SessionInfo{
			ID:        ss.id,
			Client:    ss.facts.ClientAddr,
			TLS:       isTLS,
			Since:     ss.since,
			Terminal:  ss.facts.Terminal,
			ClientApp: ss.facts.ClientName,
			Width:     ss.facts.Width,
			Height:    ss.facts.Height,
			Attached:  ss.st != nil,
			Resumed:   ss.resumed,
			HeldInput: len(ss.in),
			BytesIn:   ss.bytesIn.Load(),
			BytesOut:  ss.bytesOut.Load(),
		})
		ss.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b SessionInfo) int {
		x, _ := strconv.ParseUint(a.ID, 10, 64)
		y, _ := strconv.ParseUint(b.ID, 10, 64)
		return cmp.Compare(x, y)
	})
	return out
}

// Linked reports whether a backend link is established.
func (s *Server) Linked() bool {
	s.init()
	return s.current() != nil
}
