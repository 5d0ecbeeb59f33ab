package epmd

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestExportImport hands a registry with a live registration to another
// server, as a gateway upgrade does: the node's registration connection
// carries on, so it never registers again, and the new server answers for
// it, remembers the names, and drops it when the node goes.
func TestExportImport(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	old := &Server{}
	oldDone := make(chan error, 1)
	go func() { oldDone <- old.Serve(ln) }()
	addr := ln.Addr().String()
	core, logs := observer.New(zap.DebugLevel)
	reg, err := (&Client{Addr: addr}).Register(context.Background(), Node{Name: "game", Port: 4242}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	gone, err := (&Client{Addr: addr}).Register(context.Background(), Node{Name: "gone", Port: 4243}, nil)
	if err != nil {
		t.Fatal(err)
	}
	gone.Close()
	waitFor(t, func() bool { _, ok := old.Lookup("gone"); return !ok })

	st, files, err := old.Export()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-oldDone; err != ErrServerClosed {
		t.Fatalf("the old server's Serve: %v", err)
	}
	if len(st.Nodes) != 1 || st.Nodes[0].Node.Name != "game" || len(st.Known) != 2 {
		t.Fatalf("exported %+v", st)
	}
	nu := &Server{}
	if err := nu.Import(st, files); err != nil {
		t.Fatal(err)
	}
	defer nu.Close()
	nl, err := net.FileListener(lf)
	lf.Close()
	if err != nil {
		t.Fatal(err)
	}
	go nu.Serve(nl)
	n, err := (&Client{Addr: addr}).Lookup(context.Background(), "game")
	if err != nil || n.Port != 4242 {
		t.Fatalf("lookup through the new server: %+v %v", n, err)
	}
	if len(logs.FilterMessage("epmd: registration lost; registering again").All()) != 0 {
		t.Error("the node saw its registration lost")
	}
	// DUMP remembers the name that went, from the old server's time.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{0, 1, tagDumpReq})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var dump []byte
	buf := make([]byte, 1024)
	for {
		k, err := c.Read(buf)
		dump = append(dump, buf[:k]...)
		if err != nil {
			break
		}
	}
	c.Close()
	if !strings.Contains(string(dump), "old/unused name <gone>") || !strings.Contains(string(dump), "active name     <game> at port 4242") {
		t.Errorf("DUMP after the import: %q", dump)
	}
	// The node goes: the new server drops it.
	reg.Close()
	waitFor(t, func() bool { _, ok := nu.Lookup("game"); return !ok })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestImportMismatch(t *testing.T) {
	if err := (&Server{}).Import(State{Nodes: []ExportedNode{{Node: Node{Name: "x"}}}}, nil); err == nil {
		t.Error("an import without the registration's connection was taken")
	}
}
