package link

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	frames := []struct {
		typ FrameType
		p   []byte
	}{
		{FrameInput, []byte("look\n")},
		{FrameAck, AppendAck(nil, 42)},
		{FrameEnd, nil},
		{FrameOutput, bytes.Repeat([]byte("x"), MaxChunk)},
	}
	for _, f := range frames {
		if err := WriteFrame(&buf, f.typ, f.p); err != nil {
			t.Fatal(err)
		}
	}
	// One byte per Read, so that every header and payload is split.
	fr := Reader{R: iotest.OneByteReader(&buf)}
	for _, f := range frames {
		typ, n, err := fr.Next()
		if err != nil || typ != f.typ || n != len(f.p) {
			t.Fatalf("Next = %v %d %v, want %v %d", typ, n, err, f.typ, len(f.p))
		}
		p, err := fr.Payload()
		if err != nil || !bytes.Equal(p, f.p) {
			t.Fatalf("payload %q %v, want %q", p, err, f.p)
		}
	}
	if _, _, err := fr.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

// flaky fails every other Read with a timeout, as a deadline would.
type flaky struct {
	r    io.Reader
	fail bool
}

var errTimeout = errors.New("timeout")

func (f *flaky) Read(p []byte) (int, error) {
	if f.fail = !f.fail; f.fail {
		return 0, errTimeout
	}
	return f.r.Read(p[:1])
}

// TestReaderResumes checks that an error in the middle of a frame loses
// nothing: the next call carries on where the failed one stopped.
func TestReaderResumes(t *testing.T) {
	var buf bytes.Buffer
	WriteFrame(&buf, FrameState, []byte("state"))
	WriteFrame(&buf, FrameInput, []byte("abc"))
	fr := Reader{R: &flaky{r: &buf}}
	var typ FrameType
	var err error
	for typ, _, err = fr.Next(); err == errTimeout; typ, _, err = fr.Next() {
	}
	if typ != FrameState {
		t.Fatalf("first frame %v %v", typ, err)
	}
	var p []byte
	for p, err = fr.Payload(); err == errTimeout; p, err = fr.Payload() {
	}
	if string(p) != "state" {
		t.Fatalf("payload %q %v", p, err)
	}
	for typ, _, err = fr.Next(); err == errTimeout; typ, _, err = fr.Next() {
	}
	var got []byte
	for {
		b := make([]byte, 8)
		n, err := fr.Read(b)
		got = append(got, b[:n]...)
		if err == io.EOF {
			break
		}
	}
	if typ != FrameInput || string(got) != "abc" {
		t.Fatalf("second frame %v %q", typ, got)
	}
}

func TestReaderLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"oversize length", []byte{byte(FrameInput), 0x7f, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
		{"just over the bound", AppendFrame(nil, FrameInput, make([]byte, MaxFrame+1))[:5], ErrFrameTooLarge},
		{"truncated header", []byte{byte(FrameInput), 0}, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr := Reader{R: bytes.NewReader(tc.in)}
			if _, _, err := fr.Next(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	fr := Reader{R: bytes.NewReader([]byte{byte(FrameInput), 0, 0, 0, 9, 'a'})}
	fr.Next()
	if _, err := fr.Payload(); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated payload: %v", err)
	}
}

func TestOpenRoundTrip(t *testing.T) {
	o := Open{ID: "17", Resumed: 3, Offset: 1 << 40, State: []byte(`{"name":"Ada"}`),
		Facts: Facts{ClientAddr: "127.0.0.1:5555", Terminal: "XTERM", MTTS: 271, Width: 80, Height: 24, Charset: "UTF-8"}}
	got, err := ParseOpen(o.Append(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != o.ID || got.Resumed != o.Resumed || got.Offset != o.Offset || got.Facts != o.Facts || !bytes.Equal(got.State, o.State) {
		t.Fatalf("round trip: %+v, want %+v", got, o)
	}
	b := o.Append(nil)
	// An earlier version's Open ends before the flags, and the one before
	// this after them; cut anywhere else, it is short.
	flags := len(b) - 1 - 8
	for i := range len(b) {
		_, err := ParseOpen(b[:i])
		if ok := i == flags || i == flags+1; ok != (err == nil) || !ok && !errors.Is(err, ErrProtocol) {
			t.Fatalf("truncated to %d bytes: %v", i, err)
		}
	}
	if got, err := ParseOpen(b[:flags]); err != nil || got.HandedOver {
		t.Fatalf("an Open without flags: %+v, %v", got, err)
	}
	o.HandedOver = true
	if got, err := ParseOpen(o.Append(nil)); err != nil || !got.HandedOver || got.Keep || got.Claim != "" {
		t.Fatalf("a handed-over Open: %+v, %v", got, err)
	}
	o.HandedOver, o.Keep, o.Output, o.Claim = false, true, 1<<33, "17.c2VjcmV0"
	got, err = ParseOpen(o.Append(nil))
	if err != nil || got.HandedOver || !got.Keep || got.Output != o.Output || got.Claim != o.Claim {
		t.Fatalf("a claim: %+v, %v", got, err)
	}
	// Fields added at the end by a later version are ignored.
	if _, err := ParseOpen(append(o.Append(nil), 1, 2, 3)); err != nil {
		t.Fatalf("trailing bytes: %v", err)
	}
	o.Claim = strings.Repeat("x", MaxClaim+1)
	if _, err := ParseOpen(o.Append(nil)); !errors.Is(err, ErrProtocol) {
		t.Fatalf("oversize claim: %v", err)
	}
	big := Open{State: make([]byte, MaxState+1)}
	if _, err := ParseOpen(big.Append(nil)); !errors.Is(err, ErrProtocol) {
		t.Fatalf("oversize state: %v", err)
	}
}

func TestTokens(t *testing.T) {
	hs := [][32]byte{{1}, {2}}
	got, err := ParseTokens(AppendTokens(nil, hs))
	if err != nil || len(got) != 2 || got[0] != hs[0] || got[1] != hs[1] {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	if got, err := ParseTokens(nil); err != nil || len(got) != 0 {
		t.Fatalf("none: %v, %v", got, err)
	}
	for _, n := range []int{1, 31, 33, 96} {
		if _, err := ParseTokens(make([]byte, n)); !errors.Is(err, ErrProtocol) {
			t.Errorf("%d bytes: %v, want ErrProtocol", n, err)
		}
	}
}

func TestAck(t *testing.T) {
	if off, err := ParseAck(AppendAck(nil, 99)); off != 99 || err != nil {
		t.Fatalf("ack round trip: %d %v", off, err)
	}
	if _, err := ParseAck([]byte{1, 2}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("short ack: %v", err)
	}
}

func TestCookie(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cookie")
	c1, err := LoadCookie(path, true)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o400 {
		t.Fatalf("created with mode %v, want 0400", fi.Mode().Perm())
	}
	c2, err := LoadCookie(path, false)
	if err != nil || !bytes.Equal(c1, c2) {
		t.Fatalf("reloaded %q %v, want %q", c2, err, c1)
	}
	if _, err := LoadCookie(filepath.Join(dir, "missing"), false); err == nil {
		t.Fatal("a missing cookie file without create was accepted")
	}
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte("x"), 0o644)
	if _, err := LoadCookie(open, false); err == nil {
		t.Fatal("a world-readable cookie file was accepted")
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte(" \n"), 0o400)
	if _, err := LoadCookie(empty, false); err == nil {
		t.Fatal("an empty cookie file was accepted")
	}
}

// TestCookieCreateRace starts many creators at once: all must end up with
// the same cookie.
func TestCookieCreateRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cookie")
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	errs := make([]error, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = LoadCookie(path, true)
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || !bytes.Equal(got[i], got[0]) {
			t.Fatalf("creator %d: %q %v, creator 0: %q", i, got[i], errs[i], got[0])
		}
	}
}

func FuzzReader(f *testing.F) {
	f.Add(AppendFrame(AppendFrame(nil, FrameInput, []byte("hi\n")), FrameAck, AppendAck(nil, 3)))
	f.Add([]byte{byte(FrameInput), 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := Reader{R: bytes.NewReader(in)}
		total := 0
		for {
			_, n, err := fr.Next()
			if err != nil {
				return
			}
			if n > MaxFrame {
				t.Fatalf("frame of %d bytes accepted", n)
			}
			p, err := fr.Payload()
			total += len(p)
			if total > len(in) || err != nil {
				return
			}
		}
	})
}

func FuzzParseOpen(f *testing.F) {
	o := Open{ID: "1", Resumed: 1, State: []byte("s"), Facts: Facts{Terminal: "ANSI"}}
	f.Add(o.Append(nil))
	o.HandedOver = true
	f.Add(o.Append(nil))
	o.Keep, o.Claim = true, "1.abc"
	f.Add(o.Append(nil))
	o.Keep, o.Claim, o.HelloAgain = false, "", 2
	f.Add(o.Append(nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := ParseOpen(in)
		if err != nil {
			return
		}
		if len(got.State) > MaxState || len(got.Claim) > MaxClaim {
			t.Fatalf("state of %d bytes, claim of %d accepted", len(got.State), len(got.Claim))
		}
		again, err := ParseOpen(got.Append(nil))
		if err != nil || again.ID != got.ID || again.Facts != got.Facts || !bytes.Equal(again.State, got.State) ||
			again.HandedOver != got.HandedOver || again.Keep != got.Keep || again.Output != got.Output || again.Claim != got.Claim ||
			again.HelloAgain != got.HelloAgain {
			t.Fatalf("re-encoding changes the message: %+v vs %+v (%v)", again, got, err)
		}
	})
}

func TestMove(t *testing.T) {
	for _, tc := range []struct {
		name string
		ids  []string
	}{
		{"none", nil},
		{"one", []string{"k3f9q2xa-1"}},
		{"several", []string{"a-1", "", "b-22"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMove(AppendMove(nil, tc.ids))
			if err != nil || len(got) != len(tc.ids) {
				t.Fatalf("ParseMove = %q, %v; want %q", got, err, tc.ids)
			}
			for i := range got {
				if got[i] != tc.ids[i] {
					t.Fatalf("ParseMove = %q, want %q", got, tc.ids)
				}
			}
		})
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"short", []byte{0, 0}},
		{"count past the bound", binary.BigEndian.AppendUint32(nil, MaxMove+1)},
		{"count past the ids", binary.BigEndian.AppendUint32(nil, 2)},
		{"bytes after", append(AppendMove(nil, []string{"x"}), 9)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseMove(tc.in); !errors.Is(err, ErrProtocol) {
				t.Fatalf("ParseMove(%q): %v, want ErrProtocol", tc.in, err)
			}
		})
	}
}

func FuzzParseMove(f *testing.F) {
	f.Add(AppendMove(nil, []string{"a-1", "b-2"}))
	f.Add(binary.BigEndian.AppendUint32(nil, MaxMove+1))
	f.Add([]byte{0, 0, 0, 1, 0, 3, 'a'})
	f.Fuzz(func(t *testing.T, in []byte) {
		ids, err := ParseMove(in)
		if err != nil {
			return
		}
		if len(ids) > MaxMove {
			t.Fatalf("%d ids accepted", len(ids))
		}
		if again := AppendMove(nil, ids); !bytes.Equal(again, in) {
			t.Fatalf("re-encoding changes the message: %q vs %q", again, in)
		}
	})
}

func FuzzParseBroadcast(f *testing.F) {
	b := Broadcast{Text: []byte("Ann says: hi\n"), To: []Parked{{ID: "a-1", Park: 1}, {ID: "b-2", Park: 7}}}
	f.Add(b.Append(nil))
	f.Add(binary.BigEndian.AppendUint32(nil, MaxMove+1))
	f.Add((&Broadcast{Text: bytes.Repeat([]byte("x"), MaxChunk+1)}).Append(nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := ParseBroadcast(in)
		if err != nil {
			return
		}
		if len(got.To) > MaxMove || len(got.Text) > MaxChunk {
			t.Fatalf("broadcast of %d bytes to %d sessions accepted", len(got.Text), len(got.To))
		}
		again, err := ParseBroadcast(got.Append(nil))
		if err != nil || !bytes.Equal(again.Text, got.Text) || !slices.Equal(again.To, got.To) {
			t.Fatalf("re-encoding changes the message: %+v vs %+v (%v)", again, got, err)
		}
	})
}

func TestOpenHeld(t *testing.T) {
	a := Open{ID: "a-1", Resumed: 2, Offset: 9, State: []byte(`{"name":"Ann"}`), Facts: Facts{Terminal: "MUDLET", Width: 120}}
	b := Open{ID: "b-2", HandedOver: true}
	hello := AppendFrame(nil, FrameGMCPIn, []byte(`Core.Hello {"client":"Mudlet"}`))
	p := AppendHeldOpen(AppendHeldOpen(nil, &a, hello), &b, nil)
	got, err := ParseOpenHeld(p)
	if err != nil || len(got) != 2 {
		t.Fatalf("ParseOpenHeld = %d sessions, %v", len(got), err)
	}
	if got[0].Open.ID != "a-1" || got[0].Open.Offset != 9 || got[0].Open.Facts != a.Facts || !bytes.Equal(got[0].After, hello) {
		t.Errorf("first session: %+v", got[0])
	}
	if got[1].Open.ID != "b-2" || !got[1].Open.HandedOver || len(got[1].After) != 0 {
		t.Errorf("second session: %+v", got[1])
	}
	p[len(p)-1] ^= 0xff // b's after length no longer matches
	for _, bad := range [][]byte{
		p[:3],                             // a length cut short
		{0, 0, 0, 9, 0, 1},                // an Open longer than the payload
		{0xff, 0xff, 0xff, 0xff},          // a length past any payload
		p[:len(p)-1],                      // the last length cut short
		AppendHeldOpen(nil, &a, nil)[:12], // an Open cut inside its id
	} {
		if _, err := ParseOpenHeld(bad); err == nil {
			t.Errorf("ParseOpenHeld(%x) accepted", bad)
		}
	}
}

func FuzzParseOpenHeld(f *testing.F) {
	o := Open{ID: "1", Resumed: 1, State: []byte("s")}
	f.Add(AppendHeldOpen(nil, &o, nil))
	f.Add(AppendHeldOpen(AppendHeldOpen(nil, &o, []byte{1, 2}), &Open{ID: "2", HandedOver: true}, nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := ParseOpenHeld(in)
		if err != nil {
			return
		}
		var again []byte
		for _, h := range got {
			if len(h.Open.State) > MaxState || len(h.After) > len(in) {
				t.Fatalf("state of %d bytes, after of %d accepted", len(h.Open.State), len(h.After))
			}
			again = AppendHeldOpen(again, &h.Open, h.After)
		}
		back, err := ParseOpenHeld(again)
		if err != nil || len(back) != len(got) {
			t.Fatalf("re-encoding changes the message: %d sessions, %v", len(back), err)
		}
		for i := range got {
			if back[i].Open.ID != got[i].Open.ID || !bytes.Equal(back[i].After, got[i].After) {
				t.Fatalf("session %d: %+v vs %+v", i, back[i], got[i])
			}
		}
	})
}
