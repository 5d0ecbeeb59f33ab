package bridge

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/pires/go-proxyproto"
)

// proxyHeader returns the PROXY header (version 1 or 2) that tells the
// game the player's address: the source is the address the gateway saw,
// the destination the game's own address. A player whose address is not
// an IP address and port (none is known) gets the header's form for an
// unknown source: "PROXY UNKNOWN" in version 1, the LOCAL command in
// version 2, after which the game uses the connection's own address.
func proxyHeader(version int, player string, game net.Addr) ([]byte, error) {
	if version != 1 && version != 2 {
		return nil, fmt.Errorf("bridge: PROXY header version %d: want 1 or 2", version)
	}
	var src net.Addr
	if ap, err := netip.ParseAddrPort(player); err == nil {
		src = net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	dst, _ := game.(*net.TCPAddr)
	if dst != nil {
		dst = net.TCPAddrFromAddrPort(netip.AddrPortFrom(dst.AddrPort().Addr().Unmap(), dst.AddrPort().Port()))
	}
	var h *proxyproto.Header
	if src != nil && dst != nil {
		h = proxyproto.HeaderProxyFromAddrs(byte(version), src, dst)
	} else {
		h = &proxyproto.Header{Version: byte(version), Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	}
	b, err := h.Format()
	if err != nil {
		return nil, fmt.Errorf("bridge: PROXY header: %w", err)
	}
	return b, nil
}
