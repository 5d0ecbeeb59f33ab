package backend

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"

	"holdfast/link"
)

// frames reads n frames from fr and names them: O:text for output (O:#n
// when longer than 16 bytes), A:offset, P for Parked, M for Moved, E for
// End.
func frames(t *testing.T, fr *link.Reader, n int) string {
	t.Helper()
	var got []string
	for range n {
		typ, p := frame(t, fr)
		switch typ {
		case link.FrameOutput:
			if len(p) > 16 {
				got = append(got, fmt.Sprintf("O:#%d", len(p)))
			} else {
				got = append(got, "O:"+strings.TrimSuffix(string(p), "\n"))
			}
		case link.FrameAck:
			off, err := link.ParseAck(p)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("A:%d", off))
		case link.FrameParked:
			got = append(got, "P")
		case link.FrameMoved:
			got = append(got, "M")
		case link.FrameEnd:
			got = append(got, "E")
		default:
			got = append(got, fmt.Sprintf("?%v", typ))
		}
	}
	return strings.Join(got, " ")
}

// corkFor sets corkDelay for one test: d, or an hour (never, in a test)
// if d is 0.
func corkFor(t *testing.T, d time.Duration) {
	old := corkDelay
	corkDelay = time.Hour
	if d > 0 {
		corkDelay = d
	}
	t.Cleanup(func() { corkDelay = old })
}

// TestCork has the application answer the first of three lines that came
// at once, then take the second: the answer is corked while it has more
// to read, and goes out before anything else does, with the
// acknowledgement of what the application is done with by then (A:4).
// Without corking the answer would go at once, without it; with a cork
// that something else overtakes, the frames come in another order. The
// line in progress ("two") is acknowledged by nothing the application
// writes, only once it reads again.
func TestCork(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration // corkDelay: long, unless the timer is what sends
		then  func(t *testing.T, l *Listener, g *fakeGateway, s *Session)
		want  string
	}{{
		name: "read that waits",
		then: func(t *testing.T, l *Listener, g *fakeGateway, s *Session) {
			readLine(t, s, "three")
			go s.ReadLine() // waits: everything read is done with
		},
		want: "O:1 A:14",
	}, {
		name:  "timer",
		delay: time.Millisecond,
		then:  func(t *testing.T, l *Listener, g *fakeGateway, s *Session) {}, // the application is busy
		want:  "O:1 A:4",
	}, {
		name: "bound",
		then: func(t *testing.T, l *Listener, g *fakeGateway, s *Session) {
			s.Write([]byte(strings.Repeat("x", maxCork)))
			s.Write([]byte("3\n"))
		},
		want: "O:1 O:#16384 O:3 A:4",
	}, {
		name: "park",
		then: func(t *testing.T, l *Listener, g *fakeGateway, s *Session) {
			link.WriteFrame(g.ctrl, link.FramePark, link.AppendMove(nil, []string{s.ID()}))
		},
		want: "O:1 A:4 P",
	}, {
		// Nor here: the line in progress is answered on the next stream.
		name: "move",
		then: func(t *testing.T, l *Listener, g *fakeGateway, s *Session) {
			link.WriteFrame(g.ctrl, link.FrameMove, link.AppendMove(nil, []string{s.ID()}))
		},
		want: "O:1 A:4 M",
	}, {
		// The line in progress is not acknowledged: the successor gets it.
		name: "release",
		then: func(t *testing.T, l *Listener, g *fakeGateway, s *Session) {
			link.WriteFrame(g.ctrl, link.FrameRelease, link.AppendMove(nil, []string{s.ID()}))
		},
		want: "O:1 A:4 M",
	}, {
		name: "close",
		then: func(t *testing.T, l *Listener, g *fakeGateway, s *Session) {
			s.Close()
		},
		want: "O:1 A:4 E",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			corkFor(t, tc.delay)
			l, g := setup(t)
			st, s := g.open(l, link.Open{ID: "c-1"})
			fr := link.Reader{R: st}
			link.WriteFrame(st, link.FrameInput, []byte("one\ntwo\nthree\n"))
			readLine(t, s, "one")
			if _, err := s.Write([]byte("1\n")); err != nil {
				t.Fatal(err)
			}
			readLine(t, s, "two")
			tc.then(t, l, g, s)
			if got := frames(t, &fr, len(strings.Fields(tc.want))); got != tc.want {
				t.Fatalf("frames %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAckAfterAnswer has another goroutine write to a session (as another
// player's broadcast does) while its application answers a line: that
// frame does not acknowledge the line, which only the application's
// coming back to read does, after its answer. A backend that died between
// the two would otherwise take the line along while the gateway forgot
// it. The frame waits for the answer (corked), or goes alone after
// corkDelay.
func TestAckAfterAnswer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
		want  []string // frames before the answer, then with it
	}{
		{name: "read again", want: []string{"", "O:news O:north A:6"}},
		{name: "timer", delay: time.Millisecond, want: []string{"O:news", "O:north A:6"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			corkFor(t, tc.delay)
			l, g := setup(t)
			st, s := g.open(l, link.Open{ID: "a-1"})
			fr := link.Reader{R: st}
			link.WriteFrame(st, link.FrameInput, []byte("north\n"))
			readLine(t, s, "north")
			wrote := make(chan error)
			go func() {
				_, err := s.Write([]byte("news\n"))
				wrote <- err
			}()
			if err := <-wrote; err != nil {
				t.Fatal(err)
			}
			if n := len(strings.Fields(tc.want[0])); n > 0 {
				if got := frames(t, &fr, n); got != tc.want[0] {
					t.Fatalf("frames %q, want %q", got, tc.want[0])
				}
			}
			if _, err := s.Write([]byte("north\n")); err != nil {
				t.Fatal(err)
			}
			go s.ReadLine() // back for more: done with "north"
			if got := frames(t, &fr, len(strings.Fields(tc.want[1]))); got != tc.want[1] {
				t.Fatalf("frames %q, want %q", got, tc.want[1])
			}
		})
	}
}

// TestReleaseAwaitsAnswer has a deploy's Release come after the
// application answered a line and before it read again: the Release waits
// for it to come back (corkDelay at most), so that the answer goes with
// the line's acknowledgement and the successor does not answer the line
// again. An application that does not come back in time has the line
// repeated; one that has written nothing yet is released at once, and its
// answer refused.
func TestReleaseAwaitsAnswer(t *testing.T) {
	for _, tc := range []struct {
		name              string
		write, sent, read bool
		late              bool // written as the Release comes, before it releases
		want              string
	}{
		{name: "back to read", write: true, read: true, want: "O:sword A:10 M"},
		{name: "written as the Release comes", late: true, read: true, want: "O:sword A:10 M"},
		// The answer went alone (the cork's delay passed): the Release
		// still waits, so that the acknowledgement follows.
		{name: "sent, then back", write: true, sent: true, read: true, want: "A:10 M"},
		{name: "not back in time", write: true, want: "O:sword M"},
		// Not answered yet: released at once, the answer fails, and the
		// successor answers the line.
		{name: "nothing written", want: "M"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			corkFor(t, 0)
			if tc.sent {
				corkFor(t, time.Millisecond)
			}
			old := answerWait
			t.Cleanup(func() { answerWait = old })
			if tc.read {
				answerWait = time.Hour // it waits for the read, whenever it comes
			}
			l, g := setup(t)
			st, s := g.open(l, link.Open{ID: "r-1"})
			fr := link.Reader{R: st}
			link.WriteFrame(st, link.FrameInput, []byte("buy sword\n"))
			readLine(t, s, "buy sword")
			if tc.write {
				if _, err := s.Write([]byte("sword\n")); err != nil {
					t.Fatal(err)
				}
			}
			if tc.sent {
				if got := frames(t, &fr, 1); got != "O:sword" {
					t.Fatalf("frames %q, want the answer alone", got)
				}
			}
			if tc.late {
				answeredMeanwhile = func() {
					if _, err := s.Write([]byte("sword\n")); err != nil {
						t.Error(err)
					}
				}
				t.Cleanup(func() { answeredMeanwhile = nil })
			}
			link.WriteFrame(g.ctrl, link.FrameRelease, link.AppendMove(nil, []string{"r-1"}))
			if tc.read {
				eventually(t, "the Release waits for the application", func() bool {
					s.wmu.Lock()
					defer s.wmu.Unlock()
					return s.backToRead != nil
				})
				go s.ReadLine()
			}
			if got := frames(t, &fr, len(strings.Fields(tc.want))); got != tc.want {
				t.Fatalf("frames %q, want %q", got, tc.want)
			}
			if !tc.write {
				if _, err := s.Write([]byte("sword\n")); err == nil {
					t.Fatal("an answer after the Release was taken")
				}
			}
		})
	}
}

// TestAwayNotCorked: what is written to a session that is away, while its
// application answers a line, goes to the output kept for the next stream
// at once, not to the cork, whose timer would move it there without the
// wait that bounds that output (maxPending).
func TestAwayNotCorked(t *testing.T) {
	corkFor(t, 0)
	l, g := setup(t)
	st, s := g.open(l, link.Open{ID: "w-1"})
	link.WriteFrame(st, link.FrameInput, []byte("one\n"))
	readLine(t, s, "one")
	g.mux.Close()
	eventually(t, "the session is away", s.isAway)
	if _, err := s.Write([]byte("1\n")); err != nil {
		t.Fatal(err)
	}
	s.wmu.Lock()
	corked, pending := s.cork != nil, string(s.pending)
	s.wmu.Unlock()
	if corked || !strings.Contains(pending, "1\n") {
		t.Fatalf("corked %v, pending %q: want the output pending", corked, pending)
	}
}

// TestClaimAfterCork: output corked on a stream whose link then breaks,
// and the session claimed by another gateway: the claim's stream has the
// output once, from the output kept, and the cork does not follow it.
func TestClaimAfterCork(t *testing.T) {
	corkFor(t, 0)
	l, g1 := setup(t)
	st1, s := g1.open(l, link.Open{ID: "k-1", Keep: true, Output: 1000})
	h := sha256.Sum256([]byte("k-1.secret"))
	link.WriteFrame(st1, link.FrameTokens, link.AppendTokens(nil, [][32]byte{h}))
	link.WriteFrame(st1, link.FrameInput, []byte("one\n"))
	readLine(t, s, "one")
	if _, err := s.Write([]byte("answer\n")); err != nil { // corked: answering
		t.Fatal(err)
	}
	g1.mux.Close()
	eventually(t, "the session is away", s.isAway)
	g2 := linkGateway(t, l)
	st2, err := g2.mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	o := link.Open{ID: "k-1", Keep: true, Output: 1000, Claim: "k-1.secret"}
	link.WriteFrame(st2, link.FrameOpen, o.Append(nil))
	eventually(t, "the claim takes the session", func() bool { return !s.isAway() })
	go s.ReadLine() // done with "one": its acknowledgement follows
	fr := link.Reader{R: st2}
	var out string
	for {
		typ, p := frame(t, &fr)
		if typ == link.FrameOutput {
			out += string(p)
		}
		if typ == link.FrameAck {
			break
		}
	}
	if out != "answer\n" {
		t.Fatalf("output on the claim's stream %q, want the answer once", out)
	}
}
