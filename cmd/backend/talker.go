package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"unicode"

	"go.uber.org/zap"

	"holdfast/backend"
)

const maxNameLen = 20

// state is what the talker keeps in the gateway for each session.
type state struct {
	Name string `json:"name"`
	// Password is set while the player is typing a password: if the game
	// restarts then, the line that arrives next is still the password.
	Password bool `json:"password,omitempty"`
}

// talker is the demo application: players log in with a name, talk to
// each other and can inspect their session.
type talker struct {
	log *zap.Logger
	l   *backend.Listener
	// quiet leaves out the arrival and departure announcements, which cost
	// every player a line per login: a load test logs thousands in at once.
	quiet   bool
	mu      sync.Mutex
	players map[*backend.Session]string
}

func newTalker(log *zap.Logger, l *backend.Listener, quiet bool) *talker {
	return &talker{log: log, l: l, quiet: quiet, players: make(map[*backend.Session]string)}
}

// announce tells everybody but s about a player's coming or going.
func (t *talker) announce(text string, s *backend.Session) {
	if !t.quiet {
		t.broadcast(text, s)
	}
}

func (t *talker) serve(s *backend.Session) {
	defer s.Close()
	var st state
	json.Unmarshal(s.State(), &st)
	arrived := st.Name == ""
	if s.HandedOver() {
		t.log.Info("talker: player handed over", zap.String("session", s.ID()))
	}
	if arrived {
		// What the game knows of a new player before it says a word: the
		// gateway opens a session once the client's negotiation is over.
		f := s.Facts()
		t.log.Info("talker: new player", zap.String("session", s.ID()), zap.String("client", f.ClientName),
			zap.String("terminal", f.Terminal), zap.Uint32("mtts", f.MTTS), zap.Int("width", f.Width))
		name, err := t.login(s)
		if err != nil {
			return
		}
		st.Name = name
		b, _ := json.Marshal(st)
		if err := s.SetState(b); err != nil {
			return
		}
	}
	// Joined before the welcome, so that whoever hears of the player also
	// finds them in `who`.
	t.mu.Lock()
	t.players[s] = st.Name
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.players, s)
		t.mu.Unlock()
	}()
	if arrived {
		fmt.Fprintf(s, "Welcome, %s.\n", st.Name)
		t.announce(fmt.Sprintf("%s has arrived.\n", st.Name), s)
		status, _ := json.Marshal(map[string]any{"name": st.Name, "online": t.online()})
		s.SendGMCP("Char.Status", status)
	}
	if st.Password && !t.password(s, &st) {
		return
	}
	for {
		line, err := s.ReadLine()
		if err != nil {
			if errors.Is(err, io.EOF) {
				// The gateway hung up: the player left, or the gateway is
				// shutting down. ErrDetached would mean the session lives on.
				t.log.Info("talker: player left", zap.String("session", s.ID()))
				t.announce(fmt.Sprintf("%s has left.\n", st.Name), s)
			}
			return
		}
		if !t.command(s, st.Name, strings.TrimRight(line, " \t")) {
			t.announce(fmt.Sprintf("%s has left.\n", st.Name), s)
			return
		}
	}
}

// login asks for a name until it gets a valid one.
func (t *talker) login(s *backend.Session) (string, error) {
	for {
		if _, err := io.WriteString(s, "What is your name?\n"); err != nil {
			return "", err
		}
		line, err := s.ReadLine()
		if err != nil {
			return "", err
		}
		name := strings.TrimSpace(line)
		if validName(name) {
			return name, nil
		}
		fmt.Fprintf(s, "A name is 1 to %d letters or digits.\n", maxNameLen)
	}
}

func validName(name string) bool {
	if name == "" || len(name) > maxNameLen {
		return false
	}
	for _, r := range name {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			return false
		}
	}
	return true
}

// command runs one line; it returns false when the player quits.
func (t *talker) command(s *backend.Session, name, line string) bool {
	verb, arg, _ := strings.Cut(line, " ")
	switch verb {
	case "":
	case "say":
		t.broadcast(fmt.Sprintf("%s says: %s\n", name, arg), nil)
	case "who":
		fmt.Fprintf(s, "online: %s\n", strings.Join(t.names(), ", "))
	case "echo":
		fmt.Fprintf(s, "echo: %s\n", arg)
	case "session":
		f := s.Facts()
		host, _, err := net.SplitHostPort(f.ClientAddr)
		if err != nil {
			host = f.ClientAddr
		}
		handover := "no"
		if s.HandedOver() {
			handover = "yes"
		}
		fmt.Fprintf(s, "id: %s\nresumed: %d\nhandover: %s\nclient: %s\nterminal: %s\nmtts: %d\nwidth: %d\nheight: %d\ncharset: %s\nclient_ip: %s\n",
			s.ID(), s.Resumed(), handover, strings.TrimSpace(f.ClientName+" "+f.ClientVersion), f.Terminal, f.MTTS, f.Width, f.Height, f.Charset, host)
	case "colours", "colors":
		io.WriteString(s, "colours: \x1b[31mred\x1b[0m \x1b[32mgreen\x1b[0m \x1b[1;34mbright blue\x1b[0m \x1b[38;5;208morange\x1b[0m\n")
	case "password":
		st := state{Name: name, Password: true}
		return t.password(s, &st)
	case "quit":
		fmt.Fprintf(s, "Goodbye, %s.\n", name)
		return false
	default:
		io.WriteString(s, "Commands: say TEXT, who, echo TEXT, session, colours, password, quit.\n")
	}
	return true
}

// password asks for a password with the client's echo off, and turns echo
// back on. The password itself is only counted: this is a demo.
func (t *talker) password(s *backend.Session, st *state) bool {
	b, _ := json.Marshal(st)
	if s.SetState(b) != nil || s.SetEcho(false) != nil || s.Prompt("Password: ") != nil {
		return false
	}
	line, err := s.ReadLine()
	if err != nil {
		return false
	}
	st.Password = false
	b, _ = json.Marshal(st)
	s.SetState(b)
	s.SetEcho(true)
	fmt.Fprintf(s, "\nPassword of %d characters noted.\n", len(line))
	return true
}

// online counts the players, without the sorted list that names makes:
// every login asks.
func (t *talker) online() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.players)
}

func (t *talker) names() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	names := make([]string, 0, len(t.players))
	for _, n := range t.players {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// broadcast sends text to every logged-in player except skip.
func (t *talker) broadcast(text string, skip *backend.Session) {
	t.mu.Lock()
	to := make([]*backend.Session, 0, len(t.players))
	for s := range t.players {
		if s != skip {
			to = append(to, s)
		}
	}
	t.mu.Unlock()
	t.l.Broadcast(to, []byte(text))
}
