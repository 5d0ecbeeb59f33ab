package link

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// takeOutput is a Deliverer that takes Output frames and declines the
// rest; hold, if set, keeps a Deliver from returning until it is closed.
type takeOutput struct {
	mu   sync.Mutex
	got  [][]byte
	more []bool
	in   chan struct{} // if set, told of each Deliver as it starts
	hold chan struct{}
}

func (d *takeOutput) Deliver(typ FrameType, p []byte, more bool, scratch *[]byte) bool {
	if typ != FrameOutput {
		return false
	}
	if d.in != nil {
		d.in <- struct{}{}
	}
	if d.hold != nil {
		<-d.hold
	}
	*scratch = append((*scratch)[:0], p...) // the payload is not the callee's to keep
	d.mu.Lock()
	d.got = append(d.got, bytes.Clone(*scratch))
	d.more = append(d.more, more)
	d.mu.Unlock()
	return true
}

func (d *takeOutput) delivered() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var s []string
	for _, b := range d.got {
		s = append(s, string(b))
	}
	return s
}

// waitFor waits, with a deadline, until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitIdle waits until st's reader waits for a frame.
func waitIdle(t *testing.T, st *Stream) {
	t.Helper()
	waitFor(t, "the reader waits", func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.idle
	})
}

type frameRead struct {
	typ FrameType
	p   string
	err error
}

// readFrames reads st's frames, as the gateway's reader does, onto a
// channel until the read fails.
func readFrames(st *Stream) <-chan frameRead {
	c := make(chan frameRead, 16)
	go func() {
		defer close(c)
		fr := Reader{R: st}
		for {
			typ, _, err := fr.Next()
			if err != nil {
				c <- frameRead{err: err}
				return
			}
			p, err := fr.Payload()
			c <- frameRead{typ: typ, p: string(p), err: err}
			if err != nil {
				return
			}
		}
	}()
	return c
}

// delivering returns the two ends of a stream on a new link whose far
// end gives its frames to d, read by readFrames, once its reader waits.
func delivering(t *testing.T, d Deliverer) (near, far *Stream, frames <-chan frameRead) {
	t.Helper()
	near, far = streamOn(t)
	far.SetDeliverer(d)
	frames = readFrames(far)
	waitIdle(t, far)
	return near, far, frames
}

func frameBytes(typ FrameType, p string) []byte { return AppendFrame(nil, typ, []byte(p)) }

// TestMuxDeliver: while a stream's reader waits for a frame, the frames
// its Deliverer takes go to it from the link's reader and never to the
// stream's reader; a frame it declines, and every frame after it, go to
// the reader in order; a frame cut across two of the link's data frames
// goes to the reader whole.
func TestMuxDeliver(t *testing.T) {
	d := &takeOutput{}
	near, _, frames := delivering(t, d)

	// Taken, one by one, while the reader waits.
	for _, p := range []string{"a", "b"} {
		if _, err := near.Write(frameBytes(FrameOutput, p)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "two frames delivered", func() bool { return len(d.delivered()) == 2 })

	// Declined: the State and the Output after it go to the reader.
	b := frameBytes(FrameOutput, "c")
	b = AppendFrame(b, FrameState, []byte("s"))
	b = AppendFrame(b, FrameOutput, []byte("d"))
	if _, err := near.Write(b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []frameRead{{typ: FrameState, p: "s"}, {typ: FrameOutput, p: "d"}} {
		if got := <-frames; got != want {
			t.Fatalf("the reader read %v, want %v", got, want)
		}
	}
	// Cut across two data frames: the reader has it whole.
	b = frameBytes(FrameOutput, "whole")
	near.Write(b[:3])
	near.Write(b[3:])
	if got := <-frames; got != (frameRead{typ: FrameOutput, p: "whole"}) {
		t.Fatalf("the reader read %v, want the cut frame whole", got)
	}
}

// TestMuxDeliverWindows: three windows, in frames that the stream's window
// never cuts (its updates come in multiples of them), to a reader that
// never wakes: what was delivered gives the window back, as a read does.
func TestMuxDeliverWindows(t *testing.T) {
	d := &takeOutput{}
	near, _, frames := delivering(t, d)
	near.SetWriteDeadline(time.Now().Add(10 * time.Second))
	const size = 4 << 10
	n := 3 * streamWindow / size
	for i := range n {
		p := bytes.Repeat([]byte{'0' + byte(i%10)}, size-HeaderLen)
		p[0] = byte(i)
		if _, err := near.Write(AppendFrame(nil, FrameOutput, p)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "three windows delivered", func() bool { return len(d.delivered()) == n })
	for i, p := range d.delivered() {
		if int(p[0]) != i%256 || p[1:] != strings.Repeat(string(rune('0'+i%10)), size-HeaderLen-1) {
			t.Fatalf("frame %d out of order, or not whole", i)
		}
	}
	select {
	case f := <-frames:
		t.Fatalf("the reader read %v, all of which was delivered", f)
	default:
	}
}

// TestMuxDeliverBeforeReaderReturns: a reader whose wait ends (its
// deadline, the link's end) while a Deliver runs returns only after it:
// whatever the reader does next comes after what was delivered.
func TestMuxDeliverBeforeReaderReturns(t *testing.T) {
	d := &takeOutput{in: make(chan struct{}, 1), hold: make(chan struct{})}
	near, far, frames := delivering(t, d)
	var once sync.Once
	release := func() { once.Do(func() { close(d.hold) }) }
	defer release() // before the link's close (a cleanup), which waits for its reader
	if _, err := near.Write(frameBytes(FrameOutput, "held")); err != nil {
		t.Fatal(err)
	}
	<-d.in
	far.SetReadDeadline(time.Now())
	select {
	case f := <-frames:
		t.Fatalf("the reader returned %v while a Deliver ran", f)
	case <-time.After(50 * time.Millisecond):
	}
	release()
	f := <-frames
	if !errors.Is(f.err, ErrTimeout) {
		t.Fatalf("the reader read %v, want its deadline", f)
	}
	if got := d.delivered(); len(got) != 1 || got[0] != "held" {
		t.Fatalf("delivered %q before the reader returned", got)
	}
}

// TestDeliverFrames: frames go to the Deliverer until it declines one;
// more tells that more than a small tail (an acknowledgement) was read
// behind the frame (in the same data frame, or after it); a frame cut
// short, or longer than any frame may be, is left.
func TestDeliverFrames(t *testing.T) {
	big := string(bytes.Repeat([]byte("x"), smallTail))
	for _, tc := range []struct {
		name   string
		p      []byte
		behind int
		got    []string
		more   []bool
		rest   int
	}{
		{"output and its ack", append(frameBytes(FrameOutput, "a"), frameBytes(FrameOutput, "b")...), 0,
			[]string{"a", "b"}, []bool{false, false}, 0},
		{"a tail read behind", frameBytes(FrameOutput, "a"), smallTail, []string{"a"}, []bool{false}, 0},
		{"more read behind", frameBytes(FrameOutput, "a"), smallTail + 1, []string{"a"}, []bool{true}, 0},
		{"more in the same frame", append(frameBytes(FrameOutput, "a"), frameBytes(FrameOutput, big)...), 0,
			[]string{"a", big}, []bool{true, false}, 0},
		{"declined", append(frameBytes(FrameOutput, "a"), append(frameBytes(FrameState, "s"), frameBytes(FrameOutput, "b")...)...), 0,
			[]string{"a"}, []bool{false}, 2 * (HeaderLen + 1)},
		{"cut short", frameBytes(FrameOutput, "abc")[:6], 0, nil, nil, 6},
		{"too large", []byte{byte(FrameOutput), 0xff, 0xff, 0xff, 0xff, 'x'}, 0, nil, nil, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m Mux
			d := &takeOutput{}
			rest := m.deliverFrames(d, tc.p, tc.behind)
			got := d.delivered()
			if len(rest) != tc.rest || !slices.Equal(got, tc.got) || !slices.Equal(d.more, tc.more) {
				t.Fatalf("delivered %.12q (more %v), %d left; want %.12q (%v), %d", got, d.more, len(rest), tc.got, tc.more, tc.rest)
			}
		})
	}
}

// TestMuxDeliverDeadlineWhileBodyComes: a reader whose deadline passes
// while a data frame's body is on its way returns, with or without a
// Deliverer: nothing is delivered until the body is all in.
func TestMuxDeliverDeadlineWhileBodyComes(t *testing.T) {
	for _, deliver := range []bool{false, true} {
		t.Run(map[bool]string{false: "no deliverer", true: "deliverer"}[deliver], func(t *testing.T) {
			a, b := net.Pipe()
			m := newMux(a, true, nil, zap.NewNop(), time.Second)
			go io.Copy(io.Discard, b)
			t.Cleanup(func() { b.Close(); m.Close() })
			syn := makeHeader(muxWindow, flagSYN, 2, 0)
			go b.Write(syn[:])
			st, err := m.AcceptStream()
			if err != nil {
				t.Fatal(err)
			}
			if deliver {
				st.SetDeliverer(&takeOutput{})
			}
			frames := readFrames(st)
			waitIdle(t, st)
			body := frameBytes(FrameOutput, "0123456789abcdef")
			h := makeHeader(muxData, 0, 2, uint32(len(body)))
			b.Write(h[:])
			b.Write(body[:8]) // the rest is late
			st.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			select {
			case f := <-frames:
				if !errors.Is(f.err, ErrTimeout) {
					t.Fatalf("read %v, want the deadline", f)
				}
			case <-time.After(5 * time.Second):
				b.Write(body[8:])
				t.Fatal("the deadline passed 5 s ago, and the reader has not returned")
			}
		})
	}
}
