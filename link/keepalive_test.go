package link

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// keepaliveLink starts a client link on a, with a keepalive that asks
// after 10 ms, waits ping for an answer (and a write as long for room)
// and takes a peer that only takes in for alive for deaf, and a stream
// whose reader broken wakes. It returns the link, the stream's read
// error, whether broken ran, and the log.
func keepaliveLink(t *testing.T, a net.Conn, ping, deaf time.Duration) (*Mux, <-chan error, <-chan struct{}, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	var mu sync.Mutex
	var st *Stream
	broken := make(chan struct{})
	mux := newMux(a, true, func() {
		mu.Lock()
		if st != nil {
			st.SetReadDeadline(time.Now())
		}
		mu.Unlock()
		close(broken)
	}, log, ping)
	t.Cleanup(func() { mux.Close() })
	s, err := mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	st = s
	mu.Unlock()
	read := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 1))
		read <- err
	}()
	go keepalive(mux, 10*time.Millisecond, deaf, log)
	return mux, read, broken, logs
}

// streamWriter keeps the link busy until stop: chunk-sized writes on
// fresh streams, each stream's first window only (a peer that reads and
// says nothing sends no window updates). A write or an open that waits
// longer than the session allows, behind a slow peer, goes on on a new
// stream.
func streamWriter(mux *Mux, stop <-chan struct{}, chunk int) {
	buf := make([]byte, chunk)
	for {
		st, err := mux.OpenStream()
		if errors.Is(err, ErrConnectionWriteTimeout) {
			continue
		} else if err != nil {
			return
		}
		for range (256 << 10) / chunk {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := st.Write(buf); errors.Is(err, ErrConnectionWriteTimeout) {
				break
			} else if err != nil {
				return
			}
		}
	}
}

// TestKeepaliveSilentPeer: a peer that reads and says nothing (a process
// that hangs with its reads answered by the kernel, or by a relay) is
// dropped: the failure is logged, broken runs, and the stream's reader
// leaves.
func TestKeepaliveSilentPeer(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	go io.Copy(io.Discard, b)
	mux, read, broken, logs := keepaliveLink(t, a, 100*time.Millisecond, time.Minute)
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("a stream on a dead link read something")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream's reader did not leave after the keepalive failed")
	}
	<-broken
	<-mux.CloseChan()
	if n := logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("said nothing, nor taken in").Len(); n != 1 {
		t.Errorf("%d warnings of the peer saying and taking in nothing, want 1: %v", n, logs.All())
	}
}

// TestKeepaliveHeard: a peer that takes in what is sent and speaks now
// and then, less often than a ping waits for its answer but more often
// than deaf, is alive however long the link lasts.
func TestKeepaliveHeard(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	go io.Copy(io.Discard, b)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		frame := []byte{0, 2, 0, 2, 0, 0, 0, 0, 0, 0, 3, 0xe7} // an answer to no ping
		for {
			select {
			case <-stop:
				return
			case <-time.After(600 * time.Millisecond): // longer than a ping waits
			}
			b.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := b.Write(frame); err != nil {
				return
			}
		}
	}()
	const deaf = time.Second
	mux, _, _, logs := keepaliveLink(t, a, 300*time.Millisecond, deaf)
	go streamWriter(mux, stop, 64<<10)
	select {
	case <-mux.CloseChan():
		t.Fatalf("the keepalive ended a link whose peer spoke within deaf: %v", logs.FilterLevelExact(zapcore.WarnLevel).All())
	case <-time.After(5 * deaf):
	}
	close(stop)
	<-done
}

// TestKeepaliveBusyPeer: a peer that sends, but whose answers to pings
// are late (behind what it sends), or that takes in what is sent to it,
// slowly, and says nothing, is alive; once it stops, the link ends.
func TestKeepaliveBusyPeer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ping  time.Duration
		peer  func(b net.Conn, stop <-chan struct{})
		local func(mux *Mux, stop <-chan struct{})
	}{
		{"it sends", 300 * time.Millisecond, func(b net.Conn, stop <-chan struct{}) {
			go io.Copy(io.Discard, b)
			// The answer to a ping nobody sent: a frame the link reads
			// and drops.
			frame := []byte{0, 2, 0, 2, 0, 0, 0, 0, 0, 0, 3, 0xe7}
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				b.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := b.Write(frame); err != nil {
					return
				}
			}
		}, nil},
		{"it reads", 300 * time.Millisecond, func(b net.Conn, stop <-chan struct{}) {
			io.Copy(io.Discard, b)
		}, func(mux *Mux, stop <-chan struct{}) {
			streamWriter(mux, stop, 64<<10)
		}},
		{"it reads slowly", 500 * time.Millisecond, func(b net.Conn, stop <-chan struct{}) {
			// 4 KiB every 8 ms: a piece of 64 KiB in some 130 ms, well
			// within the ping's wait, and a batch of a megabyte in two
			// seconds, well beyond it.
			buf := make([]byte, 4<<10)
			for {
				if _, err := io.ReadFull(b, buf); err != nil {
					return
				}
				time.Sleep(8 * time.Millisecond)
			}
		}, func(mux *Mux, stop <-chan struct{}) {
			streamWriter(mux, stop, 64<<10)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				tc.peer(b, stop)
			}()
			mux, read, _, logs := keepaliveLink(t, a, tc.ping, time.Minute)
			if tc.local != nil {
				go tc.local(mux, stop)
			}
			// Several times the quiet a silent peer is allowed.
			select {
			case <-mux.CloseChan():
				t.Fatalf("the keepalive ended a link whose peer was busy: %v", logs.FilterLevelExact(zapcore.WarnLevel).All())
			case <-time.After(3 * time.Second):
			}
			close(stop)
			if tc.name == "it reads slowly" {
				go io.Copy(io.Discard, b) // the rest, at once
			}
			select {
			case err := <-read:
				if err == nil {
					t.Fatal("a stream on a dead link read something")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the link stayed up after the peer stopped")
			}
			b.Close()
			<-done
		})
	}
}

// TestKeepaliveHungPeer: a peer process that hangs with its socket open,
// its kernel taking in what is sent: the link ends once the peer has sent
// nothing for the deaf bound, though what is sent still goes out.
func TestKeepaliveHungPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			acc <- c
		}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-acc // never read
	defer peer.Close()
	const deaf = 300 * time.Millisecond
	mux, _, _, logs := keepaliveLink(t, a, 100*time.Millisecond, deaf)
	stop := make(chan struct{})
	defer close(stop)
	var sent atomic.Int64
	go func() {
		buf := make([]byte, 4<<10)
		for {
			st, err := mux.OpenStream()
			if err != nil {
				return
			}
			for range 60 {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				if _, err := st.Write(buf); err != nil {
					return
				}
				sent.Add(int64(len(buf)))
			}
		}
	}()
	start := time.Now()
	select {
	case <-mux.CloseChan():
	case <-time.After(10 * deaf): // the kernels take in what is sent for more than 30 times deaf
		t.Fatalf("a link to a peer that says nothing is still up after %v (%d KiB sent)",
			time.Since(start).Round(time.Millisecond), sent.Load()>>10)
	}
	if n := logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("takes in what is sent").Len(); n != 1 {
		t.Errorf("%d warnings of the peer taking in and saying nothing, want 1: %v", n, logs.All())
	}
}
