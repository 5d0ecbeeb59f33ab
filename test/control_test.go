package test

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestControlApartFromMetrics checks that the -metrics address, which
// operators open to a scraper on another host, serves metrics and health
// only: the players' addresses and the log level are on the control
// socket.
func TestControlApartFromMetrics(t *testing.T) {
	sys := startSystem(t, "-metrics", "0.0.0.0:0")
	sys.startBackend()
	p := dial(t, sys.telnet, "Ada")
	p.login()
	c := &http.Client{Timeout: waitFor}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/metrics", 200},
		{"GET", "/healthz", 200},
		{"GET", "/sessions", 404},
		{"GET", "/loglevel", 404},
		{"PUT", "/loglevel", 404},
		{"POST", "/upgrade", 404},
		{"GET", "/debug/pprof/", 404},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+sys.admin+tc.path, strings.NewReader("level=debug"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s on the metrics address: %s, want %d", tc.method, tc.path, resp.Status, tc.want)
		}
	}
	if out := runTool(t, "gateway", "sessions", "-control", sys.control); !strings.Contains(out, "1 sessions") {
		t.Errorf("gateway sessions through the control socket:\n%s", out)
	}
	fi, err := os.Stat(sys.control)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("control socket %v, mode %v: want a socket with mode 0660", err, fi.Mode())
	}
}

// TestControlPermission runs the commands as a user who may not use the
// control socket: the kernel refuses the connection.
func TestControlPermission(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the permission test needs root, to run a command as another user")
		}
		t.Skip("needs root, to run a command as another user")
	}
	sys := startSystem(t)
	// The directory lets anyone through, so that the socket's own mode is
	// what refuses.
	if err := os.Chmod(filepath.Dir(sys.control), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(binDir, 0o755); err != nil { // made by MkdirTemp, 0700
		t.Fatal(err)
	}
	for _, args := range [][]string{{"sessions"}, {"log-level"}, {"log-level", "debug"}} {
		cmd := exec.Command(filepath.Join(binDir, "gateway"), append([]string{args[0], "-control", sys.control}, args[1:]...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.Contains(string(out), "permission denied") {
			t.Errorf("gateway %s as nobody: %v, %s; want it refused with permission denied", strings.Join(args, " "), err, out)
		}
	}
	if got := runTool(t, "gateway", "log-level", "-control", sys.control); got != "info\n" {
		t.Errorf("log level %q: the refused user changed it", got)
	}
}

// TestControlSocketReuse starts a gateway on the control socket of one
// that was SIGKILLed (the file is left behind) and of one that runs.
func TestControlSocketReuse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.sock")
	first := startSystem(t, "-control", path)
	first.gw.kill(syscall.SIGKILL)
	first.gw.wait()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the killed gateway's socket file: %v", err)
	}
	second := startSystem(t, "-control", path)
	if out := runTool(t, "gateway", "sessions", "-control", path); !strings.Contains(out, "0 sessions") {
		t.Errorf("after a stale socket: %s", out)
	}
	// A third gateway may not take the running one's socket.
	third := start(t, "gateway", second.env(), "-listen", "127.0.0.1:0", "-epmd-port", "0", "-cookie-file", second.cookie, "-control", path)
	select {
	case <-third.done:
	case <-time.After(waitFor):
		t.Fatal("a gateway started on the control socket of a running one")
	}
	third.mu.Lock()
	log := strings.Join(third.raw, "\n")
	third.mu.Unlock()
	if !strings.Contains(log, "a running gateway answers on "+path) {
		t.Errorf("the third gateway said:\n%s", log)
	}
	if out := runTool(t, "gateway", "sessions", "-control", path); !strings.Contains(out, "0 sessions") {
		t.Errorf("the running gateway after the refused one: %s", out)
	}
}
