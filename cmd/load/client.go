package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"holdfast/gateway/telnet"
)

// line is one line a session received, and when.
type line struct {
	text string
	at   time.Time
}

// session is one simulated player: a raw TCP client that speaks no telnet
// (it answers no offer and skips protocol bytes, as nc would show them).
type session struct {
	name  string
	conn  net.Conn
	lines chan line
	err   error
}

var errTimeout = errors.New("timed out")

func dialSession(addr, name string) (*session, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	s := &session{name: name, conn: c, lines: make(chan line, 1024)}
	go s.read()
	return s, nil
}

func (s *session) read() {
	defer close(s.lines)
	sc := bufio.NewScanner(&stripTelnet{r: s.conn})
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		s.lines <- line{text: strings.TrimRight(sc.Text(), "\r"), at: time.Now()}
	}
	s.err = sc.Err()
}

// stripTelnet removes telnet commands from a stream.
type stripTelnet struct {
	r   io.Reader
	dec telnet.Decoder
	buf []byte
}

func (t *stripTelnet) Read(p []byte) (int, error) {
	for {
		if cap(t.buf) < len(p) {
			t.buf = make([]byte, len(p))
		}
		n, err := t.r.Read(t.buf[:len(p)])
		out := t.dec.Decode(p[:0], t.buf[:n], ignore{})
		if len(out) > 0 || err != nil {
			return len(out), err
		}
	}
}

type ignore struct{}

func (ignore) Negotiate(byte, byte)              {}
func (ignore) Subnegotiation(byte, []byte, bool) {}
func (ignore) Command(byte)                      {}

func (s *session) send(text string) error {
	s.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := io.WriteString(s.conn, text+"\r\n")
	return err
}

// expect waits for a line that starts with prefix and returns when it came.
func (s *session) expect(prefix string, timeout time.Duration) (time.Time, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				return time.Time{}, fmt.Errorf("%s: connection ended waiting for %q: %v", s.name, prefix, s.err)
			}
			if strings.HasPrefix(l.text, prefix) {
				return l.at, nil
			}
		case <-t.C:
			return time.Time{}, fmt.Errorf("%s: %w waiting for %q", s.name, errTimeout, prefix)
		}
	}
}

func (s *session) login() error {
	if _, err := s.expect("What is your name?", time.Minute); err != nil {
		return err
	}
	if err := s.send(s.name); err != nil {
		return err
	}
	_, err := s.expect("Welcome, "+s.name+".", time.Minute)
	return err
}
