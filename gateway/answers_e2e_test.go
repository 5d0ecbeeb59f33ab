package gateway_test

import (
	"testing"
	"time"

	"holdfast/backend"
)

// TestSlowAnswerLengthensSilentWait: a client that answers the offers
// 50 ms after they came, after the game has seen it, makes the gateway
// wait for the next silent client at least twice that before the game
// sees it, where a silent client alone waits a few of its round trips.
func TestSlowAnswerLengthensSilentWait(t *testing.T) {
	const late = 50 * time.Millisecond
	e := newEnv(t, nil)
	opened := make(chan time.Time, 2)
	e.backend(func(s *backend.Session) {
		opened <- time.Now()
		s.ReadLine()
	})
	e.waitLog("gateway: backend linked")

	slow := e.dial()
	slow.conn.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := slow.r.ReadByte(); err != nil { // the offers have come
		t.Fatal(err)
	}
	time.Sleep(late)          // the client's machine is slow to answer
	slow.send("\xff\xfc\x18") // WONT TTYPE
	// The game has likely seen it before it answered, since it said
	// nothing for a few round trips; the answer counts all the same.
	<-opened
	eventually(t, "the late answer remembered", func() bool { return e.gw.SlowestAnswer() >= late-5*time.Millisecond })

	t0 := time.Now()
	e.dial() // says nothing
	if waited := (<-opened).Sub(t0); waited < 2*(late-5*time.Millisecond) {
		t.Errorf("a silent client was given %v after a client answered %v late", waited, late)
	}
}
