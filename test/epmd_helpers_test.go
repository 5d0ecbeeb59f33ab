package test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"holdfast/epmd"
)

// freePort returns a port that was free a moment ago, for programs that
// cannot report the port they bound (Erlang's epmd).
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
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
