package gateway

import (
	"testing"
	"time"
)

// waitFor bounds every wait of the package's tests.
const waitFor = 10 * time.Second

// eventually waits, until waitFor has passed, for cond to hold.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitFor)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with the deadline above
	}
}
