package main

import (
	"fmt"
	"sync"
	"time"
)

// typing has typists type one line after another, each after the answer
// to the one before, until stopped, and keeps each round trip.
type typing struct {
	mu      sync.Mutex
	samples []sample
	stop    chan struct{}
	errs    chan error
	wg      sync.WaitGroup
}

type sample struct {
	sent time.Time
	rtt  time.Duration
}

func startTyping(typists []*session, tag string) *typing {
	ty := &typing{stop: make(chan struct{}), errs: make(chan error, len(typists))}
	for _, s := range typists {
		ty.wg.Add(1)
		go func() {
			defer ty.wg.Done()
			for k := 0; ; k++ {
				select {
				case <-ty.stop:
					return
				default:
				}
				text := fmt.Sprintf("%s%s-%d", tag, s.name, k)
				var t0 time.Time
				at, err := s.expect("echo: "+text, func() error {
					t0 = time.Now()
					return s.send("echo " + text)
				}, 2*time.Minute)
				if err != nil {
					ty.errs <- err
					return
				}
				ty.mu.Lock()
				ty.samples = append(ty.samples, sample{t0, at.Sub(t0)})
				ty.mu.Unlock()
			}
		}()
	}
	return ty
}

// finish stops the typists and returns the longest round trip of a line
// answered after from and sent before to, and the first error.
func (ty *typing) finish(from, to time.Time) (time.Duration, error) {
	close(ty.stop)
	ty.wg.Wait()
	close(ty.errs)
	var worst time.Duration
	for _, s := range ty.samples {
		if s.sent.Add(s.rtt).After(from) && s.sent.Before(to) {
			worst = max(worst, s.rtt)
		}
	}
	return worst, <-ty.errs
}
