package telnet

import (
	"testing"
	"unsafe"
)

// TestEngineSize: every held player keeps an Engine, so it stays within
// its allocation size class (Go's go 208, 224, 240 bytes): a field added
// past it costs every one of tens of thousands of players the whole step.
func TestEngineSize(t *testing.T) {
	if n := unsafe.Sizeof(Engine{}); n > 224 {
		t.Errorf("Engine is %d bytes, past its size class of 224", n)
	}
}
