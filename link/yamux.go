package link

import (
	"fmt"
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
//   - yamux logs to stderr by default; here it goes to zap.
func YamuxConfig(log *zap.Logger) *yamux.Config {
	c := yamux.DefaultConfig()
	c.AcceptBacklog = 1 << 16
	c.StreamOpenTimeout = 0
	c.KeepAliveInterval = 5 * time.Second
	c.ConnectionWriteTimeout = 10 * time.Second
	c.StreamCloseTimeout = 30 * time.Second
	c.LogOutput = nil
	c.Logger = yamuxLogger{log}
	return c
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
