package test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"holdfast/epmd"
	"holdfast/link"
)

// The relay: what a local user without the cookie can do to the link. It
// looks the backend up in the registry, registers the successor's name
// (any local process may), and forwards every byte between whoever dials
// it and the real backend, keeping what passes. Run by the test binary
// itself with HOLDFAST_RELAY=REGISTRY,NAME,HOST: HOST is where it listens
// and where the backend does.

const relaySeen = 256 << 10 // what a relay keeps of each connection

// The relay holds back what the backend says once relayStallAt bytes of it
// have passed, for relayStall: on the unencrypted link of version 1 that
// was the end of the handshake, and holding back the frame that named the
// backend's instance until the gateway stopped waiting for it made the
// gateway take the relay for a successor. Now the instance is proven in the
// handshake itself, and a stall only delays it.
const (
	relayStallAt = 73
	relayStall   = 3 * time.Second
)

func runRelay(spec string) {
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		fmt.Fprintln(os.Stderr, "relay: HOLDFAST_RELAY=REGISTRY,NAME,HOST")
		os.Exit(2)
	}
	registry, name, host := parts[0], parts[1], parts[2]
	say := func(msg string, kv ...any) {
		m := map[string]any{"msg": msg, "uid": os.Getuid()}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		b, _ := json.Marshal(m)
		fmt.Println(string(b))
	}
	fail := func(err error) {
		say("relay: failed", "error", err.Error())
		os.Exit(1)
	}
	ctx := context.Background()
	c := &epmd.Client{Addr: registry}
	node, err := c.Lookup(ctx, name)
	if err != nil {
		fail(err)
	}
	target := net.JoinHostPort(host, strconv.Itoa(int(node.Port)))
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		fail(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if _, err := c.Register(ctx, epmd.Node{Name: name + link.TakeoverSuffix, Port: uint16(port)}, nil); err != nil {
		fail(err)
	}
	say("relay: registered", "name", name+link.TakeoverSuffix, "port", port, "target", target)
	for {
		in, err := ln.Accept()
		if err != nil {
			fail(err)
		}
		go func() {
			defer in.Close()
			out, err := net.Dial("tcp", target)
			if err != nil {
				say("relay: cannot reach the backend", "error", err.Error())
				return
			}
			defer out.Close()
			var mu sync.Mutex
			var seen []byte
			keep := func(b []byte) {
				mu.Lock()
				if len(seen) < relaySeen {
					seen = append(seen, b[:min(len(b), relaySeen-len(seen))]...)
				}
				mu.Unlock()
			}
			pump := func(dst, src net.Conn, stallAt int) {
				buf := make([]byte, 32<<10)
				passed := 0
				for {
					n, err := src.Read(buf)
					keep(buf[:n])
					if passed < stallAt && passed+n >= stallAt {
						time.Sleep(relayStall)
					}
					passed += n
					if n > 0 {
						if _, werr := dst.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				// One side is done: so is the relayed connection.
				dst.Close()
				src.Close()
			}
			done := make(chan struct{})
			go func() { pump(out, in, 0); close(done) }()
			pump(in, out, relayStallAt)
			<-done
			mu.Lock()
			say("relay: connection closed", "bytes", len(seen), "seen", hex.EncodeToString(seen))
			mu.Unlock()
		}()
	}
}

// relayed returns every byte the relay saw, over all its connections so
// far, and how many connections it relayed.
func relayed(t *testing.T, r *proc) ([]byte, int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []byte
	n := 0
	for _, m := range r.lines {
		if m["msg"] != "relay: connection closed" {
			continue
		}
		b, err := hex.DecodeString(m["seen"].(string))
		if err != nil {
			t.Fatalf("relay's record: %v", err)
		}
		all = append(all, b...)
		n++
	}
	return all, n
}

// nobodyCopy copies the test binary where the user nobody may run it.
func nobodyCopy(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the relay test runs the relay as nobody, which needs root")
		}
		t.Skip("the relay test runs the relay as nobody, which needs root")
	}
	dir, err := os.MkdirTemp("", "holdfast-relay-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(dir, "relay")
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRelayGetsNothing is the attack on the link by a local user without
// the cookie: as nobody, a relay registers the successor's name and
// forwards bytes to the real backend. The gateway dials it, finds behind it
// the backend it is already linked to, and takes it for no successor: the
// players keep playing on the backend they had, which neither retires nor
// stops, and the relay sees no player's text and no cookie.
func TestRelayGetsNothing(t *testing.T) {
	setpriv := needTool(t, "setpriv")
	relay := nobodyCopy(t)
	sys := startSystem(t)
	be := sys.startBackend()
	p := dial(t, sys.telnet, "hunter2")
	p.expect("What is your name?")
	p.send("hunter2")
	p.expect("Welcome, hunter2.")

	registry := net.JoinHostPort("127.0.0.1", strconv.Itoa(sys.epmdPort))
	r := startPath(t, setpriv, []string{"HOLDFAST_RELAY=" + registry + ",game,127.0.0.1"},
		"--reuid=nobody", "--regid=nogroup", "--clear-groups", relay)
	reg := r.waitLog("relay: registered", 1)
	if uid := reg["uid"].(float64); uid == 0 {
		t.Fatal("the relay runs as root")
	}
	sys.gw.waitLog("gateway: the successor's name leads to the backend already linked; not a successor", 1)
	r.waitLog("relay: connection closed", 1)

	p.send("echo the password is swordfish")
	p.expect("echo: the password is swordfish")

	got, conns := relayed(t, r)
	if conns == 0 || len(got) == 0 {
		t.Fatal("the gateway never dialed through the relay")
	}
	for _, secret := range []string{"swordfish", "hunter2", "test-cookie"} {
		if bytes.Contains(got, []byte(secret)) {
			t.Errorf("the relay saw %q", secret)
		}
	}
	if n := sys.gw.count("gateway: handing the players to the backend's successor"); n != 0 {
		t.Errorf("the gateway handed the players through the relay")
	}
	if n := be.count("backend: every player went to the successor; stopping"); n != 0 {
		t.Errorf("the backend was made to retire")
	}
	select {
	case <-be.exited:
		t.Fatal("the backend stopped")
	default:
	}
	// The players go on playing on the backend they had.
	p.send("echo still here")
	p.expect("echo: still here")
}

// capture runs tcpdump on iface, writing the packets to a file, until the
// returned function stops it and returns what was captured.
func capture(t *testing.T, iface string) func() []byte {
	t.Helper()
	tcpdump := needTool(t, "tcpdump")
	path := filepath.Join(t.TempDir(), "link.pcap")
	cmd := exec.Command(tcpdump, "-i", iface, "-U", "-s", "0", "-w", path, "tcp")
	var out bytes.Buffer
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		once := sync.Once{}
		for {
			n, err := pr.Read(buf)
			out.Write(buf[:n])
			if bytes.Contains(out.Bytes(), []byte("listening on")) {
				once.Do(func() { close(listening) })
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-listening:
	case <-time.After(waitFor):
		cmd.Process.Kill()
		t.Fatal("tcpdump did not start listening")
	}
	stopped := false
	stop := func() []byte {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGINT)
			cmd.Wait()
			pw.Close()
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Cleanup(func() { stop() })
	return stop
}

// nsRun runs one of the project's binaries in the namespace ns.
func nsRun(t *testing.T, ns string, env []string, path string, args ...string) *proc {
	t.Helper()
	return startPath(t, needTool(t, "ip"), env, append([]string{"netns", "exec", ns, path}, args...)...)
}

// TestLinkAcrossHosts runs the backend and its registry on another host
// and the gateway on this one, with what crosses between them captured: a
// player's password and the cookie never cross in the clear, and a relay
// on the other host, registered as the backend's successor, is taken for
// no successor and sees nothing either.
func TestLinkAcrossHosts(t *testing.T) {
	ns := secondHost(t)
	stop := capture(t, hostIface(ns))

	out, err := exec.Command("ip", "netns", "exec", ns, filepath.Join(binDir, "load"), "port").Output()
	if err != nil {
		t.Fatalf("a free port on the other host: %v", err)
	}
	port := strings.TrimSpace(string(out))
	env := []string{"ERL_EPMD_PORT=" + port}
	// The backend registers once the registry answers, whichever starts first.
	nsRun(t, ns, env, filepath.Join(binDir, "epmd"), "-port", port, "-address", guestAddr)
	cookie := writeCookie(t, "cookie-across-hosts-3f1c")
	be := nsRun(t, ns, env, filepath.Join(binDir, "backend"), "-listen", guestAddr+":0", "-cookie-file", cookie)
	be.waitLog("backend: registered", 1)

	gw := start(t, "gateway", env, "-listen", "127.0.0.1:0", "-epmd-port", "0", "-cookie-file", cookie,
		"-backend", "game@"+guestAddr)
	addr := gw.waitLog("gateway: telnet listening", 1)["addr"].(string)
	gw.waitLog("gateway: backend linked", 1)

	p := dial(t, addr, "hunter2")
	p.expect("What is your name?")
	p.send("hunter2")
	p.expect("Welcome, hunter2.")
	p.send("echo the password is swordfish")
	p.expect("echo: the password is swordfish")

	r := nsRun(t, ns, []string{"HOLDFAST_RELAY=" + net.JoinHostPort("127.0.0.1", port) + ",game," + guestAddr}, os.Args[0])
	r.waitLog("relay: registered", 1)
	gw.waitLog("gateway: the successor's name leads to the backend already linked; not a successor", 1)
	r.waitLog("relay: connection closed", 1)
	p.send("echo through it all")
	p.expect("echo: through it all")

	seen := stop()
	if !bytes.Contains(seen, []byte("HOLDFAST")) {
		t.Fatalf("the capture (%d bytes) holds no link: nothing to judge", len(seen))
	}
	got, _ := relayed(t, r)
	for _, secret := range []string{"swordfish", "through it all", "hunter2", "cookie-across-hosts-3f1c"} {
		if bytes.Contains(seen, []byte(secret)) {
			t.Errorf("%q crossed the network in the clear", secret)
		}
		if bytes.Contains(got, []byte(secret)) {
			t.Errorf("the relay saw %q", secret)
		}
	}
	if be.count("backend: every player went to the successor; stopping") != 0 {
		t.Error("the relay made the backend retire")
	}
}
