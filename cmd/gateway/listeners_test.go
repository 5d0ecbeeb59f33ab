package main

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

func v2Header(t testing.TB, src string, tlvBytes int) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(2, mustTCPAddr(t, src), mustTCPAddr(t, "127.0.0.1:4000"))
	if tlvBytes > 0 {
		// HAProxy adds TLVs such as a unique id or TLS details; a header
		// larger than the read buffer must still be read whole.
		if err := h.SetTLVs([]proxyproto.TLV{{Type: proxyproto.PP2_TYPE_NOOP, Value: bytes.Repeat([]byte{'x'}, tlvBytes)}}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustTCPAddr(t testing.TB, s string) *net.TCPAddr {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestWithProxy sends what a proxy in front might send to a listener that
// trusts loopback, and checks the address the gateway would see and the
// bytes that follow the header.
func TestWithProxy(t *testing.T) {
	local := proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	localBytes, err := local.Format()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		send     []byte
		wantAddr string // "" means the socket's own address
		wantErr  bool
	}{
		{"v1 tcp4", []byte("PROXY TCP4 198.51.100.7 127.0.0.1 5555 4000\r\n"), "198.51.100.7:5555", false},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::7 ::1 5555 4000\r\n"), "[2001:db8::7]:5555", false},
		{"v2 tcp4", v2Header(t, "203.0.113.9:6000", 0), "203.0.113.9:6000", false},
		{"v2 with 3 KiB of TLVs", v2Header(t, "203.0.113.9:6001", 3072), "203.0.113.9:6001", false},
		{"v2 beyond the 4 KiB bound", v2Header(t, "203.0.113.9:6001", 4096), "", true},
		{"v2 local (a health check)", localBytes, "", false},
		{"no header", []byte("hello\r\n"), "", true},
		{"v1 line without an end", append([]byte("PROXY TCP4 "), bytes.Repeat([]byte{'1'}, 200)...), "", true},
		{"v1 bad address", []byte("PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n"), "", true},
		{"v2 truncated", v2Header(t, "203.0.113.9:6000", 0)[:20], "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln, err := withProxy(raw, []string{"127.0.0.0/8"}, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					return
				}
				defer c.Close()
				c.Write(append(tc.send, "after"...))
				io.Copy(io.Discard, c) // until the server closes
			}()
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			addr := c.RemoteAddr().String()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(io.LimitReader(c, 5))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("read %q with no error; want the connection refused", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "after" {
				t.Errorf("after the header, read %q, want %q", got, "after")
			}
			want := tc.wantAddr
			if want == "" {
				want = "127.0.0.1:"
			}
			if !strings.HasPrefix(addr, want) {
				t.Errorf("address %s, want %s", addr, want)
			}
		})
	}
}

// TestWithProxyUntrusted checks that a source outside the list is read as
// it is: its header is data, and its address its own.
func TestWithProxyUntrusted(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := withProxy(raw, []string{"192.0.2.1"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const forged = "PROXY TCP4 198.51.100.7 127.0.0.1 5555 4000\r\n"
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, forged)
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if a := c.RemoteAddr().String(); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Errorf("untrusted source seen as %s", a)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != forged {
		t.Errorf("read %q, %v; want the forged header as data", got, err)
	}
}

// FuzzProxyHeader feeds a trusted connection arbitrary first bytes: the
// header read ends, with an address or an error, and never panics or
// reads without bound.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 198.51.100.7 127.0.0.1 5555 4000\r\nhi"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(v2Header(f, "203.0.113.9:6000", 0))
	f.Add(v2Header(f, "[2001:db8::1]:6000", 300))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		client, server := net.Pipe()
		defer client.Close()
		go func() {
			client.SetWriteDeadline(time.Now().Add(time.Second))
			client.Write(b)
			client.Close()
		}()
		c := proxyproto.NewConn(server,
			proxyproto.WithPolicy(proxyproto.REQUIRE),
			proxyproto.WithBufferSize(proxyHeaderBuffer),
			proxyproto.SetReadHeaderTimeout(time.Second))
		defer c.Close()
		if c.RemoteAddr() == nil {
			t.Fatal("no address")
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, io.LimitReader(c, int64(len(b))+1))
	})
}
