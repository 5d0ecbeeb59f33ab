// Package link defines the protocol between the holdfast gateway and a
// backend, and is imported by both sides.
//
// # Connection
//
// The backend listens on an ephemeral TCP port and registers it in epmd under
// its name. The gateway looks the name up and dials. Before anything else the
// two prove to each other that they hold the same cookie (a shared secret
// read from a file, as Erlang's ~/.erlang.cookie):
//
//	backend -> gateway: "HOLDFAST" version:u8 nonceB[32]
//	gateway -> backend: "HOLDFAST" version:u8 nonceG[32] HMAC-SHA256(cookie, "holdfast gateway" nonceB nonceG)
//	backend -> gateway: HMAC-SHA256(cookie, "holdfast backend" nonceG nonceB)
//
// Each side checks the other's MAC and closes the connection on a mismatch,
// so a process that registers the backend's name without the cookie never
// sees a session, and one that dials a backend without it never sees one
// either. The labels keep a MAC from being reflected back. The whole
// handshake has a deadline. Versions must match exactly; a later version
// that changes the frames below changes the version byte.
//
// After the handshake the connection carries yamux (the gateway is the yamux
// client). The gateway opens one control stream first and then one stream per
// player session.
//
// # Frames
//
// Every stream carries frames: type:u8 length:u32 payload[length]. A length
// above MaxFrame is a protocol error that ends the stream. Integers are
// big-endian; a str16 is length:u16 then bytes.
//
// Control stream:
//
//	Control  gateway->backend, first frame: opens the control stream (empty)
//	Backend  backend->gateway, first frame: instance:str16, random, the same
//	         on every link of one backend process (see Moving a session)
//	Goodbye  backend->gateway: the backend is shutting down; the gateway stops
//	         sending input and holds its sessions
//	MSSP     backend->gateway: the game's MSSP variables, encoded as on the
//	         wire (VAR name VAL value...); the gateway answers crawlers with
//	         them, adding PLAYERS and UPTIME, also while no backend runs
//	Move     gateway->backend: count:u32 then id:str16 each (at most MaxMove):
//	         these sessions are leaving this link for another gateway process
//	Release  gateway->backend, the same payload: these sessions go to this
//	         backend's successor (a deploy); each answers Moved and ends here
//	Retire   gateway->backend: every session has gone to the successor; the
//	         backend stops, so that the successor can take its name
//	Park     gateway->backend, the same payload as Move: these sessions'
//	         streams have been quiet; each answers Parked (see Parking)
//	Wake     backend->gateway, the same payload: these sessions' streams
//	         have something to read, or have closed, after their Parked
//	Broadcast backend->gateway: count:u32, then id:str16 park:u32 for each
//	         session (at most MaxMove), then text (as in Output, at most
//	         MaxChunk): output for sessions whose streams are parked, each
//	         after its Parked number park (see Parking)
//
// Session stream, gateway->backend:
//
//	Open     first frame: id:str16 resumed:u32 offset:u64 facts state:u32+bytes
//	         flags:u8 (1: handed over by the previous backend; absent from
//	         gateways of an earlier version)
//	         (facts: client:str16 terminal:str16 mtts:u32 width:u16
//	         height:u16 charset:str16 clientname:str16 clientversion:str16
//	         reportedip:str16); offset is how many input bytes of the
//	         session the application has already consumed
//	Input    player input, telnet already removed, lines ending in "\n"
//	Hangup   the player has gone; the backend ends the session
//	Facts    the facts changed (a window resize, a terminal type learnt)
//	GMCPIn   a GMCP message from the client: "Package.Message json"
//
// Session stream, backend->gateway:
//
//	Output   text for the player, "\n" for a newline; the gateway adds telnet
//	Ack      offset:u64, the input consumed so far: the gateway forgets input
//	         up to it and replays the rest on the next backend
//	State    the application's state for this session (at most MaxState bytes);
//	         the gateway keeps it and hands it back in the next Open
//	End      the application ended the session; the gateway flushes output and
//	         closes the player's socket
//	GMCPOut  a GMCP message for the client, sent if the client speaks GMCP
//	Echo     one byte: 0 asks the client to stop echoing input (a password),
//	         1 to echo again
//	Prompt   the output so far ends a prompt: the gateway marks it with IAC
//	         EOR or IAC GA, as the client negotiated
//	Moved    the answer to Move, and the last frame on this stream: all the
//	         output before it is the gateway's to deliver
//	Parked   the answer to Park (see Parking)
//
// A session stream that closes without End or Hangup is a detach: the gateway
// keeps the session and resumes it on the next backend, replaying input after
// the last Ack. Input is therefore never lost; a byte is delivered twice only
// when a backend died after handing it to the application and before its Ack.
//
// # Parking
//
// Most held sessions are idle, and a goroutine waiting in each stream's
// read is most of what an idle session costs the gateway. So the gateway
// lets a quiet stream's reader go: it sends Park naming the sessions whose
// streams brought nothing for a while, and each backend session answers
// Parked on its stream. After Parked the backend writes nothing more to
// that stream, and does not close it, without also sending Wake for the
// session (before or after: the gateway reads whatever the stream holds
// once woken). The gateway's reader stops at Parked, unless a Wake for it
// came first, and Wake starts a reader again. Parked is in the stream, so
// everything written before it has been read when the reader stops; Wake
// is on the control stream, so one Wake may name many sessions.
//
// A line for many sessions goes to the parked ones in Broadcast frames on
// the control stream, and wakes none of them: each recipient comes with
// the number of the Parked its line follows, and the gateway delivers the
// line once its reader has read that Parked (at once, if it has stopped
// there). The backend sends no Moved (for Move or Release) while a
// Broadcast naming the session is on its way, so the line reaches the
// gateway before the stream ends.
//
// A link that breaks wakes nothing: the gateway's readers of its parked
// streams start by themselves and find it gone. A backend that ignores
// Park (an earlier version) answers nothing, and its streams keep their
// readers.
//
// # Moving a session
//
// A backend that receives an Open for a session id it still holds takes the
// new stream for that session (adoption) instead of starting a new one: the
// application's Session carries on, its reads and writes move to the new
// stream, and the Open's offset says where the input on the new stream
// starts, so that input the backend has already read is skipped. Between
// its old stream and its new one a session is away: writes are kept for the
// new stream (a bound, then they wait), reads wait. This serves two cases:
//
//   - A gateway upgrade. The old gateway process sends Move for a batch of
//     sessions on its control stream; each answers Moved on its stream,
//     after all its output, and the old gateway closes the stream once it
//     has read Moved. The new gateway process, which has its own link to the
//     same backend (it checks the Backend instance), opens each session with
//     the Open the old one would have sent, the resume count unchanged. The
//     player's output before Moved was the old gateway's to write or to hand
//     over; the output after it comes on the new stream. Nothing is written
//     twice or lost.
//   - A link that breaks while both sides live on: the gateway opens its
//     sessions again on a new link, and the backend adopts them.
//
// # Handing sessions to a successor
//
// A backend started to take over from a running one (a deploy) registers
// its name with the suffix TakeoverSuffix once it is ready. A gateway
// linked to the running backend links to the successor too, sends its new
// players there, and moves the others in batches: Release on the old link,
// each session answers Moved after its last output and state and ends
// there (the application reads ErrDetached), and the gateway opens it on
// the successor with HandedOver set and its held input. When none is left
// it sends Retire; the old backend stops, its registration goes, and the
// successor registers the name itself. A successor that fails sends the
// sessions it had back to the old backend as after a crash, and the other
// way round.
//
// A session away for longer than the backend's orphan timeout (30 s by
// default) ends as if the player had left (Read returns io.EOF): its gateway
// died, and no gateway will claim it. A backend of an earlier version sends
// no Backend frame and ignores Move: a gateway moving sessions off it closes
// their streams instead, and the next gateway resumes them as after a
// restart.
package link
