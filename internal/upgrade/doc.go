// Package upgrade replaces a running gateway process with a new one, from
// the binary at the path the running one was started from, without a
// player noticing: the new process inherits the listening sockets, says it
// is ready, and takes every held session and the registry over; then the
// old one exits. It is the choreography between the two processes, in the
// manner of cloudflare/tableflip; moving the sessions themselves, the
// sockets and the registry are the gateway's, injected through Gateway on
// the old side and Receiver on the new.
//
// The old process (Upgrader) starts the new one with a connected Unix
// socket as its descriptor 3 and the listening sockets from FirstFile on,
// and says so in its environment (FromEnv reads it). They speak over the
// socket, each message a Kind with a payload and descriptors
// (internal/fdmsg frames them):
//
//	new -> old  Failed  reason          (then it exits: nothing changed)
//	new -> old  Ready   protocol, pid, version   configured, linked to the backend
//	old -> new  Accept                  the new one serves the listeners, the old stops
//	            (or Refused reason: a protocol the old one does not speak)
//	old -> new  Batch   sessions + sockets      } a batch at a time
//	new -> old  Prepared / Refused reason       } (gateway.Server.MoveOut)
//	old -> new  Commit  (or Abort)              once every session is offered
//	new -> old  Committed (or Aborted)
//	old -> new  Registry  registrations + connections, limits
//	new -> old  Taken
//	old -> new  Done
//	new -> old  Serving                 then the old one exits
//
// Until Accept, a failure leaves the old process as it was, and the new
// one is stopped; the command reports why. From Accept on, the old process
// has paused its listening sockets, not closed them: if the new process
// dies before it serves, the old one takes them back and serves on with
// every session.
//
// The move commits once, at the end: the new process prepares each batch
// and starts none until the Commit, and the old one keeps its copies of
// the sockets and each session's state until Committed. A new process that
// dies or refuses a batch half-way, as new code that crashes on old state
// does, so leaves every player with the old process, where they carry on.
// The old process freezes the quietest sessions first, so that those
// waiting longest for the commit are those least likely to notice, and the
// new process starts the last offered first. If the old process dies
// instead, the new one starts what it has prepared: nobody else will.
// Abort gives the batches back while the new process lives; one that does
// not answer Abort is killed before the old process carries on with them,
// so that no session is ever served by both.
//
// # Versions
//
// The first thing the new process says, in Ready, is the protocol Version
// it speaks, and the old process goes on only if it speaks that one too;
// otherwise it answers Refused with the reason, stops the new process, and
// the upgrade fails saying why. A Ready without a version is version 1:
// the protocol as gateways spoke it before they said one. The payloads a
// message carries (a batch's sessions, the registry's state) are versioned
// by whoever encodes them. The message kinds, the environment variables'
// names and the descriptor numbers are part of the protocol and stay as
// they are, so that a gateway can upgrade from an earlier release.
package upgrade
