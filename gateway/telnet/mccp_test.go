package telnet

import (
	"bytes"
	"compress/zlib"
	"io"
	"testing"
)

func TestCompressorStream(t *testing.T) {
	var c Compressor
	var wire []byte
	var want []byte
	for _, batch := range []string{"Welcome.\r\n", "", "The room is dark.\r\n", string(bytes.Repeat([]byte("lots of text "), 5000))} {
		wire = c.Append(wire, []byte(batch))
		want = append(want, batch...)
		// Everything so far decompresses now: each batch is flushed.
		r, err := zlib.NewReader(bytes.NewReader(wire))
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("after %d bytes: %v", len(want), err)
		}
	}
	wire = c.End(wire)
	r, _ := zlib.NewReader(bytes.NewReader(wire))
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("whole stream: %v (%d bytes, want %d)", err, len(got), len(want))
	}
}
