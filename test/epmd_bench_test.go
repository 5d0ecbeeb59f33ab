package test

import (
	"context"
	"fmt"
	"testing"

	"holdfast/epmd"
)

// BenchmarkRegistry measures registrations, lookups and listings per second
// against Erlang's epmd and ours, side by side in one run, over loopback with
// the same client. A registration is a whole ALIVE2 exchange on a new
// connection, then its close; a lookup is a PORT_PLEASE2 exchange.
//
//	go test -run '^$' -bench Registry -benchtime 2s ./test/
func BenchmarkRegistry(b *testing.B) {
	for _, kind := range []daemonKind{erlangEPMD, ourEPMD} {
		b.Run(string(kind), func(b *testing.B) {
			_, port := startEPMD(b, kind)
			c := epmdClient(port)
			ctx := context.Background()
			// Ten nodes registered, as on a busy host.
			for i := 0; i < 10; i++ {
				r, err := c.Register(ctx, epmd.Node{Name: fmt.Sprintf("node%d", i), Port: uint16(5000 + i)}, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { r.Close() })
			}
			b.Run("register", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					for i := 0; pb.Next(); i++ {
						r, err := c.Register(ctx, epmd.Node{Name: fmt.Sprintf("bench%p-%d", pb, i), Port: 6000}, nil)
						if err != nil {
							b.Error(err)
							return
						}
						r.Close()
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registrations/s")
			})
			b.Run("lookup", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := c.Lookup(ctx, "node3"); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
			})
			b.Run("names", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, list, err := c.Names(ctx); err != nil || len(list) < 10 {
							b.Error(err, len(list))
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "listings/s")
			})
		})
	}
}
