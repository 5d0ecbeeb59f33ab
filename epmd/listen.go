package epmd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
)

// Listen opens a registry listener on addr. Its connections carry no TCP
// keepalive: requests are short, and registrations come from this host,
// whose kernel closes a dead node's socket itself.
func Listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", addr)
}

// ListenAddrs opens a registry listener on port at each IP address in
// list (separated by commas or spaces), and on loopback, which Erlang's
// epmd always adds to -address. With port 0 the first listener picks a
// free port and the others take the same one; where another address has
// it in use already, a port is picked again, up to pickTries times. An
// empty list means loopback only. Where the host has no IPv6 loopback,
// ::1 is left out.
func ListenAddrs(list string, port int) ([]net.Listener, error) {
	for try := 1; ; try++ {
		lns, err := listenAddrs(list, port)
		if port != 0 || try == pickTries || !errors.Is(err, syscall.EADDRINUSE) {
			return lns, err
		}
	}
}

// pickTries bounds how often ListenAddrs picks a port.
const pickTries = 8

func listenAddrs(list string, port int) ([]net.Listener, error) {
	addrs := strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' })
	seen := map[string]bool{}
	var lns []net.Listener
	fail := func(err error) ([]net.Listener, error) {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, err
	}
	for _, a := range append(addrs, "127.0.0.1", "::1") {
		ip := net.ParseIP(a)
		if ip == nil {
			return fail(fmt.Errorf("epmd: address %q is not an IP address", a))
		}
		if seen[ip.String()] {
			continue
		}
		seen[ip.String()] = true
		ln, err := Listen(net.JoinHostPort(ip.String(), strconv.Itoa(port)))
		if err != nil {
			if a == "::1" && !errors.Is(err, syscall.EADDRINUSE) {
				continue // no IPv6 loopback on this host
			}
			return fail(err)
		}
		if port == 0 {
			port = ln.Addr().(*net.TCPAddr).Port
		}
		lns = append(lns, ln)
	}
	return lns, nil
}
