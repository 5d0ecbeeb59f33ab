package test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEmbeddedRegistryBinds checks where the gateway's embedded registry
// listens: on loopback only by default, since only this host registers and
// from elsewhere it would tell anyone the games' names and ports; and also
// on the addresses in ERL_EPMD_ADDRESS, as Erlang's epmd, where a host of
// the network (the namespace) can ask it.
func TestEmbeddedRegistryBinds(t *testing.T) {
	ns := secondHost(t)
	names := frame(110) // NAMES_REQ

	t.Run("default", func(t *testing.T) {
		sys := startSystem(t)
		sys.startBackend()
		port := strconv.Itoa(sys.epmdPort)
		if _, _, err := epmdClient(sys.epmdPort).Names(context.Background()); err != nil {
			t.Fatalf("registry on loopback: %v", err)
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort(hostAddr, port), 5*time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("the registry answers on %s, a non-loopback address", hostAddr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dialing the registry on %s: %v, want connection refused", hostAddr, err)
		}
	})

	t.Run("ERL_EPMD_ADDRESS", func(t *testing.T) {
		s := &system{t: t, cookie: writeCookie(t, "test-cookie")}
		s.gw = start(t, "gateway", []string{"ERL_EPMD_ADDRESS=" + hostAddr},
			"-listen", "127.0.0.1:0", "-epmd-port", "0", "-cookie-file", s.cookie)
		s.epmdPort = int(s.gw.waitLog("gateway: registry listening", 1)["port"].(float64))
		s.telnet = s.gw.waitLog("gateway: telnet listening", 1)["addr"].(string)
		s.startBackend()
		got := probe(t, ns, net.JoinHostPort(hostAddr, strconv.Itoa(s.epmdPort)), names)
		if len(got) < 4 || !strings.Contains(string(got[4:]), "name game at port ") {
			t.Fatalf("NAMES from the other host: %q", got)
		}
		// Loopback is always served too.
		if _, n, err := epmdClient(s.epmdPort).Names(context.Background()); err != nil || len(n) != 1 {
			t.Fatalf("registry on loopback: %v %v", n, err)
		}
	})
}
