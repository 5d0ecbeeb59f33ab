// Package bridge puts an existing telnet game, unmodified, behind a
// holdfast gateway. It is a game written on package backend whose every
// session is carried over a TCP connection of its own to the game server:
// the game sees one well-behaved telnet client per player, the players
// keep what the gateway gives them (a connection that survives the game's
// restarts, TLS, the web client, compression).
//
// # What the game is told
//
// The bridge answers the game's negotiation on the player's behalf, from
// the facts the gateway holds, so that no client renegotiates anything
// when the game restarts:
//
//   - TTYPE: the MTTS cycle, the client's name, its terminal type, then
//     "MTTS n" with the client's bits and 128 (a proxy: its players share
//     an address).
//   - NAWS: the window size, and each later change.
//   - NEW-ENVIRON: IPADDRESS (the player's address as the gateway saw it),
//     CLIENT_NAME, CLIENT_VERSION, TERMINAL_TYPE, CHARSET and MTTS.
//   - CHARSET: the player's character set if the game offers it, else
//     ASCII, else a refusal.
//   - EOR and GA mark prompts; the gateway marks them for the player as the
//     player's client negotiated.
//   - ECHO: the game hiding a password hides it at the player's client.
//   - GMCP both ways; each new connection hears the client's Core.Hello
//     and Core.Supports again.
//   - MCCP is declined: the gateway compresses towards the player.
//   - MSSP is fetched over a connection of its own and handed to the
//     gateways, which answer crawlers with it while the game is down.
//
// With Bridge.ProxyHeader, each connection starts with a PROXY header
// carrying the player's address.
//
// # When the game goes away
//
// When the game closes a player's connection, the bridge's other
// connections to the game tell why (see drops.go): if every one of them
// closes too (or most of them, as long as closes keep coming), the game went
// down or restarted, however fast it is back; if most are still open a
// second later, the game ended this player's connection on purpose (a quit,
// a boot), and the player leaves too. With
// no other connection open, the bridge asks the game on a connection of its
// own: a game that accepts it and says something is up. A game that is
// down has its players told once; they stay connected, and the bridge
// tries again with a jittered backoff, with at most MaxConnecting
// connections being opened at once (each until the game's first text);
// once one player reaches the game, the others waiting come back within a
// jittered second. Once one attempt finds the game down, every player still
// waiting for a slot is told at once. What the player types meanwhile is
// held (up to MaxHeld; past it the gateway holds the rest) and sent after
// the game's first output on the new connection, once the game has asked
// for the terminal type and the environment it turned on (half a second at
// most). The player's input and the client's GMCP go to the game in one
// queue, in the order the player sent them.
//
// # Deploys
//
// A Bridge with HandoverAddr hands each session's connection to the game
// to its successor (TakeOver) when the gateway moves the session there:
// the descriptor and the state of both telnet sides go over a Unix
// socket, and the game sees no disconnect. See handover.go. The command
// (cmd/bridge) starts such a successor of itself at SIGUSR2.
package bridge
