package gateway

import (
	"testing"
	"unsafe"
)

// countStarts counts the writers an outbox starts.
type countStarts int

func (c *countStarts) startWriter(bool) { *c++ }

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

// TestOutboxAtOnce: a write made at once takes only plain bytes, and what
// the socket did not take goes first for the writer goroutine, or stays
// for a move that froze the queue meanwhile.
func TestOutboxAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(o *outbox)
		taken   string // "" when takePlain refuses
		written int    // of what was taken
		between func(o *outbox)
		carryOn bool
		wire    string // what is left to go out first
		writing bool   // after wroteAtOnce
	}{
		{name: "all written", taken: "line\r\n", written: 6},
		{name: "part written", taken: "line\r\n", written: 2, carryOn: true, wire: "ne\r\n", writing: true},
		{name: "nothing written", taken: "line\r\n", carryOn: true, wire: "line\r\n", writing: true},
		{name: "more queued meanwhile", taken: "line\r\n", written: 6,
			between: func(o *outbox) { o.put([]byte("more"), 0) }, carryOn: true, writing: true},
		{name: "frozen meanwhile", taken: "line\r\n", written: 1,
			between: func(o *outbox) { o.freeze() }, wire: "ine\r\n"},
		{name: "a mark", setup: func(o *outbox) { o.mark(true) }},
		{name: "a close after", setup: func(o *outbox) { o.finish() }},
		{name: "closed", setup: func(o *outbox) { o.close() }},
		{name: "a cut write", setup: func(o *outbox) { o.wire = []byte("cut") }},
		{name: "frozen", setup: func(o *outbox) { o.freeze() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var started countStarts
			o := newOutbox(64, &started)
			if tc.setup != nil {
				o.mu.Lock()
				o.writing = true // the claim is the caller's: no writer started
				o.mu.Unlock()
				tc.setup(o)
			}
			o.put([]byte("line\r\n"), 0)
			b, ok := o.takePlain()
			if string(b) != tc.taken || ok != (tc.taken != "") {
				t.Fatalf("takePlain = %q, %v; want %q", b, ok, tc.taken)
			}
			if !ok {
				return // the writer goroutine's
			}
			if tc.between != nil {
				tc.between(o)
			}
			if got := o.wroteAtOnce(b[tc.written:]); got != tc.carryOn {
				t.Errorf("wroteAtOnce = %v, want %v", got, tc.carryOn)
			}
			o.mu.Lock()
			defer o.mu.Unlock()
			if string(o.wire) != tc.wire || o.writing != tc.writing {
				t.Errorf("after: wire %q, writing %v; want %q, %v", o.wire, o.writing, tc.wire, tc.writing)
			}
		})
	}
}
