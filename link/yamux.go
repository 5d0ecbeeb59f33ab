package link

import (
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/yamux"
	"go.uber.org/zap"
)

// YamuxConfig returns the yamux settings both sides use. yamux's defaults do
// not suit a link that carries thousands of long-lived sessions:
//   - StreamOpenTimeout would close the whole link when one stream's open is
//     not acknowledged in 75 s; a busy backend must not cost every player
//     their link, so it is off and keepalives detect a dead peer instead.
//   - the accept backlog of 256 would reset streams when every held session
//     resumes at once.
//   - yamux's keepalive ends a link whose ping is not answered in time,
//     though the answer may be on its way behind the output queued for a
//     peer that reads slowly; the link's own (see keepalive) does not.
//   - yamux logs to stderr by default; here it goes to zap.
func YamuxConfig(log *zap.Logger) *yamux.Config {
	c := yamux.DefaultConfig()
	c.AcceptBacklog = 1 << 16
	c.StreamOpenTimeout = 0
	c.EnableKeepAlive = false
	c.ConnectionWriteTimeout = pingWait
	c.StreamCloseTimeout = 30 * time.Second
	c.LogOutput = nil
	c.Logger = yamuxLogger{log}
	return c
}

// Client starts the gateway's side of a link on c, once the handshake is
// done: yamux, its writes coalesced, broken run before yamux learns of the
// link's end (see Coalesce), and the link's keepalive.
func Client(c net.Conn, broken func(), log *zap.Logger) (*yamux.Session, error) {
	return start(c, broken, log, yamux.Client)
}

// Server starts the backend's side of a link on c, as Client does the
// gateway's.
func Server(c net.Conn, broken func(), log *zap.Logger) (*yamux.Session, error) {
	return start(c, broken, log, yamux.Server)
}

func start(c net.Conn, broken func(), log *zap.Logger, side func(io.ReadWriteCloser, *yamux.Config) (*yamux.Session, error)) (*yamux.Session, error) {
	cc := newCoalesced(c, broken)
	mux, err := side(cc, YamuxConfig(log))
	if err != nil {
		return nil, err
	}
	go keepalive(mux, cc, keepaliveInterval, deafWait, log)
	return mux, nil
}

// yamuxLogger passes yamux's messages to zap: its errors (a keepalive
// that failed, a frame it could not parse), which end the link, as
// warnings, so that an operator sees why a link went; the rest (frames
// for streams already reset, which a busy link has many of) at debug.
type yamuxLogger struct{ log *zap.Logger }

func (l yamuxLogger) Print(v ...any)                 { l.write(fmt.Sprint(v...)) }
func (l yamuxLogger) Printf(format string, v ...any) { l.write(fmt.Sprintf(format, v...)) }
func (l yamuxLogger) Println(v ...any)               { l.write(fmt.Sprint(v...)) }

func (l yamuxLogger) write(msg string) {
	if rest, ok := strings.CutPrefix(msg, "[ERR] "); ok {
		l.log.Warn("link: " + rest)
		return
	}
	l.log.Debug(msg)
}
