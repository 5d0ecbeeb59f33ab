package gateway

import (
	"testing"
	"unsafe"
)

// countStarts counts the writers an outbox starts.
type countStarts int

func (c *countStarts) startWriter()          { *c++ }
func (c *countStarts) writeNow(b []byte) int { return 0 }

// TestOutboxSpare: while a writer runs, the buffer it wrote and gave back
// takes the next put, so a burst costs two buffers in turn; one too large
// is not kept, and a writer that stops for want of output drops the
// spare, so an idle player holds none.
func TestOutboxSpare(t *testing.T) {
	var started countStarts
	o := newOutbox(64, &started)
	same := func(a, b []byte) bool { return unsafe.SliceData(a) == unsafe.SliceData(b) }

	if err := o.put([]byte("one"), 0); err != nil || started != 1 {
		t.Fatalf("first put: %v, writers started %d", err, started)
	}
	first, _, _, _, ok := o.take()
	if !ok || string(first) != "one" {
		t.Fatalf("take %q %v", first, ok)
	}
	o.put([]byte("two"), 0) // while the first is written
	o.recycle(first)
	second, _, _, _, _ := o.take()
	if string(second) != "two" || same(second, first) {
		t.Fatalf("second take %q, the first's buffer: %v", second, same(second, first))
	}
	o.put([]byte("three"), 0)
	o.mu.Lock()
	reused := same(o.buf, first)
	o.mu.Unlock()
	if !reused {
		t.Fatal("the put after a recycle did not take the buffer given back")
	}
	third, _, _, _, _ := o.take()
	o.recycle(third)
	o.recycle(second) // one spare at most: this one is not kept
	o.mu.Lock()
	kept := same(o.spare, third)
	o.mu.Unlock()
	if !kept {
		t.Fatal("the first buffer given back was not the one kept")
	}

	o.put([]byte("four"), 0) // takes the spare
	if four, _, _, _, _ := o.take(); !same(four, third) {
		t.Fatal("the put did not take the spare")
	}
	o.recycle(make([]byte, 0, 1000)) // over twice the bound: never kept
	o.mu.Lock()
	big := o.spare != nil
	o.mu.Unlock()
	if big {
		t.Fatal("a buffer over twice the bound was kept")
	}
	o.recycle(third)
	if _, _, _, _, ok := o.take(); ok {
		t.Fatal("take with nothing queued")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.spare != nil || o.writing {
		t.Fatalf("after the writer stopped: spare %d bytes, writing %v", cap(o.spare), o.writing)
	}
}

// TestOutboxPutMarked: MCCP2's start sequence and the mark after it are
// queued in one step, so output put after it is compressed; past twice
// the bound it is refused, as other protocol bytes are.
func TestOutboxPutMarked(t *testing.T) {
	var started countStarts
	o := newOutbox(16, &started)
	o.put([]byte("before"), 0)
	start := []byte{255, 250, 86, 255, 240}
	if !o.putMarked(start, true) {
		t.Fatal("putMarked refused")
	}
	o.put([]byte("after"), 0)
	b, marks, _, _, ok := o.take()
	if !ok || string(b) != "before"+string(start)+"after" {
		t.Fatalf("take %q %v", b, ok)
	}
	if len(marks) != 1 || marks[0] != (mark{at: len("before") + len(start), compress: true}) {
		t.Fatalf("marks %+v, want compression from just after the start sequence", marks)
	}
	o.put(make([]byte, 30), 0)
	if o.putMarked(start, true) {
		t.Fatal("putMarked past twice the bound was taken")
	}
}

// socketNow stands for a player's socket that takes up to room bytes of a
// write at once; during may act while the write is under way.
type socketNow struct {
	plain  bool // a plain socket: else every write goes to the writer
	room   int
	got    []byte
	starts int
	during func()
}

func (s *socketNow) startWriter() { s.starts++ }

func (s *socketNow) writeNow(b []byte) int {
	if !s.plain {
		return 0
	}
	if s.during != nil {
		s.during()
	}
	n := min(len(b), s.room)
	s.got = append(s.got, b[:n]...)
	return n
}

// TestOutboxPutNow: output for a player with nothing queued goes to the
// socket at once, with no writer started; what the socket does not take,
// and what was put meanwhile (after it), goes to a writer; a connection
// that is not a plain socket always has a writer; a move that freezes the
// output meanwhile keeps the rest, and no writer. What is queued is a
// copy: the caller's buffer serves its next put. Where a put would wait
// for room, putNow takes nothing.
func TestOutboxPutNow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		plain  bool
		room   int
		put    string // put while the first write is under way
		freeze bool
		sent   string
		queued string
		starts int
	}{
		{"taken whole", true, 100, "", false, "hello", "", 0},
		{"taken in part", true, 2, "", false, "he", "llo", 1},
		{"not a plain socket", false, 100, "", false, "", "hello", 1},
		{"put meanwhile", true, 100, "more", false, "hello", "more", 1},
		{"put meanwhile, taken in part", true, 3, "more", false, "hel", "lomore", 1},
		{"frozen meanwhile", true, 2, "", true, "he", "llo", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &socketNow{plain: tc.plain, room: tc.room}
			o := newOutbox(64, s)
			var stopped <-chan struct{}
			s.during = func() {
				if tc.put != "" {
					o.put([]byte(tc.put), 0)
				}
				if tc.freeze {
					stopped = o.freeze()
				}
			}
			in := []byte("hello")
			if !o.putNow(in) {
				t.Fatal("an empty outbox did not take a put")
			}
			copy(in, "XXXXX") // the caller's buffer, used again: nothing queued refers to it
			o.mu.Lock()
			queued, writing := string(o.buf), o.writing
			o.mu.Unlock()
			if string(s.got) != tc.sent || queued != tc.queued || s.starts != tc.starts {
				t.Fatalf("sent %q, queued %q, writers started %d; want %q, %q, %d", s.got, queued, s.starts, tc.sent, tc.queued, tc.starts)
			}
			if tc.starts == 0 && writing {
				t.Fatal("no writer runs, yet the outbox says one does")
			}
			if tc.freeze {
				// No writer is started for a frozen output: the move
				// waits for none, and takes the rest.
				if _, _, _, _, ok := o.take(); ok {
					t.Fatal("a frozen outbox handed its writer something")
				}
				select {
				case <-stopped:
				default:
					t.Fatal("the freeze still waits for a writer")
				}
			}
		})
	}
}

// TestOutboxPutNowFull: putNow never waits: a full queue, or a closed one,
// takes nothing (the caller hands the output to a reader that may wait);
// with something queued, what it takes goes after it, to the writer.
func TestOutboxPutNowFull(t *testing.T) {
	s := &socketNow{plain: true, room: 100}
	o := newOutbox(8, s)
	o.mu.Lock()
	o.buf = []byte("queued") // a writer has yet to take it
	o.writing = true
	o.mu.Unlock()
	if !o.putNow([]byte("ab")) {
		t.Fatal("a put within the bound was refused")
	}
	if o.putNow([]byte("c")) {
		t.Fatal("a put past the bound was taken")
	}
	o.mu.Lock()
	queued := string(o.buf)
	o.mu.Unlock()
	if queued != "queuedab" || len(s.got) != 0 {
		t.Fatalf("queued %q, sent %q; want everything queued, in order", queued, s.got)
	}
	o.close()
	if o.putNow([]byte("x")) {
		t.Fatal("a closed outbox took a put")
	}
}

// TestOutboxPutNowMarkMeanwhile: a compression mark put while putNow
// writes (MCCP2 starting or stopping) stays after the bytes put before it,
// whatever of them the socket did not take: those go uncompressed, first.
func TestOutboxPutNowMarkMeanwhile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		room  int
		put   string // with the mark
		plain string // what goes before the mark
	}{
		{"taken in part", 2, "SB", "helloSB"},
		{"taken whole", 100, "SB", "helloSB"},
		{"a mark alone, taken in part", 2, "", "hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &socketNow{plain: true, room: tc.room}
			o := newOutbox(64, s)
			s.during = func() {
				if tc.put != "" {
					o.putMarked([]byte(tc.put), true)
				} else {
					o.mark(true)
				}
			}
			o.putNow([]byte("hello"))
			w := o.takeWire()
			b, marks, _, _, _ := o.take()
			if len(marks) != 1 {
				t.Fatalf("marks %v, want one", marks)
			}
			if got := string(s.got) + string(w) + string(b[:marks[0].at]); got != tc.plain {
				t.Fatalf("before the mark: %q (sent %q, queued %q, mark at %d); want %q", got, s.got, b, marks[0].at, tc.plain)
			}
		})
	}
}
