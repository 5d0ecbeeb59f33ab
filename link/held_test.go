package link

import (
	"bytes"
	"testing"
)

func TestHeldFrames(t *testing.T) {
	frames := AppendFrame(nil, FrameOutput, []byte("echo: hi\n"))
	frames = AppendFrame(frames, FrameState, []byte(`{"n":1}`))
	frames = AppendFrame(frames, FrameAck, AppendAck(nil, 8))
	p := AppendHeldFrames(nil, "s-1", frames)
	id, got, err := ParseHeldFrames(p)
	if err != nil || id != "s-1" || !bytes.Equal(got, frames) {
		t.Fatalf("ParseHeldFrames = %q, %x, %v", id, got, err)
	}
	if _, got, err := ParseHeldFrames(AppendHeldFrames(nil, "s-2", nil)); err != nil || len(got) != 0 {
		t.Errorf("no frames: %x, %v", got, err)
	}
	for _, tc := range []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"id cut short", []byte{0, 5, 'a'}},
		{"no id", AppendHeldFrames(nil, "", frames)},
		{"header cut short", AppendHeldFrames(nil, "s", []byte{byte(FrameOutput), 0, 0})},
		{"payload cut short", p[:len(p)-1]},
		{"length past the payload", AppendHeldFrames(nil, "s", []byte{byte(FrameOutput), 0xff, 0xff, 0xff, 0xff})},
		{"End", AppendHeldFrames(nil, "s", AppendFrame(nil, FrameEnd, nil))},
		{"Moved", AppendHeldFrames(nil, "s", AppendFrame(frames, FrameMoved, nil))},
		{"Parked", AppendHeldFrames(nil, "s", AppendFrame(nil, FrameParked, nil))},
		{"Taken", AppendHeldFrames(nil, "s", AppendFrame(nil, FrameTaken, nil))},
		{"a later version's", AppendHeldFrames(nil, "s", AppendFrame(nil, 200, nil))},
	} {
		if _, _, err := ParseHeldFrames(tc.p); err == nil {
			t.Errorf("%s: ParseHeldFrames(%x) accepted", tc.name, tc.p)
		}
	}
	input := AppendFrame(AppendFrame(nil, FrameGMCPIn, []byte("Core.Hello {}")), FrameInput, []byte("look\n"))
	if !HasFrame(input, FrameInput) || HasFrame(input, FrameOutput) || HasFrame(nil, FrameInput) || HasFrame(input[:3], FrameGMCPIn) {
		t.Error("HasFrame: want Input found, Output not, and nothing in no frames or a header cut short")
	}
	for _, typ := range []FrameType{FrameOutput, FramePrompt, FrameState, FrameAck, FrameGMCPOut, FrameEcho} {
		if !HeldFrame(typ) {
			t.Errorf("HeldFrame(%v) = false", typ)
		}
	}
}

func FuzzParseHeldFrames(f *testing.F) {
	f.Add(AppendHeldFrames(nil, "s-1", AppendFrame(nil, FrameOutput, []byte("hi\n"))))
	f.Add(AppendHeldFrames(nil, "s-1", AppendFrame(AppendFrame(nil, FramePrompt, nil), FrameAck, AppendAck(nil, 3))))
	f.Add(AppendHeldFrames(nil, "x", []byte{byte(FrameEnd), 0, 0, 0, 0}))
	f.Add([]byte{0, 1, 'x', byte(FrameOutput), 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		id, frames, err := ParseHeldFrames(in)
		if err != nil {
			return
		}
		if id == "" {
			t.Fatal("a session without an id accepted")
		}
		r := Reader{R: bytes.NewReader(frames)}
		for {
			typ, _, err := r.Next()
			if err != nil {
				break
			}
			if !HeldFrame(typ) {
				t.Fatalf("%v accepted", typ)
			}
			if _, err := r.Payload(); err != nil {
				t.Fatalf("frame %v cut short accepted: %v", typ, err)
			}
		}
		if !bytes.Equal(AppendHeldFrames(nil, id, frames), in) {
			t.Fatal("re-encoding changes the message")
		}
	})
}

func TestHeldOutAck(t *testing.T) {
	p := AppendHeldOutAck(nil, "p-7", 1<<40+3)
	if id, off, err := ParseHeldOutAck(p); err != nil || id != "p-7" || off != 1<<40+3 {
		t.Fatalf("ParseHeldOutAck = %q, %d, %v", id, off, err)
	}
	for _, tc := range []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"id cut short", []byte{0, 5, 'a'}},
		{"no id", AppendHeldOutAck(nil, "", 1)},
		{"offset cut short", p[:len(p)-1]},
		{"bytes after the offset", append(p[:len(p):len(p)], 0)},
	} {
		if _, _, err := ParseHeldOutAck(tc.p); err == nil {
			t.Errorf("%s: ParseHeldOutAck(%x) accepted", tc.name, tc.p)
		}
	}
}

func FuzzParseHeldOutAck(f *testing.F) {
	f.Add(AppendHeldOutAck(nil, "p-1", 42))
	f.Add([]byte{0, 1, 'x', 0, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		id, off, err := ParseHeldOutAck(in)
		if err != nil {
			return
		}
		if id == "" {
			t.Fatal("a session without an id accepted")
		}
		if !bytes.Equal(AppendHeldOutAck(nil, id, off), in) {
			t.Fatal("re-encoding changes the message")
		}
	})
}
