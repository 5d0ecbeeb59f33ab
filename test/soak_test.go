package test

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var (
	soakPlayers   = flag.Int("soak.players", 20, "players typing in TestChaosSoak")
	soakRestarts  = flag.Int("soak.restarts", 10, "backend restarts in TestChaosSoak")
	soakUpgrades  = flag.Int("soak.upgrades", 3, "gateway upgrades in TestChaosSoak, mixed into the restarts")
	soakHandovers = flag.Int("soak.handovers", 3, "backend handovers to a successor in TestChaosSoak, in place of restarts")
	soakSeed      = flag.Uint64("soak.seed", 0, "random seed for TestChaosSoak; 0 picks one")
	soakWeb       = flag.Int("soak.web", 4, "browser players in TestChaosSoak, besides the telnet ones: resumable, their connections cut now and then")
	soakOverlaps  = flag.Int("soak.overlaps", 2, "rounds of TestChaosSoak with a gateway upgrade and a deploy started within 200 ms of each other, SIGHUP in one of two, the registry restarted in one of three, the successor killed in one of three and the new gateway in another")
)

// soakPlayer types numbered lines at random intervals and checks the
// answers: every line answered, in order, duplicates counted.
type soakPlayer struct {
	name string
	conn net.Conn
	sent atomic.Int64 // lines typed: echo NAME-1 ... NAME-sent

	mu           sync.Mutex
	next         int64 // the next line number expected new
	seen         map[int64]bool
	duplicates   int
	outOfOrder   int
	disconnected error
	done         chan struct{} // closed when "echo: NAME-end" arrives or the connection fails
}

func (p *soakPlayer) read(r io.Reader) {
	defer close(p.done)
	sc := bufio.NewScanner(r)
	prefix := "echo: " + p.name + "-"
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		rest, ok := strings.CutPrefix(l, prefix)
		if !ok {
			continue
		}
		if rest == "end" {
			return
		}
		k, err := strconv.ParseInt(rest, 10, 64)
		if err != nil {
			continue
		}
		p.mu.Lock()
		switch {
		case k == p.next:
			p.next++
		case k < p.next:
			p.duplicates++ // replayed after a backend died before acknowledging
		default:
			p.outOfOrder++ // a line skipped ahead of one not yet answered
			p.next = k + 1
		}
		p.seen[k] = true
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.disconnected = fmt.Errorf("connection ended: %v", sc.Err())
	p.mu.Unlock()
}

func (p *soakPlayer) lost() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for k := int64(1); k <= p.sent.Load(); k++ {
		if !p.seen[k] {
			n++
		}
	}
	return n
}

// gatewayStats returns the gateway's resident memory and live heap (KiB),
// and its goroutines.
func gatewayStats(t *testing.T, pid int, debugAddr string) (rssKiB, heapKiB, goroutines int) {
	t.Helper()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rssKiB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	profile := func(name string) string {
		resp, err := http.Get("http://" + debugAddr + "/debug/pprof/" + name + "?debug=1&gc=1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	goroutines = ownGoroutines(profile("goroutine"))
	// The heap profile, taken after a collection (gc=1), ends with the
	// runtime's MemStats: HeapInuse is what the live sessions hold.
	for _, l := range strings.Split(profile("heap"), "\n") {
		if v, ok := strings.CutPrefix(l, "# HeapInuse = "); ok {
			n, _ := strconv.Atoi(v)
			heapKiB = n / 1024
		}
	}
	return rssKiB, heapKiB, goroutines
}

// ownGoroutines counts the goroutines of a goroutine profile (debug=1)
// but those that serve HTTP connections, the profile's own request
// among them, and those not started yet: how many connections the
// admin and debug servers have open, kept alive or closing, says nothing
// of the players'.
func ownGoroutines(profile string) int {
	n := 0
	for _, group := range strings.Split(profile, "\n\n") {
		head, stack, _ := strings.Cut(group, "\n")
		count, pcs, ok := strings.Cut(head, " @ ")
		if !ok || strings.Contains(stack, "net/http.(*conn).serve") || len(strings.Fields(pcs)) < 2 {
			continue
		}
		c, _ := strconv.Atoi(count)
		n += c
	}
	return n
}

// TestChaosSoak has players type numbered lines (a quarter of them dozing
// off for seconds now and then) while the backend is killed
// (SIGKILL) or stopped (SIGTERM) at random moments, the standalone registry
// now and then, and the gateway is upgraded in place, sometimes while the
// backend is down or dies in the middle; at the end every line must have
// been answered, in order, on connections that never dropped. It prints
// one summary line. CI runs it small; for the large run:
//
//	go test ./test/ -run TestChaosSoak -v -soak.players 200 -soak.restarts 100 -soak.upgrades 20
func TestChaosSoak(t *testing.T) {
	seed := *soakSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-soak.seed to run it again)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	reg, port := startEPMD(t, ourEPMD)
	// The gateway runs from a binary of its own, as one to be upgraded.
	path := filepath.Join(t.TempDir(), "gateway")
	copyFile(t, filepath.Join(binDir, "gateway"), path)
	sys := &system{t: t, cookie: writeCookie(t, "test-cookie"), epmdPort: port}
	sys.gw = startPath(t, path, sys.env(), "-metrics", "127.0.0.1:0", "-control", filepath.Join(t.TempDir(), "gateway.sock"),
		"-max-per-ip", "0", "-conn-rate", "0", "-listen", "127.0.0.1:0", "-cookie-file", sys.cookie,
		"-epmd-port", strconv.Itoa(port), "-embed-epmd=false", "-debug-addr", "127.0.0.1:0", "-ws-listen", "127.0.0.1:0",
		"-hold-idle", "1s") // a dozing player's stream is stowed now and then, amid everything else
	sys.telnet = sys.gw.waitLog("gateway: telnet listening", 1)["addr"].(string)
	webAddr := strings.TrimSuffix(strings.TrimPrefix(sys.gw.waitLog("gateway: web client listening", 1)["url"].(string), "http://"), "/")
	sys.admin = sys.gw.waitLog("gateway: admin listening", 1)["addr"].(string)
	sys.control = sys.gw.waitLog("gateway: control listening", 1)["path"].(string)
	debugAddr := sys.gw.waitLog("gateway: debug listening", 1)["addr"].(string)
	gwPID := func() int {
		var h struct{ PID int }
		json.Unmarshal([]byte(get(t, sys.admin, "/healthz")), &h)
		return h.PID
	}
	be := sys.startBackend()
	rss0, heap0, g0 := gatewayStats(t, gwPID(), debugAddr)

	players := make([]*soakPlayer, *soakPlayers+*soakWeb)
	var browsers []*resumingClient
	stop := make(chan struct{})
	var typing sync.WaitGroup
	for i := range players {
		p := &soakPlayer{name: "p" + strconv.Itoa(i), seen: map[int64]bool{}, next: 1, done: make(chan struct{})}
		players[i] = p
		var c *player
		if i < *soakPlayers {
			c = dial(t, sys.telnet, p.name)
		} else {
			p.name = "w" + strconv.Itoa(i)
			rc, err := dialResuming(webAddr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rc.Close() })
			browsers = append(browsers, rc)
			c = &player{t: t, name: p.name, conn: rc, r: bufio.NewReader(rc)}
		}
		c.login()
		c.conn.SetReadDeadline(time.Time{}) // the soak may outlast login's deadline
		p.conn = c.conn
		go p.read(c.r)
		typing.Add(1)
		// One player in four dozes off now and then, for long enough that
		// the gateway parks its socket and its stream, and an upgrade
		// meanwhile has the backend hold it: its next line wakes it.
		dozes := i%4 == 3
		go func(seed uint64) {
			defer typing.Done()
			r := rand.New(rand.NewPCG(seed, 1))
			for {
				pause := time.Duration(5+r.IntN(60)) * time.Millisecond
				if dozes && r.IntN(20) == 0 {
					pause = time.Duration(2500+r.IntN(3000)) * time.Millisecond
				}
				select {
				case <-stop:
					return
				case <-time.After(pause): // the player's pace, not synchronisation
				}
				k := p.sent.Load() + 1
				p.conn.SetWriteDeadline(time.Now().Add(waitFor))
				if _, err := fmt.Fprintf(p.conn, "echo %s-%d\r\n", p.name, k); err != nil {
					return
				}
				p.sent.Store(k)
			}
		}(rng.Uint64())
	}

	var kills, terms, registry, upgrades, handovers, cuts, overlaps, successorKills, gatewayKills, hups int
	// Upgrades come at random rounds among the restarts.
	upgradeAt := map[int]bool{}
	for len(upgradeAt) < min(*soakUpgrades, *soakRestarts) {
		upgradeAt[rng.IntN(*soakRestarts)] = true
	}
	// Handovers replace the kill at other random rounds, and overlaps
	// (an upgrade and a deploy at once) at others again.
	handoverAt := map[int]bool{}
	for len(handoverAt) < min(*soakHandovers, *soakRestarts-len(upgradeAt)) {
		if r := rng.IntN(*soakRestarts); !upgradeAt[r] {
			handoverAt[r] = true
		}
	}
	overlapAt := map[int]bool{}
	for len(overlapAt) < min(*soakOverlaps, *soakRestarts-len(upgradeAt)-len(handoverAt)) {
		if r := rng.IntN(*soakRestarts); !upgradeAt[r] && !handoverAt[r] {
			overlapAt[r] = true
		}
	}
	heldMax := 0          // the most sessions seen held by a backend without a stream, after an upgrade
	var stowed counterSum // sessions stowed, across the gateway processes
	for r := 0; r < *soakRestarts; r++ {
		time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond) // typing goes on meanwhile
		if rng.IntN(4) == 0 {
			// A lull: dozing players' streams are stowed, and the round's
			// action comes amid the next stows.
			waitStowed(t, sys.admin, &stowed)
		}
		m := scrape(t, sys.admin)
		heldMax = max(heldMax, int(m[`holdfast_streams{state="held"}`]))
		stowed.add(m["holdfast_stowed_total"])
		if len(browsers) > 0 && rng.IntN(2) == 0 {
			cuts++
			browsers[rng.IntN(len(browsers))].cut()
		}
		var upgraded chan string
		if upgradeAt[r] {
			if rng.IntN(2) == 0 {
				// An upgrade after a lull: dozing players' streams have
				// been parked, and the new process has them held.
				waitParked(t, sys.admin)
			}
			upgrades++
			upgraded = make(chan string, 1)
			go func() {
				out, err := exec.Command(filepath.Join(binDir, "gateway"), "upgrade", "-control", sys.control).CombinedOutput()
				if err != nil {
					out = append(out, []byte(err.Error())...)
				}
				upgraded <- string(out)
			}()
			if rng.IntN(2) == 0 {
				// The backend restarts only once the upgrade is over;
				// otherwise it dies in the middle of it.
				if out := <-upgraded; !strings.HasPrefix(out, "upgraded:") {
					t.Fatalf("upgrade %d: %s", upgrades, out)
				}
				upgraded = nil
				heldMax = max(heldMax, int(scrape(t, sys.admin)[`holdfast_streams{state="held"}`]))
			}
		}
		if overlapAt[r] {
			takingOver := sys.gw.count("gateway: taking over") // one per new gateway process
			moved := sys.gw.count("gateway: sessions moved")   // one per upgrade committed
			overlaps++
			upgrades++
			handovers++
			upgradeOut := make(chan string, 1)
			upgrade := func() {
				go func() {
					out, err := exec.Command(filepath.Join(binDir, "gateway"), "upgrade", "-control", sys.control).CombinedOutput()
					if err != nil {
						out = append(out, []byte(err.Error())...)
					}
					upgradeOut <- string(out)
				}()
			}
			var next *proc
			deploy := func() { next = start(t, "backend", sys.env(), "-cookie-file", sys.cookie, "-takeover") }
			apart := time.Duration(rng.IntN(200)) * time.Millisecond
			if rng.IntN(2) == 0 {
				upgrade()
				time.Sleep(apart) // the overlap under test
				deploy()
			} else {
				deploy()
				time.Sleep(apart) // the overlap under test
				upgrade()
			}
			// Now and then the gateway is told to reload its certificate
			// (SIGHUP) in the middle of it, and the registry is killed
			// and started again: whichever backend registers first, the
			// players move only to the newer.
			if rng.IntN(2) == 0 {
				hups++
				syscall.Kill(gwPID(), syscall.SIGHUP)
			}
			if rng.IntN(3) == 0 {
				registry++
				reg.kill(syscall.SIGKILL)
				reg.wait()
				reg = startPath(t, epmdPath(t, ourEPMD), nil, "-port", strconv.Itoa(port))
			}
			// In one of three the successor is killed, in another the
			// new gateway process: each half-way through its move.
			kill := rng.IntN(3)
			killed := kill == 1
			switch kill {
			case 1:
				successorKills++
				time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond) // where in the deploy the kill comes
				next.kill(syscall.SIGKILL)
				next.wait()
			case 2:
				if stopMidUpgrade(sys.gw, takingOver, moved) {
					gatewayKills++
				}
			}
			out := <-upgradeOut
			switch {
			case kill == 2 && strings.Contains(out, "the new gateway exited during the upgrade"):
				// Every player stays with the old process, which serves on.
			case !strings.Contains(out, "upgraded: "):
				t.Fatalf("upgrade %d, with a deploy at once: %s", upgrades, out)
			}
			killOnCleanup(t, gwPID())
			if !killed {
				if code := exitCode(t, be); code != 0 {
					t.Fatalf("overlap %d: the old backend exited with status %d", overlaps, code)
				}
				// Its name: taken over from the backend it replaced, or found
				// free at its start when the registry had just restarted.
				next.waitAny("backend: took the name over", "backend: the name was free; took it")
				be = next
				continue
			}
			// The successor died: if it had taken over already, a new
			// backend is started, as an operator would; else the old one
			// serves on. The old one says it is stopping before it exits,
			// and may not have exited yet.
			if be.count("backend: every player went to the successor; stopping") > 0 {
				be.wait()
			}
			select {
			case <-be.exited:
				be = sys.startBackend()
			default:
			}
			continue
		}
		if handoverAt[r] {
			handovers++
			n := sys.gw.count("gateway: players handed to the backend's successor")
			next := start(t, "backend", sys.env(), "-cookie-file", sys.cookie, "-takeover")
			sys.gw.waitLog("gateway: players handed to the backend's successor", n+1)
			if code := exitCode(t, be); code != 0 {
				t.Fatalf("handover %d: the old backend exited with status %d", handovers, code)
			}
			next.waitLog("backend: took the name over", 1)
			be = next
			continue
		}
		sig := syscall.SIGKILL
		if rng.IntN(2) == 0 {
			sig = syscall.SIGTERM
			terms++
		} else {
			kills++
		}
		be.kill(sig)
		be.wait()
		if rng.IntN(5) == 0 {
			registry++
			reg.kill(syscall.SIGKILL)
			reg.wait()
			reg = startPath(t, epmdPath(t, ourEPMD), nil, "-port", strconv.Itoa(port))
		}
		be = sys.startBackend()
		if upgraded != nil {
			if out := <-upgraded; !strings.HasPrefix(out, "upgraded:") {
				t.Fatalf("upgrade %d, with the backend restarting: %s", upgrades, out)
			}
		}
		if upgradeAt[r] {
			killOnCleanup(t, gwPID())
		}
	}
	close(stop)
	typing.Wait()
	for _, p := range players {
		fmt.Fprintf(p.conn, "echo %s-end\r\n", p.name)
	}
	var lines, lost, dups, ooo, disconnected int64
	for _, p := range players {
		select {
		case <-p.done:
		case <-time.After(2 * waitFor):
			t.Errorf("%s: the last line was never answered", p.name)
		}
		p.mu.Lock()
		if p.disconnected != nil {
			disconnected++
			t.Errorf("%s: %v", p.name, p.disconnected)
		}
		dups += int64(p.duplicates)
		ooo += int64(p.outOfOrder)
		p.mu.Unlock()
		lines += p.sent.Load()
		lost += p.lost()
	}
	rss1, heap1, g1 := gatewayStats(t, gwPID(), debugAddr)
	for _, p := range players {
		p.conn.Close()
	}
	var rss2, heap2, g2 int
	for deadline := time.Now().Add(waitFor); ; {
		if rss2, heap2, g2 = gatewayStats(t, gwPID(), debugAddr); g2 <= g0 {
			break
		}
		if time.Now().After(deadline) {
			// Each of the goroutines left, grouped by where it waits.
			t.Fatalf("the gateway has %d goroutines with every player gone, %d at the start:\n%s", g2, g0,
				get(t, debugAddr, "/debug/pprof/goroutine?debug=1"))
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with the deadline above
	}
	resumes := 0
	for _, b := range browsers {
		b.mu.Lock()
		resumes += b.resumes
		b.mu.Unlock()
	}
	fmt.Printf("soak: players=%d (browsers %d: %d cuts, %d resumes) rounds=%d (SIGKILL %d, SIGTERM %d, registry %d, handovers %d, overlaps %d with %d successors and %d new gateways killed, SIGHUP %d) gateway_upgrades=%d held_max=%d stowed=%d lines=%d lost=%d out_of_order=%d duplicates=%d disconnected=%d gateway_rss_kib=%d/%d/%d heap_kib=%d/%d/%d goroutines=%d/%d/%d seed=%d\n",
		len(players), len(browsers), cuts, resumes, *soakRestarts, kills, terms, registry, handovers, overlaps, successorKills, gatewayKills, hups, upgrades, heldMax, int(stowed.total), lines, lost, ooo, dups, disconnected, rss0, rss1, rss2, heap0, heap1, heap2, g0, g1, g2, seed)
	if lost != 0 || ooo != 0 || disconnected != 0 {
		t.Fatalf("lost %d, out of order %d, disconnected %d", lost, ooo, disconnected)
	}
}

// counterSum adds up a counter scraped now and then from one gateway
// process after another: one that went down started again from zero.
type counterSum struct{ total, last float64 }

func (c *counterSum) add(v float64) {
	if v >= c.last {
		c.total += v - c.last
	} else {
		c.total += v
	}
	c.last = v
}

// waitStowed waits, a few seconds at most, until the gateway has stowed
// a session since stowed last counted.
func waitStowed(t *testing.T, admin string, stowed *counterSum) {
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		before := stowed.total
		if stowed.add(scrape(t, admin)["holdfast_stowed_total"]); stowed.total > before {
			return
		}
		time.Sleep(50 * time.Millisecond) // polling a condition, with the deadline above
	}
}

// waitParked waits, a few seconds at most, until the gateway has a stream
// parked: a dozing player's.
func waitParked(t *testing.T, admin string) {
	deadline := time.Now().Add(8 * time.Second)
	for scrape(t, admin)[`holdfast_streams{state="parked"}`] == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling a condition, with the deadline above
	}
}

// stopMidUpgrade kills the new gateway process of an upgrade under way in
// the middle of its move, and reports whether it did. It stops the process
// as soon as it says it is taking over (the n+1-th such line), and kills it
// unless the move had committed by then, which the old process says
// (the moved+1-th "sessions moved") at once if so: with few players the
// move is over within milliseconds.
func stopMidUpgrade(gw *proc, n, moved int) bool {
	pid := int(gw.waitLog("gateway: taking over", n+1)["pid"].(float64))
	syscall.Kill(pid, syscall.SIGSTOP)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if gw.count("gateway: sessions moved") > moved {
			syscall.Kill(pid, syscall.SIGCONT) // too late: it serves
			return false
		}
		time.Sleep(10 * time.Millisecond) // the old process's next line, if any, is a write away
	}
	syscall.Kill(pid, syscall.SIGKILL)
	return true
}

// waitAny waits for a log line whose message is one of msgs.
func (p *proc) waitAny(msgs ...string) {
	p.t.Helper()
	deadline := time.After(waitFor)
	for {
		p.mu.Lock()
		for _, m := range p.lines {
			if msg, _ := m["msg"].(string); slices.Contains(msgs, msg) {
				p.mu.Unlock()
				return
			}
		}
		more := p.more // taken with the check: a line in between wakes this
		p.mu.Unlock()
		select {
		case <-more:
		case <-p.done:
			p.t.Fatalf("%s exited before logging any of %q", p.name, msgs)
		case <-deadline:
			p.t.Fatalf("%s did not log any of %q within %v", p.name, msgs, waitFor)
		}
	}
}
