package telnet

import (
	"bytes"
	"compress/zlib"
	"hash/adler32"
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

// TestAdler: the running checksum matches hash/adler32 over inputs cut
// anywhere, with runs of 0xff long past the bound on the sums between
// reductions.
func TestAdler(t *testing.T) {
	long := bytes.Repeat([]byte{0xff}, 3*5552+17)
	for _, tc := range []struct {
		name string
		data []byte
		cuts []int
	}{
		{"empty", nil, nil},
		{"one byte", []byte{'x'}, nil},
		{"text in pieces", []byte("the quick brown fox jumps over the lazy dog"), []int{1, 9, 30}},
		{"0xff past the bound", long, nil},
		{"0xff past the bound, in pieces", long, []int{5551, 5553, 11104, 11105}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sum, from := uint32(1), 0
			for _, at := range append(tc.cuts, len(tc.data)) {
				sum = adler(sum, tc.data[from:at])
				from = at
			}
			if want := adler32.Checksum(tc.data); sum != want {
				t.Fatalf("adler %08x, hash/adler32 %08x", sum, want)
			}
		})
	}
}

// FuzzAdler checks the running checksum against hash/adler32 over any
// input cut at any point.
func FuzzAdler(f *testing.F) {
	f.Add([]byte("seed"), uint16(2))
	f.Add(bytes.Repeat([]byte{0xff}, 6000), uint16(5552))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		at := int(cut) % (len(data) + 1)
		if got, want := adler(adler(1, data[:at]), data[at:]), adler32.Checksum(data); got != want {
			t.Fatalf("adler %08x, hash/adler32 %08x", got, want)
		}
	})
}
