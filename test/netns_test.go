package test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"holdfast/epmd"
)

// The second host: a network namespace joined to this one by a veth pair.
const (
	hostAddr  = "169.254.77.1" // this side, where the registry listens (link-local: routed nowhere)
	guestAddr = "169.254.77.2" // the namespace: another host, as far as epmd can tell
)

// secondHost makes the namespace and returns its name. It needs root and
// iproute2; outside CI their absence skips the test.
func secondHost(t *testing.T) string {
	t.Helper()
	ip := needTool(t, "ip")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the non-local tests need root")
		}
		t.Skip("the non-local tests need root to make a network namespace")
	}
	id := strconv.Itoa(os.Getpid() % 100000)
	ns, host, guest := "hfns"+id, "hfh"+id, "hfg"+id
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { exec.Command(ip, "netns", "del", ns).Run() })
	run("link", "add", host, "type", "veth", "peer", "name", guest)
	t.Cleanup(func() { exec.Command(ip, "link", "del", host).Run() })
	run("link", "set", guest, "netns", ns)
	run("addr", "add", hostAddr+"/24", "dev", host)
	run("link", "set", host, "up")
	run("-n", ns, "addr", "add", guestAddr+"/24", "dev", guest)
	run("-n", ns, "link", "set", guest, "up")
	run("-n", ns, "link", "set", "lo", "up")
	return ns
}

// hostIface names this side's end of the veth pair to the namespace ns.
func hostIface(ns string) string { return "hfh" + strings.TrimPrefix(ns, "hfns") }

// probe sends one framed request to addr from inside the namespace, by
// running this test binary there as a probe, and returns the whole answer.
func probe(t *testing.T, ns, addr string, req []byte) []byte {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0])
	cmd.Env = append(os.Environ(), "HOLDFAST_PROBE_ADDR="+addr, "HOLDFAST_PROBE_REQ="+hex.EncodeToString(req))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	h, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "REPLY")
	b, err := hex.DecodeString(strings.TrimSpace(h))
	if !ok || err != nil {
		t.Fatalf("probe printed no reply:\n%s", out)
	}
	return b
}

// runProbe is the test binary's whole work when it runs as a probe: send
// the request, print the answer, exit.
func runProbe(addr string) {
	req, _ := hex.DecodeString(os.Getenv("HOLDFAST_PROBE_REQ"))
	c, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	c.SetDeadline(time.Now().Add(waitFor))
	c.Write(req)
	b, _ := io.ReadAll(c) // a reset is a close too
	c.Close()
	fmt.Printf("REPLY %s\n", hex.EncodeToString(b))
	os.Exit(0)
}

func frame(body ...byte) []byte { return append([]byte{0, byte(len(body))}, body...) }

// TestNonLocalPeer sends every request from another host, to Erlang's epmd
// and to ours: ALIVE2, DUMP, KILL and STOP are refused with a silent close,
// NAMES and PORT_PLEASE2 are answered, and both daemons agree.
func TestNonLocalPeer(t *testing.T) {
	ns := secondHost(t)
	alive := []byte{'x', 0x15, 0xb3, 'M', 0, 0, 6, 0, 5, 0, 5, 'i', 'n', 't', 'r', 'o', 0, 0}
	requests := []struct {
		name     string
		req      []byte
		answered bool
	}{
		{"ALIVE2", frame(alive...), false},
		{"DUMP", frame('d'), false},
		{"KILL", frame('k'), false},
		{"STOP", frame(append([]byte{'s'}, "game"...)...), false},
		{"NAMES", frame('n'), true},
		{"PORT_PLEASE2", frame(append([]byte{'z'}, "game"...)...), true},
	}
	answers := map[daemonKind][][]byte{}
	for _, kind := range []daemonKind{erlangEPMD, ourEPMD} {
		d, port := startEPMD(t, kind, "-address", hostAddr, "-relaxed_command_check")
		r, err := epmdClient(port).Register(context.Background(), epmd.Node{Name: "game", Port: 4242}, nil)
		if err != nil {
			t.Fatal(err)
		}
		addr := net.JoinHostPort(hostAddr, strconv.Itoa(port))
		for _, rq := range requests {
			got := probe(t, ns, addr, rq.req)
			if rq.answered != (len(got) > 0) {
				t.Errorf("%s epmd, %s from another host: answer %q", kind, rq.name, got)
			}
			if rq.answered {
				got = bytes.ReplaceAll(got, []byte(strconv.Itoa(port)), []byte("PORT"))
				if rq.name == "NAMES" {
					got = got[4:] // the port number, binary
				}
			}
			answers[kind] = append(answers[kind], got)
		}
		if registered(port, "intro") {
			t.Errorf("%s epmd registered a name for another host", kind)
		}
		if !registered(port, "game") {
			t.Errorf("%s epmd: the other host's STOP or KILL took effect", kind)
		}
		r.Close()
		d.kill(9)
		d.wait()
	}
	for i, rq := range requests {
		if !bytes.Equal(answers[erlangEPMD][i], answers[ourEPMD][i]) {
			t.Errorf("%s from another host: ours answered %q, Erlang's %q", rq.name, answers[ourEPMD][i], answers[erlangEPMD][i])
		}
	}
}
