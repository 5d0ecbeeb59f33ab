package link

import (
	"net"

	"go.uber.org/zap"
)

// Client starts the gateway's side of a link on c, once the handshake is
// done: the streams (the gateway opens them) and the link's keepalive.
// broken (if not nil) runs once, before any stream learns that the link
// has ended.
func Client(c net.Conn, broken func(), log *zap.Logger) *Mux {
	return start(c, true, broken, log)
}

// Server starts the backend's side of a link on c, as Client does the
// gateway's.
func Server(c net.Conn, broken func(), log *zap.Logger) *Mux {
	return start(c, false, broken, log)
}

func start(c net.Conn, client bool, broken func(), log *zap.Logger) *Mux {
	m := newMux(c, client, broken, log, pingWait)
	go keepalive(m, keepaliveInterval, deafWait, log)
	return m
}
