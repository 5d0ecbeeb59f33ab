package test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"holdfast/gateway"
	"holdfast/gateway/telnet"
)

// scrape returns the gateway's metrics as series -> value, series being
// the name with its labels as Prometheus prints them.
func scrape(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	body := get(t, admin, "/metrics")
	m := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

func get(t *testing.T, admin, path string) string {
	t.Helper()
	// A connection of its own each time: one kept alive would go on asking
	// a gateway that has handed its listeners to a successor.
	c := http.Client{Timeout: waitFor, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %v %v %s", path, resp.Status, err, b)
	}
	return string(b)
}

// waitMetric scrapes until series has value want.
func waitMetric(t *testing.T, admin, series string, want float64) {
	t.Helper()
	waitMetricIf(t, admin, series, fmt.Sprint(want), func(v float64) bool { return v == want })
}

// waitMetricIf scrapes until series has a value that ok accepts.
func waitMetricIf(t *testing.T, admin, series, want string, ok func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		got, present := scrape(t, admin)[series]
		if present && ok(got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metric %s is %v (present %v), want %s", series, got, present, want)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with the deadline above
	}
}

// TestMetricsAfterRestart scrapes the gateway around a backend restart:
// the session goes from attached to waiting and back, and the resume is
// counted and timed.
func TestMetricsAfterRestart(t *testing.T) {
	sys := startSystem(t)
	be := sys.startBackend()
	p := dial(t, sys.telnet, "Ada")
	p.login()

	m := scrape(t, sys.admin)
	for series, want := range map[string]float64{
		`holdfast_sessions{state="attached"}`: 1,
		`holdfast_sessions{state="waiting"}`:  0,
		`holdfast_backend_up`:                 1,
		`holdfast_backend_links_total`:        1,
		`holdfast_connections_total`:          1,
		`holdfast_resumes_total`:              0,
	} {
		if m[series] != want {
			t.Errorf("before the restart: %s = %v, want %v", series, m[series], want)
		}
	}
	for _, series := range []string{"holdfast_player_bytes_in_total", "holdfast_player_bytes_out_total"} {
		waitMetricIf(t, sys.admin, series, "> 0", func(v float64) bool { return v > 0 })
	}

	be.kill(syscall.SIGKILL)
	be.wait()
	p.expect("[holdfast] The game is restarting.")
	waitMetric(t, sys.admin, "holdfast_backend_up", 0)
	waitMetric(t, sys.admin, `holdfast_sessions{state="waiting"}`, 1)
	p.send("echo held")
	// The line as the backend will read it: the telnet line end is a newline.
	waitMetric(t, sys.admin, "holdfast_held_input_bytes", float64(len("echo held\n")))

	sys.startBackend()
	p.expect("[holdfast] The game is back.")
	p.expect("echo: held")
	m = scrape(t, sys.admin)
	for series, want := range map[string]float64{
		`holdfast_sessions{state="attached"}`: 1,
		`holdfast_backend_up`:                 1,
		`holdfast_backend_links_total`:        2,
		`holdfast_resumes_total`:              1,
		`holdfast_resume_seconds_count`:       1,
	} {
		if m[series] != want {
			t.Errorf("after the restart: %s = %v, want %v", series, m[series], want)
		}
	}
	if m["holdfast_resume_seconds_sum"] <= 0 {
		t.Errorf("resume time sum %v, want more than zero", m["holdfast_resume_seconds_sum"])
	}
	waitMetric(t, sys.admin, "holdfast_held_input_bytes", 0) // acknowledged by the new backend

	var health map[string]any
	if err := json.Unmarshal([]byte(get(t, sys.admin, "/healthz")), &health); err != nil {
		t.Fatal(err)
	}
	if health["status"] != "ok" || health["backend"] != "linked" || health["sessions"] != 1.0 {
		t.Errorf("healthz: %v", health)
	}

	p.send("quit")
	p.expectClosed()
	waitMetric(t, sys.admin, `holdfast_disconnects_total{reason="application"}`, 1)
}

// TestSessionsCommand lists the sessions with `gateway sessions`, and
// changes the log level of the running gateway with `gateway log-level`.
func TestSessionsCommand(t *testing.T) {
	sys := startSystem(t)
	sys.startBackend()
	p := dial(t, sys.telnet, "Ada")
	p.login()
	local := p.conn.LocalAddr().String()
	id := p.facts()["id"]

	out := runTool(t, "gateway", "sessions", "-control", sys.control)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || lines[2] != "1 sessions" {
		t.Fatalf("gateway sessions printed:\n%s", out)
	}
	fields := strings.Fields(lines[1])
	if fields[0] != id || fields[1] != local || !strings.Contains(lines[1], "attached") {
		t.Errorf("session line %q, want id %s, client %s, attached", lines[1], id, local)
	}

	var list []gateway.SessionInfo
	if err := json.Unmarshal([]byte(runTool(t, "gateway", "sessions", "-json", "-control", sys.control)), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Client != local || !list[0].Attached || list[0].BytesIn == 0 || list[0].BytesOut == 0 {
		t.Errorf("sessions JSON: %+v", list)
	}

	if got := runTool(t, "gateway", "log-level", "-control", sys.control); got != "info\n" {
		t.Errorf("log level %q, want info", got)
	}
	if got := runTool(t, "gateway", "log-level", "-control", sys.control, "debug"); got != "debug\n" {
		t.Errorf("setting the log level printed %q", got)
	}
	if got := runTool(t, "gateway", "log-level", "-control", sys.control); got != "debug\n" {
		t.Errorf("log level %q after setting it, want debug", got)
	}
	// Even at debug level, what a player types is never logged.
	const secret = "hunter2-b7f3"
	p.send("password")
	p.send(secret)
	p.send("echo " + secret)
	p.expect("echo: " + secret)
	p.send("quit")
	p.expectClosed()
	sys.gw.waitLog("gateway: player disconnected", 1)
	sys.gw.mu.Lock()
	for _, l := range sys.gw.raw {
		if strings.Contains(l, secret) {
			t.Errorf("the gateway logged player input: %s", l)
		}
	}
	sys.gw.mu.Unlock()
	sys.gw.kill(syscall.SIGKILL)
	sys.gw.wait()
	if _, err := exec.Command(filepath.Join(binDir, "gateway"), "sessions", "-control", sys.control).Output(); err == nil {
		t.Error("gateway sessions succeeded with no gateway running")
	}
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, stderr.String())
	}
	return string(out)
}

// writeCert writes a self-signed certificate for localhost with the given
// serial number, and returns a pool that trusts it.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// The key first, then the certificate, each renamed into place, so a
	// reload never pairs a new certificate with the old key for long.
	writeAtomic(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	writeAtomic(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

func writeAtomic(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// dialTLS connects a player over TLS and returns the player and the
// serial number of the certificate the gateway showed.
func dialTLS(t *testing.T, addr, name string, pool *x509.CertPool) (*player, int64) {
	t.Helper()
	d := &net.Dialer{Timeout: waitFor}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	serial := c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	return &player{t: t, name: name, conn: c, r: bufio.NewReader(telnet.Strip(c))}, serial
}

// TestTLS plays over the TLS listener, renews the certificate with SIGHUP
// while a player stays connected, keeps the certificate when the renewed
// files are bad, and drops a connection that never finishes its handshake.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool1 := writeCert(t, certFile, keyFile, 1)
	sys := startSystem(t, "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile,
		"-handshake-timeout", "2s")
	addr := sys.gw.waitLog("gateway: telnet over TLS listening", 1)["addr"].(string)
	sys.startBackend()

	p, serial := dialTLS(t, addr, "Ada", pool1)
	if serial != 1 {
		t.Fatalf("certificate serial %d, want 1", serial)
	}
	p.login()
	p.send("echo over tls")
	p.expect("echo: over tls")
	if f := p.facts(); f["client_ip"] != "127.0.0.1" {
		t.Errorf("client_ip %q over TLS", f["client_ip"])
	}

	pool2 := writeCert(t, certFile, keyFile, 2)
	sys.gw.kill(syscall.SIGHUP)
	sys.gw.waitLog("gateway: SIGHUP: certificate reloaded", 1)
	q, serial := dialTLS(t, addr, "Bob", pool2)
	if serial != 2 {
		t.Errorf("certificate serial %d after SIGHUP, want 2", serial)
	}
	q.login()
	p.send("echo still here")
	p.expect("echo: still here")

	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	sys.gw.kill(syscall.SIGHUP)
	sys.gw.waitLog("gateway: SIGHUP: certificate not reloaded; keeping the one in use", 1)
	if _, serial := dialTLS(t, addr, "Cid", pool2); serial != 2 {
		t.Errorf("certificate serial %d after a bad reload, want 2 kept", serial)
	}

	// A connection that sends nothing is dropped at -handshake-timeout.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(waitFor))
	if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a silent connection got %d bytes, %v; want it closed", n, err)
	}
	sys.gw.waitLog("gateway: handshake failed", 1)
}

// TestProxyProtocol puts HAProxy with send-proxy-v2 in front of the
// gateway: the demo sees the player's own address. A trusted source that
// sends no header is refused; an untrusted one cannot claim an address.
func TestProxyProtocol(t *testing.T) {
	haproxy := needTool(t, "haproxy")
	sys := startSystem(t, "-proxy-protocol", "127.0.0.1/32", "-handshake-timeout", "2s")
	sys.startBackend()

	// HAProxy takes its listening socket from us, so its port is free.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	err = os.WriteFile(cfg, []byte(fmt.Sprintf(`defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
frontend players
    bind fd@3
    default_backend gateway
backend gateway
    server gw %s send-proxy-v2
`, sys.telnet)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(haproxy, "-f", cfg, "-db")
	cmd.ExtraFiles = []*os.File{f}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy:\n%s", out)
		}
	})

	// The player connects from 127.0.0.2; HAProxy reaches the gateway from
	// 127.0.0.1 and says who the player is.
	d := net.Dialer{Timeout: waitFor, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := &player{t: t, name: "Ada", conn: c, r: bufio.NewReader(telnet.Strip(c))}
	p.login()
	if f := p.facts(); f["client_ip"] != "127.0.0.2" {
		t.Errorf("behind HAProxy, client_ip is %q, want 127.0.0.2", f["client_ip"])
	}
	if out := runTool(t, "gateway", "sessions", "-control", sys.control); !strings.Contains(out, "127.0.0.2:") {
		t.Errorf("gateway sessions does not show the player's address:\n%s", out)
	}

	// From the trusted address without a header: refused.
	direct := dial(t, sys.telnet, "Bob")
	direct.expectClosed()
	sys.gw.waitLog("gateway: handshake failed", 1)

	// From an untrusted address, a header is only text the player typed.
	d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}
	c3, err := d.Dial("tcp", sys.telnet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c3.Close() })
	io.WriteString(c3, "PROXY TCP4 198.51.100.7 127.0.0.1 4444 4000\r\n")
	forger := &player{t: t, name: "Eve", conn: c3, r: bufio.NewReader(telnet.Strip(c3))}
	forger.login()
	if f := forger.facts(); f["client_ip"] != "127.0.0.3" {
		t.Errorf("an untrusted PROXY header set client_ip %q, want 127.0.0.3", f["client_ip"])
	}
}

// TestLimits refuses the player past each limit with one line saying why,
// and counts the refusal. The per-address limit comes from a config file.
func TestLimits(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "gateway.conf")
	text := "# two players per address\nmax-per-ip = 2\nconn-rate = 0\nmetrics = 127.0.0.1:0\ncontrol = " +
		filepath.Join(t.TempDir(), "gateway.sock") + "\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		flags  []string
		admit  int
		want   string
		reason string
	}{
		{"max-per-ip", []string{"-config", conf}, 2,
			"[holdfast] Too many connections from your address. Please try again later.", "max_per_ip"},
		{"max-sessions", []string{"-max-sessions", "1"}, 1,
			"[holdfast] The game is full right now. Please try again later.", "max_sessions"},
		{"conn-rate", []string{"-conn-rate", "0.001", "-conn-burst", "3"}, 3,
			"[holdfast] Too many connection attempts from your address. Please wait a moment.", "rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := startSystem(t, tc.flags...)
			sys.startBackend()
			var admitted []*player
			for i := range tc.admit {
				p := dial(t, sys.telnet, fmt.Sprintf("P%d", i))
				p.login()
				admitted = append(admitted, p)
			}
			refused := dial(t, sys.telnet, "Late")
			if got := refused.next(); got != tc.want {
				t.Errorf("refused player read %q, want %q", got, tc.want)
			}
			refused.expectClosed()
			sys.gw.waitLogged("gateway: player refused", "limit", tc.reason)
			waitMetric(t, sys.admin, `holdfast_refused_total{reason="`+tc.reason+`"}`, 1)
			for _, p := range admitted {
				p.send("echo still here")
				p.expect("echo: still here")
			}
			if tc.reason == "rate" {
				return // the bucket refills in 1000 s
			}
			// Room again once a player leaves.
			admitted[0].send("quit")
			admitted[0].expectClosed()
			waitMetric(t, sys.admin, `holdfast_sessions{state="attached"}`, float64(tc.admit-1))
			again := dial(t, sys.telnet, "Again")
			again.login()
		})
	}
}

// TestIdleTimeout disconnects a player who types nothing, saying why.
func TestIdleTimeout(t *testing.T) {
	sys := startSystem(t, "-idle-timeout", "2s")
	sys.startBackend()
	p := dial(t, sys.telnet, "Ada")
	p.login()
	p.expect("[holdfast] Disconnected after 2s without input.")
	p.expectClosed()
	waitMetric(t, sys.admin, `holdfast_disconnects_total{reason="idle"}`, 1)
}

// TestGracefulShutdown stops the gateway with SIGTERM: every player is
// told and their connection closed cleanly, the backend hears each one
// leave, and the gateway exits with status 0.
func TestGracefulShutdown(t *testing.T) {
	sys := startSystem(t)
	be := sys.startBackend()
	var players []*player
	for _, n := range []string{"Ada", "Bob"} {
		p := dial(t, sys.telnet, n)
		p.login()
		players = append(players, p)
	}
	sys.gw.kill(syscall.SIGTERM)
	for _, p := range players {
		p.expect("[holdfast] The gateway is shutting down. Goodbye.")
		p.expectClosed()
	}
	be.waitLog("talker: player left", 2)
	sys.gw.wait()
	if code := sys.gw.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("gateway exited with %d after SIGTERM, want 0", code)
	}
}

// TestBadConfiguration starts the gateway with settings it must refuse,
// and checks that it exits with status 2 and says what is wrong.
func TestBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	conf := func(text string) string {
		f, err := os.CreateTemp(dir, "*.conf")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(text); err != nil {
			t.Fatal(err)
		}
		return f.Name()
	}
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not pem"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"negative limit", []string{"-max-per-ip", "-1"}, nil, "-max-per-ip: must not be negative, got -1"},
		{"tls without cert", []string{"-tls-listen", "127.0.0.1:0"}, nil, "-tls-listen: needs -tls-cert and -tls-key"},
		{"cert without tls", []string{"-tls-cert", garbage}, nil, "-tls-cert: given without -tls-listen"},
		{"bad cert", []string{"-tls-listen", "127.0.0.1:0", "-tls-cert", garbage, "-tls-key", garbage}, nil, "-tls-cert: loading"},
		{"bad cidr", []string{"-proxy-protocol", "10.0.0.0/33"}, nil, `-proxy-protocol: "10.0.0.0/33" is neither an address nor a CIDR`},
		{"bad address", []string{"-listen", "4000"}, nil, `-listen: want host:port, got "4000"`},
		{"wss without cert", []string{"-wss-listen", "127.0.0.1:0"}, nil, "-wss-listen: needs -tls-cert and -tls-key"},
		{"bad web address", []string{"-ws-listen", "localhost"}, nil, `-ws-listen: want host:port, got "localhost"`},
		{"bad origin pattern", []string{"-ws-origins", "play.example.com,[x"}, nil, `-ws-origins: bad pattern "[x"`},
		{"bad forwarded-for", []string{"-ws-forwarded-for", "proxy.example.com"}, nil, `-ws-forwarded-for: "proxy.example.com" is neither an address nor a CIDR`},
		{"negative grace", []string{"-reconnect-grace", "-1m"}, nil, "-reconnect-grace: must not be negative"},
		{"bad duration", []string{"-idle-timeout", "-5s"}, nil, "-idle-timeout: must not be negative"},
		{"zero burst", []string{"-conn-burst", "0"}, nil, "-conn-burst: must be at least 1"},
		{"bad registry address", nil, []string{"ERL_EPMD_ADDRESS=localhost"}, `-epmd-address: "localhost" is not an IP address`},
		{"file: bad value", []string{"-config", conf("listen = 127.0.0.1:0\nmax-sessions = lots\n")}, nil,
			`:2: max-sessions: invalid value "lots"`},
		{"file: unknown name", []string{"-config", conf("max-player = 3\n")}, nil, `:1: no such setting "max-player"`},
		{"file: no equals", []string{"-config", conf("\n\nlisten 127.0.0.1:0\n")}, nil, `:3: want name = value`},
		{"file: missing", []string{"-config", filepath.Join(dir, "nope.conf")}, nil, "config file: open"},
		{"env: bad value", nil, []string{"HOLDFAST_CONN_RATE=fast"}, `environment HOLDFAST_CONN_RATE: invalid value "fast"`},
		{"env: unknown", nil, []string{"HOLDFAST_MAX_PERIP=3"}, "environment HOLDFAST_MAX_PERIP: no such setting"},
		{"env: config file", nil, []string{"HOLDFAST_CONFIG=" + conf("idle-timeout = soon\n")}, `:1: idle-timeout: invalid value "soon"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(binDir, "gateway"), tc.args...)
			cmd.Env = append(os.Environ(), tc.env...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want status 2; output:\n%s", err, out)
			}
			if !strings.HasPrefix(string(out), "gateway: configuration: ") || !strings.Contains(string(out), tc.want) {
				t.Errorf("output %q, want it to say %q", out, tc.want)
			}
		})
	}
}
