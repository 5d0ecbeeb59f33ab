package test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// runLoad runs the load tool and returns its figures.
func runLoad(t *testing.T, args ...string) (map[string]string, string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "load"), append([]string{"run"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("load run: %v\n%s", err, out)
	}
	figures := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 4 && f[0] == "RESULT" {
			figures[f[1]] = f[2]
		}
	}
	return figures, string(out)
}

// TestLoadToolSmoke runs the load tool small against holdfast and against
// its echo baseline, and checks that it produced every figure. It asserts
// no timing: the figures belong in the README, from scripts/bench.
func TestLoadToolSmoke(t *testing.T) {
	sys := startSystem(t)
	be := start(t, "backend", sys.env(), "-quiet", "-cookie-file", sys.cookie)
	sys.gw.waitLog("gateway: backend linked", 1)
	backendCmd := "exec " + filepath.Join(binDir, "backend") + " -quiet -cookie-file " + sys.cookie
	figures, out := runLoad(t, "-addr", sys.telnet, "-sessions", "20", "-typists", "3", "-keys", "5", "-bulk", "50", "-settle", "3s",
		"-pid", strconv.Itoa(sys.gw.cmd.Process.Pid), "-backend-pid", strconv.Itoa(be.cmd.Process.Pid),
		"-backend-cmd", "ERL_EPMD_PORT="+strconv.Itoa(sys.epmdPort)+" "+backendCmd,
		"-epmd", "127.0.0.1:"+strconv.Itoa(sys.epmdPort),
		"-upgrade-cmd", filepath.Join(binDir, "gateway")+" upgrade -control "+sys.control,
		"-handover-cmd", "ERL_EPMD_PORT="+strconv.Itoa(sys.epmdPort)+" "+backendCmd+" -takeover")
	if pid, ok := figures["upgrade_pid"]; ok {
		if n, err := strconv.ParseFloat(pid, 64); err == nil {
			t.Cleanup(func() { syscall.Kill(int(n), syscall.SIGKILL) })
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if pid, ok := strings.CutPrefix(l, "new backend pid "); ok {
			if n, err := strconv.Atoi(pid); err == nil {
				t.Cleanup(func() { syscall.Kill(n, syscall.SIGKILL) })
			}
		}
	}
	for _, f := range []string{"login_all", "rss_per_idle_session", "rss_total", "rss_per_idle_settled", "rtt_p50", "rtt_p99", "rtt_p999",
		"rtt_cpu_server", "rtt_cpu_game", "rtt_cpu_load", "fanout_last", "bulk_one", "bulk_all",
		"upgrade_time", "upgrade_rtt_max", "upgrade_rss_before", "upgrade_rss_after", "upgrade_fds_before", "upgrade_fds_after",
		"handover_time", "handover_rtt_max", "handover_gateway_rss_peak", "restart_time", "restart_rtt_max", "resume_all"} {
		if _, ok := figures[f]; !ok {
			t.Errorf("holdfast: no figure %s in\n%s", f, out)
		}
	}

	echo := start(t, "load", nil, "echo")
	addr := ""
	eventually(t, "the echo server listens", func() bool {
		echo.mu.Lock()
		defer echo.mu.Unlock()
		for _, l := range echo.raw {
			if a, ok := strings.CutPrefix(l, "echo server listening on "); ok {
				addr = a
				return true
			}
		}
		return false
	})
	// Lists, as scripts/bench gives for a baseline of several processes:
	// here the same server twice, so that every player still hears the
	// others for the fan-out.
	pid := strconv.Itoa(echo.cmd.Process.Pid)
	figures, out = runLoad(t, "-addr", addr+","+addr, "-sessions", "20", "-typists", "3", "-keys", "5", "-bulk", "50", "-settle", "3s",
		"-pid", pid+","+pid, "-game-pid", pid)
	for _, f := range []string{"login_all", "rss_per_idle_session", "rss_per_idle_settled", "rtt_p50", "rtt_p99", "rtt_p999",
		"rtt_cpu_server", "rtt_cpu_game", "rtt_cpu_load", "fanout_last", "bulk_one", "bulk_all"} {
		if _, ok := figures[f]; !ok {
			t.Errorf("echo baseline: no figure %s in\n%s", f, out)
		}
	}
	// The processes measured did work for the lines: a figure read from
	// the wrong place would be zero.
	for _, f := range []string{"rtt_cpu_server", "rtt_cpu_load"} {
		if v, err := strconv.ParseFloat(figures[f], 64); err != nil || v <= 0 {
			t.Errorf("echo baseline: %s is %q, want the processor time of a line", f, figures[f])
		}
	}
}

// TestLoadToolBadPid: a -pid list with something other than a number in
// it is refused before anything runs.
func TestLoadToolBadPid(t *testing.T) {
	out, err := exec.Command(filepath.Join(binDir, "load"), "run", "-pid", "12,abc").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `pid "abc"`) {
		t.Fatalf("load run -pid 12,abc: %v\n%s\nwant a refusal naming \"abc\"", err, out)
	}
}

// TestLoadToolClients runs the load tool's other clients small: players
// that answer the offers (refusing, or as a MUD client does), and browser
// players over WebSocket.
func TestLoadToolClients(t *testing.T) {
	sys, _, web := startWebSystem(t, "-max-per-ip", "0", "-conn-rate", "0")
	for _, answer := range []string{"refuse", "mud"} {
		figures, out := runLoad(t, "-addr", sys.telnet, "-sessions", "20", "-typists", "3", "-keys", "5", "-phases", "rtt", "-answer", answer)
		for _, f := range []string{"login_all", "rtt_p50"} {
			if _, ok := figures[f]; !ok {
				t.Errorf("-answer %s: no figure %s in\n%s", answer, f, out)
			}
		}
	}
	figures, out := runLoad(t, "-ws", "-addr", web, "-sessions", "20", "-typists", "3", "-keys", "5", "-bulk", "50", "-phases", "rtt,fanout,bulk")
	for _, f := range []string{"login_all", "rtt_p50", "fanout_last", "bulk_one", "bulk_all"} {
		if _, ok := figures[f]; !ok {
			t.Errorf("-ws: no figure %s in\n%s", f, out)
		}
	}
}

// TestLoadToolFarm runs the farm scenario small: browser players through
// HAProxy with deploy/haproxy.cfg in front of two gateways (on addresses
// of their own, the same ports), one of which is killed, and in the other
// round drained; every page comes back through the other. It checks that
// every figure is produced and asserts no timing: scripts/bench-farm
// measures.
func TestLoadToolFarm(t *testing.T) {
	haproxy := needTool(t, "haproxy")
	if os.Geteuid() != 0 {
		t.Skip("deploy/haproxy.cfg changes root to /var/lib/haproxy: root only")
	}
	cfg, err := filepath.Abs("../deploy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	for _, event := range []string{"kill", "drain"} {
		t.Run(event, func(t *testing.T) {
			_, eport := startEPMD(t, ourEPMD)
			env := []string{"ERL_EPMD_PORT=" + strconv.Itoa(eport)}
			cookie := writeCookie(t, "cookie-farm")
			be := start(t, "backend", env, "-quiet", "-cookie-file", cookie)
			gwAddrs := []string{"127.0.0.11", "127.0.0.12"}
			ports := portsFreeOn(t, 3, gwAddrs...)
			var gws []*proc
			var controls []string
			for _, a := range gwAddrs {
				control := filepath.Join(t.TempDir(), "gateway.sock")
				gw := start(t, "gateway", env, "-listen", a+":"+ports[0], "-ws-listen", a+":"+ports[1],
					"-metrics", a+":"+ports[2], "-control", control, "-embed-epmd=false",
					"-proxy-protocol", "127.0.0.1", "-cookie-file", cookie)
				gw.waitLog("gateway: backend linked", 1)
				gws, controls = append(gws, gw), append(controls, control)
			}
			web := "127.0.0.1:" + strconv.Itoa(freePort(t))
			lb := startPath(t, haproxy, []string{
				"TELNET_BIND=127.0.0.1:" + strconv.Itoa(freePort(t)), "WEB_BIND=" + web,
				"GATEWAY1_ADDR=" + gwAddrs[0], "GATEWAY2_ADDR=" + gwAddrs[1],
				"GATEWAY_TELNET_PORT=" + ports[0], "GATEWAY_WEB_PORT=" + ports[1], "GATEWAY_ADMIN_PORT=" + ports[2],
			}, "-f", cfg, "-db")
			eventually(t, "HAProxy listens", func() bool {
				c, err := net.Dial("tcp", web)
				if err == nil {
					c.Close()
				}
				return err == nil
			})
			out, err := exec.Command(filepath.Join(binDir, "load"), "farm", "-addr", web, "-players", "20", "-typists", "2",
				"-event", event, "-settle", "1s", "-timeout", "1m",
				"-gateways", strconv.Itoa(gws[0].cmd.Process.Pid)+","+strconv.Itoa(gws[1].cmd.Process.Pid),
				"-balancer-pid", strconv.Itoa(lb.cmd.Process.Pid), "-backend-pid", strconv.Itoa(be.cmd.Process.Pid),
				"-drain-cmd", filepath.Join(binDir, "gateway")+" drain -control "+controls[0]).CombinedOutput()
			if err != nil {
				t.Fatalf("load farm: %v\n%s", err, out)
			}
			ev := "farm_" + event + "_"
			for _, f := range []string{"farm_login_all", ev + "players_moved", ev + "sessions_lost", ev + "claimed_all", ev + "resumed_all",
				ev + "pause_max", ev + "pause_max_other", ev + "rss_balancer_before", ev + "rss_balancer_after",
				ev + "rss_gateway_other_after", ev + "rss_backend_after"} {
				if !strings.Contains(string(out), "RESULT "+f+" ") {
					t.Errorf("no figure %s in\n%s", f, out)
				}
			}
		})
	}
}

// portsFreeOn returns n ports that were free a moment ago on every one of
// addrs, for servers on addresses of their own that share their ports.
func portsFreeOn(t *testing.T, n int, addrs ...string) []string {
	t.Helper()
	var ports []string
	for len(ports) < n {
		ln, err := net.Listen("tcp", addrs[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		ok := !slices.Contains(ports, port)
		for _, a := range addrs[1:] {
			l2, err := net.Listen("tcp", a+":"+port)
			if err != nil {
				ok = false
				break
			}
			l2.Close()
		}
		ln.Close()
		if ok {
			ports = append(ports, port)
		}
	}
	return ports
}
