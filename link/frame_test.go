package link

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestFrameTypeString(t *testing.T) {
	for _, tc := range []struct {
		typ  FrameType
		want string
	}{
		{FrameControl, "Control"},
		{FrameGoodbye, "Goodbye"},
		{FrameMSSP, "MSSP"},
		{4, "FrameType(4)"},
		{FrameMove, "Move"},
		{FrameRelease, "Release"},
		{FrameRetire, "Retire"},
		{FramePark, "Park"},
		{FrameWake, "Wake"},
		{FrameOpen, "Open"},
		{FrameInput, "Input"},
		{FrameHangup, "Hangup"},
		{FrameFacts, "Facts"},
		{FrameGMCPIn, "GMCPIn"},
		{FrameFactsUpdate, "FactsUpdate"},
		{FrameOutAck, "OutAck"},
		{FrameTokens, "Tokens"},
		{FrameOutput, "Output"},
		{FrameAck, "Ack"},
		{FrameState, "State"},
		{FrameEnd, "End"},
		{FrameGMCPOut, "GMCPOut"},
		{FrameEcho, "Echo"},
		{FramePrompt, "Prompt"},
		{FrameMoved, "Moved"},
		{FrameParked, "Parked"},
		{FrameTaken, "Taken"},
		{FrameBroadcast, "Broadcast"},
		{FrameHold, "Hold"},
		{FrameUnheld, "Unheld"},
		{FrameDrop, "Drop"},
		{FrameFeatures, "Features"},
		{FrameMovedParked, "MovedParked"},
		{FrameOpenHeld, "OpenHeld"},
		{FrameHeldFrames, "HeldFrames"},
		{FrameWant, "Want"},
		{FrameStow, "Stow"},
		{FrameStowed, "Stowed"},
		{FrameHeldOutAck, "HeldOutAck"},
		{FrameHeldTaken, "HeldTaken"},
		{0, "FrameType(0)"},
		{18, "FrameType(18)"},
		{43, "FrameType(43)"},
		{255, "FrameType(255)"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.typ.String(); got != tc.want {
				t.Errorf("FrameType(%d).String() = %q, want %q", byte(tc.typ), got, tc.want)
			}
		})
	}
}

// TestFrameTypesNamed reads the constants declared in frame.go, so that a
// frame type added without a name fails here: each prints as its
// identifier without "Frame", and no two share a value. Every other value
// prints as unknown.
func TestFrameTypesNamed(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "frame.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[FrameType]string{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "FrameType" {
				continue
			}
			for i, name := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					t.Fatalf("%s: value is not a literal", name.Name)
				}
				v, err := strconv.ParseUint(lit.Value, 0, 8)
				if err != nil {
					t.Fatalf("%s: %v", name.Name, err)
				}
				typ := FrameType(v)
				if other, dup := declared[typ]; dup {
					t.Errorf("%s and %s are both %d", other, name.Name, v)
				}
				declared[typ] = name.Name
			}
		}
	}
	if len(declared) == 0 {
		t.Fatal("no FrameType constants found in frame.go")
	}
	for v := range 256 {
		typ := FrameType(v)
		want := "FrameType(" + strconv.Itoa(v) + ")"
		if name, ok := declared[typ]; ok {
			want = strings.TrimPrefix(name, "Frame")
		}
		if got := typ.String(); got != want {
			t.Errorf("FrameType(%d).String() = %q, want %q", v, got, want)
		}
	}
}

// TestWritePieces: a write on a stream whose reader is slow, a piece at a
// time, goes through, however long the whole takes; one to a reader that
// stops fails within the bound. The link gives a stream's writer room again
// once the reader has taken half the window (128 KiB): the reader here
// takes that in a fifth of the bound.
func TestWritePieces(t *testing.T) {
	const wait = 2 * time.Second
	for _, tc := range []struct {
		name  string
		reads int // pieces read before the reader stops; -1: all
		fails bool
	}{
		{"slow", -1, false},
		{"stops", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			client := Client(a, nil, zap.NewNop())
			defer client.Close()
			server := Server(b, nil, zap.NewNop())
			defer server.Close()
			near, err := client.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			near.Write([]byte{0}) // the stream's opening, for Accept
			far, err := server.AcceptStream()
			if err != nil {
				t.Fatal(err)
			}
			far.Read(make([]byte, 1))
			const size = 96 * PieceLen // six windows
			got := make(chan int, 1)
			go func() {
				n := 0
				buf := make([]byte, PieceLen)
				for tc.reads < 0 || n < tc.reads*PieceLen {
					// A piece each fortieth of the bound: half a
					// window in a fifth of it, the whole in more than
					// twice it.
					time.Sleep(wait / 40)
					m, err := io.ReadFull(far, buf)
					n += m
					if err != nil || n == size {
						break
					}
				}
				got <- n
			}()
			err = WritePieces(near, make([]byte, size), wait)
			switch {
			case tc.fails && !errors.Is(err, ErrTimeout):
				t.Fatalf("write to a reader that stopped: %v, want a timeout", err)
			case !tc.fails && err != nil:
				t.Fatalf("write to a slow reader: %v", err)
			}
			near.Close()
			far.Close()
			if n := <-got; !tc.fails && n != size {
				t.Errorf("read %d, want %d", n, size)
			}
		})
	}
}
