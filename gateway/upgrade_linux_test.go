package gateway_test

import (
	"context"
	"testing"
)

// TestArrivedIdleParked: a quiet player who arrives from another process
// waits in the new process's parker from the start, with no reader (one
// for each arrival would only wait its second and park); their next line
// wakes a reader, and is answered.
func TestArrivedIdleParked(t *testing.T) {
	e, p, gw2, _, _ := twoGateways(t)
	m := &sameProcess{to: gw2}
	if n, err := e.gw.MoveOut(context.Background(), m); err != nil || n != 1 {
		t.Fatalf("MoveOut = %d, %v", n, err)
	}
	if got := gw2.PlayersParked(); got != 1 {
		t.Fatalf("players parked once the move is done: %d, want 1", got)
	}
	p.send("two\r\n")
	p.expect("2: two")
	p.send("three\r\n")
	p.expect("3: three")
}
