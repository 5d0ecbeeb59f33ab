package telnet

import (
	"strings"
	"testing"
)

// TestFactsBoundedAndPrintable: what a client says about itself is kept
// as printable ASCII and cut to its bound, whichever way it came.
func TestFactsBoundedAndPrintable(t *testing.T) {
	long := strings.Repeat("x", 8000)
	ttype := func(names ...string) string {
		s := "\xff\xfb\x18" // WILL TTYPE
		for _, n := range names {
			s += sb(OptTTYPE, "\x00"+n)
		}
		return s
	}
	env := func(name, value string) string {
		return "\xff\xfb\x27" + sb(OptNewEnviron, "\x00\x00"+name+"\x01"+value)
	}
	for _, tc := range []struct {
		name string
		in   string
		want Facts
	}{
		{"plain terminal", ttype("xterm-256color", "xterm-256color"), Facts{Terminal: "xterm-256color"}},
		{"forged terminal", ttype("xterm\x1b]0;owned\x07\r\nk3f9q2xa-1  evil", "xterm\x1b]0;owned\x07\r\nk3f9q2xa-1  evil"),
			Facts{Terminal: "xterm?]0;owned???k3f9q2xa-1  evil"}},
		{"long terminal", ttype(long, long), Facts{Terminal: long[:MaxTerminal]}},
		{"MTTS cycle", ttype("Mudlet\x9b", "ANSI-256COLOR", "MTTS 2825"), Facts{ClientName: "Mudlet?", Terminal: "ANSI-256COLOR", MTTS: 2825}},
		{"long client name in the cycle", ttype(long, "ANSI", "MTTS 1"), Facts{ClientName: long[:MaxTerminal], Terminal: "ANSI", MTTS: 1}},
		{"UTF-8 terminal", ttype("térm", "térm"), Facts{Terminal: "t??rm"}},
		{"client name", env("CLIENT_NAME", "Mudlet\x1b[2J"), Facts{ClientName: "Mudlet?[2J"}},
		{"long client name", env("CLIENT_NAME", long), Facts{ClientName: long[:MaxEnvValue]}},
		{"long client version", env("CLIENT_VERSION", long), Facts{ClientVersion: long[:MaxEnvValue]}},
		{"client version", env("CLIENT_VERSION", " 4.17\x07 "), Facts{ClientVersion: "4.17?"}},
		{"address", env("IPADDRESS", "10.0.0.1\r\nforged"), Facts{IPAddress: "10.0.0.1??forged"}},
		{"long address", env("IPADDRESS", long), Facts{IPAddress: long[:MaxEnvValue]}},
		{"charset", env("CHARSET", "UTF-8\x1b"), Facts{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEngine(&host{}, false)
			e.Start()
			e.Feed(nil, []byte(tc.in))
			if f := e.Facts(); f != tc.want {
				t.Errorf("facts %+v\nwant  %+v", f, tc.want)
			}
			for _, n := range e.ttypes {
				if len(n) > MaxTerminal {
					t.Errorf("the engine keeps a terminal type answer of %d bytes", len(n))
				}
			}
		})
	}
}

// TestRestoreBoundsFacts: facts carried from a process of an earlier
// version, which did not bound them, are bounded on the way in.
func TestRestoreBoundsFacts(t *testing.T) {
	e := NewEngine(&host{}, false)
	st := EngineState{
		Facts:  Facts{Terminal: "xterm\x1b]0;x\x07" + strings.Repeat("y", 500), ClientName: strings.Repeat("n", 5000)},
		TTypes: []string{"a\x1b", "b", "c", "d", "e", "f"},
	}
	if err := e.Restore(st); err != nil {
		t.Fatal(err)
	}
	f := e.Facts()
	if len(f.Terminal) != MaxTerminal || strings.ContainsAny(f.Terminal, "\x1b\x07") || len(f.ClientName) != MaxEnvValue {
		t.Errorf("restored facts not bounded: %q, %d bytes of client name", f.Terminal, len(f.ClientName))
	}
	if len(e.ttypes) != maxTTypeCycle || e.ttypes[0] != "a?" {
		t.Errorf("restored terminal types %q", e.ttypes)
	}
}

func TestPrintable(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"", 10, ""},
		{"abc", -1, "abc"},
		{"abcdef", 3, "abc"},
		{"a\x00b\x7fc\xffd", -1, "a?b?c?d"},
		{" ~", 5, " ~"},
		{"\x1b[31m", 2, "?["},
	} {
		if got := Printable([]byte(tc.in), tc.max); got != tc.want {
			t.Errorf("Printable(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}
