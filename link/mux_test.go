package link

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// muxPair returns the two ends of a link over a pipe.
func muxPair(t testing.TB) (client, server *Mux) {
	t.Helper()
	a, b := net.Pipe()
	client = newMux(a, true, nil, zap.NewNop(), time.Second)
	server = newMux(b, false, nil, zap.NewNop(), time.Second)
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// streamPair opens a stream on client and accepts it on server.
func streamPair(t testing.TB, client, server *Mux) (near, far *Stream) {
	t.Helper()
	near, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if far, err = server.AcceptStream(); err != nil {
		t.Fatal(err)
	}
	return near, far
}

// streamOn returns the two ends of a stream on a new link.
func streamOn(t testing.TB) (near, far *Stream) {
	t.Helper()
	client, server := muxPair(t)
	return streamPair(t, client, server)
}

// yamuxConfig is the yamux library's configuration as releases that used
// it set it up.
func yamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.AcceptBacklog = 1 << 16
	c.StreamOpenTimeout = 0
	c.EnableKeepAlive = false
	c.LogOutput = io.Discard
	return c
}

// TestMuxWithYamux links this package's end to the yamux library's, both
// ways round: a gateway or backend of a release that used the library
// links to this one. Each end opens streams the other accepts (a backend
// opens none, but the framing allows it), sends more than a window both
// ways, half-closes, and pings.
func TestMuxWithYamux(t *testing.T) {
	type end struct {
		open   func() (net.Conn, error)
		accept func() (net.Conn, error)
		ping   func() (time.Duration, error)
	}
	ours := func(m *Mux) end {
		return end{
			open:   func() (net.Conn, error) { return m.OpenStream() },
			accept: func() (net.Conn, error) { return m.AcceptStream() },
			ping:   m.Ping,
		}
	}
	theirs := func(s *yamux.Session) end {
		return end{
			open:   func() (net.Conn, error) { return s.OpenStream() },
			accept: func() (net.Conn, error) { return s.AcceptStream() },
			ping:   s.Ping,
		}
	}
	for _, tc := range []struct {
		name string
		make func(a, b net.Conn) (client, server end, stop func())
	}{
		{"ours the client", func(a, b net.Conn) (end, end, func()) {
			c := newMux(a, true, nil, zap.NewNop(), 5*time.Second)
			s, err := yamux.Server(b, yamuxConfig())
			if err != nil {
				t.Fatal(err)
			}
			return ours(c), theirs(s), func() { c.Close(); s.Close() }
		}},
		{"ours the server", func(a, b net.Conn) (end, end, func()) {
			c, err := yamux.Client(a, yamuxConfig())
			if err != nil {
				t.Fatal(err)
			}
			s := newMux(b, false, nil, zap.NewNop(), 5*time.Second)
			return theirs(c), ours(s), func() { c.Close(); s.Close() }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			client, server, stop := tc.make(a, b)
			defer stop()
			for _, dir := range []struct {
				name         string
				opener, peer end
			}{{"client opens", client, server}, {"server opens", server, client}} {
				const streams = 3
				const size = 3*streamWindow + 1234
				var wg sync.WaitGroup
				for i := range streams {
					near, err := dir.opener.open()
					if err != nil {
						t.Fatalf("%s: open: %v", dir.name, err)
					}
					far, err := dir.peer.accept()
					if err != nil {
						t.Fatalf("%s: accept: %v", dir.name, err)
					}
					out := bytes.Repeat([]byte{byte('a' + i)}, size)
					back := bytes.Repeat([]byte{byte('A' + i)}, size)
					// Each end writes its whole and closes while the other
					// reads: more than a window each way needs the window
					// updates of both implementations.
					for _, pair := range [][2]net.Conn{{near, far}, {far, near}} {
						w, r := pair[0], pair[1]
						want := out
						if w == far {
							want = back
						}
						wg.Go(func() {
							if _, err := w.Write(want); err != nil {
								t.Errorf("%s: write: %v", dir.name, err)
							}
							w.Close()
						})
						wg.Go(func() {
							got, err := io.ReadAll(r)
							if err != nil || !bytes.Equal(got, want) {
								t.Errorf("%s: read %d bytes (%v), want %d", dir.name, len(got), err, len(want))
							}
						})
					}
				}
				wg.Wait()
			}
			for _, e := range []end{client, server} {
				if _, err := e.ping(); err != nil {
					t.Fatalf("ping: %v", err)
				}
			}
		})
	}
}

// TestMuxStream: what a stream's reads and writes return, in each state a
// stream can reach.
func TestMuxStream(t *testing.T) {
	t.Run("read deadline", func(t *testing.T) {
		near, _ := streamOn(t)
		near.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := near.Read(make([]byte, 1))
		var ne net.Error
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read past its deadline: %v, want a timeout", err)
		}
		// A deadline moved while a read waits wakes it.
		near.SetReadDeadline(time.Time{})
		res := make(chan error, 1)
		go func() { _, err := near.Read(make([]byte, 1)); res <- err }()
		near.SetReadDeadline(time.Now())
		if err := <-res; !errors.Is(err, ErrTimeout) {
			t.Fatalf("read whose deadline was brought forward: %v", err)
		}
	})
	t.Run("write deadline", func(t *testing.T) {
		near, _ := streamOn(t)
		near.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := near.Write(make([]byte, streamWindow+1))
		if n != streamWindow || !errors.Is(err, ErrTimeout) {
			t.Fatalf("write past the window to a peer that reads nothing: %d, %v; want %d, a timeout", n, err, streamWindow)
		}
	})
	t.Run("half close", func(t *testing.T) {
		near, far := streamOn(t)
		near.Write([]byte("bye"))
		near.Close()
		if got, err := io.ReadAll(far); string(got) != "bye" || err != nil {
			t.Fatalf("read %q, %v; want the bytes, then io.EOF", got, err)
		}
		if _, err := near.Write([]byte("x")); !errors.Is(err, ErrStreamClosed) {
			t.Fatalf("write after Close: %v", err)
		}
		// The other way still goes, until the peer closes too.
		far.Write([]byte("back"))
		buf := make([]byte, 8)
		if n, err := near.Read(buf); string(buf[:n]) != "back" || err != nil {
			t.Fatalf("read after Close: %q, %v", buf[:n], err)
		}
		far.Close()
		if _, err := near.Read(buf); err != io.EOF {
			t.Fatalf("read after both closed: %v", err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		near, far := streamOn(t)
		near.m.w.queue(func() []byte { h := makeHeader(muxWindow, flagRST, near.id, 0); return h[:] }(), nil, nil)
		if _, err := far.Read(make([]byte, 1)); !errors.Is(err, ErrStreamReset) {
			t.Fatalf("read of a reset stream: %v", err)
		}
		if _, err := far.Write([]byte("x")); !errors.Is(err, ErrStreamReset) {
			t.Fatalf("write to a reset stream: %v", err)
		}
	})
	t.Run("link ends", func(t *testing.T) {
		client, server := muxPair(t)
		near, far := streamPair(t, client, server)
		near.Write([]byte("last"))
		// Every waiter returns: a read waiting, a write waiting for
		// the window, an accept.
		read := make(chan error, 1)
		go func() { _, err := near.Read(make([]byte, 1)); read <- err }()
		write := make(chan error, 1)
		go func() { _, err := near.Write(make([]byte, 2*streamWindow)); write <- err }()
		accept := make(chan error, 1)
		go func() { _, err := client.AcceptStream(); accept <- err }()
		buf := make([]byte, 4)
		io.ReadFull(far, buf)
		client.Close()
		for what, ch := range map[string]chan error{"read": read, "write": write, "accept": accept} {
			select {
			case err := <-ch:
				if err == nil {
					t.Errorf("%s on an ended link succeeded", what)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s still waits after the link ended", what)
			}
		}
		if _, err := near.Write([]byte("x")); !errors.Is(err, ErrSessionShutdown) {
			t.Errorf("write after the link ended: %v", err)
		}
		if _, err := client.OpenStream(); !errors.Is(err, ErrSessionShutdown) {
			t.Errorf("open after the link ended: %v", err)
		}
		<-server.CloseChan()
	})
	t.Run("go away", func(t *testing.T) {
		client, server := muxPair(t)
		h := makeHeader(muxGoAway, 0, 0, goAwayNormal)
		server.w.queue(h[:], nil, nil)
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := client.OpenStream()
			if errors.Is(err, ErrRemoteGoAway) {
				break
			}
			server.AcceptStream()
			if time.Now().After(deadline) {
				t.Fatalf("open after the peer went away: %v", err)
			}
		}
	})
}

// TestMuxBrokenFramesEndLink: a peer that breaks the framing ends the
// link, and is told why (go away, protocol error); one whose frames name
// a stream already forgotten does not.
func TestMuxBrokenFramesEndLink(t *testing.T) {
	hdr := func(typ uint8, flags uint16, id, n uint32) []byte { h := makeHeader(typ, flags, id, n); return h[:] }
	for _, tc := range []struct {
		name  string
		bytes []byte
		ends  bool
	}{
		{"unknown version", append([]byte{1}, hdr(muxData, 0, 1, 0)[1:]...), true},
		{"unknown type", hdr(9, 0, 0, 0), true},
		{"window exceeded", slices.Concat(hdr(muxWindow, flagSYN, 1, 0), hdr(muxData, 0, 1, streamWindow+1)), true},
		{"opened twice", slices.Concat(hdr(muxWindow, flagSYN, 1, 0), hdr(muxWindow, flagSYN, 1, 0)), true},
		{"stream zero", hdr(muxWindow, flagSYN, 0, 0), true},
		{"unknown stream", slices.Concat(hdr(muxData, 0, 7, 3), []byte("abc"), hdr(muxWindow, 0, 9, 100), hdr(muxPing, flagSYN, 0, 42)), false},
		{"answer to no ping", hdr(muxPing, flagACK, 0, 42), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			var broke sync.Once
			brokenRan := make(chan struct{})
			m := newMux(a, false, func() { broke.Do(func() { close(brokenRan) }) }, zap.NewNop(), time.Second)
			defer m.Close()
			go b.Write(tc.bytes)
			if !tc.ends {
				// The link reads on: it answers a ping sent after them.
				go b.Write(hdr(muxPing, flagSYN, 0, 77))
				want := hdr(muxPing, flagACK, 0, 77)
				var all []byte
				buf := make([]byte, 64)
				b.SetReadDeadline(time.Now().Add(5 * time.Second))
				for !bytes.Contains(all, want) {
					n, err := b.Read(buf)
					all = append(all, buf[:n]...)
					if err != nil {
						t.Fatalf("a link that read %s stopped answering pings: sent %x (%v)", tc.name, all, err)
					}
				}
				if m.IsClosed() {
					t.Fatal("the link ended")
				}
				return
			}
			got := make(chan []byte, 1)
			go func() {
				all, _ := io.ReadAll(b)
				got <- all
			}()
			select {
			case <-m.CloseChan():
			case <-time.After(5 * time.Second):
				t.Fatal("the link is still up")
			}
			<-brokenRan
			all := <-got
			if !bytes.HasSuffix(all, hdr(muxGoAway, 0, 0, goAwayProtocol)) {
				t.Fatalf("sent %x, want a go away for the protocol error last", all)
			}
		})
	}
}

// TestMuxBacklog: a stream opened beyond the accept backlog is reset; the
// link goes on.
func TestMuxBacklog(t *testing.T) {
	client, server := muxPair(t)
	for range acceptBacklog {
		if _, err := client.OpenStream(); err != nil {
			t.Fatal(err)
		}
	}
	extra, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := extra.Read(make([]byte, 1)); !errors.Is(err, ErrStreamReset) {
		t.Fatalf("a stream past the backlog: %v, want a reset", err)
	}
	if _, err := server.AcceptStream(); err != nil {
		t.Fatalf("accept after the backlog overflowed: %v", err)
	}
	if server.IsClosed() || client.IsClosed() {
		t.Fatal("the link ended")
	}
}

// writes records each Write it gets; the first waits until release is
// closed, so that what comes meanwhile queues up. Its reads wait until
// it is closed.
type writes struct {
	net.Conn
	release chan struct{}
	mu      sync.Mutex
	got     [][]byte
	fail    error
	closed  chan struct{}
	once    sync.Once
}

func newWrites(fail error) *writes {
	return &writes{release: make(chan struct{}), closed: make(chan struct{}), fail: fail}
}

func (w *writes) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, bytes.Clone(p))
	return len(p), w.fail
}

func (w *writes) Read([]byte) (int, error) {
	<-w.closed
	return 0, net.ErrClosed
}

func (w *writes) SetWriteDeadline(time.Time) error { return nil }
func (w *writes) Close() error                     { w.once.Do(func() { close(w.closed) }); return nil }

// TestMuxWrites: a frame's header and body go in one write, and frames
// queued while a write is under way go together in the next.
func TestMuxWrites(t *testing.T) {
	w := newWrites(nil)
	m := newMux(w, true, nil, zap.NewNop(), time.Second)
	st, err := m.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("abc"))
	m.Ping() // times out: nothing answers
	st.Close()
	close(w.release)
	m.Close() // sends what is queued first
	syn := makeHeader(muxWindow, flagSYN, 1, 0)
	data := makeHeader(muxData, 0, 1, 3)
	ping := makeHeader(muxPing, flagSYN, 0, 0)
	fin := makeHeader(muxWindow, flagFIN, 1, 0)
	all := slices.Concat(syn[:], data[:], []byte("abc"), ping[:], fin[:])
	if got := bytes.Join(w.got, nil); !bytes.Equal(got, all) {
		t.Fatalf("sent %x, want %x", got, all)
	}
	if len(w.got) > 2 {
		t.Errorf("%d writes: want the frames together in at most two", len(w.got))
	}
	if _, err := st.Write([]byte("x")); err == nil {
		t.Error("write after the link closed succeeded")
	}
}

// TestMuxWriteError: a failed write fails every later one and ends the
// link, broken first.
func TestMuxWriteError(t *testing.T) {
	boom := errors.New("boom")
	w := newWrites(boom)
	close(w.release)
	broken := make(chan struct{})
	m := newMux(w, true, func() { close(broken) }, zap.NewNop(), time.Second)
	st, err := m.OpenStream()
	if err == nil {
		<-m.CloseChan()
		_, err = st.Write([]byte("x"))
	}
	if !errors.Is(err, boom) && !errors.Is(err, ErrSessionShutdown) {
		t.Fatalf("write after the connection failed: %v", err)
	}
	<-broken
}

// TestMuxCloseBounded closes a link whose peer reads nothing: Close gives
// up on the queued frames after its bound instead of hanging.
func TestMuxCloseBounded(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	m := newMux(a, true, nil, zap.NewNop(), time.Second)
	m.OpenStream()
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs on a peer that does not read")
	}
}

// TestMuxWriteWait: a write that finds the link's queue full waits for
// the writer, and fails once writeWait passes without room.
func TestMuxWriteWait(t *testing.T) {
	w := newWrites(nil) // never released: the first write hangs
	m := newMux(w, true, nil, zap.NewNop(), 100*time.Millisecond)
	defer func() { close(w.release); m.Close() }()
	big := make([]byte, maxQueued)
	var err error
	for range 4 {
		if err = m.w.queue(big, nil, nil); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrConnectionWriteTimeout) {
		t.Fatalf("queue past full: %v, want ErrConnectionWriteTimeout", err)
	}
	// The reading goroutine's answers do not wait, and are dropped far
	// past full.
	for i := 0; ; i++ {
		err := m.w.queueNow(big[:16<<10], nil)
		if errors.Is(err, ErrConnectionWriteTimeout) {
			break
		}
		if err != nil || i > (maxQueuedNow-maxQueued)/(16<<10) {
			t.Fatalf("answer %d queued far past full: %v", i, err)
		}
	}
}

// TestBrokenBeforeClose: broken runs once, before the connection closes
// and before any stream learns that the link ended.
func TestBrokenBeforeClose(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	var mu sync.Mutex
	var order []string
	note := func(s string) {
		mu.Lock()
		order = append(order, s)
		mu.Unlock()
	}
	m := newMux(closeNoting{a, note}, true, func() { note("broken") }, zap.NewNop(), time.Second)
	st, _ := m.OpenStream()
	read := make(chan struct{})
	go func() { st.Read(make([]byte, 1)); note("read"); close(read) }()
	m.Close()
	<-read
	m.Close()
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"broken", "close", "read"}; !slices.Equal(order, want) {
		t.Fatalf("order %q, want %q", order, want)
	}
}

// closeNoting is a connection whose Close is noted.
type closeNoting struct {
	net.Conn
	note func(string)
}

func (c closeNoting) Close() error {
	c.note("close")
	return c.Conn.Close()
}

// FuzzMux feeds a link whatever a peer may send: it must neither panic
// nor hold more than the windows it gave, and every stream it accepts is
// read to its end.
func FuzzMux(f *testing.F) {
	hdr := func(typ uint8, flags uint16, id, n uint32) []byte { h := makeHeader(typ, flags, id, n); return h[:] }
	f.Add(slices.Concat(hdr(muxWindow, flagSYN, 1, 0), hdr(muxData, 0, 1, 3), []byte("abc"), hdr(muxWindow, flagFIN, 1, 0)))
	f.Add(slices.Concat(hdr(muxData, flagSYN, 3, 2), []byte("hi"), hdr(muxData, flagRST, 3, 0)))
	f.Add(slices.Concat(hdr(muxPing, flagSYN, 0, 1), hdr(muxGoAway, 0, 0, 0)))
	f.Add(slices.Concat(hdr(muxWindow, flagSYN, 1, 0), hdr(muxData, 0, 1, streamWindow+1)))
	f.Add(slices.Concat(hdr(muxWindow, flagSYN|flagFIN, 5, 1<<31), hdr(muxWindow, 0, 5, 1<<31)))
	// Frames for a stream with a Deliverer (stream 1, 5, 9...): taken,
	// declined, cut.
	frames := slices.Concat(frameBytes(FrameOutput, "a"), frameBytes(FrameState, "s"), frameBytes(FrameOutput, "b"))
	f.Add(slices.Concat(hdr(muxData, flagSYN, 1, uint32(len(frames))), frames, hdr(muxData, 0, 1, 3), frameBytes(FrameOutput, "cut")[:3]))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		m := newMux(a, false, nil, zap.NewNop(), 100*time.Millisecond)
		go io.Copy(io.Discard, b)
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				st, err := m.AcceptStream()
				if err != nil {
					return
				}
				wg.Go(func() {
					st.SetReadDeadline(time.Now().Add(time.Second))
					if st.id%4 == 1 {
						st.SetDeliverer(&takeOutput{})
						fr := Reader{R: st}
						for {
							if _, _, err := fr.Next(); err != nil {
								break
							}
							if _, err := fr.Payload(); err != nil {
								break
							}
						}
					} else {
						io.Copy(io.Discard, st)
					}
					st.Write([]byte("x"))
					st.Close()
				})
			}
		})
		b.SetWriteDeadline(time.Now().Add(time.Second))
		b.Write(in)
		m.mu.Lock()
		for _, st := range m.streams {
			st.mu.Lock()
			if n := len(st.buf) - st.off; n > streamWindow {
				t.Errorf("stream %d holds %d bytes, more than its window", st.id, n)
			}
			st.mu.Unlock()
		}
		m.mu.Unlock()
		m.Close()
		b.Close()
		wg.Wait()
	})
}

// TestMuxWindowUnderLoad: many streams carry a megabyte each at once, in
// writes and reads of every size, the readers now and then slow: each
// arrives whole, and no window is exceeded (which would end the link).
// A data frame lands in pieces, and a read between two pieces gives back
// only what it took.
func TestMuxWindowUnderLoad(t *testing.T) {
	client, server := muxPair(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var wg sync.WaitGroup
	for i := range 100 {
		near, far := streamPair(t, client, server)
		data := bytes.Repeat([]byte{byte(i)}, 1<<20)
		writes := make([]int, 0, 64)
		for left := len(data); left > 0; {
			n := min(left, 1+rng.IntN(40000))
			writes = append(writes, n)
			left -= n
		}
		bufLen, slowEvery := 1+rng.IntN(70000), 2+rng.IntN(50)
		wg.Go(func() {
			for p, k := data, 0; len(p) > 0; k++ {
				n := writes[k]
				if _, err := far.Write(p[:n]); err != nil {
					t.Errorf("stream %d: write: %v", i, err)
					return
				}
				p = p[n:]
			}
			far.Close()
		})
		wg.Go(func() {
			buf := make([]byte, bufLen)
			near.SetReadDeadline(time.Now().Add(time.Minute))
			got := 0
			for k := 0; ; k++ {
				n, err := near.Read(buf)
				got += n
				if k%slowEvery == 0 {
					time.Sleep(time.Millisecond) // a reader behind: the writer fills the window
				}
				if err == io.EOF {
					break
				} else if err != nil {
					t.Errorf("stream %d: read: %v after %d bytes", i, err, got)
					return
				}
			}
			if got != len(data) {
				t.Errorf("stream %d: read %d bytes, want %d", i, got, len(data))
			}
		})
		if i%20 == 19 {
			wg.Wait()
		}
	}
	wg.Wait()
	if client.IsClosed() || server.IsClosed() {
		t.Fatal("the link ended")
	}
}

// stuckWrites is a connection whose writes wait until release is closed;
// entered is closed when the first write starts.
type stuckWrites struct {
	net.Conn
	release, entered chan struct{}
	once             *sync.Once
}

func (c stuckWrites) Write(p []byte) (int, error) {
	c.once.Do(func() { close(c.entered) })
	<-c.release
	return c.Conn.Write(p)
}

// congested returns a link with a stream open, whose writer is stuck in
// its first write after that, with the queue full behind it, and the
// peer's end of the connection; release frees the writer.
func congested(t *testing.T) (m *Mux, st *Stream, peer net.Conn, release func()) {
	t.Helper()
	a, b := net.Pipe()
	c := stuckWrites{a, make(chan struct{}), make(chan struct{}), new(sync.Once)}
	var once sync.Once
	release = func() { once.Do(func() { close(c.release) }) }
	m = newMux(c, true, nil, zap.NewNop(), 50*time.Millisecond)
	t.Cleanup(func() { release(); m.Close(); b.Close() })
	st, err := m.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	// Frames the peer reads past: data for a stream it does not know.
	h := makeHeader(muxData, 0, 99, maxQueued-muxHeaderLen)
	body := make([]byte, maxQueued-muxHeaderLen)
	<-c.entered
	// The writer is stuck writing the stream's opening: this stays.
	if err := m.w.queue(h[:], body, nil); err != nil {
		t.Fatal(err)
	}
	return m, st, b, release
}

// awaitHeader reads the frames the link sends on c until one matches want,
// skipping bodies; it fails after the deadline.
func awaitHeader(t *testing.T, c net.Conn, what string, want func(h muxHeader) bool) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h muxHeader
	for {
		if _, err := io.ReadFull(c, h[:]); err != nil {
			t.Fatalf("%s never came: %v", what, err)
		}
		if h.hasBody() {
			io.CopyN(io.Discard, c, int64(h.length()))
		}
		if want(h) {
			return
		}
	}
}

// TestMuxControlFramesWait: a window update, an acknowledgement and a
// close queue at once, however full the link's queue: dropped after a
// wait, the stream would hang, its peer never given its window back.
func TestMuxControlFramesWait(t *testing.T) {
	m, _, peer, release := congested(t)
	go func() {
		h := makeHeader(muxWindow, flagSYN, 2, 0)
		d := makeHeader(muxData, 0, 2, streamWindow)
		peer.Write(slices.Concat(h[:], d[:], make([]byte, streamWindow)))
	}()
	st, err := m.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(st, make([]byte, streamWindow)); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close on a full queue: %v", err)
	}
	time.Sleep(2 * m.writeWait) // past the wait a queued frame would have given up after
	release()
	awaitHeader(t, peer, "the window update", func(h muxHeader) bool {
		return h.typ() == muxWindow && h.stream() == 2 && h.length() >= streamWindow/2
	})
	awaitHeader(t, peer, "the close", func(h muxHeader) bool {
		return h.typ() == muxWindow && h.stream() == 2 && h.has(flagFIN)
	})
}

// TestMuxWriteTimesOut: a write that finds the queue full past its wait
// takes its window back; one cut after a piece went resets the stream,
// whose peer would otherwise read a frame cut short.
func TestMuxWriteTimesOut(t *testing.T) {
	m, st, peer, release := congested(t)
	if _, err := st.Write(make([]byte, 1000)); !errors.Is(err, ErrConnectionWriteTimeout) {
		t.Fatalf("write on a full queue: %v", err)
	}
	st.mu.Lock()
	window, state := st.sendWindow, st.state
	st.mu.Unlock()
	if window != streamWindow || state&stReset != 0 {
		t.Fatalf("after a write that sent nothing: window %d, reset %v; want %d, not reset", window, state&stReset != 0, streamWindow)
	}

	// Cut: the first piece takes the whole window and finds room (one
	// byte under full); the second waits for the peer's window update,
	// then finds the queue full.
	m.w.mu.Lock()
	filler := makeHeader(muxData, 0, 99, maxQueued-1-muxHeaderLen)
	m.w.pending = append(append(m.w.pending[:0], filler[:]...), make([]byte, maxQueued-1-muxHeaderLen)...)
	m.w.mu.Unlock()
	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	go func() {
		n, err := st.Write(make([]byte, 2*streamWindow))
		res <- result{n, err}
	}()
	waitFor(t, "the first piece to go", func() bool { // the write's wait has no event to wait on
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.sendWindow == 0
	})
	go peer.Write(func() []byte { h := makeHeader(muxWindow, 0, st.id, streamWindow); return h[:] }())
	if r := <-res; r.n != streamWindow || !errors.Is(r.err, ErrConnectionWriteTimeout) {
		t.Fatalf("cut write: %d, %v; want %d, a timeout", r.n, r.err, streamWindow)
	}
	if _, err := st.Write([]byte("x")); !errors.Is(err, ErrStreamReset) {
		t.Fatalf("write after a cut write: %v, want the stream reset", err)
	}
	release()
	awaitHeader(t, peer, "the reset", func(h muxHeader) bool {
		return h.typ() == muxWindow && h.stream() == st.id && h.has(flagRST)
	})
}

// TestMuxWriteErrorAfterBroken: a stream learns that the link failed
// only once broken has run, also when a write fails first: a backend's
// session keeps what it writes for the next stream only once broken has
// marked it away.
func TestMuxWriteErrorAfterBroken(t *testing.T) {
	boom := errors.New("boom")
	w := newWrites(boom)
	entered, unblock := make(chan struct{}), make(chan struct{})
	var ran atomic.Bool
	m := newMux(w, true, func() { close(entered); <-unblock; ran.Store(true) }, zap.NewNop(), time.Second)
	defer m.Close()
	st, err := m.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	close(w.release) // the opening's write fails
	<-entered
	_, err = st.Write([]byte("x"))
	if err != nil && !ran.Load() {
		t.Fatalf("a stream's write learned that the link failed (%v) before broken had run", err)
	}
	close(unblock)
	<-m.CloseChan()
	if _, err := st.Write([]byte("x")); err == nil {
		t.Fatal("a write on a failed link succeeded")
	}
}

// TestMuxCloseWhileWriteWaits: a Close while a Write waits for room in the
// link's queue goes out first, and the Write then sends nothing after it:
// the peer has read the stream's end.
func TestMuxCloseWhileWriteWaits(t *testing.T) {
	m, st, peer, release := congested(t)
	m.writeWait = time.Minute // the write waits for the release, not for its bound
	res := make(chan error, 1)
	go func() { _, err := st.Write([]byte("last words")); res <- err }()
	waitFor(t, "the write to wait for room", func() bool { // the wait has no event to wait on
		m.w.mu.Lock()
		defer m.w.mu.Unlock()
		return m.w.room != nil
	})
	st.Close()
	// The peer reads everything the link sends, and notes the stream's
	// frames in order.
	type frame struct {
		fin  bool
		data uint32
	}
	frames := make(chan frame, 64)
	go func() {
		defer close(frames)
		var h muxHeader
		for {
			if _, err := io.ReadFull(peer, h[:]); err != nil {
				return
			}
			if h.hasBody() {
				io.CopyN(io.Discard, peer, int64(h.length()))
			}
			if h.stream() == st.id && (h.has(flagFIN) || h.hasBody()) {
				frames <- frame{h.has(flagFIN), map[bool]uint32{true: h.length()}[h.hasBody()]}
			}
		}
	}()
	release()
	if err := <-res; !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("a write whose stream closed while it waited: %v, want ErrStreamClosed", err)
	}
	m.Close() // what was queued goes, then the connection closes
	fin := false
	for f := range frames {
		if f.data > 0 {
			t.Fatalf("%d bytes of data sent (after the close: %v)", f.data, fin)
		}
		fin = fin || f.fin
	}
	if !fin {
		t.Fatal("the close never went")
	}
}

// TestMuxControlBound: the streams' control frames, which never wait,
// grow the queue only so far: past maxQueuedControl (a peer that opens
// streams by the million and takes in nothing) the link ends.
func TestMuxControlBound(t *testing.T) {
	m, st, _, release := congested(t)
	m.w.mu.Lock()
	m.w.pending = append(m.w.pending, make([]byte, maxQueuedControl-len(m.w.pending))...)
	m.w.mu.Unlock()
	if err := st.Close(); !errors.Is(err, ErrConnectionWriteTimeout) {
		t.Fatalf("a close past the bound: %v", err)
	}
	release() // the link's end gives its writer a second to flush, which the peer does not read
	select {
	case <-m.CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatal("the link is still up")
	}
}

// TestMuxGoAwayLoggedOnce: a peer that says go away, with a reason, again
// and again is logged once.
func TestMuxGoAwayLoggedOnce(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	core, logs := observer.New(zapcore.DebugLevel)
	m := newMux(a, true, nil, zap.New(core), time.Second)
	defer m.Close()
	g := makeHeader(muxGoAway, 0, 0, goAwayProtocol)
	p := makeHeader(muxPing, flagSYN, 0, 5)
	var all []byte
	for range 100 {
		all = append(all, g[:]...)
	}
	go b.Write(append(all, p[:]...))
	// The ping after them is answered once every go away has been read.
	awaitHeader(t, b, "the ping's answer", func(h muxHeader) bool {
		return h.typ() == muxPing && h.has(flagACK) && h.length() == 5
	})
	if n := logs.FilterMessage("link: the peer is going away").Len(); n != 1 {
		t.Fatalf("%d warnings for 100 go aways, want 1", n)
	}
}
