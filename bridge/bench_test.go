package bridge

import (
	"bufio"
	"net"
	"os"
	"testing"
	"time"

	"holdfast/backend"
)

// benchPlayer is a player with no bookkeeping: what it types comes from
// in, what the bridge writes to it goes to out.
type benchPlayer struct {
	in   chan []byte
	out  chan []byte
	gone chan struct{}
}

func (p *benchPlayer) ID() string { return "bench" }
func (p *benchPlayer) Read(b []byte) (int, error) {
	select {
	case v := <-p.in:
		return copy(b, v), nil
	case <-p.gone:
		return 0, os.ErrDeadlineExceeded
	}
}
func (p *benchPlayer) Write(b []byte) (int, error) {
	p.out <- append([]byte(nil), b...)
	return len(b), nil
}
func (p *benchPlayer) Close() error                         { return nil }
func (p *benchPlayer) SetReadDeadline(time.Time) error      { close(p.gone); return nil }
func (p *benchPlayer) Prompt(string) error                  { return nil }
func (p *benchPlayer) SetEcho(bool) error                   { return nil }
func (p *benchPlayer) SendGMCP(string, []byte) error        { return nil }
func (p *benchPlayer) Facts() backend.Facts                 { return backend.Facts{} }
func (p *benchPlayer) OnFacts(func(backend.Facts))          {}
func (p *benchPlayer) OnGMCP(func(pkg string, data []byte)) {}

// BenchmarkRoundTrip is the bridge's own part of a keystroke's round trip:
// a line from the player to a game that echoes it, and back, one at a time.
func BenchmarkRoundTrip(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("Welcome!\r\n"))
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadBytes('\n')
					if err != nil {
						return
					}
					c.Write(line)
				}
			}()
		}
	}()
	br := &Bridge{Upstream: ln.Addr().String(), MSSPInterval: -1}
	defer br.Close()
	p := &benchPlayer{in: make(chan []byte), out: make(chan []byte, 16), gone: make(chan struct{})}
	br.Handle(p)
	<-p.out // the welcome
	line := []byte("look at the fountain\n")
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p.in <- line
		<-p.out
	}
}
