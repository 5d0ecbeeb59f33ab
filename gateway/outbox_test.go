package gateway

import (
	"testing"
	"unsafe"
)

// countStarts counts the writers an outbox starts.
type countStarts int

func (c *countStarts) startWriter() { *c++ }

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

// TestOutboxClaimIdle: a write on the caller's goroutine is claimed only
// when the outbox is idle;
// release queues what the socket did not take ahead of anything put
// meanwhile, and a writer is to start only when something is left.
func TestOutboxClaimIdle(t *testing.T) {
	tests := []struct {
		name  string
		setup func(o *outbox)
		want  bool
	}{
		{"idle", func(*outbox) {}, true},
		{"a writer runs", func(o *outbox) { o.put([]byte("x"), 0) }, false},
		{"output queued while frozen", func(o *outbox) { o.freeze(); o.put([]byte("x"), 0) }, false},
		{"frozen", func(o *outbox) { o.freeze() }, false},
		{"closed", func(o *outbox) { o.close(); o.take() }, false},
		{"closing after output", func(o *outbox) { o.finish(); o.take() }, false},
		{"output cut by a move and thawed, not yet written", func(o *outbox) {
			o.put([]byte("x"), 0)
			o.freeze()
			o.cut([]byte("rest"))
			o.thaw()
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var started countStarts
			o := newOutbox(64, &started)
			tt.setup(o)
			if got := o.claimIdle(); got != tt.want {
				t.Fatalf("claimIdle = %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("release", func(t *testing.T) {
		var started countStarts
		o := newOutbox(64, &started)
		if !o.claimIdle() {
			t.Fatal("an idle outbox was not claimed")
		}
		if o.claimIdle() || o.put([]byte("later"), 0) != nil || started != 0 {
			t.Fatalf("while claimed: claimed again or a writer started (%d)", started)
		}
		rest := []byte("rest")
		if !o.release(rest) {
			t.Fatal("release with output left did not ask for a writer")
		}
		rest[0] = 'X' // the caller's buffer is its own again
		if w := o.takeWire(); string(w) != "rest" {
			t.Fatalf("wire %q, want what the socket did not take", w)
		}
		if b, _, _, _, ok := o.take(); !ok || string(b) != "later" {
			t.Fatalf("take %q %v, want what was put meanwhile", b, ok)
		}
		if _, _, _, _, ok := o.take(); ok || o.writing {
			t.Fatal("the writer did not stop once all was written")
		}

		if !o.claimIdle() || o.release(nil) || o.writing {
			t.Fatal("a whole write left a writer claimed")
		}
	})

	t.Run("frozen while writing", func(t *testing.T) {
		var started countStarts
		o := newOutbox(64, &started)
		o.claimIdle()
		stopped := o.freeze()
		if isClosed(stopped) {
			t.Fatal("the freeze did not wait for the write under way")
		}
		if o.release([]byte("rest")) {
			t.Fatal("release asked for a writer while frozen")
		}
		if !isClosed(stopped) || string(o.save().Wire) != "rest" {
			t.Fatalf("after release: stopped %v, saved wire %q", isClosed(stopped), o.save().Wire)
		}
	})

	t.Run("closed while writing", func(t *testing.T) {
		var started countStarts
		o := newOutbox(64, &started)
		o.claimIdle()
		o.close()
		if !o.release([]byte("rest")) {
			t.Fatal("release did not ask for a writer to end the socket")
		}
		if w := o.takeWire(); len(w) != 0 {
			t.Fatalf("wire %q after a close: the rest is dropped with the queue", w)
		}
		if _, _, _, closed, ok := o.take(); !ok || !closed {
			t.Fatal("the writer was not told to end the socket")
		}
	})
}
