package main

import (
	"os"
	"runtime/debug"
)

// gatewayGC is the collector's target (GOGC) for the gateway, unless the
// environment sets one. Most of its heap is its sessions' records, which
// live as long as their players; what it allocates between them are
// buffers for a line in or out, garbage within a moment. At Go's default
// (100) the heap is collected at each doubling, and every cycle scans the
// thousands of records again for a few megabytes of garbage: at 15,000
// players each sending and reading a burst, a sixth of the gateway's CPU.
// At 400, a quarter as many cycles; the heap may grow to five times
// what is live between them, a few tens of megabytes at 15,000 players,
// and the memory an idle player keeps is the same (the gateway hands
// what is free back to the system after a burst; see Server.sweepIdle).
const gatewayGC = 400

// setGC sets the collector's target, if the environment does not.
func setGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gatewayGC)
	}
}
