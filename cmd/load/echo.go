package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
)

// echoServer is the baseline: a plain TCP server that answers as the demo
// talker does (name prompt, welcome, echo, say) with none of holdfast in
// between. It is what the figures are compared with, directly and behind
// HAProxy.
type echoServer struct {
	mu      sync.Mutex
	players map[net.Conn]string
}

func runEcho(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("echo server listening on %s\n", ln.Addr())
	s := &echoServer{players: map[net.Conn]string{}}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go s.serve(c)
	}
}

func (s *echoServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	var wmu sync.Mutex
	write := func(text string) {
		wmu.Lock()
		w.WriteString(text)
		w.Flush()
		wmu.Unlock()
	}
	write("What is your name?\r\n")
	name, err := r.ReadString('\n')
	if err != nil {
		return
	}
	name = strings.TrimSpace(name)
	write("Welcome, " + name + ".\r\n")
	s.mu.Lock()
	s.players[c] = name
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.players, c)
		s.mu.Unlock()
	}()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch verb {
		case "echo":
			write("echo: " + arg + "\r\n")
		case "say":
			s.broadcast(name + " says: " + arg + "\r\n")
		case "quit":
			return
		}
	}
}

// broadcast writes to every player in turn, as the demo does.
func (s *echoServer) broadcast(text string) {
	s.mu.Lock()
	conns := make([]net.Conn, 0, len(s.players))
	for c := range s.players {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Write([]byte(text))
	}
}
