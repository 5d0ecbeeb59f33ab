package backend

import "holdfast/link"

// Facts are what the gateway learnt about a player's connection. Each is
// empty or zero while unknown; the gateway bounds every string and makes it
// printable before it reaches the game.
type Facts struct {
	// ClientAddr is the player's address as the gateway sees it,
	// host:port (behind a trusted proxy, the address the proxy reported).
	ClientAddr string
	// Terminal is the terminal type the client sent (TTYPE), "ANSI" or
	// "XTERM-256COLOR" say.
	Terminal string
	// MTTS holds the client's MTTS capability bits: 1 ANSI, 2 VT100,
	// 4 UTF-8, 8 256 colours, 256 true colour, and so on.
	MTTS uint32
	// Width and Height are the window's size in characters (NAWS).
	Width, Height int
	// Charset is the negotiated character set, "UTF-8" say.
	Charset string
	// ClientName and ClientVersion name the client program, learnt from
	// the MTTS cycle or NEW-ENVIRON.
	ClientName    string
	ClientVersion string
	// ReportedIP is the address the client says it has (NEW-ENVIRON
	// IPADDRESS): what the client claims, not what the gateway saw.
	ReportedIP string
}

// factsOf converts the facts as the link carries them.
func factsOf(f *link.Facts) Facts {
	return Facts{
		ClientAddr:    f.ClientAddr,
		Terminal:      f.Terminal,
		MTTS:          f.MTTS,
		Width:         int(f.Width),
		Height:        int(f.Height),
		Charset:       f.Charset,
		ClientName:    f.ClientName,
		ClientVersion: f.ClientVersion,
		ReportedIP:    f.ReportedIP,
	}
}
