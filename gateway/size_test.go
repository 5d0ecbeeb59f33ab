package gateway

import (
	"testing"
	"unsafe"
)

// TestIdleSessionSize: every idle player keeps its session record and
// its output queue, so each stays within its allocation size class
// (Go's classes go 512, 576, 640 and 144, 160, 176 bytes): a field
// added past it costs every one of tens of thousands of players the
// whole step, and belongs behind a pointer unless most players use it.
func TestIdleSessionSize(t *testing.T) {
	for _, c := range []struct {
		name      string
		size, max uintptr
	}{
		{"session", unsafe.Sizeof(session{}), 576},
		{"outbox", unsafe.Sizeof(outbox{}), 160},
	} {
		if c.size > c.max {
			t.Errorf("%s is %d bytes, past its size class of %d", c.name, c.size, c.max)
		}
	}
}
