package fdmsg

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestSendRecv(t *testing.T) {
	a, bf, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := FromFile(bf)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()

	for _, tc := range []struct {
		name    string
		kind    byte
		payload []byte
		files   []syscall.Conn
	}{
		{"empty", 1, nil, nil},
		{"payload", 2, bytes.Repeat([]byte("x"), 1<<20), nil},
		{"a listener's file", 3, []byte("listen"), []syscall.Conn{lf}},
		// A socket sends its own descriptor: no copy to make and close.
		{"a listener itself", 3, []byte("listen"), []syscall.Conn{ln.(*net.TCPListener)}},
		{"many descriptors", 4, []byte("many"), repeat(lf, MaxFiles)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := make(chan error, 1)
			go func() { errs <- a.Send(tc.kind, tc.payload, tc.files) }()
			kind, payload, files, err := b.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			defer func() {
				for _, f := range files {
					f.Close()
				}
			}()
			if kind != tc.kind || !bytes.Equal(payload, tc.payload) || len(files) != len(tc.files) {
				t.Fatalf("got kind %d, %d bytes, %d files", kind, len(payload), len(files))
			}
			if len(files) > 0 {
				// The descriptor is the same socket: accept through it.
				l2, err := net.FileListener(files[0])
				if err != nil {
					t.Fatal(err)
				}
				defer l2.Close()
				go func() {
					if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
						c.Close()
					}
				}()
				l2.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
				c, err := l2.Accept()
				if err != nil {
					t.Fatalf("accepting through the received listener: %v", err)
				}
				c.Close()
			}
		})
	}
}

func repeat(f *os.File, n int) []syscall.Conn {
	fs := make([]syscall.Conn, n)
	for i := range fs {
		fs[i] = f
	}
	return fs
}

func TestBounds(t *testing.T) {
	a, bf, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Send(1, nil, repeat(bf, MaxFiles+1)); !errors.Is(err, ErrProtocol) {
		t.Errorf("sending %d descriptors: %v, want ErrProtocol", MaxFiles+1, err)
	}
	b, err := FromFile(bf)
	if err != nil {
		t.Fatal(err)
	}
	// A header that announces descriptors that did not come.
	a.c.Write([]byte{1, 0, 0, 0, 0, 0, 0, 0, 2})
	if _, _, _, err := b.Recv(); !errors.Is(err, ErrProtocol) {
		t.Errorf("a header announcing missing descriptors: %v, want ErrProtocol", err)
	}
	// A payload over the bound.
	a.c.Write([]byte{1, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	if _, _, _, err := b.Recv(); !errors.Is(err, ErrProtocol) {
		t.Errorf("a payload over the bound: %v, want ErrProtocol", err)
	}
	// A message cut short, then the end.
	a.c.Write([]byte{1, 0, 0, 0, 9, 0, 0, 0, 0, 'x'})
	a.Close()
	if _, _, _, err := b.Recv(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a message cut short: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, _, _, err := b.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after the end: %v, want io.EOF", err)
	}
	b.Close()
}

// FuzzRecv feeds Recv whatever bytes come: it returns messages or errors,
// within its bounds, and never hangs on a stream that ends.
func FuzzRecv(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{2, 0, 0, 0, 3, 0, 0, 0, 0, 'a', 'b', 'c'})
	f.Add([]byte{3, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1})
	f.Add([]byte{4, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, bf, err := Pair()
		if err != nil {
			t.Fatal(err)
		}
		b, err := FromFile(bf)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		go func() {
			a.c.Write(data)
			a.Close()
		}()
		for range 4 {
			_, payload, files, err := b.Recv()
			for _, f := range files {
				f.Close()
			}
			if err != nil {
				return
			}
			if len(payload) > len(data) {
				t.Fatalf("a payload of %d bytes from %d bytes in", len(payload), len(data))
			}
		}
	})
}
