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
