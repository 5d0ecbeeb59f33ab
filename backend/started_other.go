//go:build !linux

package backend

import "time"

// processStart reads the clock that orders backend processes (see
// link.NewInstance). Elsewhere than on Linux it is the wall clock: set
// back between the start of a backend and of its successor, it makes the
// successor look older, and the gateways do not move players to it.
func processStart() int64 { return time.Now().UnixNano() }
