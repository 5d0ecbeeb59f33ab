package gateway

import (
	"context"
	"fmt"
	"sync"

	"go.uber.org/zap"
)

// Sessions move one way at a time. A gateway upgrade (every session to a
// new gateway process) and a deploy (every session to the backend's
// successor) each hold the server's move token for their whole run, so
// that neither takes sessions the other has half moved: a deploy that
// finds an upgrade under way waits for it, and leaves the successor to the
// new process if the upgrade succeeds; an upgrade asked for during a
// deploy starts once the players are on the successor.

// BeginMove takes the move token for a move of the kind named ("upgrade",
// "deploy"), waiting while another move runs, until ctx ends. It returns
// the function that gives the token back, and the kind of move it waited
// for ("" if none ran).
func (s *Server) BeginMove(ctx context.Context, what string) (release func(), waited string, err error) {
	s.init()
	select {
	case s.moveTok <- struct{}{}:
	default:
		s.mu.Lock()
		waited = s.moveHolder
		s.mu.Unlock()
		s.log().Info("gateway: a move waits for the one under way", zap.String("move", what), zap.String("waits_for", waited))
		select {
		case s.moveTok <- struct{}{}:
		case <-ctx.Done():
			return nil, waited, fmt.Errorf("gateway: %s: the %s under way did not finish: %w", what, waited, ctx.Err())
		case <-s.ctx.Done():
			return nil, waited, fmt.Errorf("gateway: %s: %w", what, ErrServerClosed)
		}
	}
	s.mu.Lock()
	s.moveHolder = what
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.moveHolder = ""
			s.mu.Unlock()
			<-s.moveTok
		})
	}, waited, nil
}
