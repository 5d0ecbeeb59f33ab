package backend

import "net"

// NetListener returns l as a net.Listener whose Accept hands out each
// session as a net.Conn, for servers written against net.Listener. A game
// written as a github.com/reiver/go-telnet Handler moves behind holdfast
// by passing it where it passed its TCP listener:
//
//	telnet.Serve(l.NetListener(), handler)
//
// Each session reaches the server as a new connection, a resumed one too:
// a server that knows nothing of sessions starts over with a resumed
// player (a handler that wants the state kept by the gateway type-asserts
// its connection, or writer, to *Session). When the server closes the
// connection the player's session ends, unless the session has already
// left this backend. Closing the net.Listener closes l.
func (l *Listener) NetListener() net.Listener { return netListener{l} }

type netListener struct{ l *Listener }

func (n netListener) Accept() (net.Conn, error) {
	s, err := n.l.Accept()
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (n netListener) Close() error   { return n.l.Close() }
func (n netListener) Addr() net.Addr { return n.l.Addr() }
