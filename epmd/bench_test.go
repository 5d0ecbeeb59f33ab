package epmd

import (
	"context"
	"testing"
)

// BenchmarkLookup measures a PORT_PLEASE2 round trip against an in-process
// server; test/ compares the daemon with Erlang's.
func BenchmarkLookup(b *testing.B) {
	_, addr := startServer(b, nil)
	c := &Client{Addr: addr}
	r, err := c.Register(context.Background(), Node{Name: "game", Port: 1}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Lookup(context.Background(), "game"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
