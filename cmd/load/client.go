package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"holdfast/gateway/telnet"
)

// session is one simulated player: a raw TCP client that speaks no telnet
// (it answers no offer and skips protocol bytes, as nc would show them). Its
// reader never stops reading, so that the server is never held up by the
// load tool: a line is noted only when a waiter armed for it, and dropped
// otherwise.
type session struct {
	name string
	conn net.Conn
	text io.Reader  // what the player reads: the socket, telnet stripped or answered
	wmu  sync.Mutex // one writer at a time: the player, and its client's answers

	mu    sync.Mutex
	want  string         // the prefix a waiter expects
	found chan time.Time // where the reader reports it, with the time
	err   error          // why reading stopped
	ended chan struct{}
}

var errTimeout = errors.New("timed out")

func dialSession(addr, name string) (*session, error) {
	var c net.Conn
	var err error
	if useWS {
		c, err = dialWS(addr)
	} else {
		c, err = net.DialTimeout("tcp", addr, 30*time.Second)
	}
	if err != nil {
		return nil, err
	}
	s := &session{name: name, conn: c, ended: make(chan struct{})}
	s.text = telnet.Strip(c)
	if answerMode != answerNone && !useWS {
		s.text = &answering{conn: c, mode: answerMode, buf: make([]byte, 4096), wmu: &s.wmu}
	}
	s.arm("What is your name?") // before the reader can see the prompt
	go s.read()
	return s, nil
}

func (s *session) read() {
	defer close(s.ended)
	sc := bufio.NewScanner(s.text)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		text := strings.TrimRight(sc.Text(), "\r")
		s.mu.Lock()
		if s.want != "" && strings.HasPrefix(text, s.want) {
			s.found <- time.Now()
			s.want = ""
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.err = sc.Err()
	s.mu.Unlock()
}

// arm sets what the next wait expects. Arm before the action that causes
// the line, so that a quick answer is not missed.
func (s *session) arm(prefix string) {
	s.mu.Lock()
	s.want, s.found = prefix, make(chan time.Time, 1)
	s.mu.Unlock()
}

// wait returns when the armed line arrived.
func (s *session) wait(timeout time.Duration) (time.Time, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	return s.waitOn(t.C)
}

// waitOn returns when the armed line arrived, or fails when expired fires.
func (s *session) waitOn(expired <-chan time.Time) (time.Time, error) {
	s.mu.Lock()
	found, want := s.found, s.want
	s.mu.Unlock()
	select {
	case at := <-found:
		return at, nil
	case <-s.ended:
		select {
		case at := <-found:
			return at, nil
		default:
		}
		return time.Time{}, fmt.Errorf("%s: connection ended waiting for %q: %v", s.name, want, s.err)
	case <-expired:
		return time.Time{}, fmt.Errorf("%s: %w waiting for %q", s.name, errTimeout, want)
	}
}

// arrived waits for every session's armed line and returns when the last
// came. The sessions are waited for in turn: each line's time is taken by
// its session's reader as it arrives, so this measures what waiting for
// all at once would, without a goroutine and a timer for each of
// thousands of sessions taking the cores from the servers measured.
func arrived(sessions []*session, timeout time.Duration) (time.Time, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	var last time.Time
	for _, s := range sessions {
		at, err := s.waitOn(t.C)
		if err != nil {
			return time.Time{}, err
		}
		last = later(last, at)
	}
	return last, nil
}

// expect arms prefix, runs action and waits for the line.
func (s *session) expect(prefix string, action func() error, timeout time.Duration) (time.Time, error) {
	s.arm(prefix)
	if action != nil {
		if err := action(); err != nil {
			return time.Time{}, err
		}
	}
	return s.wait(timeout)
}

func (s *session) send(text string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := io.WriteString(s.conn, text+"\r\n")
	return err
}

func (s *session) login() error {
	if _, err := s.wait(time.Minute); err != nil {
		return err
	}
	_, err := s.expect("Welcome, "+s.name+".", func() error { return s.send(s.name) }, time.Minute)
	return err
}
