package web

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
)

// The buffers a WebSocket keeps for as long as its player stays: a held
// player sends a line at a time and is sent a few hundred bytes at a time,
// where net/http's would be 4 KiB each way for every idle player. Larger
// messages pass the buffers by.
const (
	wsReadBuffer  = 1 << 10
	wsWriteBuffer = 2 << 10
)

// smallBuffers hands the WebSocket library the hijacked connection with
// buffers of the sizes above.
type smallBuffers struct{ http.ResponseWriter }

func (w smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		c.Close()
		return nil, nil, err
	}
	// What the client sent after its request, read ahead by net/http,
	// must be in the new reader's buffer: the library takes what is
	// buffered there and reads the connection itself after it.
	n := brw.Reader.Buffered()
	ahead, _ := brw.Reader.Peek(n)
	r := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(ahead)), c), max(wsReadBuffer, n))
	if _, err := r.Peek(n); err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, bufio.NewReadWriter(r, bufio.NewWriterSize(c, wsWriteBuffer)), nil
}
