package gateway

import (
	"errors"
	"net"
	"testing"
)

// TestAdmitPlaces takes places within the limits before any handshake:
// a place held counts as a session does, per address and in total, until
// released; the rate is paid once.
func TestAdmitPlaces(t *testing.T) {
	s := &Server{MaxPerIP: 2, MaxSessions: 3, ConnRate: 0.001, ConnBurst: 5}
	defer s.Close()
	a := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}
	b := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 1}
	p1, err := s.AdmitConnection(a)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := s.AdmitSession(a, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AdmitSession(a, true); !errors.Is(err, ErrRefused) || err.Error() != "Too many connections from your address. Please try again later." {
		t.Fatalf("a third place from one address: %v", err)
	}
	if _, err := s.AdmitSession(b, true); err != nil {
		t.Fatalf("another address: %v", err)
	}
	if _, err := s.AdmitSession(b, true); !errors.Is(err, ErrRefused) {
		t.Fatalf("a fourth place in all: %v", err)
	}
	p1.Release()
	p1.Release() // twice is once
	if _, err := s.AdmitSession(a, true); err != nil {
		t.Fatalf("a place given back is not taken again: %v", err)
	}
	p2.Release()
	// a has paid 2 of its 5 (a paid session pays nothing): three more, then
	// the rate refuses.
	for i := range 3 {
		p, err := s.AdmitConnection(a)
		if err != nil {
			t.Fatalf("connection %d within the burst: %v", i, err)
		}
		p.Release()
	}
	if _, err := s.AdmitConnection(a); !errors.Is(err, ErrRefused) {
		t.Fatalf("past the burst: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.npending != 2 || s.pendingIP[a.AddrPort().Addr().Unmap()] != 1 {
		t.Errorf("%d places held, %d from a; want 2 and 1", s.npending, s.pendingIP[a.AddrPort().Addr().Unmap()])
	}
}
