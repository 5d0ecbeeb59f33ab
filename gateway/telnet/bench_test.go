package telnet

import (
	"bytes"
	"compress/flate"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// clientInput is what players type: short lines, a window resize and a
// GMCP message now and then.
var clientInput = func() []byte {
	var b []byte
	for i := 0; i < 500; i++ {
		b = append(b, "say hello there, how is everyone doing today?\r\n"...)
		if i%50 == 0 {
			b = append(b, "\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0"...)
			b = append(b, "\xff\xfa\xc9Core.Ping {}\xff\xf0"...)
		}
	}
	return b
}()

// gameOutput is what a game sends: lines of text with the odd 0xFF.
var gameOutput = []byte(strings.Repeat("The tavern is warm and loud; a bard plays by the fire. \xff\n", 300))

type nopEvents struct{}

func (nopEvents) Negotiate(byte, byte)              {}
func (nopEvents) Subnegotiation(byte, []byte, bool) {}
func (nopEvents) Command(byte)                      {}

// BenchmarkDecode measures parsing client input into application data.
func BenchmarkDecode(b *testing.B) {
	var d Decoder
	dst := make([]byte, 0, len(clientInput))
	b.SetBytes(int64(len(clientInput)))
	b.ReportAllocs()
	for b.Loop() {
		dst = d.Decode(dst[:0], clientInput, nopEvents{})
	}
}

// BenchmarkEngineFeed is Decode with the engine's handlers.
func BenchmarkEngineFeed(b *testing.B) {
	e := NewEngine(&host{}, false)
	e.Feed(nil, []byte("\xff\xfb\x1f\xff\xfd\xc9"))
	dst := make([]byte, 0, len(clientInput))
	b.SetBytes(int64(len(clientInput)))
	b.ReportAllocs()
	for b.Loop() {
		dst = e.Feed(dst[:0], clientInput)
		e.TakeGMCP()
	}
}

// BenchmarkEncode measures escaping game output for the network.
func BenchmarkEncode(b *testing.B) {
	var e Encoder
	dst := make([]byte, 0, 2*len(gameOutput))
	b.SetBytes(int64(len(gameOutput)))
	b.ReportAllocs()
	for b.Loop() {
		dst = e.Encode(dst[:0], gameOutput)
	}
}

// BenchmarkCompress measures MCCP2 per batch, as the gateway does it (a
// pooled deflater, no history between batches) and with a deflater kept per
// session, for its ratio; "ratio" is compressed bytes over plain bytes.
func BenchmarkCompress(b *testing.B) {
	for _, size := range []int{80, 2048} {
		batch := gameOutput[:size]
		b.Run("pooled/"+strconv.Itoa(size), func(b *testing.B) {
			var c Compressor
			dst := c.Append(nil, nil)
			out := 0
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				dst = c.Append(dst[:0], batch)
				out += len(dst)
			}
			b.ReportMetric(float64(out)/float64(b.N*size), "ratio")
		})
		b.Run("per-session/"+strconv.Itoa(size), func(b *testing.B) {
			var buf bytes.Buffer
			w, _ := flate.NewWriter(&buf, flate.BestSpeed)
			out := 0
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				w.Write(batch)
				w.Flush()
				out += buf.Len()
			}
			b.ReportMetric(float64(out)/float64(b.N*size), "ratio")
		})
	}
}

// BenchmarkCompressorMemory reports the heap an idle compressed session
// holds: the gateway's Compressor after a batch, against a deflater kept per
// session. The pooled deflaters are shared, so the figure is the growth from
// 100 to 1,100 sessions, divided by 1,000.
func BenchmarkCompressorMemory(b *testing.B) {
	heap := func(n int, make func() any) float64 {
		var keep []any
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := 0; i < n; i++ {
			keep = append(keep, make())
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(keep)
		return float64(after.HeapAlloc) - float64(before.HeapAlloc)
	}
	perSession := func(make func() any) float64 {
		return (heap(1100, make) - heap(100, make)) / 1000
	}
	pooled := func() any {
		c := new(Compressor)
		c.Append(nil, gameOutput[:80])
		return c
	}
	kept := func() any {
		w, _ := flate.NewWriter(&bytes.Buffer{}, flate.BestSpeed)
		w.Write(gameOutput[:80])
		w.Flush()
		return w
	}
	var p, k float64
	for b.Loop() {
		p, k = perSession(pooled), perSession(kept)
	}
	b.ReportMetric(p, "B/session-pooled")
	b.ReportMetric(k, "B/session-kept")
}
