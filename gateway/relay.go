package gateway

import (
	"errors"
	"io"
	"net"
	"os"
	"time"

	"go.uber.org/zap"

	"holdfast/internal/netx"
)

// relay keeps a player's connection in this process after its session has
// moved to another: crypto/tls cannot hand its keys and sequence numbers to
// another process, nor a WebSocket its framing and resume state, so this
// one goes on doing TLS or WebSocket, and the other reads and writes the
// plain telnet bytes through a local socket pair.
type relay struct {
	id    string
	tc    net.Conn
	local net.Conn // this process's end of the pair
}

// relayWriteTimeout bounds a write to the player through a relay, as
// WriteTimeout does a write to a player's socket.
const relayWriteTimeout = 30 * time.Second

// newRelay makes the socket pair for a relayed session and returns the other
// process's end of it.
func newRelay(ss *session, tc net.Conn) (*os.File, *relay, error) {
	localF, remote, err := netx.Socketpair("relay")
	if err != nil {
		return nil, nil, err
	}
	local, err := net.FileConn(localF)
	localF.Close()
	if err != nil {
		remote.Close()
		return nil, nil, err
	}
	return remote, &relay{id: ss.ID, tc: tc, local: local}, nil
}

// cancel drops a relay that was not needed: the TLS connection stays.
func (r *relay) cancel() { r.local.Close() }

// startRelay joins the TLS connection and the local socket until either
// side ends.
func (s *Server) startRelay(r *relay) {
	r.tc.SetDeadline(time.Time{})
	s.mu.Lock()
	if s.relaySet == nil {
		s.relaySet = make(map[*relay]struct{})
	}
	s.relaySet[r] = struct{}{}
	s.mu.Unlock()
	s.relays.Add(2)
	up := make(chan struct{})
	go func() {
		defer s.relays.Done()
		defer close(up)
		// The player's input, to the other process; the player leaving
		// reaches it as the end of its input.
		io.Copy(r.local, r.tc)
		if uc, ok := r.local.(*net.UnixConn); ok {
			uc.CloseWrite()
		}
	}()
	go func() {
		defer s.relays.Done()
		buf := make([]byte, 16<<10)
		for {
			n, err := r.local.Read(buf)
			if n > 0 {
				r.tc.SetWriteDeadline(time.Now().Add(relayWriteTimeout))
				if _, werr := r.tc.Write(buf[:n]); werr != nil {
					err = werr
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					s.log().Info("gateway: relay ended", zap.String("session", r.id), zap.Error(err))
				}
				break
			}
		}
		// The other process closed the session, or the player went.
		r.tc.Close()
		<-up
		r.local.Close()
		s.mu.Lock()
		delete(s.relaySet, r)
		s.mu.Unlock()
	}()
}

// Relays returns how many players (TLS, WebSocket) this process relays for another.
func (s *Server) Relays() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.relaySet)
}

// WaitRelays waits until the last relayed TLS player has gone.
func (s *Server) WaitRelays() { s.relays.Wait() }
