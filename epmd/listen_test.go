package epmd

import (
	"net"
	"strings"
	"testing"
)

func TestListenAddrs(t *testing.T) {
	for _, tc := range []struct {
		name, list string
		want       []string // hosts listened on
		err        string
	}{
		{"empty: loopback only", "", []string{"127.0.0.1", "::1"}, ""},
		{"loopback given twice", "127.0.0.1, 127.0.0.1", []string{"127.0.0.1", "::1"}, ""},
		{"another loopback address", "127.0.0.2", []string{"127.0.0.2", "127.0.0.1", "::1"}, ""},
		{"a name", "localhost", nil, `address "localhost" is not an IP address`},
		{"garbage after a good one", "127.0.0.2,x", nil, `address "x" is not an IP address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lns, err := ListenAddrs(tc.list, 0)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			port := lns[0].Addr().(*net.TCPAddr).Port
			var hosts []string
			for _, ln := range lns {
				a := ln.Addr().(*net.TCPAddr)
				if a.Port != port {
					t.Errorf("%v: port %d, want the first listener's %d", a, a.Port, port)
				}
				hosts = append(hosts, a.IP.String())
				ln.Close()
			}
			// ::1 is left out on a host without IPv6 loopback.
			want := tc.want
			if len(hosts) == len(want)-1 {
				want = want[:len(want)-1]
			}
			if strings.Join(hosts, " ") != strings.Join(want, " ") {
				t.Errorf("listening on %v, want %v", hosts, want)
			}
		})
	}
}
