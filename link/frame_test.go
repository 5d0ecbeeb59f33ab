package link

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
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
