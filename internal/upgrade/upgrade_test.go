package upgrade

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"holdfast/internal/fdmsg"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestKindString(t *testing.T) {
	seen := map[string]Kind{}
	for _, k := range []Kind{Failed, Ready, Accept, Batch, Prepared, Refused, Commit, Committed, Registry, Taken, Done, Serving} {
		s := k.String()
		if strings.HasPrefix(s, "Kind(") {
			t.Errorf("%#02x has no name", byte(k))
		}
		if other, ok := seen[s]; ok {
			t.Errorf("%v is both %#02x and %#02x", s, byte(other), byte(k))
		}
		seen[s] = k
	}
	if got := Kind(0).String(); got != "Kind(0x00)" {
		t.Errorf("Kind(0) = %q", got)
	}
}

// oldGateway is the old process's part, played in memory: it moves
// batches of sessions named by strings, each with a descriptor.
type oldGateway struct {
	batches [][]string
	noReg   bool // no registry to hand over

	mu     sync.Mutex
	events []string
	env    []string
	block  chan struct{} // if set, BeginMove waits for it, then fails
	begun  chan struct{}
}

func (g *oldGateway) event(e string) {
	g.mu.Lock()
	g.events = append(g.events, e)
	g.mu.Unlock()
}

func (g *oldGateway) Events() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.events)
}

func (g *oldGateway) BeginMove(ctx context.Context) (func(), string, error) {
	g.event("begin")
	if g.block != nil {
		close(g.begun)
		<-g.block
		return nil, "deploy", errors.New("the deploy under way did not finish")
	}
	return func() { g.event("release") }, "", nil
}

func (g *oldGateway) Sockets() ([]*os.File, []string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	return []*os.File{r, w}, []string{"SOCKETS=listen,metrics"}, nil
}

func (g *oldGateway) Backend() string { return "127.0.0.1:9000" }
func (g *oldGateway) Pause()          { g.event("pause") }
func (g *oldGateway) Resume()         { g.event("resume") }

func (g *oldGateway) MoveOut(ctx context.Context, m Mover) (int, error) {
	moved := 0
	for _, b := range g.batches {
		r, w, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		err = m.Offer([]byte(strings.Join(b, ",")), []syscall.Conn{r})
		r.Close()
		w.Close()
		if err != nil {
			m.Abort()
			g.event("abort")
			return 0, err
		}
		moved += len(b)
	}
	if len(g.batches) == 0 {
		return 0, nil
	}
	if err := m.Commit(); err != nil {
		m.Abort()
		g.event("abort")
		return 0, err
	}
	return moved, nil
}

func (g *oldGateway) Registry() ([]byte, []*os.File, error) {
	if g.noReg {
		return nil, nil, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	w.Close()
	return []byte("game=4370"), []*os.File{r}, nil
}

// newGateway is the new process's part, played in memory.
type newGateway struct {
	// refuse, if set, answers a batch with an error instead.
	refuse func(batch int) error

	batches   int
	started   []string
	discarded []string
	registry  string
}

func (g *newGateway) Receive(state []byte, conns []*os.File) (Arrivals, error) {
	closeFiles(conns)
	g.batches++
	if g.refuse != nil {
		if err := g.refuse(g.batches); err != nil {
			return nil, err
		}
	}
	return &arrivals{g: g, names: strings.Split(string(state), ",")}, nil
}

func (g *newGateway) TakeRegistry(state []byte, files []*os.File) error {
	if len(files) != 1 {
		return fmt.Errorf("%d registrations' connections", len(files))
	}
	closeFiles(files)
	g.registry = string(state)
	return nil
}

type arrivals struct {
	g     *newGateway
	names []string
}

func (a *arrivals) Len() int { return len(a.names) }
func (a *arrivals) Start()   { a.g.started = append(a.g.started, a.names...) }
func (a *arrivals) Discard() { a.g.discarded = append(a.g.discarded, a.names...) }

// process is a new process played by a goroutine: run is its main, and
// its error the way it exits. Kill closes its end of the socket, as the
// kernel does for a process killed.
type process struct {
	pred *Predecessor
	env  []string
	done chan struct{}
	err  error
}

func (p *process) Wait() error { <-p.done; return p.err }
func (p *process) Kill() error { return p.pred.Close() }

// newProcess returns an Upgrader's Start that runs main as the new
// process, and the process once started.
func newProcess(main func(p *Predecessor) error) (func(*os.File, []*os.File, []string) (Process, error), <-chan *process) {
	started := make(chan *process, 1)
	return func(conn *os.File, files []*os.File, env []string) (Process, error) {
		if len(files) != 2 {
			return nil, fmt.Errorf("%d files inherited", len(files))
		}
		backend := ""
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, backendEnv+"="); ok {
				backend = v
			}
		}
		pred, err := FromFile(conn, backend)
		if err != nil {
			return nil, err
		}
		p := &process{pred: pred, env: env, done: make(chan struct{})}
		go func() {
			defer close(p.done)
			p.err = main(pred)
		}()
		started <- p
		return p, nil
	}, started
}

func TestUpgrade(t *testing.T) {
	old := &oldGateway{batches: [][]string{{"ada", "bob"}, {"cy"}, {"dee", "eve"}}}
	recv := &newGateway{}
	var took int
	var tookErr error
	start, started := newProcess(func(p *Predecessor) error {
		if p.Backend != "127.0.0.1:9000" {
			return fmt.Errorf("backend %q", p.Backend)
		}
		if err := p.Ready(Hello{PID: 42, Version: "v2"}); err != nil {
			return err
		}
		took, tookErr = p.Receive(recv)
		return tookErr
	})
	u := &Upgrader{Gateway: old, Start: start, Logger: zaptest.NewLogger(t)}
	res, err := u.Upgrade()
	if err != nil {
		t.Fatal(err)
	}
	p := <-started
	if err := p.Wait(); err != nil {
		t.Errorf("the new process: %v", err)
	}
	if res.PID != 42 || res.Version != "v2" || res.Sessions != 5 || res.Took <= 0 || res.WaitedFor != "" {
		t.Errorf("result %+v", res)
	}
	// The last offered (the busiest) start first.
	if took != 5 || !slices.Equal(recv.started, []string{"dee", "eve", "cy", "ada", "bob"}) || recv.registry != "game=4370" {
		t.Errorf("the new process took %d (%v): %v, registry %q", took, tookErr, recv.started, recv.registry)
	}
	if ev := old.Events(); !slices.Equal(ev, []string{"begin", "pause"}) {
		t.Errorf("the old process: %v; want the token kept and the sockets paused", ev)
	}
	if !slices.Contains(p.env, "SOCKETS=listen,metrics") || !slices.Contains(p.env, connEnv+"=3") {
		t.Errorf("environment %q", p.env)
	}
	if _, err := u.Upgrade(); !errors.Is(err, ErrUnderWay) {
		t.Errorf("an upgrade after one succeeded: %v", err)
	}
}

func TestUpgradeNoRegistry(t *testing.T) {
	old := &oldGateway{noReg: true}
	recv := &newGateway{}
	start, started := newProcess(func(p *Predecessor) error {
		if err := p.Ready(Hello{PID: 7, Version: "v2"}); err != nil {
			return err
		}
		_, err := p.Receive(recv)
		return err
	})
	u := &Upgrader{Gateway: old, Start: start}
	if _, err := u.Upgrade(); err != nil {
		t.Fatal(err)
	}
	if err := (<-started).Wait(); err != nil || recv.registry != "" {
		t.Errorf("the new process: %v, registry %q", err, recv.registry)
	}
}

// TestUpgradeFails: each way the new process can fail, the reason the
// old one gives, and what it does with its sockets and the move token.
func TestUpgradeFails(t *testing.T) {
	errKilled := errors.New("signal: killed")
	for _, tc := range []struct {
		name string
		main func(p *Predecessor) error
		// refuse, if set, is the new process's answer to a batch.
		refuse    func(batch int) error
		want      string
		is        error
		events    []string // the old process's
		serves    bool     // the new process serves: no second upgrade
		newErr    string   // the new process's error
		readyWait time.Duration
	}{{
		name: "failed before ready",
		main: func(p *Predecessor) error {
			p.Failed(errors.New("configuration: idle-timeout: invalid value"))
			return errors.New("exit status 2")
		},
		want:   "the new gateway refused to start: configuration: idle-timeout: invalid value",
		events: []string{"begin", "release"},
		newErr: "exit status 2",
	}, {
		name: "exited before ready",
		main: func(p *Predecessor) error {
			p.Close()
			return errors.New("exit status 1")
		},
		want:   "the new gateway exited before it was ready: exit status 1",
		events: []string{"begin", "release"},
		newErr: "exit status 1",
	}, {
		name: "a protocol version the old one does not speak",
		main: func(p *Predecessor) error {
			return p.Ready(Hello{Protocol: Version + 1, PID: 42, Version: "v3"})
		},
		want:   fmt.Sprintf("the new gateway speaks %d, this one %d", Version+1, Version),
		is:     ErrVersion,
		events: []string{"begin", "release"},
		newErr: fmt.Sprintf("upgrade: the old gateway refused: upgrade: a protocol version this gateway does not speak: the new gateway speaks %d, this one %d", Version+1, Version),
	}, {
		name: "not ready in time",
		main: func(p *Predecessor) error {
			_, _, _, err := p.conn.Recv() // until killed
			return err
		},
		readyWait: 20 * time.Millisecond,
		want:      "the new gateway was not ready within 20ms",
		events:    []string{"begin", "release"},
		newErr:    "use of closed network connection",
	}, {
		name: "died after accept",
		main: func(p *Predecessor) error {
			if err := p.Ready(Hello{PID: 42}); err != nil {
				return err
			}
			p.Close()
			return errKilled
		},
		want:   "the new gateway exited during the upgrade (signal: killed): ",
		events: []string{"begin", "pause", "abort", "resume", "release"},
		newErr: errKilled.Error(),
	}, {
		name: "died half-way",
		main: func(p *Predecessor) error {
			if err := p.Ready(Hello{PID: 42}); err != nil {
				return err
			}
			p.Receive(&newGateway{refuse: func(batch int) error {
				if batch == 2 {
					p.Close() // as if killed
				}
				return nil
			}})
			return errKilled
		},
		want:   "the new gateway exited during the upgrade (signal: killed): ",
		events: []string{"begin", "pause", "abort", "resume", "release"},
		newErr: errKilled.Error(),
	}, {
		name: "a batch refused",
		main: func(p *Predecessor) error {
			if err := p.Ready(Hello{PID: 42}); err != nil {
				return err
			}
			_, err := p.Receive(&newGateway{refuse: func(batch int) error {
				if batch == 2 {
					return errors.New("no room")
				}
				return nil
			}})
			return err
		},
		want:   "moving sessions failed: the other gateway refused: no room; every session stays with this process",
		events: []string{"begin", "pause", "abort", "release"},
		serves: true,
		newErr: "EOF",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			old := &oldGateway{batches: [][]string{{"ada", "bob"}, {"cy"}, {"dee"}}}
			start, started := newProcess(tc.main)
			u := &Upgrader{Gateway: old, Start: start, ReadyTimeout: tc.readyWait, ExitWait: 50 * time.Millisecond,
				Logger: zaptest.NewLogger(t)}
			_, err := u.Upgrade()
			p := <-started
			newErr := p.Wait()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("upgrade: %v\nwant it to fail saying %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("upgrade: %v, not %v", err, tc.is)
			}
			if ev := old.Events(); !slices.Equal(ev, tc.events) {
				t.Errorf("the old process: %v, want %v", ev, tc.events)
			}
			if newErr == nil || !strings.Contains(newErr.Error(), tc.newErr) {
				t.Errorf("the new process: %v, want %q", newErr, tc.newErr)
			}
			_, err = u.Upgrade()
			if tc.serves != errors.Is(err, ErrUnderWay) {
				t.Errorf("a second upgrade: %v", err)
			}
			if !tc.serves {
				(<-started).Wait()
			}
		})
	}
}

// TestUpgradeOneAtATime: an upgrade waiting for the move token refuses a
// second one, and one that could not start lets the next try.
func TestUpgradeOneAtATime(t *testing.T) {
	old := &oldGateway{block: make(chan struct{}), begun: make(chan struct{})}
	u := &Upgrader{Gateway: old, Start: func(*os.File, []*os.File, []string) (Process, error) {
		return nil, errors.New("not started")
	}}
	first := make(chan error, 1)
	go func() {
		res, err := u.Upgrade()
		if res.WaitedFor != "deploy" {
			err = fmt.Errorf("waited for %q: %w", res.WaitedFor, err)
		}
		first <- err
	}()
	<-old.begun
	if _, err := u.Upgrade(); !errors.Is(err, ErrUnderWay) || err.Error() != "an upgrade is already under way" {
		t.Errorf("a second upgrade at once: %v", err)
	}
	close(old.block)
	if err := <-first; err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Errorf("the first: %v", err)
	}
	old.block = nil
	if _, err := u.Upgrade(); err == nil || err.Error() != "not started" {
		t.Errorf("the next: %v", err)
	}
	if ev := old.Events(); !slices.Equal(ev, []string{"begin", "begin", "release"}) {
		t.Errorf("events %v", ev)
	}
}

// TestUpgradeNotFound: with neither a binary nor Start, nothing starts.
func TestUpgradeNotFound(t *testing.T) {
	old := &oldGateway{}
	u := &Upgrader{Gateway: old}
	if _, err := u.Upgrade(); err == nil || !strings.Contains(err.Error(), "binary was not found") {
		t.Errorf("upgrade: %v", err)
	}
}

// TestReadyEarlierRelease: a Ready without a protocol version, as
// gateways said it before versions, is version 1, which commits each batch
// and would drop all but the last of a move committed once: refused, and
// the new process told why.
func TestReadyEarlierRelease(t *testing.T) {
	start, started := newProcess(func(p *Predecessor) error {
		if err := p.conn.Send(byte(Ready), []byte(`{"pid":9,"version":"old","sessions":0,"took_ns":0}`), nil); err != nil {
			return err
		}
		kind, payload, _, err := p.conn.Recv()
		if err != nil {
			return err
		}
		return fmt.Errorf("%v: %s", Kind(kind), payload)
	})
	old := &oldGateway{}
	u := &Upgrader{Gateway: old, Start: start, ExitWait: time.Second}
	_, err := u.Upgrade()
	if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "the new gateway speaks 1, this one 2") {
		t.Errorf("upgrade: %v", err)
	}
	if err := (<-started).Wait(); err == nil || !strings.Contains(err.Error(), "Refused: upgrade: a protocol version") {
		t.Errorf("the new process: %v", err)
	}
	if ev := old.Events(); !slices.Equal(ev, []string{"begin", "release"}) {
		t.Errorf("the old process: %v", ev)
	}
}

// TestMoveAllOrNothing: the new process starts no session before the
// Commit; at an Abort it lets go of every batch untouched, and goes on
// serving; if the old process goes away half-way, it starts what it has,
// since nobody else will.
func TestMoveAllOrNothing(t *testing.T) {
	for _, tc := range []struct {
		name          string
		send          []Kind // after the batches
		started       []string
		discarded     []string
		err           bool
		answeredAbort bool
	}{
		{name: "commit", send: []Kind{Commit, Done}, started: []string{"cy", "ada", "bob"}},
		{name: "abort", send: []Kind{Abort, Done}, discarded: []string{"ada", "bob", "cy"}, answeredAbort: true},
		{name: "old gone", started: []string{"cy", "ada", "bob"}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, theirs, err := fdmsg.Pair()
			if err != nil {
				t.Fatal(err)
			}
			pred, err := FromFile(theirs, "")
			if err != nil {
				t.Fatal(err)
			}
			g := &newGateway{}
			type result struct {
				n   int
				err error
			}
			done := make(chan result, 1)
			go func() {
				n, err := pred.Receive(g)
				done <- result{n, err}
			}()
			r := newReader(old)
			defer r.close()
			u := &Upgrader{}
			for _, b := range []string{"ada,bob", "cy"} {
				if err := u.send(r, Batch, []byte(b), nil, Prepared); err != nil {
					t.Fatal(err)
				}
			}
			for _, k := range tc.send {
				want := map[Kind]Kind{Commit: Committed, Abort: Aborted, Done: Serving}[k]
				if err := u.send(r, k, nil, nil, want); err != nil {
					t.Fatalf("%v: %v", k, err)
				}
			}
			if len(tc.send) == 0 {
				old.Close()
			}
			res := <-done
			if (res.err != nil) != tc.err || res.n != len(tc.started) {
				t.Errorf("Receive = %d, %v", res.n, res.err)
			}
			if !slices.Equal(g.started, tc.started) || !slices.Equal(g.discarded, tc.discarded) {
				t.Errorf("started %v, discarded %v; want %v and %v", g.started, g.discarded, tc.started, tc.discarded)
			}
		})
	}
}

// TestAbortUnanswered: a new process that does not answer an Abort is
// killed before the old one carries on with the sessions, so that no
// session is served by both.
func TestAbortUnanswered(t *testing.T) {
	start, started := newProcess(func(p *Predecessor) error {
		if err := p.Ready(Hello{PID: 42}); err != nil {
			return err
		}
		batches := 0
		for {
			kind, _, files, err := p.conn.Recv()
			closeFiles(files)
			if err != nil {
				return errors.New("signal: killed")
			}
			if Kind(kind) == Batch {
				if batches++; batches == 1 {
					p.conn.Send(byte(Prepared), nil, nil)
				} else {
					p.conn.Send(byte(Refused), []byte("out of memory"), nil)
				}
			}
			// An Abort is not answered: stuck.
		}
	})
	old := &oldGateway{batches: [][]string{{"ada"}, {"bob"}}}
	u := &Upgrader{Gateway: old, Start: start, AnswerTimeout: 50 * time.Millisecond, ExitWait: time.Second,
		Logger: zaptest.NewLogger(t)}
	_, err := u.Upgrade()
	if err == nil || !strings.Contains(err.Error(), "the new gateway exited during the upgrade (signal: killed)") {
		t.Errorf("upgrade: %v", err)
	}
	if err := (<-started).Wait(); err == nil {
		t.Error("the new process was not stopped")
	}
	if ev := old.Events(); !slices.Equal(ev, []string{"begin", "pause", "abort", "resume", "release"}) {
		t.Errorf("the old process: %v", ev)
	}
}
