package telnet

import (
	"bytes"
	"compress/zlib"
	"encoding"
	"hash/adler32"
	"io"
	"testing"
)

// TestEngineSaveRestore cuts a client's byte stream at every point, moves
// the engine's state into a new engine there, and checks that the new one
// carries on exactly as the old one would have: the same data, the same
// answers, the same facts.
func TestEngineSaveRestore(t *testing.T) {
	client := []byte("\xff\xfb\x18\xff\xfd\x19\xff\xfb\x1f" + // WILL TTYPE, DO EOR, WILL NAWS
		"\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0" + // NAWS 80x24
		"\xff\xfa\x18\x00MUDLET\xff\xf0" +
		"look\r\n" +
		"\xff\xfa\x18\x00XTERM-256COLOR\xff\xf0" +
		"\xff\xfa\x18\x00MTTS 137\xff\xf0" +
		"\xff\xfd\xc9\xff\xfa\xc9Core.Hello {}\xff\xf0" + // DO GMCP, a message
		"say \xff\xff hi\r\n")
	ref := &host{}
	whole := NewEngine(ref, false)
	whole.Start()
	ref.take()
	wantData := string(whole.Feed(nil, client))
	wantSent := ref.take()
	wantFacts := whole.Facts()
	for cut := 0; cut <= len(client); cut++ {
		h1 := &host{}
		a := NewEngine(h1, false)
		a.Start()
		h1.take()
		data := string(a.Feed(nil, client[:cut]))
		sent := h1.take()
		h2 := &host{}
		b := NewEngine(h2, false)
		if err := b.Restore(a.Save()); err != nil {
			t.Fatal(err)
		}
		data += string(b.Feed(nil, client[cut:]))
		sent += h2.take()
		if data != wantData || sent != wantSent {
			t.Errorf("cut at %d: data %q sent %q, want %q and %q", cut, data, sent, wantData, wantSent)
		}
		if b.Facts() != wantFacts || b.Settled() != whole.Settled() || b.GMCPEnabled() != whole.GMCPEnabled() {
			t.Errorf("cut at %d: facts %+v settled %v, want %+v %v", cut, b.Facts(), b.Settled(), wantFacts, whole.Settled())
		}
	}
}

func TestRestoreRefusesNonsense(t *testing.T) {
	e := NewEngine(&host{}, false)
	if err := e.Restore(EngineState{Decoder: DecoderState{State: 99}}); err == nil {
		t.Error("a decoder state out of range was taken")
	}
	if err := e.Restore(EngineState{Options: []OptionState{{Opt: OptNAWS, Us: 200}}}); err == nil {
		t.Error("an option state out of range was taken")
	}
	// An option this version does not know is left off.
	if err := e.Restore(EngineState{Options: []OptionState{{Opt: 99, Us: uint8(qYes)}}}); err != nil {
		t.Error(err)
	}
}

// TestCompressorSaveRestore continues an MCCP2 stream in a new compressor:
// the client decompresses one stream, checksum included.
func TestCompressorSaveRestore(t *testing.T) {
	var c Compressor
	wire := c.Append(nil, []byte("first batch, "))
	var c2 Compressor
	if err := c2.Restore(c.Save()); err != nil {
		t.Fatal(err)
	}
	wire = c2.Append(wire, []byte("second batch"))
	wire = c2.End(wire)
	z, err := zlib.NewReader(bytes.NewReader(wire))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(z)
	if err != nil || string(got) != "first batch, second batch" {
		t.Fatalf("decompressed %q, %v", got, err)
	}
	var fresh Compressor
	if err := fresh.Restore(CompressorState{}); err != nil || fresh.started {
		t.Errorf("restoring a compressor that had not started: %v", err)
	}
	if err := fresh.Restore(CompressorState{Started: true, Sum: []byte("junk")}); err == nil {
		t.Error("a bad checksum state was taken")
	}
}

// TestCompressorStateAsAdler32: the saved checksum is what hash/adler32
// marshals for the same bytes, so that a process of an earlier version,
// which kept that, and this one carry each other's streams on.
func TestCompressorStateAsAdler32(t *testing.T) {
	data := []byte("a batch of the game's output")
	var c Compressor
	c.Append(nil, data)
	d := adler32.New()
	d.Write(data)
	want, err := d.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Save(); !got.Started || !bytes.Equal(got.Sum, want) {
		t.Fatalf("saved %x, hash/adler32 marshals %x", got.Sum, want)
	}
	var back Compressor
	if err := back.Restore(CompressorState{Started: true, Sum: want}); err != nil || back.sum != d.Sum32() {
		t.Fatalf("restored from hash/adler32's state: sum %08x, want %08x (%v)", back.sum, d.Sum32(), err)
	}
}
