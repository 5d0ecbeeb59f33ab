package test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"holdfast/epmd"
)

// freePort returns a port that was free a moment ago, for programs that
// cannot report the port they bound (Erlang's epmd), and for a registry
// that a test starts after the programs that look for it. It is below
// the kernel's ephemeral range, so that no program listening on port 0
// (a gateway's admin listener, a backend's link) can take it before the
// registry does, and it is handed out once per test binary.
func freePort(t testing.TB) int {
	t.Helper()
	low := ephemeralLow()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := 10000 + rand.IntN(low-10000)
		if portsGiven[port] {
			continue
		}
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			continue // in use
		}
		ln.Close()
		portsGiven[port] = true
		return port
	}
	t.Fatalf("no free port between 10000 and %d", low)
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// where it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low <= 11000 {
		return 32768
	}
	return low
}

func epmdClient(port int) *epmd.Client {
	return &epmd.Client{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Timeout: 2 * time.Second}
}

// waitEPMD waits until a registry answers on port.
func waitEPMD(t testing.TB, port int) {
	t.Helper()
	eventually(t, "the registry answers on port "+strconv.Itoa(port), func() bool {
		_, _, err := epmdClient(port).Names(context.Background())
		return err == nil
	})
}

// eventually polls cond until it holds. It is for conditions outside the
// test's reach (another program's state); it fails after waitFor.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// registered reports whether name is registered in the registry on port.
func registered(port int, name string) bool {
	_, err := epmdClient(port).Lookup(context.Background(), name)
	return err == nil
}

// daemonKind names a registry daemon the tests can start: Erlang's or ours.
type daemonKind string

const (
	erlangEPMD daemonKind = "erlang"
	ourEPMD    daemonKind = "holdfast"
)

// epmdPath returns the epmd program of a kind.
func epmdPath(t testing.TB, kind daemonKind) string {
	if kind == erlangEPMD {
		return needTool(t, "epmd")
	}
	return filepath.Join(binDir, "epmd")
}

// startEPMD runs a registry daemon in the foreground on a free port.
func startEPMD(t testing.TB, kind daemonKind, args ...string) (*proc, int) {
	t.Helper()
	port := freePort(t)
	p := startPath(t, epmdPath(t, kind), nil, append([]string{"-port", strconv.Itoa(port)}, args...)...)
	waitEPMD(t, port)
	return p, port
}

// cli runs an epmd command line and returns its stdout, stderr and exit code.
func cli(t testing.TB, kind daemonKind, port int, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(epmdPath(t, kind), append([]string{"-port", strconv.Itoa(port)}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

var fdNumber = regexp.MustCompile(`fd = \d+`)

// normalise hides what legitimately differs between two daemons' answers:
// descriptor numbers and the port under test.
func normalise(s string, port int) string {
	s = fdNumber.ReplaceAllString(s, "fd = N")
	return regexp.MustCompile(`\b`+strconv.Itoa(port)+`\b`).ReplaceAllString(s, "PORT")
}
