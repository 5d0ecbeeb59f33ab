package gateway

import (
	"cmp"
	"context"
	"crypto/tls"
	"slices"
	"strings"
	"time"

	"holdfast/gateway/telnet"
)

// SessionInfo describes one held session for an operator. What a player
// supplied (Terminal, ClientApp) is printable ASCII: the gateway keeps it
// so where it learns it, and a session that came from a process of an
// earlier version has it made so here.
type SessionInfo struct {
	ID        string    `json:"id"`
	Client    string    `json:"client"` // the player's address, after any PROXY header
	TLS       bool      `json:"tls"`
	Kind      string    `json:"kind"` // telnet, telnet+tls, websocket[+tls] and its protocol
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
			ID:        ss.ID,
			Client:    ss.Facts.ClientAddr,
			TLS:       isTLS || ss.TLS,
			Kind:      ss.Kind,
			Since:     ss.Since,
			Terminal:  telnet.Printable([]byte(ss.Facts.Terminal), -1),
			ClientApp: telnet.Printable([]byte(ss.Facts.ClientName), -1),
			Width:     ss.Facts.Width,
			Height:    ss.Facts.Height,
			Attached:  ss.cond.stream != streamAway,
			Resumed:   ss.Resumed,
			HeldInput: len(ss.In),
			BytesIn:   ss.bytesIn.Load(),
			BytesOut:  ss.bytesOut.Load(),
		})
		ss.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b SessionInfo) int {
		return cmp.Or(a.Since.Compare(b.Since), strings.Compare(a.ID, b.ID))
	})
	return out
}

// SessionCount is how many sessions are held now.
func (s *Server) SessionCount() int {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Linked reports whether a backend link is established.
func (s *Server) Linked() bool {
	s.init()
	return s.current() != nil
}

// WaitLinked waits until a backend link is established, or ctx ends; it
// reports whether one is.
func (s *Server) WaitLinked(ctx context.Context) bool {
	s.init()
	for {
		s.mu.Lock()
		if s.cur != nil {
			s.mu.Unlock()
			return true
		}
		if s.linkedWait == nil {
			s.linkedWait = make(chan struct{})
		}
		wait := s.linkedWait
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return false
		}
	}
}
