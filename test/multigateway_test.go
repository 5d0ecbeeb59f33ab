//go:build linux

package test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
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
	// For coming back through another gateway: the last token, and the
	// game's count of what the page typed (a line and "\n" each).
	token  string
	typed  uint64
	client *http.Client
}

// openPage opens a page from address ip on the players' host.
func (n *hostNet) openPage(name, ip, url string) *farPage {
	n.t.Helper()
	pg := &farPage{t: n.t, name: name}
	pg.client = &http.Client{Transport: &http.Transport{
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
	pg.open(ctx, url, `{}`)
	return pg
}

// open opens the page's WebSocket at url with hello.
func (pg *farPage) open(ctx context.Context, url, hello string) {
	pg.t.Helper()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: pg.client, Subprotocols: []string{"telnet.mudstandards.org"}})
	if err != nil {
		pg.t.Fatalf("%s: opening the page: %v", pg.name, err)
	}
	pg.t.Cleanup(func() { ws.CloseNow() })
	if err := ws.Write(ctx, websocket.MessageText, []byte(hello)); err != nil {
		pg.t.Fatal(err)
	}
	pg.ws = ws
}

// comeBack opens the page's session again through the balancer at url, as
// the web client does when its WebSocket breaks, and checks that the
// gateway it reaches claimed the session from elsewhere.
func (pg *farPage) comeBack(url string) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	hello := fmt.Sprintf(`{"resume":%q,"got":0,"session":%q,"in":%d}`, pg.token, pg.id, pg.typed)
	pg.open(ctx, url+"&resume", hello)
	for {
		typ, msg, err := pg.ws.Read(ctx)
		if err != nil {
			pg.t.Fatalf("%s: coming back: %v", pg.name, err)
		}
		var m struct {
			Token     string
			Elsewhere bool
		}
		if typ == websocket.MessageText && json.Unmarshal(msg, &m) == nil && m.Token != "" {
			if !m.Elsewhere {
				pg.t.Fatalf("%s came back to a gateway that knew it: %s", pg.name, msg)
			}
			pg.token = m.Token
			return
		}
	}
}

func (pg *farPage) send(line string) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := pg.ws.Write(ctx, websocket.MessageBinary, []byte(line+"\r\n")); err != nil {
		pg.t.Fatalf("%s: %v", pg.name, err)
	}
	pg.typed += uint64(len(line)) + 1
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
			var m struct{ Token string }
			if json.Unmarshal(msg, &m) == nil && m.Token != "" {
				pg.token = m.Token
			}
		} else {
			out.Write(msg)
		}
	}
	return out.String(), 0
}

// farm is the layout of deploy/: a game's host with its registry and
// backend, gateways on hosts of their own linked to it, HAProxy with
// deploy/haproxy.cfg before them, and a host for the players.
type farm struct {
	t      *testing.T
	lan    *hostNet
	env    []string
	cookie string
	// The ports every gateway listens on, each on its own host, and the
	// balancer's.
	telnetPort, webPort, adminPort string
	lbTelnet, lbWeb                string
	lb                             *proc
	ids                            []string // every session id a player was given
	nextIP                         int      // the next player's address on the players' host
}

func newFarm(t *testing.T) *farm {
	t.Helper()
	f := &farm{t: t, nextIP: 101}
	f.lan = newHostNet(t, map[string]int{"gw1": 11, "gw2": 12, "game": 20, "lb": 5, "players": 100})
	gwPorts := f.lan.freePorts("gw1", 3)
	f.telnetPort, f.webPort, f.adminPort = gwPorts[0], gwPorts[1], gwPorts[2]
	f.lan.in("gw2", func() { // a fresh host: free there too, but make sure
		for _, p := range gwPorts {
			ln, err := net.Listen("tcp", ":"+p)
			if err != nil {
				t.Errorf("port %s on the second gateway's host: %v", p, err)
				continue
			}
			ln.Close()
		}
	})
	lbPorts := f.lan.freePorts("lb", 2)
	f.lbTelnet = net.JoinHostPort(f.lan.addrs["lb"], lbPorts[0])
	f.lbWeb = net.JoinHostPort(f.lan.addrs["lb"], lbPorts[1])
	// The game's host: its registry, which the gateways on the other hosts
	// ask by NAME@HOST.
	epmdPort := f.lan.freePorts("game", 1)[0]
	f.env = []string{"ERL_EPMD_PORT=" + epmdPort}
	f.cookie = writeCookie(t, "cookie-several-gateways")
	nsRun(t, f.lan.hosts["game"], f.env, filepath.Join(binDir, "epmd"), "-port", epmdPort, "-address", f.lan.addrs["game"])
	return f
}

// startBackend starts a backend on the game's host.
func (f *farm) startBackend(args ...string) *proc {
	f.t.Helper()
	be := nsRun(f.t, f.lan.hosts["game"], f.env, filepath.Join(binDir, "backend"),
		append([]string{"-listen", f.lan.addrs["game"] + ":0", "-cookie-file", f.cookie}, args...)...)
	be.name = "backend"
	return be
}

// startGateway starts a gateway on host role, as deploy/'s unit does, and
// waits for its link to the backend; it returns its control socket too.
func (f *farm) startGateway(role string, args ...string) (*proc, string) {
	f.t.Helper()
	control := filepath.Join(f.t.TempDir(), role+".sock")
	gw := nsRun(f.t, f.lan.hosts[role], f.env, filepath.Join(binDir, "gateway"), append([]string{
		"-listen", ":" + f.telnetPort, "-ws-listen", ":" + f.webPort,
		"-metrics", net.JoinHostPort(f.lan.addrs[role], f.adminPort), "-control", control,
		"-embed-epmd=false", "-backend", "game@" + f.lan.addrs["game"], "-proxy-protocol", f.lan.addrs["lb"],
		"-cookie-file", f.cookie, "-max-per-ip", "0", "-conn-rate", "0"}, args...)...)
	gw.name = "gateway on " + role
	gw.waitLog("gateway: backend linked", 1)
	return gw, control
}

// startBalancer runs HAProxy with deploy/haproxy.cfg as shipped, only its
// addresses from the environment.
func (f *farm) startBalancer() {
	f.t.Helper()
	haproxy := needTool(f.t, "haproxy")
	cfg, err := filepath.Abs("../deploy/haproxy.cfg")
	if err != nil {
		f.t.Fatal(err)
	}
	f.lb = nsRun(f.t, f.lan.hosts["lb"], []string{
		"TELNET_BIND=" + f.lbTelnet, "WEB_BIND=" + f.lbWeb,
		"GATEWAY1_ADDR=" + f.lan.addrs["gw1"], "GATEWAY2_ADDR=" + f.lan.addrs["gw2"],
		"GATEWAY_TELNET_PORT=" + f.telnetPort, "GATEWAY_WEB_PORT=" + f.webPort, "GATEWAY_ADMIN_PORT=" + f.adminPort,
	}, haproxy, "-f", cfg, "-db")
	f.lb.name = "haproxy"
}

// arrive connects a player through the balancer from an address of its
// own, logs them in, checks that the game sees that address, and finds
// the gateway that holds them, among gws.
func (f *farm) arrive(who string, gws ...*proc) *farPlayer {
	t := f.t
	t.Helper()
	ip := lanPrefix + strconv.Itoa(f.nextIP)
	f.nextIP++
	var c net.Conn
	deadline := time.Now().Add(waitFor)
	for {
		var err error
		if c, err = f.lan.dial(ip, f.lbTelnet); err == nil {
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
	facts := p.facts()
	if facts["client_ip"] != ip {
		t.Errorf("%s: the game sees client_ip %q, want the player's own %s", who, facts["client_ip"], ip)
	}
	p.id = facts["id"]
	f.ids = append(f.ids, p.id)
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

// uniqueIDs checks that no two players were given one session id.
func (f *farm) uniqueIDs() {
	seen := map[string]bool{}
	for _, id := range f.ids {
		if seen[id] {
			f.t.Errorf("session id %s given twice", id)
		}
		seen[id] = true
	}
}

// TestSeveralGateways runs the shipped deploy/haproxy.cfg before two
// gateways on hosts of their own, the game on a third, players on a
// fourth: players spread, the game sees them all and where they are; a
// drain sends new players to the other gateway and keeps the drained
// one's telnet players until its deadline; a gateway killed takes its
// players' connections but the game holds their sessions for the orphan
// timeout; and a gateway started later gets players once healthy.
func TestSeveralGateways(t *testing.T) {
	f := newFarm(t)
	lan := f.lan
	const orphanTimeout = 6 * time.Second
	be := f.startBackend("-orphan-timeout", orphanTimeout.String())
	be.waitLog("backend: registered", 1)
	const drainMessage = "Maintenance on this server: please come back in a minute."
	const drainTimeout = 6 * time.Second
	startGateway := func(role string) (*proc, string) {
		t.Helper()
		return f.startGateway(role, "-drain-message", drainMessage, "-drain-timeout", drainTimeout.String())
	}
	gw1, control1 := startGateway("gw1")
	gw2, control2 := startGateway("gw2")
	role := map[*proc]string{gw1: "gw1", gw2: "gw2"}
	control := map[*proc]string{gw1: control1, gw2: control2}
	f.startBalancer()
	lb := f.lb
	arrive := f.arrive
	on := func(gw *proc, ps ...*farPlayer) (n int) {
		for _, p := range ps {
			if p.gw == gw {
				n++
			}
		}
		return n
	}
	sorted := func(names ...string) string { return strings.Join(slices.Sorted(slices.Values(names)), ", ") }

	// Spread: leastconn takes the gateways in turn.
	var first []*farPlayer
	for _, who := range []string{"Ann", "Bob", "Cid", "Dee", "Eli"} {
		first = append(first, arrive(who, gw1, gw2))
	}
	if on(gw1, first...) < 2 || on(gw2, first...) < 2 {
		t.Fatalf("the players did not spread: %d on gw1, %d on gw2", on(gw1, first...), on(gw2, first...))
	}
	// Two browser players, one on each gateway.
	webURL := "ws://" + f.lbWeb + "/ws?hold"
	var pages []*farPage
	for _, who := range []string{"Pia", "Quin"} {
		pg := lan.openPage(who, lanPrefix+strconv.Itoa(f.nextIP), webURL)
		f.nextIP++
		pg.read("What is your name?")
		pg.send(who)
		pg.read("Welcome, " + who + ".")
		pg.send("session")
		out, _ := pg.read("client_ip: ")
		_, id, _ := strings.Cut(out, "id: ")
		pg.id, _, _ = strings.Cut(id, "\n")
		pg.id = strings.TrimSpace(pg.id)
		f.ids = append(f.ids, pg.id)
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
		t.Fatalf("both pages went to %s", role[pages[0].gw])
	}
	everyone := sorted(append(namesOf(first), "Pia", "Quin")...)
	first[0].who(everyone)
	first[len(first)-1].who(everyone)
	first[0].send("say hello from wherever I am")
	for _, p := range first {
		p.expect("Ann says: hello from wherever I am")
	}
	for _, pg := range pages {
		pg.read("Ann says: hello from wherever I am")
	}

	// Drain the gateway with fewer telnet players: HAProxy's leastconn
	// sends it the next player until the health check has seen the drain,
	// and that player gets in all the same, on the other gateway.
	dr, other := gw1, gw2
	if on(gw2, first...) < on(gw1, first...) {
		dr, other = gw2, gw1
	}
	var drained, stay []*farPlayer
	for _, p := range first {
		if p.gw == dr {
			drained = append(drained, p)
		} else {
			stay = append(stay, p)
		}
	}
	drAdmin := net.JoinHostPort(lan.addrs[role[dr]], f.adminPort)
	if code, status := lan.healthz(drAdmin); code != http.StatusOK || status != "ok" {
		t.Fatalf("/healthz before the drain: %d %q", code, status)
	}
	drain := startPath(t, filepath.Join(binDir, "gateway"), nil, "drain", "-control", control[dr])
	// The drained gateway's page is sent elsewhere at once: told, and its
	// WebSocket closed with 1012 so that it reconnects through the
	// balancer.
	var pageStays, pageMoved *farPage
	for _, pg := range pages {
		if pg.gw != dr {
			pageStays = pg
			continue
		}
		pageMoved = pg
		if _, code := pg.read(""); code != 1012 {
			t.Errorf("%s: the drained gateway closed the page's WebSocket with %d, want 1012", pg.name, code)
		}
		if !strings.Contains(strings.Join(pg.notices, "\n"), "Reconnecting you to another one") {
			t.Errorf("%s was not told why the page reconnects: %q", pg.name, pg.notices)
		}
	}
	drain.waitRaw(fmt.Sprintf("draining: %d players left (telnet %d, telnet+tls 0, web 0)", len(drained), len(drained)), 1)
	if code, status := lan.healthz(drAdmin); code != http.StatusServiceUnavailable || status != "draining" {
		t.Errorf("/healthz draining: %d %q, want 503 draining", code, status)
	}
	// Its player ports refuse, so that HAProxy tries another gateway.
	for _, port := range []string{f.telnetPort, f.webPort} {
		if c, err := lan.dial(lanPrefix+"100", net.JoinHostPort(lan.addrs[role[dr]], port)); err == nil {
			c.Close()
			t.Errorf("the draining gateway accepted a connection on port %s", port)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("connecting to the draining gateway's port %s: %v, want it refused", port, err)
		}
	}
	// The page comes back through the balancer, to the other gateway,
	// which claims its session: the same one, the game never saw it go.
	pageMoved.comeBack(webURL)
	pageMoved.send("session")
	// What the page had not acknowledged comes again first (this page
	// acknowledges nothing): the answer is the last.
	if out, _ := pageMoved.read("resumed: 1"); !strings.HasPrefix(out[strings.LastIndex(out, "id: "):], "id: "+pageMoved.id+"\r\n") {
		t.Errorf("%s came back to another session: %q", pageMoved.name, out)
	}
	if be.logged("talker: player left", "session", pageMoved.id) {
		t.Errorf("the game saw %s leave when its gateway drained", pageMoved.name)
	}
	pageMoved.gw = other
	newcomers := []*farPlayer{arrive("Fay", gw1, gw2)}
	for _, p := range drained {
		p.expect("[holdfast] " + drainMessage)
		p.send("echo still here")
		p.expect("echo: still here")
	}
	stay[0].who(sorted(append(namesOf(append(first, newcomers...)), pageStays.name, pageMoved.name)...)) // the drained gateway's telnet players still play
	// The health check saw the drain (fall 2, inter 2s: within about 4 s,
	// before the deadline), and marking the gateway down cut none of its
	// players.
	if down := lb.waitRaw("gateways-telnet/"+role[dr]+" is DOWN", 1); !strings.Contains(down, "code: 503") {
		t.Errorf("HAProxy marked the draining gateway down for another reason: %s", down)
	}
	for _, p := range drained {
		p.send("echo after the balancer let go")
		p.expect("echo: after the balancer let go")
	}
	newcomers = append(newcomers, arrive("Gus", gw1, gw2))
	if n := on(dr, newcomers...); n != 0 {
		t.Errorf("%d new players went to the draining gateway", n)
	}
	// At the deadline, the drained gateway's players are told again and
	// disconnected.
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
	if code := dr.exitCode(); code != 0 {
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
	for _, pg := range pages {
		pg.send("echo undisturbed")
		pg.read("echo: undisturbed")
	}
	stay[0].who(sorted(append(namesOf(append(stay, newcomers...)), pageStays.name, pageMoved.name)...))

	// A gateway started later on the drained one's host links, and once
	// its health check passes HAProxy sends it the next player: it holds
	// the fewest.
	ups := lb.countRaw("gateways-telnet/" + role[dr] + " is UP")
	later, _ := startGateway(role[dr])
	role[later] = role[dr] + " started later"
	t.Logf("haproxy: %s", lb.waitRaw("gateways-telnet/"+role[dr]+" is UP", ups+1))
	hal := arrive("Hal", other, later)
	if hal.gw != later {
		t.Errorf("the player after the gateway came back went to %s, want the new gateway", role[hal.gw])
	}

	// SIGKILL the other gateway: its players' connections end; the game
	// holds their sessions for the orphan timeout, so a player who comes
	// back in that time finds the character still there, as a player whose
	// gateway stayed away does today; the new gateway's player plays on.
	var orphans []*farPlayer
	for _, p := range append(stay, newcomers...) {
		if p.gw == other {
			orphans = append(orphans, p)
		}
	}
	other.kill(syscall.SIGKILL)
	for _, p := range orphans {
		p.expectClosed()
	}
	be.waitLog("backend: gateway link closed", 2) // the drained gateway's was the first
	again := orphans[0].name
	back := arrive(again, later) // the killed gateway refuses: HAProxy tries the other
	// The browser players' pages come back through the balancer to the
	// gateway left, which claims their sessions from the game.
	for _, pg := range pages {
		if _, code := pg.read(""); code == websocket.StatusNormalClosure {
			t.Errorf("%s: the killed gateway's page was closed as if its session had ended", pg.name)
		}
		pg.comeBack(webURL)
		pg.send("echo back")
		pg.read("echo: back")
		be.waitLogged("backend: session claimed by another gateway", "session", pg.id)
	}
	hal.who(sorted(append(namesOf(orphans), again, "Hal", pageStays.name, pageMoved.name)...))
	for _, id := range idsOf(orphans) {
		be.waitLogged("backend: session not claimed by a gateway in time; the player has gone", "session", id)
	}
	for _, pg := range pages {
		if be.logged("talker: player left", "session", pg.id) {
			t.Errorf("the game saw %s leave", pg.name)
		}
	}
	hal.who(sorted(again, "Hal", pageStays.name, pageMoved.name))
	hal.send("echo after all that")
	hal.expect("echo: after all that")
	back.send("say back again")
	hal.expect(again + " says: back again")

	f.uniqueIDs()
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

// typersOf makes players already logged in type numbered lines, as
// startTypers does, each line "echo NAME-k" with NAME their name and tag.
// Their readers are the typers' from then on.
func typersOf(t *testing.T, ps []*farPlayer, tag string) *typers {
	t.Helper()
	ty := &typers{t: t, stop: make(chan struct{})}
	for i, fp := range ps {
		p := &soakPlayer{name: fp.name + tag, conn: fp.conn, seen: map[int64]bool{}, next: 1, done: make(chan struct{})}
		fp.conn.SetReadDeadline(time.Time{})
		go p.read(fp.r)
		ty.players = append(ty.players, p)
		ty.typing.Add(1)
		go func() {
			defer ty.typing.Done()
			for {
				select {
				case <-ty.stop:
					return
				case <-time.After(time.Duration(5+i%20) * time.Millisecond):
				}
				k := p.sent.Load() + 1
				p.conn.SetWriteDeadline(time.Now().Add(waitFor))
				if _, err := fmt.Fprintf(p.conn, "echo %s-%d\r\n", p.name, k); err != nil {
					return
				}
				p.sent.Store(k)
			}
		}()
	}
	return ty
}

// finishRepeating is typers.finish for a backend killed while players
// type: a line the backend read and did not acknowledge before it died
// is answered again by the next, as the guarantee allows; nothing is lost
// or answered out of order, and nobody is disconnected.
func (ty *typers) finishRepeating() {
	ty.t.Helper()
	close(ty.stop)
	ty.typing.Wait()
	for _, p := range ty.players {
		fmt.Fprintf(p.conn, "echo %s-end\r\n", p.name)
	}
	for _, p := range ty.players {
		select {
		case <-p.done:
		case <-time.After(2 * waitFor):
			ty.t.Errorf("%s: the last line was never answered", p.name)
			continue
		}
		p.mu.Lock()
		if p.disconnected != nil || p.outOfOrder != 0 {
			ty.t.Errorf("%s: disconnected %v, %d out of order", p.name, p.disconnected, p.outOfOrder)
		}
		if p.duplicates > 0 {
			ty.t.Logf("%s: %d lines answered twice (read by the killed backend, not acknowledged)", p.name, p.duplicates)
		}
		p.mu.Unlock()
		if n := p.lost(); n != 0 {
			ty.t.Errorf("%s: %d lines lost", p.name, n)
		}
	}
}

// TestSeveralGatewaysBackendRestarts: with players typing on two gateways
// on hosts of their own, a deploy (-takeover) on the game's host moves
// every player of both gateways to the successor, and the old backend
// exits 0 once both have; then the successor is killed and another
// started: nothing typed on either gateway is lost, repeated by a deploy
// or answered out of order, and everybody is still logged in.
func TestSeveralGatewaysBackendRestarts(t *testing.T) {
	f := newFarm(t)
	old := f.startBackend()
	old.waitLog("backend: registered", 1)
	gw1, _ := f.startGateway("gw1")
	gw2, _ := f.startGateway("gw2")
	f.startBalancer()
	watcher := f.arrive("Watch", gw1, gw2)
	var typists []*farPlayer
	on := map[*proc]int{}
	for _, who := range []string{"Ann", "Bob", "Cid", "Dee"} {
		p := f.arrive(who, gw1, gw2)
		typists = append(typists, p)
		on[p.gw]++
	}
	if on[gw1] == 0 || on[gw2] == 0 {
		t.Fatalf("the typists did not spread: %d on gw1, %d on gw2", on[gw1], on[gw2])
	}
	everyone := "Ann, Bob, Cid, Dee, Watch"

	ty := typersOf(t, typists, "")
	ty.waitAnswered(20)
	next := f.startBackend("-takeover")
	if code := exitCode(t, old); code != 0 {
		t.Errorf("the old backend exited %d, want 0", code)
	}
	old.waitLog("backend: every player went to the successor; stopping", 1)
	for _, gw := range []*proc{gw1, gw2} {
		gw.waitLog("gateway: players handed to the backend's successor", 1)
	}
	ty.waitAnswered(20)
	ty.finish()
	watcher.who(everyone)
	if n := next.count("talker: new player"); n != 0 {
		t.Errorf("the successor met %d new players: their login was lost", n)
	}

	ty = typersOf(t, typists, "k")
	ty.waitAnswered(20)
	linked := []int{gw1.count("gateway: backend linked"), gw2.count("gateway: backend linked")}
	next.kill(syscall.SIGKILL)
	last := f.startBackend()
	for i, gw := range []*proc{gw1, gw2} {
		gw.waitLog("gateway: backend linked", linked[i]+1)
	}
	ty.waitAnswered(20)
	ty.finishRepeating()
	watcher.who(everyone)
	if n := last.count("talker: new player"); n != 0 {
		t.Errorf("the backend started after the kill met %d new players: their login was lost", n)
	}
	f.uniqueIDs()
}
