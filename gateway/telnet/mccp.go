package telnet

import (
	"compress/flate"
	"encoding/binary"
	"hash"
	"hash/adler32"
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
	sum     hash.Hash32
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
		c.started = true
		c.sum = adler32.New()
		dst = append(dst, 0x78, 0x01) // deflate, 32 KiB window, fastest
	}
	if len(src) == 0 {
		return dst
	}
	c.sum.Write(src)
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
		c.started = true
		c.sum = adler32.New()
		dst = append(dst, 0x78, 0x01)
	}
	dst = append(dst, 0x03, 0x00) // a final fixed-Huffman block holding only end-of-block
	dst = binary.BigEndian.AppendUint32(dst, c.sum.Sum32())
	*c = Compressor{}
	return dst
}
