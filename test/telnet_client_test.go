package test

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// needTool returns the path of a program the tests drive. Outside CI a
// missing program skips the test; in CI, where .ci/run installs it, it fails.
func needTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; .ci/run must install it", name)
	}
	t.Skipf("%s is not installed", name)
	return ""
}

// TestDebianTelnetClient logs in with Debian's telnet client, whose line
// endings and option handling differ from a raw socket's.
func TestDebianTelnetClient(t *testing.T) {
	telnet := needTool(t, "telnet")
	sys := startSystem(t)
	sys.startBackend()

	host, port, _ := strings.Cut(sys.telnet, ":")
	cmd := exec.Command(telnet, host, port)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- strings.TrimRight(sc.Text(), "\r")
		}
	}()
	expect := func(prefix string) {
		t.Helper()
		deadline := time.After(waitFor)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("telnet exited before %q", prefix)
				}
				if strings.HasPrefix(l, prefix) {
					return
				}
			case <-deadline:
				t.Fatalf("telnet did not show %q", prefix)
			}
		}
	}
	expect("What is your name?")
	io.WriteString(stdin, "Tess\n")
	expect("Welcome, Tess.")
	io.WriteString(stdin, "echo over real telnet\n")
	expect("echo: over real telnet")
	io.WriteString(stdin, "quit\n")
	expect("Goodbye, Tess.")
	// The gateway closes the connection, and telnet exits.
	for {
		select {
		case _, ok := <-lines:
			if !ok {
				return
			}
		case <-time.After(waitFor):
			t.Fatal("telnet still connected after quit")
		}
	}
}
