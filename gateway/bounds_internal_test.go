package gateway

import (
	"strings"
	"testing"

	"holdfast/gateway/telnet"
	"holdfast/link"
)

// TestBoundMoved: a session from a gateway process of an earlier version,
// which kept facts as the client sent them and sixteen GMCP hello messages
// of up to 8 KiB, arrives with them bounded as this version keeps them.
func TestBoundMoved(t *testing.T) {
	long := strings.Repeat("x", 8000)
	f := link.Facts{
		ClientAddr: "192.0.2.1:4000", Terminal: "xterm\x1b]0;t\x07" + long, MTTS: 9, Width: 80, Height: 24,
		Charset: "UTF-8", ClientName: long, ClientVersion: "1.0\r\n", ReportedIP: long,
	}
	var hello [][]byte
	for range 16 {
		hello = append(hello, []byte("Core.Supports.Set "+long[:2000]))
	}
	g, kept := boundMoved(f, hello)
	want := link.Facts{
		ClientAddr: "192.0.2.1:4000", Terminal: ("xterm?]0;t?" + long)[:telnet.MaxTerminal], MTTS: 9, Width: 80, Height: 24,
		Charset: "UTF-8", ClientName: long[:telnet.MaxEnvValue], ClientVersion: "1.0??", ReportedIP: long[:telnet.MaxEnvValue],
	}
	if g != want {
		t.Errorf("facts %+v\nwant  %+v", g, want)
	}
	total := 0
	for _, m := range kept {
		total += len(m)
	}
	if len(kept) == 0 || len(kept) > maxHello || total > maxHelloBytes {
		t.Errorf("kept %d hello messages, %d bytes", len(kept), total)
	}
	if g, kept := boundMoved(link.Facts{Terminal: "vt100"}, hello[:1]); g.Terminal != "vt100" || len(kept) != 1 {
		t.Errorf("bounded what was within bounds: %+v, %d messages", g, len(kept))
	}
}
