package netx

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"holdfast/internal/testnet"
)

// notTimeout is a net.Error that is not a deadline's.
type notTimeout struct{}

func (notTimeout) Error() string   { return "refused" }
func (notTimeout) Timeout() bool   { return false }
func (notTimeout) Temporary() bool { return false }

func TestIsTimeout(t *testing.T) {
	deadline := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"end of file", io.EOF, false},
		{"a deadline's", deadline, true},
		{"a deadline's, wrapped", fmt.Errorf("web: %w", deadline), true},
		{"the runtime's own", os.ErrDeadlineExceeded, true},
		{"another net.Error", notTimeout{}, false},
		{"another net.Error wrapping a deadline's", &net.OpError{Op: "read", Err: notTimeout{}}, false},
		{"closed", net.ErrClosed, false},
		{"not a net.Error", errors.New("timeout"), false},
	} {
		if got := IsTimeout(c.err); got != c.want {
			t.Errorf("%s: IsTimeout(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// TestIsTimeoutReal: what a socket's read past its deadline returns is a
// timeout, read through a net.Conn and through a Conn made from its file.
func TestIsTimeoutReal(t *testing.T) {
	a, _ := testnet.TCPPair(t)
	a.SetReadDeadline(time.Now())
	_, err := a.Read(make([]byte, 1))
	if !IsTimeout(err) {
		t.Errorf("net.Conn read past its deadline: %v, not a timeout", err)
	}
	fd, err := DupFD(a)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewConn(os.NewFile(uintptr(fd), "socket"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now())
	_, err = c.Read(make([]byte, 1))
	if !IsTimeout(err) {
		t.Errorf("netx.Conn read past its deadline: %v, not a timeout", err)
	}
	a.Close()
	_, err = a.Read(make([]byte, 1))
	if IsTimeout(err) {
		t.Errorf("read of a closed conn: %v, taken for a timeout", err)
	}
}
