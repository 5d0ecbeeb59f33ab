package backend

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestControlWriteSlowReader: a write on the control stream to a gateway
// that reads slowly, a piece at a time, goes through, however long the
// whole takes; one to a gateway that stops reading fails within the bound.
func TestControlWriteSlowReader(t *testing.T) {
	defer func(w time.Duration) { controlWriteWait = w }(controlWriteWait)
	controlWriteWait = time.Second
	for _, tc := range []struct {
		name  string
		reads int // pieces read before the reader stops; -1: all
		fails bool
	}{
		{"slow", -1, false},
		{"stops", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			const size = 24 * controlPiece
			got := make(chan int, 1)
			go func() {
				n := 0
				buf := make([]byte, controlPiece)
				for tc.reads < 0 || n < tc.reads*controlPiece {
					// Each piece a tenth of the bound after the one
					// before: the whole takes more than twice the bound.
					time.Sleep(controlWriteWait / 10)
					m, err := io.ReadFull(b, buf)
					n += m
					if err != nil || n == size {
						break
					}
				}
				got <- n
			}()
			err := writePieces(a, make([]byte, size))
			switch {
			case tc.fails && !errors.Is(err, os.ErrDeadlineExceeded):
				t.Fatalf("write to a reader that stopped: %v, want a deadline error", err)
			case !tc.fails && err != nil:
				t.Fatalf("write to a slow reader: %v", err)
			}
			a.Close()
			if n := <-got; !tc.fails && n != size {
				t.Errorf("read %d, want %d", n, size)
			}
		})
	}
}
