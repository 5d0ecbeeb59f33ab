package upgrade

import (
	"errors"
	"fmt"
	"os"

	"holdfast/internal/fdmsg"
)

// Version is the protocol version this package speaks. Version 2 commits
// the whole move at once: a Commit covers every batch offered since the
// last, and Abort gives them back. A new process of this version also
// takes a move from an old process that commits each batch, as earlier
// releases do.
const Version = 2

// speaks reports whether this package speaks protocol version v.
func speaks(v int) bool { return v == Version }

// Kind is the kind of a message between the two processes. Its values
// are what travels.
type Kind byte

// The messages, in the order they go (see the package documentation).
const (
	Failed    Kind = 'F' // new -> old: it will not take over, and why
	Ready     Kind = 'R' // new -> old: Hello
	Accept    Kind = 'A' // old -> new: serve the listeners
	Batch     Kind = 'B' // old -> new: sessions' state and sockets
	Prepared  Kind = 'P' // new -> old: the batch is held, untouched
	Refused   Kind = 'E' // either way: no, and why
	Commit    Kind = 'C' // old -> new: the batches offered are the new process's
	Committed Kind = 'K' // new -> old: taken
	Abort     Kind = 'X' // old -> new: the batches offered stay with the old process
	Aborted   Kind = 'x' // new -> old: let go of, untouched
	Registry  Kind = 'G' // old -> new: the registry's state and connections
	Taken     Kind = 'g' // new -> old: the registry is served
	Done      Kind = 'D' // old -> new: nothing more
	Serving   Kind = 'S' // new -> old: the old process may go
)

var kindNames = map[Kind]string{
	Failed: "Failed", Ready: "Ready", Accept: "Accept", Batch: "Batch", Prepared: "Prepared",
	Refused: "Refused", Commit: "Commit", Committed: "Committed", Abort: "Abort", Aborted: "Aborted", Registry: "Registry",
	Taken: "Taken", Done: "Done", Serving: "Serving",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("Kind(%#02x)", byte(k))
}

// Hello is what the new process says in Ready.
type Hello struct {
	// Protocol is the protocol version the new process speaks; zero, when
	// sent, means Version, and when received, 1 (a gateway from before
	// versions).
	Protocol int `json:"protocol,omitempty"`
	// PID and Version identify the new process.
	PID     int    `json:"pid"`
	Version string `json:"version"`
}

// The environment that tells a new process it is one, and what it
// inherits. The names are those earlier releases set and read.
const (
	connEnv    = "GATEWAY_HANDOVER_FD"     // the upgrade's socket: always 3
	backendEnv = "GATEWAY_UPGRADE_BACKEND" // the address of the backend the old process is linked to
)

// FirstFile is the descriptor at which the new process finds the first of
// the files the old one passes (Gateway.Sockets); the upgrade's socket is
// descriptor 3.
const FirstFile = 4

var (
	// ErrUnderWay is an upgrade asked for while one runs, or after one
	// has succeeded. Its text is what the operator reads.
	ErrUnderWay = errors.New("an upgrade is already under way")
	// ErrProtocol is a message out of turn.
	ErrProtocol = errors.New("upgrade: protocol error")
	// errRefused is the other process's Refused: an answer, so it lives.
	errRefused = errors.New("the other gateway refused")
)

// closeFiles closes the descriptors of a message nobody takes.
func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// message is one message from the other process, or the error that ended
// them.
type message struct {
	kind    Kind
	payload []byte
	files   []*os.File
	err     error
}

// reader receives the other process's messages on a goroutine of its own,
// so that the old process can wait for one, for the new process's exit
// and for a timer at once.
type reader struct {
	conn *fdmsg.Conn
	msgs chan message
	quit chan struct{}
	done chan struct{}
}

func newReader(conn *fdmsg.Conn) *reader {
	r := &reader{conn: conn, msgs: make(chan message), quit: make(chan struct{}), done: make(chan struct{})}
	go r.loop()
	return r
}

func (r *reader) loop() {
	defer close(r.done)
	defer close(r.msgs) // and a receive after the last reads "went away"
	for {
		kind, payload, files, err := r.conn.Recv()
		select {
		case r.msgs <- message{Kind(kind), payload, files, err}:
		case <-r.quit:
			closeFiles(files)
			return
		}
		if err != nil {
			return
		}
	}
}

// close closes the connection and waits for the reader to stop.
func (r *reader) close() {
	r.conn.Close()
	close(r.quit)
	<-r.done
}
