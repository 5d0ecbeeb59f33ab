package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"

	"holdfast/gateway/telnet"
)

// A network of hosts for the tests of several gateways: each host a
// network namespace with one veth on a bridge of the network's own, so
// that the hosts reach each other and nothing else.
type hostNet struct {
	t     *testing.T
	hosts map[string]string // role -> namespace
	addrs map[string]string // role -> address
}

// lanPrefix is the network's: inside the namespaces only, where it
// collides with nothing.
const lanPrefix = "10.77.0."

// newHostNet makes a host for each role, at the address given. It needs
// root and iproute2; outside CI their absence skips the test.
func newHostNet(t *testing.T, roles map[string]int) *hostNet {
	t.Helper()
	ip := needTool(t, "ip")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the tests of several hosts need root")
		}
		t.Skip("the tests of several hosts need root to make network namespaces")
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	id := strconv.Itoa(os.Getpid() % 100000)
	br := "mgbr" + id
	run("link", "add", br, "type", "bridge")
	t.Cleanup(func() { exec.Command(ip, "link", "del", br).Run() })
	run("link", "set", br, "up")
	n := &hostNet{t: t, hosts: map[string]string{}, addrs: map[string]string{}}
	names := slices.Sorted(func(yield func(string) bool) {
		for r := range roles {
			if !yield(r) {
				return
			}
		}
	})
	for i, role := range names {
		ns, outer, inner := "mg"+role+id, "mg"+strconv.Itoa(i)+"x"+id, "mg"+strconv.Itoa(i)+"y"+id
		addr := lanPrefix + strconv.Itoa(roles[role])
		run("netns", "add", ns)
		t.Cleanup(func() { exec.Command(ip, "netns", "del", ns).Run() })
		run("link", "add", outer, "type", "veth", "peer", "name", inner)
		t.Cleanup(func() { exec.Command(ip, "link", "del", outer).Run() })
		run("link", "set", outer, "master", br)
		run("link", "set", outer, "up")
		run("link", "set", inner, "netns", ns)
		run("-n", ns, "addr", "add", addr+"/24", "dev", inner)
		run("-n", ns, "link", "set", inner, "up")
		run("-n", ns, "link", "set", "lo", "up")
		n.hosts[role], n.addrs[role] = ns, addr
		if role == "players" {
			// More addresses, so that each player has one of its own for
			// the game to see.
			for k := 1; k <= 20; k++ {
				run("-n", ns, "addr", "add", lanPrefix+strconv.Itoa(100+k)+"/24", "dev", inner)
			}
		}
	}
	return n
}

// in runs f in host role's namespace: the sockets f opens belong there.
// It runs on a thread of its own, which ends with it, so no other
// goroutine ever runs in the namespace.
func (n *hostNet) in(role string, f func()) {
	n.t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
		fd, err := unix.Open("/run/netns/"+n.hosts[role], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		n.t.Fatalf("entering %s's namespace: %v", role, err)
	}
}

// freePorts returns k distinct ports free on host role.
func (n *hostNet) freePorts(role string, k int) []string {
	n.t.Helper()
	var ports []string
	n.in(role, func() {
		for range k {
			ln, err := net.Listen("tcp", ":0")
			if err != nil {
				n.t.Error(err)
				return
			}
			defer ln.Close()
			ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
		}
	})
	if len(ports) != k {
		n.t.FailNow()
	}
	return ports
}

// dial connects from address from on the players' host.
func (n *hostNet) dial(from, addr string) (net.Conn, error) {
	var c net.Conn
	var err error
	n.in("players", func() {
		d := net.Dialer{Timeout: waitFor, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err = d.Dial("tcp", addr)
	})
	return c, err
}

// healthz asks a gateway's /healthz from the players' host.
func (n *hostNet) healthz(addr string) (int, string) {
	n.t.Helper()
	client := http.Client{Timeout: waitFor, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) { return n.dial(lanPrefix+"100", a) },
	}}
	resp, err := client.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var h struct{ Status string }
	json.NewDecoder(resp.Body).Decode(&h)
	return resp.StatusCode, h.Status
}

// waitRaw waits for the n-th line of p's output that holds text (counting
// from 1), and returns it.
func (p *proc) waitRaw(text string, n int) string {
	p.t.Helper()
	deadline := time.After(waitFor)
	for {
		p.mu.Lock()
		seen := 0
		for _, l := range p.raw {
			if strings.Contains(l, text) {
				if seen++; seen == n {
					p.mu.Unlock()
					return l
				}
			}
		}
		more := p.more
		p.mu.Unlock()
		select {
		case <-more:
		case <-p.done:
			p.t.Fatalf("%s exited before printing %q (#%d)", p.name, text, n)
		case <-deadline:
			p.t.Fatalf("%s did not print %q (#%d) within %v", p.name, text, n, waitFor)
		}
	}
}

// countRaw counts the lines of p's output that hold text.
func (p *proc) countRaw(text string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.raw {
		if strings.Contains(l, text) {
			n++
		}
	}
	return n
}

// exitCode waits for p to exit and returns its status.
func (p *proc) exitCode() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitFor):
		p.t.Fatalf("%s did not exit", p.name)
	}
	return p.cmd.ProcessState.ExitCode()
}

// loggedClient reports whether p logged a player connected from client.
func (p *proc) loggedClient(client string) bool {
	return p.logged("gateway: player connected", "client", client)
}

// farPlayer is a player on the players' host, through the balancer.
type farPlayer struct {
	*player
	ip string
	gw *proc // the gateway that holds it
	id string
}

// farPage is a browser player's page on the players' host, through the
// balancer's web frontend: telnet in binary messages, the gateway's word
// in text ones, resumable (?hold).
type farPage struct {
	t       *testing.T
	name    string
	ws      *websocket.Conn
	local   string // the page's address, as the gateway logs it
	gw      *proc
	id      string
	notices []string
}

// openPage opens a page from address ip on the players' host.
func (n *hostNet) openPage(name, ip, url string) *farPage {
	n.t.Helper()
	pg := &farPage{t: n.t, name: name}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := n.dial(ip, addr)
			if err == nil {
				pg.local = c.LocalAddr().String()
			}
			return c, err
		},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client, Subprotocols: []string{"telnet.mudstandards.org"}})
	if err != nil {
		n.t.Fatalf("%s: opening the page: %v", name, err)
	}
	n.t.Cleanup(func() { ws.CloseNow() })
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{}`)); err != nil {
		n.t.Fatal(err)
	}
	pg.ws = ws
	return pg
}

func (pg *farPage) send(line string) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := pg.ws.Write(ctx, websocket.MessageBinary, []byte(line+"\r\n")); err != nil {
		pg.t.Fatalf("%s: %v", pg.name, err)
	}
}

// read reads the page's messages until its output holds want, and returns
// the output read; the gateway's notices are kept. With want empty it
// reads until the WebSocket closes, and returns its close status.
func (pg *farPage) read(want string) (string, websocket.StatusCode) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var out strings.Builder
	for want == "" || !strings.Contains(out.String(), want) {
		typ, msg, err := pg.ws.Read(ctx)
		if err != nil {
			if want == "" {
				return out.String(), websocket.CloseStatus(err)
			}
			pg.t.Fatalf("%s: waiting for %q (had %q): %v", pg.name, want, out.String(), err)
		}
		if typ == websocket.MessageText {
			pg.notices = append(pg.notices, string(msg))
		} else {
			out.Write(msg)
		}
	}
	return out.String(), 0
}

// TestSeveralGateways runs the shipped deploy/haproxy.cfg before two
// gateways on hosts of their own, the game on a third, players on a
// fourth: players spread, the game sees them all and where they are; a
// drain sends new players to the other gateway and keeps the drained
// one's telnet players until its deadline; a gateway killed takes its
// players' connections but the game holds their sessions for the orphan
// timeout; and a gateway started later gets players once healthy.
func TestSeveralGateways(t *testing.T) {
	haproxy := needTool(t, "haproxy")
	cfg, err := filepath.Abs("../deploy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	lan := newHostNet(t, map[string]int{"gw1": 11, "gw2": 12, "game": 20, "lb": 5, "players": 100})
	gwPorts := lan.freePorts("gw1", 3) // telnet, web, admin: the same on every gateway host
	telnetPort, webPort, adminPort := gwPorts[0], gwPorts[1], gwPorts[2]
	lan.in("gw2", func() { // a fresh host: free there too, but make sure
		for _, p := range gwPorts {
			ln, err := net.Listen("tcp", ":"+p)
			if err != nil {
				t.Errorf("port %s on the second gateway's host: %v", p, err)
				continue
			}
			ln.Close()
		}
	})
	epmdPort := lan.freePorts("game", 1)[0]
	lbPorts := lan.freePorts("lb", 2)
	lbTelnet := net.JoinHostPort(lan.addrs["lb"], lbPorts[0])

	// The game's host: its registry, and the backend, which the gateways
	// on the other hosts reach by NAME@HOST.
	env := []string{"ERL_EPMD_PORT=" + epmdPort}
	cookie := writeCookie(t, "cookie-several-gateways")
	nsRun(t, lan.hosts["game"], env, filepath.Join(binDir, "epmd"), "-port", epmdPort, "-address", lan.addrs["game"])
	const orphanTimeout = 6 * time.Second
	be := nsRun(t, lan.hosts["game"], env, filepath.Join(binDir, "backend"), "-listen", lan.addrs["game"]+":0",
		"-cookie-file", cookie, "-orphan-timeout", orphanTimeout.String())
	be.waitLog("backend: registered", 1)

	const drainMessage = "Maintenance on this server: please come back in a minute."
	const drainTimeout = 6 * time.Second
	startGateway := func(role string) (*proc, string) {
		t.Helper()
		control := filepath.Join(t.TempDir(), role+".sock")
		gw := nsRun(t, lan.hosts[role], env, filepath.Join(binDir, "gateway"),
			"-listen", ":"+telnetPort, "-ws-listen", ":"+webPort, "-metrics", net.JoinHostPort(lan.addrs[role], adminPort),
			"-control", control, "-embed-epmd=false", "-backend", "game@"+lan.addrs["game"],
			"-proxy-protocol", lan.addrs["lb"], "-cookie-file", cookie, "-max-per-ip", "0", "-conn-rate", "0",
			"-drain-message", drainMessage, "-drain-timeout", drainTimeout.String())
		gw.name = "gateway on " + role
		gw.waitLog("gateway: backend linked", 1)
		return gw, control
	}
	gw1, control1 := startGateway("gw1")
	gw2, _ := startGateway("gw2")
	name := map[*proc]string{gw1: "gw1", gw2: "gw2"}

	lb := nsRun(t, lan.hosts["lb"], []string{
		"TELNET_BIND=" + lbTelnet, "WEB_BIND=" + net.JoinHostPort(lan.addrs["lb"], lbPorts[1]),
		"GATEWAY1_ADDR=" + lan.addrs["gw1"], "GATEWAY2_ADDR=" + lan.addrs["gw2"],
		"GATEWAY_TELNET_PORT=" + telnetPort, "GATEWAY_WEB_PORT=" + webPort, "GATEWAY_ADMIN_PORT=" + adminPort,
	}, haproxy, "-f", cfg, "-db")
	lb.name = "haproxy"
	be.name = "backend"

	var ids []string
	nextIP := 101
	// arrive connects a player through the balancer, logs them in, and
	// finds the gateway that holds them, among gws.
	arrive := func(who string, gws ...*proc) *farPlayer {
		t.Helper()
		ip := lanPrefix + strconv.Itoa(nextIP)
		nextIP++
		var c net.Conn
		deadline := time.Now().Add(waitFor)
		for {
			var err error
			if c, err = lan.dial(ip, lbTelnet); err == nil {
				break
			}
			if time.Now().After(deadline) { // HAProxy is starting
				t.Fatalf("%s: connecting through the balancer: %v", who, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Cleanup(func() { c.Close() })
		p := &farPlayer{player: &player{t: t, name: who, conn: c, r: bufio.NewReader(telnet.Strip(c))}, ip: ip}
		p.login()
		f := p.facts()
		if f["client_ip"] != ip {
			t.Errorf("%s: the game sees client_ip %q, want the player's own %s", who, f["client_ip"], ip)
		}
		p.id = f["id"]
		ids = append(ids, p.id)
		for _, gw := range gws {
			if gw.loggedClient(c.LocalAddr().String()) {
				p.gw = gw
			}
		}
		if p.gw == nil {
			t.Fatalf("%s (%s): none of the gateways logged the player", who, c.LocalAddr())
		}
		return p
	}
	on := func(gw *proc, ps ...*farPlayer) (n int) {
		for _, p := range ps {
			if p.gw == gw {
				n++
			}
		}
		return n
	}

	// Spread: leastconn takes the gateways in turn.
	first := []*farPlayer{arrive("Ann", gw1, gw2), arrive("Bob", gw1, gw2), arrive("Cid", gw1, gw2), arrive("Dee", gw1, gw2)}
	if on(gw1, first...) == 0 || on(gw2, first...) == 0 {
		t.Fatalf("the players did not spread: %d on gw1, %d on gw2", on(gw1, first...), on(gw2, first...))
	}
	// Two browser players, one on each gateway.
	webURL := "ws://" + net.JoinHostPort(lan.addrs["lb"], lbPorts[1]) + "/ws?hold"
	var pages []*farPage
	for _, who := range []string{"Pia", "Quin"} {
		pg := lan.openPage(who, lanPrefix+strconv.Itoa(nextIP), webURL)
		nextIP++
		pg.read("What is your name?")
		pg.send(who)
		pg.read("Welcome, " + who + ".")
		pg.send("session")
		out, _ := pg.read("client_ip: ")
		_, id, _ := strings.Cut(out, "id: ")
		pg.id, _, _ = strings.Cut(id, "\n")
		pg.id = strings.TrimSpace(pg.id)
		ids = append(ids, pg.id)
		for _, gw := range []*proc{gw1, gw2} {
			if gw.loggedClient(pg.local) {
				pg.gw = gw
			}
		}
		if pg.gw == nil {
			t.Fatalf("%s (%s): none of the gateways logged the page", who, pg.local)
		}
		pages = append(pages, pg)
	}
	if pages[0].gw == pages[1].gw {
		t.Fatalf("both pages went to %s", name[pages[0].gw])
	}
	first[0].who("Ann, Bob, Cid, Dee, Pia, Quin")
	first[3].who("Ann, Bob, Cid, Dee, Pia, Quin")
	first[0].send("say hello from wherever I am")
	for _, p := range first {
		p.expect("Ann says: hello from wherever I am")
	}
	for _, pg := range pages {
		pg.read("Ann says: hello from wherever I am")
	}

	// Drain gw1.
	var drained, stay []*farPlayer
	for _, p := range first {
		if p.gw == gw1 {
			drained = append(drained, p)
		} else {
			stay = append(stay, p)
		}
	}
	gw1Admin := net.JoinHostPort(lan.addrs["gw1"], adminPort)
	if code, status := lan.healthz(gw1Admin); code != http.StatusOK || status != "ok" {
		t.Fatalf("gw1 /healthz before the drain: %d %q", code, status)
	}
	drain := startPath(t, filepath.Join(binDir, "gateway"), nil, "drain", "-control", control1)
	// The page on gw1 is sent elsewhere at once: told, and its WebSocket
	// closed with 1012 so that it reconnects through the balancer.
	var pageStays *farPage
	for _, pg := range pages {
		if pg.gw != gw1 {
			pageStays = pg
			continue
		}
		if _, code := pg.read(""); code != 1012 {
			t.Errorf("%s: the drained gateway closed the page's WebSocket with %d, want 1012", pg.name, code)
		}
		if !strings.Contains(strings.Join(pg.notices, "\n"), "Reconnecting you to another one") {
			t.Errorf("%s was not told why the page reconnects: %q", pg.name, pg.notices)
		}
	}
	drain.waitRaw(fmt.Sprintf("draining: %d players left (telnet %d, telnet+tls 0, web 0)", len(drained), len(drained)), 1)
	if code, status := lan.healthz(gw1Admin); code != http.StatusServiceUnavailable || status != "draining" {
		t.Errorf("gw1 /healthz draining: %d %q, want 503 draining", code, status)
	}
	for _, p := range drained {
		p.expect("[holdfast] " + drainMessage)
		p.send("echo still here")
		p.expect("echo: still here")
	}
	// New players go to gw2 at once: gw1 refuses, HAProxy tries gw2; and
	// once the health check has seen the drain, HAProxy sends none to gw1.
	newcomers := []*farPlayer{arrive("Eve", gw1, gw2), arrive("Fay", gw1, gw2)}
	stay[0].who("Ann, Bob, Cid, Dee, Eve, Fay, " + pageStays.name) // the drained gateway's telnet players still play
	// The health check saw the drain (fall 2, inter 2s: within about 4 s,
	// before the deadline), and marking gw1 down cut none of its players.
	if down := lb.waitRaw("gateways-telnet/gw1 is DOWN", 1); !strings.Contains(down, "code: 503") {
		t.Errorf("HAProxy marked the draining gateway down for another reason: %s", down)
	}
	for _, p := range drained {
		p.send("echo after the balancer let go")
		p.expect("echo: after the balancer let go")
	}
	newcomers = append(newcomers, arrive("Gus", gw1, gw2))
	if n := on(gw1, newcomers...); n != 0 {
		t.Errorf("%d new players went to the draining gateway", n)
	}
	// At the deadline, gw1's players are told again and disconnected.
	for _, p := range drained {
		p.conn.SetReadDeadline(time.Now().Add(waitFor))
		rest, err := io.ReadAll(p.r)
		if err != nil {
			t.Errorf("%s: waiting for the drain's deadline: %v", p.name, err)
		}
		if !strings.Contains(string(rest), drainMessage) {
			t.Errorf("%s was disconnected with %q, want the drain message", p.name, rest)
		}
	}
	if code := gw1.exitCode(); code != 0 {
		t.Errorf("the drained gateway exited %d, want 0", code)
	}
	if code := drain.exitCode(); code != 0 {
		t.Errorf("gateway drain exited %d, want 0", code)
	}
	drain.waitRaw("drained: no player is left; the gateway exits", 1)
	for _, p := range stay {
		p.send("echo undisturbed")
		p.expect("echo: undisturbed")
	}
	pageStays.send("echo undisturbed")
	pageStays.read("echo: undisturbed")
	stay[0].who(strings.Join(slices.Sorted(slices.Values(append(namesOf(append(stay, newcomers...)), pageStays.name))), ", "))

	// A gateway started later on gw1's host links, and once its health
	// check passes HAProxy sends it the next player: it holds the fewest.
	ups := lb.countRaw("gateways-telnet/gw1 is UP")
	gw3, _ := startGateway("gw1")
	name[gw3] = "gw1 again"
	t.Logf("haproxy: %s", lb.waitRaw("gateways-telnet/gw1 is UP", ups+1))
	late := arrive("Hal", gw2, gw3)
	if late.gw != gw3 {
		t.Errorf("the player after gw1 came back went to %s, want the new gateway", name[late.gw])
	}

	// SIGKILL gw2: its players' connections end; the game holds their
	// sessions for the orphan timeout, so a player who comes back in that
	// time finds the character still there, as a player whose gateway
	// stayed away does today; the new gateway's player plays on.
	var orphans []*farPlayer
	for _, p := range append(stay, newcomers...) {
		if p.gw == gw2 {
			orphans = append(orphans, p)
		}
	}
	gw2.kill(syscall.SIGKILL)
	for _, p := range orphans {
		p.expectClosed()
	}
	be.waitLog("backend: gateway link closed", 2) // the drained gateway's was the first
	back := arrive("Bob", gw3)                    // gw2 refuses: HAProxy tries gw3
	if _, code := pageStays.read(""); code == websocket.StatusNormalClosure {
		t.Errorf("%s: the killed gateway's page was closed as if its session had ended", pageStays.name)
	}
	late.who(strings.Join(slices.Sorted(slices.Values(append(namesOf(orphans), "Bob", "Hal", pageStays.name))), ", "))
	for _, id := range append(idsOf(orphans), pageStays.id) {
		be.waitLogged("backend: session not claimed by a gateway in time; the player has gone", "session", id)
	}
	late.who("Bob, Hal")
	late.send("echo after all that")
	late.expect("echo: after all that")
	back.send("say back again")
	late.expect("Bob says: back again")

	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("session id %s given twice", id)
		}
		seen[id] = true
	}
}

func idsOf(ps []*farPlayer) []string {
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.id)
	}
	return ids
}

func namesOf(ps []*farPlayer) []string {
	var names []string
	for _, p := range ps {
		names = append(names, p.name)
	}
	return names
}

// TestDeployUnits checks deploy/'s systemd units with systemd-analyze
// verify, as TestSystemdUnits does the others.
func TestDeployUnits(t *testing.T) {
	analyze := needTool(t, "systemd-analyze")
	dir := t.TempDir()
	var args []string
	for _, u := range []string{"../deploy/holdfast-gateway.service", "../deploy/holdfast-backend.service",
		"../cmd/epmd/epmd.socket", "../cmd/epmd/epmd.service"} {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/", binDir+"/")), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, path)
	}
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, args...)...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
