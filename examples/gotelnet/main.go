// Command gotelnet is a game written as a github.com/reiver/go-telnet
// Handler, running behind a holdfast gateway: the one change from serving
// it on its own TCP port is the listener passed to telnet.Serve. Its
// players stay connected while it restarts.
//
//	gotelnet [-name game] [-handler echo|lines] [-sessions] [-cookie-file FILE]
//
// -handler echo serves go-telnet's own EchoHandler; -handler lines answers
// each line the player types. With -sessions, the game runs its own accept
// loop and gives each handler the session itself as reader and writer, so
// that the lines handler can keep a count in the session's state and greet
// a resumed player as one.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/reiver/go-oi"
	"github.com/reiver/go-telnet"
	"go.uber.org/zap"

	"holdfast/backend"
	"holdfast/internal/cli"
)

func main() {
	var common cli.Common
	name := flag.String("name", backend.DefaultName, "name to register in epmd")
	which := flag.String("handler", "lines", "the go-telnet handler to serve: echo or lines")
	own := flag.Bool("sessions", false, "hand each handler the session itself, not go-telnet's wrappers")
	common.Register(flag.CommandLine)
	flag.Parse()
	handlers := map[string]telnet.Handler{"echo": telnet.EchoHandler, "lines": lineHandler{}}
	handler := handlers[*which]
	if handler == nil || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	log, err := common.Logger()
	if err != nil {
		cli.Fatal("gotelnet", err)
	}
	cookie, err := common.Cookie()
	if err != nil {
		cli.Fatal("gotelnet", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg := backend.Config{Name: *name, EPMD: common.EPMDAddr(), Cookie: cookie, Logger: log}
	l, err := backend.ListenRetrying(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		cli.Fatal("gotelnet", err)
	}
	log.Info("gotelnet: registered", zap.String("name", *name), zap.String("handler", *which))

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		// Handlers' reads return backend.ErrDetached; go-telnet then
		// closes each session, which only lets it go: the gateway keeps
		// the players for the next backend.
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l.Shutdown(sctx)
	}()
	if *own {
		err = serveSessions(l, handler)
	} else {
		err = telnet.Serve(l.NetListener(), handler)
	}
	if ctx.Err() == nil {
		log.Error("gotelnet: serving stopped", zap.Error(err))
		os.Exit(1)
	}
	<-stopped
}

// serveSessions is telnet.Serve for a game that wants holdfast's sessions:
// the handler's reader and writer are the *backend.Session itself.
func serveSessions(l *backend.Listener, handler telnet.Handler) error {
	for {
		s, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer s.Close()
			handler.ServeTELNET(telnet.NewContext(), s, s)
		}()
	}
}

// maxLine bounds a line: longer input is answered in pieces.
const maxLine = 4 << 10

// lineHandler greets the player and answers each line they type, reading
// a byte at a time, as go-telnet handlers do (its reader returns only once
// the buffer is full). Given the session itself, it keeps the number of
// lines in the session's state and welcomes a resumed player back.
type lineHandler struct{}

func (lineHandler) ServeTELNET(ctx telnet.Context, w telnet.Writer, r telnet.Reader) {
	s, _ := w.(*backend.Session)
	lines := 0
	if s != nil {
		lines, _ = strconv.Atoi(string(s.State()))
	}
	greeting := "Type a line and it comes back.\n"
	if s != nil && s.Resumed() > 0 {
		greeting = fmt.Sprintf("Welcome back; you have typed %d lines.\n", lines)
	}
	oi.LongWriteString(w, greeting)
	var b [1]byte
	line := make([]byte, 0, 128)
	for {
		n, err := r.Read(b[:])
		if n > 0 {
			if b[0] != '\n' && len(line) < maxLine {
				line = append(line, b[0])
				continue
			}
			if b[0] != '\n' {
				line = append(line, b[0])
			}
			lines++
			if s != nil && s.SetState([]byte(strconv.Itoa(lines))) != nil {
				return
			}
			if _, err := oi.LongWriteString(w, fmt.Sprintf("you said: %s\n", strings.TrimRight(string(line), "\r"))); err != nil {
				return
			}
			line = line[:0]
		}
		if err != nil {
			return
		}
	}
}
