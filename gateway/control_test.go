package gateway

import (
	"bytes"
	"testing"
	"time"

	"holdfast/internal/netx"
	"holdfast/link"
)

// TestControlSendTimeout: a frame on the control stream that the backend
// does not take in time (here, more than the stream's window, to a
// backend that reads nothing) may have gone in part: the link ends, and
// nothing more is written on the stream.
func TestControlSendTimeout(t *testing.T) {
	wait := controlWriteWait
	controlWriteWait = 100 * time.Millisecond
	t.Cleanup(func() { controlWriteWait = wait })
	ctrl, far, client := linkPair(t)
	lk := &backendLink{mux: client, ctrl: ctrl}
	err := lk.send(link.FrameMSSP, bytes.Repeat([]byte("x"), 512<<10))
	if !netx.IsTimeout(err) {
		t.Fatalf("send past the window to a backend that reads nothing: %v, want a timeout", err)
	}
	select {
	case <-client.CloseChan():
	case <-time.After(10 * time.Second):
		t.Fatal("the link stayed up after a frame went in part")
	}
	if err2 := lk.send(link.FrameGoodbye, nil); err2 != err {
		t.Errorf("a send after the failure: %v, want %v", err2, err)
	}
	far.Close()
}
