package link

import (
	"io"
	"net"
	"sync"
	"testing"

	"go.uber.org/zap"
)

// linkPair returns the two ends of a link over loopback TCP, as
// the gateway and the backend make them, encrypted or not, and closes
// them when the benchmark ends.
func linkPair(b *testing.B, encrypted bool) (gw, be *Mux) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var bc net.Conn
	var berr error
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			berr = err
			return
		}
		bc = c
		if encrypted {
			cr, err := NewCredentials([]byte("bench"))
			if err == nil {
				bc, err = BackendHandshake(c, cr)
			}
			berr = err
		}
	})
	gc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	if encrypted {
		if gc, _, err = GatewayHandshake(gc, []byte("bench")); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	if berr != nil {
		b.Fatal(berr)
	}
	gw = Client(gc, nil, zap.NewNop())
	be = Server(bc, nil, zap.NewNop())
	b.Cleanup(func() { gw.Close(); be.Close() })
	return gw, be
}

// BenchmarkLink measures what the link's encryption costs: a keystroke's
// round trip (a short Input frame out, a short Output frame back) and one
// stream's bulk output, over the link with and without TLS.
//
//	go test -run - -bench Link -count 6 ./link/
func BenchmarkLink(b *testing.B) {
	for _, enc := range []struct {
		name      string
		encrypted bool
	}{{"plain", false}, {"tls", true}} {
		b.Run(enc.name+"/roundtrip", func(b *testing.B) {
			gw, be := linkPair(b, enc.encrypted)
			go func() {
				st, err := be.AcceptStream()
				if err != nil {
					return
				}
				r := Reader{R: st}
				for {
					typ, _, err := r.Next()
					if err != nil {
						return
					}
					p, _ := r.Payload()
					if typ == FrameInput {
						WriteFrame(st, FrameOutput, p)
					}
				}
			}()
			st, err := gw.OpenStream()
			if err != nil {
				b.Fatal(err)
			}
			r := Reader{R: st}
			line := []byte("say hello\n")
			b.ReportAllocs()
			for b.Loop() {
				if err := WriteFrame(st, FrameInput, line); err != nil {
					b.Fatal(err)
				}
				if _, _, err := r.Next(); err != nil {
					b.Fatal(err)
				}
				if _, err := r.Payload(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(enc.name+"/bulk", func(b *testing.B) {
			gw, be := linkPair(b, enc.encrypted)
			chunk := make([]byte, 4096)
			for i := range chunk {
				chunk[i] = 'a' + byte(i%26)
			}
			done := make(chan error, 1)
			go func() {
				st, err := be.AcceptStream()
				if err != nil {
					done <- err
					return
				}
				_, err = io.Copy(io.Discard, st)
				done <- err
			}()
			st, err := gw.OpenStream()
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(chunk)))
			for b.Loop() {
				if err := WriteFrame(st, FrameOutput, chunk); err != nil {
					b.Fatal(err)
				}
			}
			st.Close()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
