package systemd

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestReady(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	if err := Ready(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64)
	n, err := c.Read(b)
	if err != nil || string(b[:n]) != "READY=1" {
		t.Fatalf("got %q %v, want READY=1", b[:n], err)
	}
}

func TestNoSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("LISTEN_PID", "")
	if err := Ready(); err != nil {
		t.Fatalf("Ready without systemd: %v", err)
	}
	if lns, err := Listeners(); lns != nil || err != nil {
		t.Fatalf("Listeners without systemd: %v %v", lns, err)
	}
	// Sockets passed to another process are not ours.
	t.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()+1))
	t.Setenv("LISTEN_FDS", "1")
	if lns, err := Listeners(); lns != nil || err != nil {
		t.Fatalf("Listeners for another pid: %v %v", lns, err)
	}
}
