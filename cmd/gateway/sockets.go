package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"syscall"

	"holdfast/internal/netx"
)

// upgradeEnv names the listening sockets a gateway passes the new process
// of an upgrade: a JSON list of inheritedSocket, the descriptors
// themselves from upgrade.FirstFile on. The name is what earlier releases
// set and read.
const upgradeEnv = "GATEWAY_HANDOVER_SOCKETS"

// inheritedSocket is one listening socket passed to a new process.
type inheritedSocket struct {
	Name string // what it serves: listen, tls-listen, metrics, control, debug, epmd
	Addr string // the setting it was opened for; a new process whose setting differs opens its own
	FD   int
}

// sockets are the listening sockets this process serves on: inherited
// from the gateway it took over from, or opened anew, and remembered so
// that an upgrade can pass them on.
type sockets struct {
	inherited map[string][]inheritedSocket
	files     map[int]*os.File
	opened    []openedSocket
}

type openedSocket struct {
	name, addr string
	ln         net.Listener // as opened, before any TLS or PROXY wrapping
	p          *netx.PauseListener
}

// add records a listening socket and returns what the server accepts on:
// the socket, pausable for an upgrade.
func (s *sockets) add(name, addr string, ln net.Listener) net.Listener {
	p := netx.Pausable(ln)
	s.opened = append(s.opened, openedSocket{name, addr, ln, p})
	return p
}

// inheritSockets reads what the old process passed, if this process is
// the new process of an upgrade.
func inheritSockets() (*sockets, error) {
	s := &sockets{inherited: map[string][]inheritedSocket{}, files: map[int]*os.File{}}
	v := os.Getenv(upgradeEnv)
	if v == "" {
		return s, nil
	}
	os.Unsetenv(upgradeEnv)
	var list []inheritedSocket
	if err := json.Unmarshal([]byte(v), &list); err != nil {
		return nil, fmt.Errorf("%s: %w", upgradeEnv, err)
	}
	for _, is := range list {
		if is.FD < 3 {
			return nil, fmt.Errorf("%s: descriptor %d", upgradeEnv, is.FD)
		}
		syscall.CloseOnExec(is.FD)
		s.inherited[is.Name] = append(s.inherited[is.Name], is)
		s.files[is.FD] = os.NewFile(uintptr(is.FD), is.Name)
	}
	return s, nil
}

// listen returns the listening socket for name at addr: the inherited one
// if the predecessor had it for the same setting, else one opened by open.
func (s *sockets) listen(name, addr string, open func() (net.Listener, error)) (net.Listener, error) {
	for i, is := range s.inherited[name] {
		if is.Addr != addr {
			continue
		}
		s.inherited[name] = append(s.inherited[name][:i:i], s.inherited[name][i+1:]...)
		f := s.files[is.FD]
		delete(s.files, is.FD)
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("inherited %s socket: %w", name, err)
		}
		if ul, ok := ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(true) // this process owns the path now
		}
		return s.add(name, addr, ln), nil
	}
	ln, err := open()
	if err != nil {
		return nil, err
	}
	return s.add(name, addr, ln), nil
}

// inheritedAll returns every inherited socket of name, for a set of
// listeners (the registry's addresses).
func (s *sockets) inheritedAll(name string) []net.Listener {
	var lns []net.Listener
	for _, is := range s.inherited[name] {
		f := s.files[is.FD]
		delete(s.files, is.FD)
		ln, err := net.FileListener(f)
		f.Close()
		if err == nil {
			lns = append(lns, s.add(name, is.Addr, ln))
		}
	}
	delete(s.inherited, name)
	return lns
}

// remember records listeners opened elsewhere, and returns what to accept
// on instead of each.
func (s *sockets) remember(name, addr string, lns ...net.Listener) []net.Listener {
	out := make([]net.Listener, len(lns))
	for i, ln := range lns {
		out[i] = s.add(name, addr, ln)
	}
	return out
}

// closeUnused closes inherited sockets this process has no use for (a
// setting changed): the predecessor's copies close when it exits.
func (s *sockets) closeUnused() {
	for fd, f := range s.files {
		f.Close()
		delete(s.files, fd)
	}
}

// pass returns descriptors of every socket this process serves on, and
// their description for a new process whose inherited descriptors start at
// first. The caller closes the files.
func (s *sockets) pass(first int) ([]*os.File, string, error) {
	var files []*os.File
	var list []inheritedSocket
	for _, o := range s.opened {
		f, err := netx.Dup(o.ln)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, "", fmt.Errorf("%s socket: %w", o.name, err)
		}
		list = append(list, inheritedSocket{Name: o.name, Addr: o.addr, FD: first + len(files)})
		files = append(files, f)
	}
	b, _ := json.Marshal(list)
	return files, string(b), nil
}

// keepPaths stops this process's Unix listeners from removing their paths
// when they close: the new process serves on them.
func (s *sockets) keepPaths() {
	for _, o := range s.opened {
		if ul, ok := o.ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false)
		}
	}
}

// pauseAllBut stops this process from accepting on its listening sockets,
// but those named: the new process accepts on them now. Requests under way
// finish. Until the upgrade is over the sockets stay open here, so that
// this process can take them back if the new one fails.
func (s *sockets) pauseAllBut(keep string) {
	for _, o := range s.opened {
		if o.name != keep {
			o.p.Pause()
		}
	}
}

// resumeAll has this process accept on its listening sockets again: the
// new process failed, and this one serves on.
func (s *sockets) resumeAll() {
	for _, o := range s.opened {
		if ul, ok := o.ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(true)
		}
		o.p.Resume()
	}
}
