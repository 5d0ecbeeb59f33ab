package epmd

import (
	"fmt"
	"net"
	"os"
	"time"

	"holdfast/internal/netx"
)

// State is what a registry knows, for another process to carry on with
// (a gateway upgrade): the live registrations, whose connections go with
// them as descriptors in the same order, and the names it remembers.
type State struct {
	Nodes []ExportedNode
	Known []KnownName
	Seq   uint64
}

// ExportedNode is one live registration.
type ExportedNode struct {
	Node     Node
	FD       int // the descriptor number DUMP shows
	Creation uint32
	Seq      uint64
}

// KnownName is a name the registry remembers, live or not, oldest first.
type KnownName struct {
	Name     string
	Creation uint32
	Port     uint16
	FD       int
}

// Export stops the server for another process to carry on: its
// listeners' descriptors are closed (the sockets stay open in the other
// process), requests under way are cut, and the live registrations are
// returned with a descriptor of each connection, which the caller passes on
// and closes. The registrations' connections are not ended, so the nodes
// do not see their registration lost. The server is closed afterwards.
func (s *Server) Export() (State, []*os.File, error) {
	s.mu.Lock()
	s.closing, s.exporting = true, true
	var st State
	var files []*os.File
	var err error
	for _, r := range s.nodes {
		f, derr := netx.Dup(r.conn)
		if derr != nil {
			err = fmt.Errorf("epmd: export %s: %w", r.node.Name, derr)
			break
		}
		files = append(files, f)
		st.Nodes = append(st.Nodes, ExportedNode{Node: r.node, FD: r.fd, Creation: r.creation, Seq: r.seq})
	}
	for _, name := range s.order {
		k := s.known[name]
		st.Known = append(st.Known, KnownName{Name: name, Creation: k.creation, Port: k.port, FD: k.fd})
	}
	st.Seq = s.seq
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.SetReadDeadline(time.Now()) // a registration's reader leaves it be
	}
	s.mu.Unlock()
	s.Close()
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return State{}, nil, err
	}
	return st, files, nil
}

// Import takes over the registrations and remembered names of another
// process's registry (Export). It takes the descriptors' ownership. It is
// called before the server serves.
func (s *Server) Import(st State, files []*os.File) error {
	if len(files) != len(st.Nodes) {
		for _, f := range files {
			f.Close()
		}
		return fmt.Errorf("epmd: import: %d registrations with %d connections", len(st.Nodes), len(files))
	}
	var conns []net.Conn
	var err error
	for _, f := range files {
		c, cerr := net.FileConn(f)
		f.Close()
		if cerr != nil && err == nil {
			err = fmt.Errorf("epmd: import: %w", cerr)
		}
		conns = append(conns, c)
	}
	if err != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		return err
	}
	s.mu.Lock()
	if s.nodes == nil {
		s.nodes = make(map[string]*registration)
		s.known = make(map[string]*knownName)
	}
	for _, k := range st.Known {
		if _, ok := s.known[k.Name]; !ok {
			s.order = append(s.order, k.Name)
		}
		s.known[k.Name] = &knownName{creation: k.Creation, port: k.Port, fd: k.FD}
	}
	s.seq = max(s.seq, st.Seq)
	var regs []*registration
	for i, n := range st.Nodes {
		r := &registration{node: n.Node, conn: conns[i], fd: n.FD, creation: n.Creation, seq: n.Seq}
		if _, ok := s.known[n.Node.Name]; !ok {
			s.known[n.Node.Name] = &knownName{creation: n.Creation, port: n.Node.Port, fd: n.FD}
			s.order = append(s.order, n.Node.Name)
		}
		s.nodes[n.Node.Name] = r
		regs = append(regs, r)
	}
	s.notifyLocked()
	s.mu.Unlock()
	for _, r := range regs {
		if s.track(r.conn) != trackServed {
			r.conn.Close()
			continue
		}
		go func() {
			defer s.untrack(r.conn)
			s.hold(r)
		}()
	}
	return nil
}
