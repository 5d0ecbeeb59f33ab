package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"holdfast/epmd"
)

// transcript runs the same session of epmd commands against a daemon and
// writes down every output and exit code, normalised.
func transcript(t *testing.T, cliKind, daemon daemonKind, relaxed bool) []string {
	t.Helper()
	var args []string
	if relaxed {
		args = append(args, "-relaxed_command_check")
	}
	d, port := startEPMD(t, daemon, args...)
	var out []string
	run := func(args ...string) {
		stdout, stderr, code := cli(t, cliKind, port, args...)
		out = append(out, fmt.Sprintf("$ epmd %s\n%s%s[exit %d]", strings.Join(args, " "), normalise(stdout, port), stderr, code))
	}
	// Registered by hand: the client's Register would register again after
	// -stop, as it should.
	register := func(name string, nodePort uint16) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		req := []byte{'x', byte(nodePort >> 8), byte(nodePort), 'M', 0, 0, 6, 0, 5, 0, byte(len(name))}
		req = append(append(req, name...), 0, 0)
		c.SetDeadline(time.Now().Add(waitFor))
		c.Write(append([]byte{0, byte(len(req))}, req...))
		resp := make([]byte, 6)
		if _, err := io.ReadFull(c, resp); err != nil || resp[0] != 'v' || resp[1] != 0 {
			t.Fatalf("register %s in %s's epmd: %v %v", name, daemon, resp, err)
		}
		c.SetDeadline(time.Time{})
		return c
	}
	run("-names")
	run("-dump")
	run("-stop", "nobody")
	r1 := register("alpha", 5555)
	r2 := register("beta", 6666)
	run("-names")
	run("-dump")
	if relaxed {
		run("-stop", "alpha")
		eventually(t, "alpha is stopped", func() bool { return !registered(port, "alpha") })
		run("-stop", "alpha")
		run("-names")
	} else {
		run("-kill")
		run("-stop", "alpha")
	}
	r1.Close()
	r2.Close()
	eventually(t, "every name is unregistered", func() bool { return !registered(port, "alpha") && !registered(port, "beta") })
	if relaxed {
		register("gamma", 7777) // a relaxed epmd may be killed with living nodes
	}
	run("-kill")
	d.wait()
	run("-names")
	run("-kill")
	return out
}

// TestEPMDCommandLineMatchesErlang runs one session of commands for each
// pairing of command line (Erlang's, ours) and daemon (Erlang's, ours), and
// compares every output and exit code with Erlang's against Erlang's.
func TestEPMDCommandLineMatchesErlang(t *testing.T) {
	needTool(t, "epmd")
	for _, relaxed := range []bool{false, true} {
		t.Run(fmt.Sprintf("relaxed=%v", relaxed), func(t *testing.T) {
			want := transcript(t, erlangEPMD, erlangEPMD, relaxed)
			for _, pair := range [][2]daemonKind{{erlangEPMD, ourEPMD}, {ourEPMD, erlangEPMD}, {ourEPMD, ourEPMD}} {
				got := transcript(t, pair[0], pair[1], relaxed)
				if !slices.Equal(got, want) {
					t.Errorf("%s's epmd command line against %s's daemon differs from Erlang's against Erlang's:\n%s",
						pair[0], pair[1], diffLines(got, want))
				}
			}
		})
	}
}

func diffLines(got, want []string) string {
	var b strings.Builder
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			fmt.Fprintf(&b, "--- got:\n%s\n--- want:\n%s\n", g, w)
		}
	}
	return b.String()
}

// TestErlangNodeInOurRegistry starts a real Erlang node against our
// registry: it registers, our client finds it, and it is gone when the node
// exits.
func TestErlangNodeInOurRegistry(t *testing.T) {
	erl := needTool(t, "erl")
	_, port := startEPMD(t, ourEPMD)
	name := "hf" + strconv.Itoa(os.Getpid())
	node := startPath(t, erl, []string{"ERL_EPMD_PORT=" + strconv.Itoa(port), "HOME=" + t.TempDir()},
		"-sname", name, "-start_epmd", "false", "-noshell", "-noinput")
	eventually(t, "the Erlang node registers", func() bool { return registered(port, name) })
	n, err := epmdClient(port).Lookup(context.Background(), name)
	if err != nil || n.NodeType != epmd.NodeTypeNormal || n.HighVersion != 6 || n.Port == 0 {
		t.Fatalf("the Erlang node's registration: %+v %v", n, err)
	}
	stdout, _, code := cli(t, erlangEPMD, port, "-names")
	if code != 0 || !strings.Contains(stdout, "name "+name+" at port "+strconv.Itoa(int(n.Port))) {
		t.Fatalf("Erlang's epmd -names against ours: %q (exit %d)", stdout, code)
	}
	node.kill(syscall.SIGKILL)
	node.wait()
	eventually(t, "the Erlang node's name is gone", func() bool { return !registered(port, name) })
}

// TestBackendThroughErlangRegistry runs the gateway and the backend against
// Erlang's epmd: the gateway uses it instead of embedding its own, and a
// player is served across a backend restart.
func TestBackendThroughErlangRegistry(t *testing.T) {
	needTool(t, "epmd")
	_, port := startEPMD(t, erlangEPMD)
	sys := startSystemOn(t, port, "-epmd-port", strconv.Itoa(port))
	sys.gw.waitLog("gateway: an epmd already runs on the port; using it", 1)
	be := sys.startBackend()
	p := dial(t, sys.telnet, "Erl")
	p.login()
	be.kill(syscall.SIGKILL)
	be.wait()
	p.expect("[holdfast] The game is restarting.")
	p.send("echo held")
	sys.startBackend()
	p.expect("echo: held")
	if f := p.facts(); f["resumed"] != "1" {
		t.Fatalf("after the restart: %v", f)
	}
	p.who("Erl")
}
