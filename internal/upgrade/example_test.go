package upgrade_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	"holdfast/internal/upgrade"
)

// Example runs both sides of an upgrade in one process: the new process is
// a goroutine here, where a gateway starts its binary again.
func Example() {
	took := make(chan int, 1)
	up := &upgrade.Upgrader{
		Gateway: &old{sessions: [][]string{{"ada", "bob"}, {"cy"}}},
		// In place of starting the binary: the new process's main.
		Start: func(conn *os.File, _ []*os.File, _ []string) (upgrade.Process, error) {
			pred, err := upgrade.FromFile(conn, "")
			if err != nil {
				return nil, err
			}
			p := &goroutine{pred: pred, done: make(chan struct{})}
			go func() {
				defer close(p.done)
				// Configured and linked: ready.
				if p.err = pred.Ready(upgrade.Hello{PID: 2, Version: "v2"}); p.err != nil {
					return
				}
				// Serving the listening sockets now; the sessions follow.
				var n int
				n, p.err = pred.Receive(&arriving{})
				took <- n
			}()
			return p, nil
		},
	}
	res, err := up.Upgrade()
	if err != nil {
		fmt.Println("upgrade failed:", err)
		return
	}
	fmt.Printf("old: the new process (pid %d, %s) serves, with %d sessions\n", res.PID, res.Version, res.Sessions)
	fmt.Printf("new: took %d sessions\n", <-took)
	// Output:
	// old: paused its listening sockets
	// new: started ada,bob
	// new: started cy
	// old: the new process (pid 2, v2) serves, with 3 sessions
	// new: took 3 sessions
}

// old is the old gateway's part.
type old struct{ sessions [][]string }

func (o *old) BeginMove(context.Context) (func(), string, error) { return func() {}, "", nil }
func (o *old) Sockets() ([]*os.File, []string, error)            { return nil, nil, nil }
func (o *old) Backend() string                                   { return "" }
func (o *old) Pause()                                            { fmt.Println("old: paused its listening sockets") }
func (o *old) Resume()                                           {}
func (o *old) Registry() ([]byte, []*os.File, error)             { return nil, nil, nil }

func (o *old) MoveOut(ctx context.Context, m upgrade.Mover) (int, error) {
	moved := 0
	for _, batch := range o.sessions {
		if err := m.Offer([]byte(strings.Join(batch, ",")), nil); err != nil {
			return moved, err
		}
		if err := m.Commit(); err != nil {
			return moved, err
		}
		moved += len(batch)
	}
	return moved, nil
}

// arriving is the new gateway's part.
type arriving struct{}

func (arriving) Receive(state []byte, _ []*os.File) (upgrade.Arrivals, error) {
	return batch(state), nil
}
func (arriving) TakeRegistry([]byte, []*os.File) error { return nil }

type batch string

func (b batch) Len() int { return len(strings.Split(string(b), ",")) }
func (b batch) Start()   { fmt.Println("new: started", string(b)) }
func (b batch) Discard() {}

// goroutine is the new process, played by a goroutine.
type goroutine struct {
	pred *upgrade.Predecessor
	done chan struct{}
	err  error
}

func (g *goroutine) Wait() error { <-g.done; return g.err }
func (g *goroutine) Kill() error { return g.pred.Close() }
