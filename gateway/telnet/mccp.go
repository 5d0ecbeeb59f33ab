package telnet

import (
	"compress/flate"
	"encoding/binary"
	"sync"
)

// Compressor produces one MCCP2 stream: a zlib stream (RFC 1950) whose
// every batch ends with a sync flush, so the client can show it at once.
//
// It keeps no deflate state between batches. Each batch is compressed by a
// deflater borrowed from a pool and returned after the flush; since a sync
// flush ends byte-aligned and the next deflater refers to nothing before
// its own batch, the batches join into one valid stream. An idle session
// thus holds a few bytes of compression state (the running Adler-32)
// instead of a deflater's hundreds of kilobytes, at the price of not
// referring back to earlier batches.
type Compressor struct {
	started bool
	sum     uint32 // Adler-32 of what was compressed, from 1
}

var deflaters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

// appender is an io.Writer that appends to a slice.
type appender struct{ b []byte }

func (a *appender) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

// Append compresses src and appends it to dst, flushed.
func (c *Compressor) Append(dst, src []byte) []byte {
	if !c.started {
		c.started, c.sum = true, 1
		dst = append(dst, 0x78, 0x01) // deflate, 32 KiB window, fastest
	}
	if len(src) == 0 {
		return dst
	}
	c.sum = adler(c.sum, src)
	out := appender{b: dst}
	w := deflaters.Get().(*flate.Writer)
	w.Reset(&out)
	w.Write(src)
	w.Flush()
	w.Reset(nil) // drop the reference to out
	deflaters.Put(w)
	return out.b
}

// End appends the end of the stream (a final empty block and the checksum),
// after which output is plain again.
func (c *Compressor) End(dst []byte) []byte {
	if !c.started {
		c.started, c.sum = true, 1
		dst = append(dst, 0x78, 0x01)
	}
	dst = append(dst, 0x03, 0x00) // a final fixed-Huffman block holding only end-of-block
	dst = binary.BigEndian.AppendUint32(dst, c.sum)
	*c = Compressor{}
	return dst
}

// adler carries the Adler-32 checksum sum (RFC 1950) on over p. Package
// hash/adler32 keeps its sum behind an interface, which would cost every
// player's session record 16 bytes more.
func adler(sum uint32, p []byte) uint32 {
	const (
		mod = 65521
		// nmax is the most bytes the sums take before s2 could pass
		// 2^32: 255n(n+1)/2 + (n+1)(mod-1) < 2^32.
		nmax = 5552
	)
	s1, s2 := sum&0xffff, sum>>16
	for len(p) > 0 {
		n := min(len(p), nmax)
		for _, b := range p[:n] {
			s1 += uint32(b)
			s2 += s1
		}
		s1, s2 = s1%mod, s2%mod
		p = p[n:]
	}
	return s2<<16 | s1
}
