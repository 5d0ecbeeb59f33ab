//go:build !linux

package gateway

import (
	"net"
)

// parker is Linux's only; elsewhere every reader blocks in Read.
type parker struct{}

func newParker() *parker                   { return nil }
func parkable(net.Conn) (int, bool)        { return 0, false }
func (p *parker) park(*session, int) error { return nil }
func (p *parker) unpark(*session) bool     { return false }
func (p *parker) run(func(*session))       {}
func (p *parker) stop()                    {}
