package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"holdfast/gateway/telnet"
)

// The farm scenario: browser players through a balancer in front of two
// gateways, as deploy/ sets them up, and one of the gateways lost (SIGKILL)
// or drained (`gateway drain`). Every page of that gateway comes back
// through the balancer to the other one and claims its game session there
// with its token (docs/browser.md, "Coming back through another gateway").
// It reports how long until every such page had its session back (the
// same session id, the game answering), the longest pause a typing player
// saw, and the memory of the balancer, the gateways and the backend before
// and after.
//
//	load farm -addr HAPROXY_WEB -players 1000 -gateways PID1,PID2 -event kill
//	load farm ... -event drain -drain-cmd "gateway drain -control SOCK1"
//
// The event happens to the first of -gateways.

type farmOptions struct {
	addrs     []string
	players   int
	typists   int
	event     string
	gateways  pids
	balancer  pids
	backend   pids
	drainCmd  string
	settle    time.Duration
	timeout   time.Duration
	loginConc int
}

func farmMain(args []string) error {
	var o farmOptions
	var addr string
	fs := flag.NewFlagSet("farm", flag.ExitOnError)
	fs.StringVar(&addr, "addr", "127.0.0.1:80", "the balancer's web frontend; several, comma-separated, share the players in turn (several balancer processes)")
	fs.IntVar(&o.players, "players", 1000, "browser players to log in, over both gateways")
	fs.IntVar(&o.typists, "typists", 10, "players of each gateway who type throughout, one line after the answer to the one before")
	fs.StringVar(&o.event, "event", "kill", "what happens to the first gateway: kill (SIGKILL) or drain (-drain-cmd)")
	fs.Var(&o.gateways, "gateways", "the two gateways' pids, comma-separated; the first is killed or drained")
	fs.Var(&o.balancer, "balancer-pid", "the balancer's pids, comma-separated (memory added up)")
	fs.Var(&o.backend, "backend-pid", "the backend's pid (memory)")
	fs.StringVar(&o.drainCmd, "drain-cmd", "", "shell command that drains the first gateway (-event drain)")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "how long the players stay idle before memory is read, before and after")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long every page of the gateway has to come back")
	fs.IntVar(&o.loginConc, "login-concurrency", 200, "players logging in at once")
	fs.Parse(args)
	o.addrs = strings.Split(addr, ",")
	if len(o.gateways) != 2 {
		return errors.New("farm: -gateways needs two pids")
	}
	switch o.event {
	case "kill":
	case "drain":
		if o.drainCmd == "" {
			return errors.New("farm: -event drain needs -drain-cmd")
		}
	default:
		return fmt.Errorf("farm: unknown -event %q", o.event)
	}
	return farm(&o)
}

func farm(o *farmOptions) error {
	raiseFileLimit()
	start := time.Now()
	pages, err := loginPages(o.addrs, o.players, o.loginConc)
	defer func() {
		for _, p := range pages {
			p.close()
		}
	}()
	if err != nil {
		return err
	}
	result("farm_login_all", time.Since(start).Seconds(), "s")
	groups := map[string][]*page{}
	for _, p := range pages {
		pre := idPrefix(p.sessionID())
		groups[pre] = append(groups[pre], p)
	}
	if len(groups) != 2 {
		return fmt.Errorf("farm: the players are on %d gateways, want 2", len(groups))
	}
	var typists []*page
	for _, g := range groups {
		typists = append(typists, g[:min(o.typists, len(g))]...)
	}
	time.Sleep(o.settle)
	ev := "farm_" + o.event + "_"
	before := farmMemory(o)

	ty := startPageTyping(typists)
	time.Sleep(time.Second)
	t0 := time.Now()
	drainDone := make(chan error, 1)
	var drainTook time.Duration
	switch o.event {
	case "kill":
		if err := syscall.Kill(o.gateways[0], syscall.SIGKILL); err != nil {
			ty.finish(t0, t0)
			return fmt.Errorf("farm: kill the gateway: %w", err)
		}
		drainDone <- nil
	case "drain":
		go func() {
			out, err := exec.Command("sh", "-c", o.drainCmd).CombinedOutput()
			drainTook = time.Since(t0)
			if err != nil {
				err = fmt.Errorf("farm: drain: %v: %s", err, out)
			}
			drainDone <- err
		}()
	}

	// The gateway's pages are those that break; each must come back.
	var victims []*page
	deadline := t0.Add(o.timeout)
	for victims == nil {
		for _, p := range pages {
			if p.brokeAt() != (time.Time{}) {
				victims = groups[idPrefix(p.sessionID())]
				break
			}
		}
		if victims == nil {
			if time.Now().After(deadline) {
				ty.finish(t0, t0)
				return errors.New("farm: no player's connection broke")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for {
		left, ended := 0, 0
		for _, p := range victims {
			st := p.status()
			switch {
			case st.err != nil:
				ended++
			case st.resumed.IsZero():
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("farm: %d of %d players not back after %v (%d sessions ended): %s", left, len(victims), o.timeout, ended, stuck(victims))
		}
		time.Sleep(10 * time.Millisecond)
	}
	var claims, answers []time.Duration
	var lastClaim, lastAnswer time.Time
	reconnects, ended, wrongID := 0, 0, 0
	for _, p := range victims {
		st := p.status()
		if st.err != nil {
			ended++
			continue
		}
		if st.resumedID != st.id {
			wrongID++
		}
		claims = append(claims, st.claimed.Sub(t0))
		answers = append(answers, st.resumed.Sub(t0))
		lastClaim = later(lastClaim, st.claimed)
		lastAnswer = later(lastAnswer, st.resumed)
		reconnects += st.dials - 1
	}
	// A session the game let go before its page came back (the backend's
	// orphan timeout): the player would have to log in again.
	result(ev+"sessions_lost", float64(ended), "players")
	time.Sleep(time.Second) // typing after
	worst, typErr := ty.finish(t0, lastAnswer)
	if err := <-drainDone; err != nil {
		return err
	}
	others := 0
	for _, p := range pages {
		if !slices.Contains(victims, p) && p.status().dials > 1 {
			others++
		}
	}
	result(ev+"players_moved", float64(len(victims)), "players")
	result(ev+"claimed_all", ms(lastClaim.Sub(t0)), "ms")
	result(ev+"resumed_all", ms(lastAnswer.Sub(t0)), "ms")
	result(ev+"resumed_p50", ms(percentile(answers, 0.5)), "ms")
	result(ev+"resumed_p99", ms(percentile(answers, 0.99)), "ms")
	result(ev+"claimed_p50", ms(percentile(claims, 0.5)), "ms")
	result(ev+"pause_max", ms(worst[0]), "ms")
	result(ev+"pause_max_other", ms(worst[1]), "ms")
	// A page's tries to connect again, on average: the first one that
	// reaches the other gateway makes one.
	result(ev+"dials_per_player", float64(reconnects)/float64(len(victims)), "dials")
	if o.event == "drain" {
		result(ev+"command_time", ms(drainTook), "ms")
	}

	// Every player still plays: each types a line and has its answer.
	var playing []*page
	for _, p := range pages {
		if p.status().err == nil {
			playing = append(playing, p)
		}
	}
	if _, err := allPages(playing, func(p *page) (time.Time, error) {
		return p.expect("echo: after-"+p.name, func() { p.typeLine("echo after-" + p.name) }, time.Minute)
	}); err != nil {
		return fmt.Errorf("farm: after: %w", err)
	}
	time.Sleep(o.settle)
	after := farmMemory(o)
	for _, m := range []struct {
		name          string
		before, after int
	}{
		{"rss_balancer", before.balancer, after.balancer},
		{"rss_gateway_" + o.event, before.gw[0], after.gw[0]},
		{"rss_gateway_other", before.gw[1], after.gw[1]},
		{"rss_backend", before.backend, after.backend},
	} {
		result(ev+m.name+"_before", float64(m.before), "KiB")
		result(ev+m.name+"_after", float64(m.after), "KiB")
	}
	if ended > 0 || wrongID > 0 || others > 0 {
		return fmt.Errorf("farm: %d sessions ended, %d came back with another id, %d players of the other gateway reconnected (a typist: %v)", ended, wrongID, others, typErr)
	}
	if typErr != nil {
		return fmt.Errorf("farm: a typist: %w", typErr)
	}
	return nil
}

// stuck says where the pages not back are: how many never saw their
// WebSocket break, are connected, were answered elsewhere, and how many
// times they dialled.
func stuck(pages []*page) string {
	counts := map[string]int{}
	for _, p := range pages {
		p.mu.Lock()
		if p.resumed.IsZero() {
			counts[fmt.Sprintf("broke=%v connected=%v ready=%v claimed=%v dials=%d last error: %v", !p.broke.IsZero(), p.ws != nil, p.ready, !p.claimed.IsZero(), p.dials, p.dialErr)]++
		}
		p.mu.Unlock()
	}
	var b strings.Builder
	for k, n := range counts {
		fmt.Fprintf(&b, "\n  %d: %s", n, k)
	}
	pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// idPrefix is the gateway process's part of a session id.
func idPrefix(id string) string {
	pre, _, _ := strings.Cut(id, "-")
	return pre
}

type farmRSS struct {
	balancer, backend int
	gw                [2]int
}

func farmMemory(o *farmOptions) farmRSS {
	return farmRSS{balancer: o.balancer.rss(), backend: o.backend.rss(),
		gw: [2]int{rssKiB(o.gateways[0]), rssKiB(o.gateways[1])}}
}

// loginPages opens n pages, a few at a time, to the addresses in turn,
// and logs them in.
func loginPages(addrs []string, n, conc int) ([]*page, error) {
	pages := make([]*page, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, max(1, conc))
	var wg sync.WaitGroup
	for i := range pages {
		p := newPage(addrs[i%len(addrs)], "w"+strconv.Itoa(i))
		pages[i] = p
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := p.login(); err != nil {
				errs <- fmt.Errorf("%s: %w", p.name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return pages, <-errs
}

// allPages runs wait for every page at once and returns the latest time.
func allPages(pages []*page, wait func(*page) (time.Time, error)) (time.Time, error) {
	var mu sync.Mutex
	var last time.Time
	var firstErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 1000)
	for _, p := range pages {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			at, err := wait(p)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			last = later(last, at)
		}()
	}
	wg.Wait()
	return last, firstErr
}

// pageTyping has typists type one line after another, each after the
// answer to the one before, and keeps each round trip, by the gateway the
// typist started on.
type pageTyping struct {
	mu      sync.Mutex
	samples []pageSample
	stop    chan struct{}
	errs    chan error
	wg      sync.WaitGroup
}

type pageSample struct {
	victim    func() bool
	sent, got time.Time
}

func startPageTyping(typists []*page) *pageTyping {
	ty := &pageTyping{stop: make(chan struct{}), errs: make(chan error, len(typists))}
	for _, p := range typists {
		ty.wg.Add(1)
		go func() {
			defer ty.wg.Done()
			for k := 0; ; k++ {
				select {
				case <-ty.stop:
					return
				default:
				}
				text := fmt.Sprintf("t%s-%d", p.name, k)
				var t0 time.Time
				at, err := p.expect("echo: "+text, func() {
					t0 = time.Now()
					p.typeLine("echo " + text)
				}, 2*time.Minute)
				if err != nil {
					ty.errs <- err
					return
				}
				ty.mu.Lock()
				ty.samples = append(ty.samples, pageSample{func() bool { return p.status().dials > 1 }, t0, at})
				ty.mu.Unlock()
			}
		}()
	}
	return ty
}

// finish stops the typists and returns the longest round trip of a line
// answered after from and sent before to, of the typists who moved and of
// the others, and the first error.
func (ty *pageTyping) finish(from, to time.Time) ([2]time.Duration, error) {
	close(ty.stop)
	ty.wg.Wait()
	close(ty.errs)
	var worst [2]time.Duration
	for _, s := range ty.samples {
		if s.got.After(from) && s.sent.Before(to) {
			i := 1
			if s.victim() {
				i = 0
			}
			worst[i] = max(worst[i], s.got.Sub(s.sent))
		}
	}
	return worst, <-ty.errs
}

// page is a browser page as the web client (gateway/web/static/client.js)
// is: telnet over WebSocket (telnet.mudstandards.org), resumable (?hold),
// answering the gateway's negotiation as the web client does,
// acknowledging output a quarter second after it came (or every 8 KiB),
// keeping what it typed until the game has it ({"in":N}), and, when its
// WebSocket breaks, coming back with its token, its session's id and
// where its kept typing starts. Answered "elsewhere" (its session claimed
// on another gateway), its telnet starts again and it sends its kept
// typing again; then it types "session", and the game's "id:" line says
// whether it is the same session.
type page struct {
	name, addr string

	wmu sync.Mutex // one writer at a time, and sentLog in the order sent

	mu         sync.Mutex
	ws         *websocket.Conn
	ready      bool // the gateway answered this WebSocket's hello
	token      string
	session    string
	got, acked uint64
	ackTimer   *time.Timer
	sentLog    []sentMsg
	sentTotal  uint64
	queued     [][]byte
	typed      []sentMsg // lines typed, at in the game's count of input
	typedTotal uint64
	retry      int
	dials      int
	broke      time.Time // the first WebSocket's end
	claimed    time.Time // answered "elsewhere"
	resumed    time.Time // the game's "id:" line after the claim
	resumedID  string
	probing    bool
	err        error // the session is over
	dialErr    error // the last failed try to connect
	closing    bool

	want  string
	found chan time.Time

	// The reader's own, reset with a new telnet connection.
	dec     telnet.Decoder
	partial []byte
	neg     webNegotiator
}

type sentMsg struct {
	at uint64
	b  []byte
}

// pageStatus is a page's progress, as the scenario reads it.
type pageStatus struct {
	id, resumedID           string
	broke, claimed, resumed time.Time
	dials                   int
	err                     error
}

func newPage(addr, name string) *page {
	return &page{addr: addr, name: name}
}

func (p *page) status() pageStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return pageStatus{id: p.session, resumedID: p.resumedID, broke: p.broke, claimed: p.claimed,
		resumed: p.resumed, dials: p.dials, err: p.err}
}

func (p *page) sessionID() string  { return p.status().id }
func (p *page) brokeAt() time.Time { return p.status().broke }

func (p *page) login() error {
	p.arm("What is your name?")
	if err := p.connect(); err != nil {
		return err
	}
	if _, err := p.wait(time.Minute); err != nil {
		return err
	}
	if _, err := p.expect("Welcome, "+p.name+".", func() { p.typeLine(p.name) }, time.Minute); err != nil {
		return err
	}
	// The session's id comes before the game's output.
	if p.sessionID() == "" {
		return errors.New("no session id from the gateway")
	}
	return nil
}

// connect opens a WebSocket to the page's address with its hello: a new
// session, or its token.
func (p *page) connect() error {
	p.mu.Lock()
	p.dials++
	hello := []byte("{}")
	q := "/ws?hold"
	if p.token != "" {
		from := p.typedTotal
		if len(p.typed) > 0 {
			from = p.typed[0].at
		}
		hello, _ = json.Marshal(map[string]any{"resume": p.token, "got": p.got, "session": p.session, "in": from})
		q += "&resume"
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+p.addr+q, &websocket.DialOptions{Subprotocols: []string{"telnet.mudstandards.org"}})
	if err != nil {
		return err
	}
	c.SetReadLimit(-1)
	if err := c.Write(ctx, websocket.MessageText, hello); err != nil {
		c.CloseNow()
		return err
	}
	p.mu.Lock()
	p.ws = c
	p.mu.Unlock()
	go p.read(c)
	return nil
}

func (p *page) close() {
	p.mu.Lock()
	p.closing = true
	c := p.ws
	p.mu.Unlock()
	if c != nil {
		c.CloseNow()
	}
}

func (p *page) read(c *websocket.Conn) {
	for {
		typ, msg, err := c.Read(context.Background())
		if err != nil {
			p.broken(c, err)
			return
		}
		if typ == websocket.MessageText {
			p.control(c, msg)
			continue
		}
		p.output(msg)
	}
}

// broken handles the end of WebSocket c: the session is over, or the page
// comes back after the web client's backoff.
func (p *page) broken(c *websocket.Conn, err error) {
	c.CloseNow() // a browser lets go of its socket
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ws == c {
		p.ws = nil
	}
	p.ready = false
	if p.closing {
		return
	}
	if p.broke.IsZero() {
		p.broke = time.Now()
	}
	code := websocket.CloseStatus(err)
	if code == websocket.StatusNormalClosure || code == 4404 || code == 4429 || p.token == "" {
		p.err = fmt.Errorf("session over: %w", err)
		return
	}
	delay := min(5*time.Second, 250*time.Millisecond<<min(p.retry, 5))
	p.retry++
	time.AfterFunc(delay, p.reconnect)
}

func (p *page) reconnect() {
	if err := p.connect(); err != nil {
		p.mu.Lock()
		p.dialErr = err
		if p.closing {
			p.mu.Unlock()
			return
		}
		delay := min(5*time.Second, 250*time.Millisecond<<min(p.retry, 5))
		p.retry++
		p.mu.Unlock()
		time.AfterFunc(delay, p.reconnect)
	}
}

// control handles the gateway's text messages.
func (p *page) control(c *websocket.Conn, msg []byte) {
	var m struct {
		Token     *string `json:"token"`
		Session   string  `json:"session"`
		In        *uint64 `json:"in"`
		Resumed   bool    `json:"resumed"`
		Elsewhere bool    `json:"elsewhere"`
		Received  uint64  `json:"received"`
		Missed    uint64  `json:"missed"`
		Notice    *string `json:"notice"`
	}
	if json.Unmarshal(msg, &m) != nil || m.Notice != nil {
		return
	}
	// Under wmu: nothing typed meanwhile goes out before what is sent
	// again, nor twice.
	p.wmu.Lock()
	p.mu.Lock()
	if m.Session != "" {
		p.session = m.Session
	}
	if m.In != nil {
		p.gameHasLocked(*m.In)
	}
	if m.Token == nil {
		p.mu.Unlock()
		p.wmu.Unlock()
		return
	}
	p.token = *m.Token
	p.ready = true
	p.retry = 0
	var again [][]byte
	switch {
	case m.Elsewhere:
		// A new connection to the session: telnet starts again, and the
		// typing kept goes again (the game skips what it has).
		p.dec, p.partial, p.neg = telnet.Decoder{}, nil, webNegotiator{}
		p.got, p.acked, p.sentLog, p.sentTotal, p.queued = 0, 0, nil, 0, nil
		for _, t := range p.typed {
			again = append(again, t.b)
		}
		if p.claimed.IsZero() {
			p.claimed = time.Now()
			p.probing = true
		}
	case m.Resumed:
		// The same gateway: what it did not get, then what was typed
		// meanwhile.
		i := 0
		for i < len(p.sentLog) && p.sentLog[i].at < m.Received {
			i++
		}
		for _, s := range p.sentLog[i:] {
			again = append(again, s.b)
		}
		p.sentLog, p.sentTotal = p.sentLog[:i], m.Received
		again = append(again, p.queued...)
		p.queued = nil
		p.got += m.Missed
	default:
		again, p.queued = p.queued, nil
	}
	probe := p.probing
	p.mu.Unlock()
	writeWS(c, websocket.MessageText, []byte(`{"kept_token":true}`))
	for _, b := range again {
		p.transmitLocked(b)
	}
	p.wmu.Unlock()
	if probe {
		p.typeLine("session")
	}
}

// gameHasLocked forgets the typing the game has.
func (p *page) gameHasLocked(in uint64) {
	for len(p.typed) > 0 && p.typed[0].at+uint64(len(p.typed[0].b))-1 <= in {
		p.typed = p.typed[1:]
	}
}

// output takes a binary message: telnet, answered as the web client does.
func (p *page) output(msg []byte) {
	p.mu.Lock()
	p.got += uint64(len(msg))
	ackNow := p.got-p.acked >= ackEvery
	if !ackNow && p.ackTimer == nil {
		p.ackTimer = time.AfterFunc(250*time.Millisecond, p.ack)
	}
	p.mu.Unlock()
	if ackNow {
		p.ack()
	}
	p.neg.replies = p.neg.replies[:0]
	text := p.dec.Decode(nil, msg, &p.neg)
	if len(p.neg.replies) > 0 {
		p.transmit(p.neg.replies)
		p.neg.replies = nil
	}
	p.partial = append(p.partial, text...)
	for {
		i := strings.IndexByte(string(p.partial), '\n')
		if i < 0 {
			break
		}
		p.line(strings.TrimRight(string(p.partial[:i]), "\r"))
		p.partial = p.partial[i+1:]
	}
}

func (p *page) line(text string) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.probing {
		if id, ok := strings.CutPrefix(text, "id: "); ok {
			p.probing = false
			p.resumed, p.resumedID = now, id
		}
	}
	if p.want != "" && text == p.want {
		p.found <- now
		p.want = ""
	}
}

func (p *page) ack() {
	p.mu.Lock()
	if p.ackTimer != nil {
		p.ackTimer.Stop()
		p.ackTimer = nil
	}
	c, got := p.ws, p.got
	if c == nil || got <= p.acked {
		p.mu.Unlock()
		return
	}
	p.acked = got
	p.mu.Unlock()
	p.sendText(c, `{"ack":`+strconv.FormatUint(got, 10)+`}`)
}

func (p *page) sendText(c *websocket.Conn, s string) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	writeWS(c, websocket.MessageText, []byte(s))
}

func writeWS(c *websocket.Conn, typ websocket.MessageType, b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Write(ctx, typ, b)
}

// transmit sends one input message now, and keeps it for a resume, or
// queues it until the page is connected again.
func (p *page) transmit(b []byte) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.transmitLocked(b)
}

func (p *page) transmitLocked(b []byte) {
	b = slices.Clone(b)
	p.mu.Lock()
	c := p.ws
	if c == nil || !p.ready {
		p.queued = append(p.queued, b)
		p.mu.Unlock()
		return
	}
	p.sentLog = append(p.sentLog, sentMsg{p.sentTotal, b})
	p.sentTotal += uint64(len(b))
	for len(p.sentLog) > 1 && p.sentTotal-p.sentLog[0].at > 64<<10 {
		p.sentLog = p.sentLog[1:]
	}
	p.mu.Unlock()
	writeWS(c, websocket.MessageBinary, b)
}

// typeLine types a line, kept until the game has it.
func (p *page) typeLine(s string) {
	b := []byte(s + "\r\n")
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.Lock()
	p.typed = append(p.typed, sentMsg{p.typedTotal, b})
	p.typedTotal += uint64(len(s)) + 1 // the gateway makes "\r\n" one "\n"
	p.mu.Unlock()
	p.transmitLocked(b)
}

func (p *page) arm(line string) {
	p.mu.Lock()
	p.want, p.found = line, make(chan time.Time, 1)
	p.mu.Unlock()
}

func (p *page) wait(timeout time.Duration) (time.Time, error) {
	p.mu.Lock()
	found, want := p.found, p.want
	p.mu.Unlock()
	select {
	case at := <-found:
		return at, nil
	case <-time.After(timeout):
		st := p.status()
		return time.Time{}, fmt.Errorf("%s: %w waiting for %q (session over: %v)", p.name, errTimeout, want, st.err)
	}
}

func (p *page) expect(line string, action func(), timeout time.Duration) (time.Time, error) {
	p.arm(line)
	action()
	return p.wait(timeout)
}

// webNegotiator answers the gateway's telnet negotiation as the web client
// does: it lets the gateway echo, suppress go-ahead, mark prompts with EOR
// and speak of charsets, and itself says its terminal type, window size
// and UTF-8; it refuses the rest. Replies gather in replies.
type webNegotiator struct {
	his, ours [256]bool
	ttypes    int
	replies   []byte
}

func (n *webNegotiator) Negotiate(verb, opt byte) {
	switch verb {
	case telnet.WILL, telnet.WONT:
		want := verb == telnet.WILL
		agree := opt == telnet.OptEcho || opt == telnet.OptSGA || opt == telnet.OptEOR || opt == telnet.OptCharset
		if want && !agree {
			n.replies = append(n.replies, telnet.IAC, telnet.DONT, opt)
			return
		}
		if want == n.his[opt] {
			return
		}
		n.his[opt] = want
		n.replies = append(n.replies, telnet.IAC, pick(want, telnet.DO, telnet.DONT), opt)
	default:
		want := verb == telnet.DO
		agree := opt == telnet.OptTTYPE || opt == telnet.OptNAWS || opt == telnet.OptCharset
		if want && !agree {
			n.replies = append(n.replies, telnet.IAC, telnet.WONT, opt)
			return
		}
		if want == n.ours[opt] {
			return
		}
		n.ours[opt] = want
		n.replies = append(n.replies, telnet.IAC, pick(want, telnet.WILL, telnet.WONT), opt)
		if want && opt == telnet.OptTTYPE {
			n.ttypes = 0
		}
		if want && opt == telnet.OptNAWS {
			n.replies = telnet.AppendSubneg(n.replies, telnet.OptNAWS, []byte{0, 100, 0, 30})
		}
	}
}

func pick(c bool, a, b byte) byte {
	if c {
		return a
	}
	return b
}

func (n *webNegotiator) Subnegotiation(opt byte, p []byte, truncated bool) {
	switch {
	case opt == telnet.OptTTYPE && len(p) > 0 && p[0] == 1:
		names := []string{"holdfast-web", "ANSI-TRUECOLOR", "MTTS 269"}
		name := names[min(n.ttypes, len(names)-1)]
		n.ttypes++
		n.replies = telnet.AppendSubneg(n.replies, telnet.OptTTYPE, append([]byte{0}, name...))
	case opt == telnet.OptCharset && len(p) > 1 && p[0] == 1:
		utf8 := false
		for _, c := range strings.Split(string(p[2:]), string(p[1])) {
			utf8 = utf8 || strings.EqualFold(c, "UTF-8")
		}
		if utf8 {
			n.replies = telnet.AppendSubneg(n.replies, telnet.OptCharset, append([]byte{2}, "UTF-8"...))
		} else {
			n.replies = telnet.AppendSubneg(n.replies, telnet.OptCharset, []byte{3})
		}
	}
}

func (n *webNegotiator) Command(byte) {}

var _ telnet.Handler = (*webNegotiator)(nil)
