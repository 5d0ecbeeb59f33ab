package test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestStandaloneRegistryRestart kills the standalone registry under a
// running system: the backend registers again by itself, no player notices,
// and a backend restart afterwards still resumes everyone.
func TestStandaloneRegistryRestart(t *testing.T) {
	reg, port := startEPMD(t, ourEPMD)
	sys := startSystemOn(t, port, "-epmd-port", strconv.Itoa(port), "-embed-epmd=false")
	be := sys.startBackend()
	var players []*player
	for _, n := range []string{"Ann", "Ben"} {
		p := dial(t, sys.telnet, n)
		p.login()
		players = append(players, p)
	}

	reg.kill(syscall.SIGKILL)
	reg.wait()
	startPath(t, epmdPath(t, ourEPMD), nil, "-port", strconv.Itoa(port))
	eventually(t, "the backend registers again by itself", func() bool { return registered(port, "game") })
	be.waitLog("epmd: registered again", 1)
	for _, p := range players {
		p.send("echo still here")
		p.expect("echo: still here")
	}

	be.kill(syscall.SIGKILL)
	be.wait()
	sys.startBackend()
	for _, p := range players {
		p.expect("[holdfast] The game is back.")
		if f := p.facts(); f["resumed"] != "1" {
			t.Errorf("%s after the backend restart: %v", p.name, f)
		}
	}
	players[0].who("Ann, Ben")
}

// TestStartOrders starts registry, gateway and backend in every order: each
// time the system converges and serves a player.
func TestStartOrders(t *testing.T) {
	orders := [][3]string{
		{"epmd", "gateway", "backend"}, {"epmd", "backend", "gateway"},
		{"gateway", "epmd", "backend"}, {"gateway", "backend", "epmd"},
		{"backend", "epmd", "gateway"}, {"backend", "gateway", "epmd"},
	}
	for _, order := range orders {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			t.Parallel()
			port := freePort(t)
			cookie := writeCookie(t, "order")
			env := []string{"ERL_EPMD_PORT=" + strconv.Itoa(port)}
			var gw *proc
			for _, what := range order {
				switch what {
				case "epmd":
					start(t, "epmd", env)
				case "gateway":
					// Not embedding: the gateway must find the registry,
					// whenever it comes.
					gw = start(t, "gateway", env, "-listen", "127.0.0.1:0", "-embed-epmd=false", "-cookie-file", cookie)
				case "backend":
					start(t, "backend", env, "-cookie-file", cookie)
				}
			}
			gw.waitLog("gateway: backend linked", 1)
			p := dial(t, gw.waitLog("gateway: telnet listening", 1)["addr"].(string), "Ord")
			p.login()
		})
	}
}

// TestSocketActivation hands the daemon its listening socket as systemd
// does, and checks that it serves on it and reports readiness.
func TestSocketActivation(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	f, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	notifyPath := filepath.Join(t.TempDir(), "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()

	// systemd sets LISTEN_PID to the service's own pid; a shell that execs
	// the daemon knows it in advance.
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ exec "$0" -systemd`, filepath.Join(binDir, "epmd"))
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "NOTIFY_SOCKET="+notifyPath)
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	notify.SetReadDeadline(time.Now().Add(waitFor))
	b := make([]byte, 64)
	n, err := notify.Read(b)
	if err != nil || string(b[:n]) != "READY=1" {
		t.Fatalf("readiness: %q %v", b[:n], err)
	}
	stdout, _, code := cli(t, ourEPMD, port, "-names")
	if code != 0 || stdout != fmt.Sprintf("epmd: up and running on port %d with data:\n", port) {
		t.Fatalf("-names against the socket-activated daemon: %q (exit %d)", stdout, code)
	}
}
