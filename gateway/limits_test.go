package gateway

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestClientIP(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("198.51.100.7"), Port: 1}, "198.51.100.7"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:198.51.100.7"), Port: 1}, "198.51.100.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, "2001:db8::"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:0:7:ffff::1"), Port: 1}, "2001:db8:0:7::"},
		{fakeAddr("[2001:db8::2]:4000"), "2001:db8::"},
		{fakeAddr("pipe"), "invalid IP"},
	} {
		if got := clientIP(tc.addr).String(); got != tc.want {
			t.Errorf("clientIP(%v) = %s, want %s", tc.addr, got, tc.want)
		}
	}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }

// TestAllowRate steps a clock through one address's bucket.
func TestAllowRate(t *testing.T) {
	s := &Server{ConnRate: 2, ConnBurst: 3}
	s.init()
	defer s.Close()
	ip := netip.MustParseAddr("198.51.100.7")
	other := netip.MustParseAddr("198.51.100.8")
	t0 := time.Unix(1000, 0)
	for _, step := range []struct {
		at   time.Duration
		ip   netip.Addr
		want bool
	}{
		{0, ip, true}, {0, ip, true}, {0, ip, true}, // the burst
		{0, ip, false},                      // empty
		{0, other, true},                    // each address has its own
		{400 * time.Millisecond, ip, false}, // 0.8 of a token
		{500 * time.Millisecond, ip, true},  // one token at 2 a second
		{500 * time.Millisecond, ip, false},
		{time.Hour, ip, true}, // refilled, but to the burst only
		{time.Hour, ip, true},
		{time.Hour, ip, true},
		{time.Hour, ip, false},
	} {
		if got := s.allowRate(step.ip, t0.Add(step.at)); got != step.want {
			t.Fatalf("at %v from %v: allowed %v, want %v", step.at, step.ip, got, step.want)
		}
	}
}

// TestBucketsBounded floods from more addresses than the bound: the state
// stays within it.
func TestBucketsBounded(t *testing.T) {
	s := &Server{ConnRate: 1, ConnBurst: 1}
	s.init()
	defer s.Close()
	now := time.Unix(1000, 0)
	for i := range maxBuckets + 10 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		s.allowRate(ip, now) // all still attempting: none has refilled
	}
	if n := len(s.buckets); n > maxBuckets {
		t.Errorf("%d buckets, bound %d", n, maxBuckets)
	}
	// Those that refilled are forgotten first.
	later := now.Add(time.Minute)
	s.allowRate(netip.MustParseAddr("192.0.2.1"), later)
	for i := range maxBuckets {
		s.allowRate(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}), later)
	}
	if n := len(s.buckets); n > maxBuckets {
		t.Errorf("%d buckets, bound %d", n, maxBuckets)
	}
}

func TestNoRateLimit(t *testing.T) {
	s := &Server{}
	s.init()
	defer s.Close()
	ip := netip.MustParseAddr("198.51.100.7")
	for range 1000 {
		if !s.allowRate(ip, time.Unix(0, 0)) {
			t.Fatal("refused with no rate set")
		}
	}
	if len(s.buckets) != 0 {
		t.Errorf("%d buckets kept with no rate set", len(s.buckets))
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour:                  "1h",
		90 * time.Minute:           "1h30m",
		30 * time.Minute:           "30m",
		10 * time.Second:           "10s",
		2 * time.Second:            "2s",
		time.Hour + time.Second:    "1h0m1s",
		1500 * time.Millisecond:    "1.5s",
		24*time.Hour + time.Minute: "24h1m",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
