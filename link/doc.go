// Package link defines the protocol between the holdfast gateway and a
// backend, and is imported by both sides.
//
// # Connection
//
// The backend listens on an ephemeral TCP port and registers it in epmd under
// its name. The gateway looks the name up and dials. The registry is
// unauthenticated, as Erlang's is: any local process may register any name.
// So nothing is trusted for having been found there; the link is encrypted,
// and each side proves that it holds the cookie (a shared secret read from
// a file, as Erlang's ~/.erlang.cookie) with a proof bound to the
// encrypted channel it travels on:
//
//	backend -> gateway: "HOLDFAST" version:u8                 (in the clear)
//	gateway -> backend: "HOLDFAST" version:u8                 (in the clear)
//	TLS 1.3 handshake, the gateway the client, the backend the server
//	gateway -> backend: HMAC-SHA256(cookie, "holdfast 2 gateway" binding)
//	backend -> gateway: HMAC-SHA256(cookie, "holdfast 2 backend" binding instance)
//	                    instance:str16
//
// binding is RFC 9266's tls-exporter value: 32 bytes of the connection's
// keying material under the label "EXPORTER-Channel-Binding", the same at
// both ends of one TLS connection and known to nobody else. A relay that
// forwards bytes sees only TLS records. A relay that terminates TLS itself
// has a different binding on each side, so a proof it passes on fails, and
// it cannot make one without the cookie. Each side closes the connection
// on a bad proof; the backend answers only a good one, so a process that
// dials a backend without the cookie learns nothing of it either. The
// labels keep a proof from being reflected back as the other side's.
//
// instance names the backend process: made at its start, the same on every
// link to it, it says when the process started (NewInstance: the host's
// boot clock in decimal, a dot, a random part). It is learnt here, under the
// proof, never from the registry: the gateway takes a backend as its
// backend's successor only when its proven instance says it started later
// (Newer), whichever name it is registered under.
//
// The backend's certificate is self-signed and made at its start; the
// gateway does not check it, because it could not know it in advance, and
// because it is not what authenticates the backend: the proof is.
//
// Why TLS 1.3 and not Noise with the cookie as pre-shared key, which would
// do as well: crypto/tls is in the standard library, maintained and
// reviewed with it, and brings the record layer (framing, sequence numbers,
// rekeying) that Noise leaves to the caller; no framing or nonce handling
// of this package's own guards the link. A record that is changed,
// dropped, replayed or reordered fails its authentication and ends the
// connection, which the gateway treats as a broken link (see Moving a
// session). The cost is a few tens of bytes a write: the link's writer
// gathers the streams' frames into large writes, and records are not
// split small at the start of a connection.
//
// The whole handshake has a deadline. Versions must match exactly; a later
// version that changes the frames below incompatibly changes the version
// byte. A gateway or backend of version 1 (an unencrypted link) is refused.
// Frames added within a version are announced in Features (see Frames) and
// used only with a peer that announced them, so that gateways and backends
// of neighbouring releases link to each other, whichever is replaced first.
//
// After the handshake the connection carries streams in yamux's framing
// (the yamux library's spec.md; the gateway is the client), which Mux
// implements: releases before this one used the library, and link to this
// one unchanged. The gateway opens one control stream first and then one
// stream per player session. Each stream's window is 256 KiB, as the
// library's.
//
// Each side takes the link for dead when its peer has sent nothing and
// taken in nothing for 5 to 10 s, and then answers no ping, nor sends or
// takes in anything, for 10 s; or when, taking in what is sent, it has
// sent nothing for a minute (Client, Server). A ping's answer alone is
// not waited for: a slow peer has it queued behind megabytes of output,
// and a link that was only slow would end. Pings are answered as before,
// so peers of earlier releases, which may send them, link as before.
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
//	         have something to read, or have closed, after their Parked;
//	         or these held sessions have something for the gateway
//	Broadcast backend->gateway: count:u32, then id:str16 park:u32 for each
//	         session (at most MaxMove), then text (as in Output, at most
//	         MaxChunk): output for sessions whose streams are parked, each
//	         after its Parked number park (see Parking); and, to a gateway
//	         whose Features said HeldFrames, for held sessions, park 0
//	Features either way, the first frame each side sends on the control
//	         stream after Control: bits:u32, what the sender can do (of a
//	         backend, 1: Hold, 4: OpenHeld; of a gateway, 2: MovedParked,
//	         8: MovedParked for a Release's parked streams; of either, 16:
//	         HeldFrames); bytes after them are a later version's. A side of
//	         an earlier version sends none, and skips the other's
//	Hold     gateway->backend, the same payload as Move: these sessions,
//	         which a Move left away on this backend, are this link's now,
//	         without a stream (see Holding)
//	Unheld   backend->gateway, the same payload: of a Hold, the sessions
//	         the backend does not hold that way; the gateway opens them
//	Drop     gateway->backend, the same payload: these held sessions'
//	         players have gone, as a Hangup would say on a stream
//	MovedParked backend->gateway, a Broadcast's recipients and no text: of
//	         a Move, to a gateway whose Features said MovedParked, the
//	         sessions whose streams were parked (each after its Parked
//	         number park) and had nothing more to send: each is away as
//	         after Moved, and its stream brings nothing after that Parked.
//	         The others of the Move answer Moved on their streams. Of a
//	         Release, the held sessions with nothing waiting for a stream
//	         (park 0): each is released, as after Moved; one with frames
//	         waiting is released on the stream the gateway opens for it,
//	         after them. And, to a gateway whose Features said 8, the
//	         sessions whose streams were parked with nothing more to send,
//	         an acknowledgement included (each after its Parked number):
//	         each is released, and its stream brings nothing after that
//	         Parked
//	OpenHeld gateway->backend, to a backend whose Features said OpenHeld:
//	         sessions opened held (see Holding), each open:u32+bytes (an
//	         Open payload) then after:u32+bytes (the frames its stream
//	         would have carried after the Open: the client's GMCP hello,
//	         and, to a backend whose Features said HeldFrames, the input
//	         typed while the game was away, up to 16 KiB). The backend starts each as if
//	         its stream had been opened and then parked and closed: it
//	         reads after first, and the first frame the application writes
//	         wakes it (or, with HeldFrames, goes in HeldFrames). One the
//	         backend has already is held, as by Hold, and keeps its own
//	         state; one that needs a stream (keep, or a claim) is named in
//	         Unheld. A payload that does not parse ends the link
//	HeldFrames backend->gateway, to a gateway whose Features said
//	         HeldFrames: id:str16, then frames of a held session, encoded
//	         as on its stream, of the types that end nothing and need no
//	         answer (Output, Prompt, State, Ack, GMCPOut, Echo); see Holding
//	Want     gateway->backend, to a backend whose Features said
//	         HeldFrames, the same payload as Move: these held sessions have
//	         something to send; the backend wakes each (Wake), after the
//	         frames it has sent for it in HeldFrames, and names in Unheld
//	         one away that it does not hold on this link
//	Stow     gateway->backend, to a backend whose Features said Stow, the
//	         same payload as Move: these sessions' streams have been parked
//	         for long; the backend holds each whose stream has had nothing
//	         written since its last Parked (see Holding)
//	Stowed   backend->gateway, a Broadcast's recipients and no text: of a
//	         Stow, every session it named, with the number of the Parked
//	         its stream ends at if the backend now holds it, 0 if not
//	HeldOutAck gateway->backend, to a backend whose Features said
//	         StowKept: id:str16 offset:u64, the OutAck of a held page's
//	         session, which needs no stream; a backend takes it only from
//	         the link that holds the session
//	HeldTaken backend->gateway, to a gateway that stows pages, the same
//	         payload as Move: these sessions, held on this link, were
//	         claimed through another gateway; this one forgets them
//	         without a Drop, as at Taken
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
//	FactsUpdate fields:u16, then each field named in it, in the order and
//	         encoding of the facts in Open, bit 0 for the first (client,
//	         terminal, mtts, window = width and height, charset, clientname,
//	         clientversion, reportedip): the facts that changed since the
//	         Open or the last update; the others stay as they were. The
//	         gateway sends at most one per session per 200 ms, the last
//	         values of a burst (a window being dragged), and none is lost.
//	         Bits this version does not know name fields after the ones it
//	         knows, and are ignored with them
//	Facts    the whole facts record, as in Open. A gateway of this version
//	         sends FactsUpdate instead; a backend takes either. (Version 1
//	         sent the whole record on every change, so a player's burst of
//	         window sizes cost the link up to the record's size, tens of
//	         KiB, per 9-byte NAWS.) The update is a frame type of its own,
//	         not a new Facts payload, so that no reader can take one for
//	         the other
//	GMCPIn   a GMCP message from the client: "Package.Message json"
//	OutAck   offset:u64, of a session opened with keep: the player has the
//	         session's output up to there (the bytes of its Output frames
//	         and broadcast lines, counted from the session's start), and the
//	         backend forgets it
//	Tokens   none to two SHA-256 hashes of 32 bytes: the tokens that may
//	         claim the session from another gateway, replacing those before
//
// Open's flags (u8, after the state; absent from an earlier version): bit 0
// handed over (a deploy), bit 1 keep: the player may come back through
// another gateway, so the backend keeps the output the gateway has not
// acknowledged with OutAck, up to MaxKept. After the flags, output:u64, the
// session's output offset at the gateway, where the backend's count goes on
// from (a new backend starts there). After it, a claim:str16,
// a token of the session's: the backend checks its hash against the
// session's Tokens, takes the session from the stream it is on (Taken
// there), and sends again, after the Open, the output it kept from the
// claim's output offset (what the player has) on; a claim it
// cannot verify, or for a session it does not hold, is answered End. A
// claim never starts a session. After the claim (empty if none),
// hello_again:u8: of the first stream of a session opened held
// (OpenHeld), the number of GMCPIn frames after the Open that repeat the
// hello the OpenHeld brought. The control stream and a new stream are not
// ordered, so this Open may come first and start the session, with them;
// a backend that has read the OpenHeld skips them.
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
//	OutAck   offset:u64, first after the Open of a claim: the output sent
//	         again after it starts at that offset
//	Taken    the last frame on the stream: another gateway claimed the
//	         session; this gateway forgets it without a Hangup
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
// # Holding
//
// An upgrade moves every session to a new gateway process, which opens
// each one again on the backend: thousands of Opens at once, most of them
// for players who are not typing, that the backend reads while the few
// who are typing wait behind them. So the new process opens only the
// sessions that were busy. The others, whose streams were parked when
// they moved and that have nothing to send, it names in Hold frames on
// its control stream: the backend keeps each such session on that link
// with no stream and no orphan clock, as if its stream were parked. The
// first time the application writes to a held session (output, state, its
// end) the backend keeps the frames for the next stream, as for any away
// session, and sends Wake for it; the gateway then opens it with an Open
// that carries it on. The gateway does the same when the player types or
// a fact or GMCP message needs to go, and sends Drop when the player
// leaves. A Hold naming a session the backend does not hold away (it
// ended, or was opened again meanwhile, or never moved) is answered
// Unheld, and the gateway opens it if it still holds it. A held session
// whose link fails is away again, on the orphan clock, and so is one named
// in a Move on the link that holds it (that gateway process hands it to
// another, which holds or opens it in turn); a Release of a held session
// is answered in MovedParked (see Frames). A gateway holds
// sessions only on a backend whose Features said Hold, and never those a
// browser page may claim from another gateway (but see Stow below).
//
// A backend that starts, after a restart or a crash, and a deploy's
// successor, would be opened thousands of sessions one stream each, most
// of them players who are not typing. Instead the gateway sends their
// Opens in OpenHeld frames, a few hundred a frame, and the backend starts
// each session held: the game accepts it, reads its state, and hears from
// it when the player types or when it writes to it, as for any held
// session. Only a session that has been open before is opened held (a new
// player's game speaks first), and only with nothing to send that the
// Open does not carry: input typed while the game was away goes in the
// OpenHeld to a backend that sends HeldFrames (up to 16 KiB; more opens a
// stream), and opens a stream on any other. A control stream that cannot
// be read (a frame past MaxFrame) ends the link. A deploy's Release of a session whose stream is parked, with
// nothing more to send, is answered in MovedParked too, so that neither
// side wakes the stream only to end it.
//
// Between a backend and a gateway whose Features both said HeldFrames, a
// held session needs no stream for what most games write to a player
// (after a restart, every player who typed while the game was away gets
// an answer at once): the backend sends the held session's output,
// prompts, state and the acknowledgement of its input on the control
// stream, in HeldFrames, which the gateway queues for the player without
// waiting, as it does a broadcast line. Anything else (its end, more
// than 16 KiB since it was held, frames that wait for a stream already)
// wakes it as before, and the Wake follows the HeldFrames sent before it,
// on the same stream. So a held session's stream is opened only at the
// backend's Wake: when the gateway has something to send for it, it asks
// with Want rather than opening one, since a stream opened then could
// overtake HeldFrames on their way. And a Move naming a held session is
// answered in MovedParked (park 0), after its last HeldFrames, which the
// gateway process that is moving it waits for before it lets it go.
//
// A parked stream still costs both ends a stream each, for a player who
// may be idle for hours. Between a backend whose Features said Stow and a
// gateway whose Features said HeldFrames, the gateway names the sessions
// whose streams have stayed parked for long (10 s by default) in Stow.
// The backend holds each one whose stream has had nothing written since
// its last Parked, as Hold would (no orphan clock), closes its end of the
// stream, and answers in one Stowed frame for the Stow, before any
// HeldFrames or Wake for them: from then on a stowed session is held. The
// gateway closes its end at the Stowed, and input it wrote on the stream
// meanwhile, which the backend reads to the stream's end, goes again on
// the stream the session's next Wake opens, from the Open's offset. A
// session whose stream was written to, or that is not so parked, is named
// with park 0, and stays as it was.
//
// Between a backend whose Features said StowKept and such a gateway, a
// browser page's session (Open's keep) is stowed too; the page's
// acknowledgements of its output then go in HeldOutAck, so that a line
// said to an idle page opens no stream. A claim of a page stowed on a
// gateway's link is told to that gateway in HeldTaken, on its control
// stream, after any Stowed for it and any Broadcast that named it. An
// Open without a claim that the gateway sent before it heard (at a Wake,
// say) is answered Taken: the backend answers so any such Open from the
// link the last claim took the session from, stowed or on a stream.
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
//     same backend (it checks the instance proven in the handshake), opens
//     each session with the Open the old one would have sent, the resume
//     count unchanged. The player's output before Moved was the old
//     gateway's to write or to hand over; the output after it comes on the
//     new stream. Nothing is written twice or lost.
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
// way round. A registry that restarts forgets both names, and a successor
// that registers first finds the name free and takes it: the gateway looks
// for a successor under both names, and takes one only if it is newer than
// the backend it is linked to (see the instance, above), so that players
// only ever move to a later backend.
//
// A session away for longer than the backend's orphan timeout (30 s by
// default) ends as if the player had left (Read returns io.EOF): its gateway
// died, and no gateway will claim it. A backend that does not answer Move in
// time has its sessions' streams closed instead, and the next gateway
// resumes them as after a restart.
package link
