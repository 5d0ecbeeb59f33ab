package link

import (
	"encoding/binary"
	"errors"
	"testing"
)

var factsFull = Facts{
	ClientAddr: "192.0.2.1:5000", Terminal: "xterm-256color", MTTS: 2825, Width: 120, Height: 40,
	Charset: "UTF-8", ClientName: "Mudlet", ClientVersion: "4.17.2", ReportedIP: "10.0.0.1",
}

// TestFactsUpdate: an update carries the fields named and leaves the
// others, and its size is that of what changed.
func TestFactsUpdate(t *testing.T) {
	resized := factsFull
	resized.Width, resized.Height = 200, 50
	renamed := factsFull
	renamed.Terminal, renamed.ClientName = "ANSI", ""
	for _, tc := range []struct {
		name    string
		to      Facts
		fields  FactFields
		payload int // bytes
	}{
		{"nothing", factsFull, 0, 2},
		{"window", resized, FactWindow, 2 + 4},
		{"terminal and name", renamed, FactTerminal | FactClientName, 2 + 2 + 4 + 2},
		{"all", Facts{}, FactsAll, len((&Facts{}).Append(nil)) + 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := factsFull
			which := tc.to.Diff(&from)
			if which != tc.fields {
				t.Fatalf("Diff = %v, want %v", which, tc.fields)
			}
			p := tc.to.AppendUpdate(nil, which)
			if len(p) != tc.payload {
				t.Errorf("payload of %d bytes, want %d", len(p), tc.payload)
			}
			got, err := from.ApplyUpdate(p)
			if err != nil || got != which {
				t.Fatalf("ApplyUpdate = %v, %v", got, err)
			}
			if from != tc.to {
				t.Errorf("after the update %+v\nwant %+v", from, tc.to)
			}
		})
	}
}

// TestFactsUpdateLater: fields of a later version, named by bits this
// one does not know, follow the known ones and are ignored.
func TestFactsUpdateLater(t *testing.T) {
	to := factsFull
	to.Width = 99
	p := to.AppendUpdate(nil, FactWindow)
	binary.BigEndian.PutUint16(p, uint16(FactWindow)|1<<12)
	p = append(p, "a later field"...)
	f := factsFull
	which, err := f.ApplyUpdate(p)
	if err != nil || which != FactWindow || f != to {
		t.Fatalf("ApplyUpdate = %v, %v; facts %+v", which, err, f)
	}
}

// TestFactsUpdateShort: a payload that ends inside a field is an error,
// and changes nothing.
func TestFactsUpdateShort(t *testing.T) {
	v := Facts{Terminal: "vt100"}
	p := v.AppendUpdate(nil, FactTerminal|FactWindow)
	for n := 0; n < len(p); n++ {
		f := factsFull
		if _, err := f.ApplyUpdate(p[:n]); !errors.Is(err, ErrProtocol) {
			t.Errorf("%d of %d bytes: err %v, want ErrProtocol", n, len(p), err)
		}
		if f != factsFull {
			t.Errorf("%d of %d bytes changed the facts: %+v", n, len(p), f)
		}
	}
}

func TestFactFieldsString(t *testing.T) {
	for _, tc := range []struct {
		f    FactFields
		want string
	}{
		{0, "none"},
		{FactWindow, "window"},
		{FactTerminal | FactWindow, "terminal|window"},
		{FactReportedIP | 1<<12, "reportedip|bit12"},
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("%016b: %q, want %q", uint16(tc.f), got, tc.want)
		}
	}
}

func FuzzFactsUpdate(f *testing.F) {
	f.Add(factsFull.AppendUpdate(nil, FactsAll))
	f.Add(factsFull.AppendUpdate(nil, FactWindow))
	f.Add(factsFull.AppendUpdate(nil, FactTerminal|FactReportedIP))
	f.Add([]byte{0xff, 0xff, 0, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		facts := factsFull
		which, err := facts.ApplyUpdate(p)
		if err != nil {
			if facts != factsFull {
				t.Fatalf("a failed update changed the facts: %+v", facts)
			}
			return
		}
		if which&^FactsAll != 0 {
			t.Fatalf("fields %016b beyond the known ones", which)
		}
		// What it carried encodes back to the same known prefix.
		again := facts.AppendUpdate(nil, which)
		if len(again) > len(p) || string(again[2:]) != string(p[2:len(again)]) {
			t.Fatalf("%x re-encodes as %x", p, again)
		}
		if changed := facts.Diff(&factsFull); changed&^which != 0 {
			t.Fatalf("fields %v changed, only %v carried", changed, which)
		}
	})
}
