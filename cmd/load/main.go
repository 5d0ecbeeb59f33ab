// Command load measures a telnet game server the way operators care about:
// memory per idle player, keystroke round trip, time to resume every player
// after a backend restart, fan-out of one line to everybody, and bulk
// throughput. It runs against holdfast (gateway plus demo backend) and, as
// baselines, against its own echo server directly and behind HAProxy.
//
//	load echo -listen 127.0.0.1:5000
//	load run -addr 127.0.0.1:4000 -sessions 1000 -pid GATEWAY_PID
//	load farm -addr HAPROXY_WEB -players 1000 -gateways PID1,PID2 -event kill
//
// Each figure is printed as a line "RESULT name value unit".
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"holdfast/epmd"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: load echo|run|farm|port [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "echo":
		fs := flag.NewFlagSet("echo", flag.ExitOnError)
		addr := fs.String("listen", "127.0.0.1:0", "address to serve on")
		fs.Parse(os.Args[2:])
		err = runEcho(*addr)
	case "farm":
		err = farmMain(os.Args[2:])
	case "port":
		// A free port, for programs that cannot report the one they bound.
		ln, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr == nil {
			fmt.Println(ln.Addr().(*net.TCPAddr).Port)
			ln.Close()
		}
		err = lerr
	case "run":
		var o options
		fs := flag.NewFlagSet("run", flag.ExitOnError)
		fs.StringVar(&o.addr, "addr", "127.0.0.1:4000", "the server players connect to; several, comma-separated, share the players in turn (a baseline that needs more than one process for them all)")
		fs.IntVar(&o.sessions, "sessions", 100, "players to log in and hold")
		fs.IntVar(&o.typists, "typists", 10, "players typing for the round-trip figure")
		fs.IntVar(&o.keys, "keys", 100, "lines each typist sends, one at a time")
		fs.Var(&o.pids, "pid", "process whose memory is measured (the gateway, HAProxy or the echo server); several, comma-separated, are added up")
		fs.IntVar(&o.bulkLines, "bulk", 2000, "lines of 200 bytes one player sends back to back for the bulk figure")
		fs.IntVar(&o.backendPID, "backend-pid", 0, "backend to SIGKILL for the resume figure (holdfast only)")
		fs.IntVar(&o.gamePID, "game-pid", 0, "the game's process, for the round trip's CPU figure (the echo server behind HAProxy); the backend's if not set")
		fs.StringVar(&o.backendCmd, "backend-cmd", "", "shell command that starts a new backend (with -backend-pid)")
		fs.StringVar(&o.epmd, "epmd", "127.0.0.1:4369", "registry to watch for the backend's registration")
		fs.StringVar(&o.name, "name", "game", "the backend's registered name")
		fs.StringVar(&o.upgradeCmd, "upgrade-cmd", "", "shell command that upgrades the gateway and prints its new pid (holdfast only)")
		fs.StringVar(&o.handoverCmd, "handover-cmd", "", "shell command that starts a successor to the backend (with -backend-pid and -backend-cmd)")
		fs.BoolVar(&useWS, "ws", false, "players connect as the web client does: -addr is the gateway's -ws-listen address")
		fs.StringVar(&answerMode, "answer", answerNone, "how players answer telnet offers: \"\" (a raw socket: not at all), refuse, mud")
		fs.StringVar(&o.phases, "phases", "rtt,fanout,bulk,upgrade,deploy,resume", "what to measure after logging in, of rtt, fanout, bulk, upgrade, deploy, resume")
		fs.IntVar(&o.resumes, "resumes", 1, "backend restarts for the resume figure, each measured")
		fs.DurationVar(&o.settle, "settle", 15*time.Second, "how long the players stay idle before the settled memory figure; 0: no such figure")
		fs.Parse(os.Args[2:])
		if len(o.pids) > 0 {
			o.pid = o.pids[0]
		}
		err = run(&o)
	case "bridge":
		err = bridgeMain(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// useWS makes every player a browser's WebSocket instead of a telnet socket.
var useWS bool

// answerMode is how players answer telnet offers (-answer).
var answerMode string

type options struct {
	addr        string
	sessions    int
	typists     int
	keys        int
	pid         int  // the gateway, for the phases that follow it
	pids        pids // every process whose memory is counted
	bulkLines   int
	backendPID  int
	gamePID     int
	backendCmd  string
	epmd        string
	name        string
	upgradeCmd  string
	handoverCmd string
	phases      string
	resumes     int
	settle      time.Duration
}

func (o *options) want(phase string) bool {
	return slices.Contains(strings.Split(o.phases, ","), phase)
}

func result(name string, value float64, unit string) {
	fmt.Printf("RESULT %s %.3f %s\n", name, value, unit)
}

// cpuTime returns the processor time a process has used, user and
// system, to the kernel's tick (10 ms): "self" for this one.
func cpuTime(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// utime and stime are the 12th and 13th fields after the command
	// name, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	user, _ := strconv.Atoi(f[11])
	sys, _ := strconv.Atoi(f[12])
	return time.Duration(user+sys) * 10 * time.Millisecond
}

// rssKiB returns a process's resident memory.
func rssKiB(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// pids is a comma-separated list of process ids.
type pids []int

func (p *pids) String() string {
	s := make([]string, len(*p))
	for i, pid := range *p {
		s[i] = strconv.Itoa(pid)
	}
	return strings.Join(s, ",")
}

func (p *pids) Set(v string) error {
	*p = nil
	for _, f := range strings.Split(v, ",") {
		pid, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("pid %q: %w", f, err)
		}
		*p = append(*p, pid)
	}
	return nil
}

// rss returns the resident memory of them all.
func (p pids) rss() int {
	total := 0
	for _, pid := range p {
		total += rssKiB(pid)
	}
	return total
}

func raiseFileLimit() {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) == nil && r.Cur < r.Max {
		r.Cur = r.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
}

func run(o *options) error {
	raiseFileLimit()
	rss0 := o.pids.rss()
	start := time.Now()
	sessions, err := connect(strings.Split(o.addr, ","), o.sessions)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range sessions {
			s.conn.Close()
		}
	}()
	result("login_all", time.Since(start).Seconds(), "s")
	if len(o.pids) > 0 {
		// Let the servers settle, then read their memory with every
		// player idle.
		time.Sleep(2 * time.Second)
		rss1 := o.pids.rss()
		result("rss_per_idle_session", float64(rss1-rss0)/float64(len(sessions)), "KiB")
		result("rss_total", float64(rss1), "KiB")
		// And once a server that lets go of what idle players do not
		// need has had the time to.
		if o.settle > 2*time.Second {
			time.Sleep(o.settle - 2*time.Second)
			result("rss_per_idle_settled", float64(o.pids.rss()-rss0)/float64(len(sessions)), "KiB")
		}
	}

	if o.want("rtt") {
		if err := roundTrips(o, sessions[:min(o.typists, len(sessions))]); err != nil {
			return err
		}
	}
	if o.want("fanout") {
		if err := fanOut(sessions); err != nil {
			return err
		}
	}
	if o.want("bulk") {
		if err := bulk(sessions, o.bulkLines); err != nil {
			return err
		}
	}
	if o.upgradeCmd != "" && o.want("upgrade") {
		if err := upgradeGateway(o, sessions); err != nil {
			return err
		}
	}
	if o.handoverCmd != "" && o.backendPID != 0 && o.want("deploy") {
		if err := deploy(o, sessions); err != nil {
			return err
		}
	}
	for i := 0; o.backendPID != 0 && o.want("resume") && i < o.resumes; i++ {
		pid, err := resume(o, sessions)
		if err != nil {
			return err
		}
		o.backendPID = pid
	}
	return nil
}

// connect logs n players in, a few hundred at a time, to the addresses in
// turn.
func connect(addrs []string, n int) ([]*session, error) {
	sessions := make([]*session, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 500)
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s, err := dialSession(addrs[i%len(addrs)], "u"+strconv.Itoa(i))
			if err == nil {
				err = s.login()
			}
			sessions[i] = s
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return sessions, nil
}

func percentile(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// roundTrips has each typist send lines one at a time and wait for each
// answer: the keystroke round trip, and the processor time each process
// used meanwhile, for a line. That counts whatever else the process did
// in the phase: over a short one (the bench's 1,000 lines) the idle
// players' upkeep and each typist's first line after a quiet spell
// weigh; the phase run long (-keys 3000, -settle 0) tells a line's own.
func roundTrips(o *options, typists []*session) error {
	keys := o.keys
	game := o.gamePID
	if game == 0 {
		game = o.backendPID
	}
	procs := map[string][]int{"server": o.pids, "game": {game}, "load": {os.Getpid()}}
	cpu0 := map[string]time.Duration{}
	for name, ps := range procs {
		cpu0[name] = cpuUsed(ps)
	}
	var mu sync.Mutex
	var all []time.Duration
	errs := make(chan error, len(typists))
	var wg sync.WaitGroup
	for _, s := range typists {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < keys; k++ {
				text := fmt.Sprintf("k%s-%d", s.name, k)
				var t0 time.Time
				at, err := s.expect("echo: "+text, func() error {
					t0 = time.Now()
					return s.send("echo " + text)
				}, time.Minute)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				all = append(all, at.Sub(t0))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	result("rtt_p50", float64(percentile(all, 0.50).Microseconds()), "us")
	result("rtt_p99", float64(percentile(all, 0.99).Microseconds()), "us")
	result("rtt_p999", float64(percentile(all, 0.999).Microseconds()), "us")
	for _, name := range []string{"server", "game", "load"} {
		if ps := procs[name]; len(ps) > 0 && ps[0] != 0 {
			used := cpuUsed(ps) - cpu0[name]
			result("rtt_cpu_"+name, float64(used.Nanoseconds())/1e3/float64(len(all)), "us")
		}
	}
	return nil
}

// cpuUsed is the processor time the processes have used, to the
// nanosecond: the sum over their threads of what the scheduler counted
// (schedstat). A thread that has ended is not counted; Go's runtime
// rarely ends one.
func cpuUsed(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue
			}
			f := strings.Fields(string(b))
			if len(f) == 0 {
				continue
			}
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}

// fanOut has one player say an 80-byte line and times its arrival at
// every player.
func fanOut(sessions []*session) error {
	text := "fanout " + strings.Repeat("x", 80-len("u0 says: fanout ")-2)
	for _, s := range sessions {
		s.arm("u0 says: " + text)
	}
	t0 := time.Now()
	if err := sessions[0].send("say " + text); err != nil {
		return err
	}
	last, err := arrived(sessions, time.Minute)
	if err != nil {
		return err
	}
	result("fanout_last", float64(last.Sub(t0).Microseconds())/1000, "ms")
	return nil
}

// all runs wait for every session at once and returns the latest time.
func all(sessions []*session, wait func(*session) (time.Time, error)) (time.Time, error) {
	var mu sync.Mutex
	var last time.Time
	var firstErr error
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at, err := wait(s)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if at.After(last) {
				last = at
			}
		}()
	}
	wg.Wait()
	return last, firstErr
}

// bulk measures throughput: one player sending lines back to back, then
// every player sending ten.
func bulk(sessions []*session, lines int) error {
	payload := strings.Repeat("b", 200)
	s := sessions[0]
	s.arm(fmt.Sprintf("echo: %d ", lines-1))
	t0 := time.Now()
	go func() {
		for i := 0; i < lines; i++ {
			s.send(fmt.Sprintf("echo %d %s", i, payload))
		}
	}()
	if _, err := s.wait(time.Minute); err != nil {
		return err
	}
	bytes := float64(lines * (len(payload) + 8))
	result("bulk_one", bytes/time.Since(t0).Seconds()/1e6, "MB/s")

	t0 = time.Now()
	last, err := all(sessions, func(s *session) (time.Time, error) {
		return s.expect("echo: all-9 ", func() error {
			for i := 0; i < 10; i++ {
				if err := s.send(fmt.Sprintf("echo all-%d %s", i, payload)); err != nil {
					return err
				}
			}
			return nil
		}, time.Minute)
	})
	if err != nil {
		return err
	}
	result("bulk_all", float64(len(sessions)*10*(len(payload)+8))/last.Sub(t0).Seconds()/1e6, "MB/s")
	return nil
}

// resume kills the backend, has every player type a line, starts a new
// backend, and times from its registration until every player has the
// answer; it returns the new backend.
func resume(o *options, sessions []*session) (int, error) {
	gwCPU, ownCPU := cpuTime(strconv.Itoa(o.pid)), cpuTime("self")
	if err := syscall.Kill(o.backendPID, syscall.SIGKILL); err != nil {
		return 0, fmt.Errorf("kill backend: %w", err)
	}
	client := &epmd.Client{Addr: o.epmd}
	for {
		if _, err := client.Lookup(context.Background(), o.name); err != nil {
			break // the old registration is gone
		}
		time.Sleep(time.Millisecond)
	}
	for _, s := range sessions {
		s.arm("echo: held")
		if err := s.send("echo held"); err != nil {
			return 0, err
		}
	}
	// The new backend outlives this tool: it must not hold on to its output,
	// or whoever reads that output would wait for the backend to exit.
	cmd := exec.Command("sh", "-c", o.backendCmd)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start backend: %w", err)
	}
	var registered time.Time
	for {
		if _, err := client.Lookup(context.Background(), o.name); err == nil {
			registered = time.Now()
			break
		}
		time.Sleep(time.Millisecond)
	}
	last, err := arrived(sessions, 2*time.Minute)
	if err != nil {
		return 0, err
	}
	result("resume_all", float64(last.Sub(registered).Microseconds())/1000, "ms")
	// Where the processor time went, from the kill to the last answer:
	// the three processes share the machine's cores.
	result("resume_cpu_gateway", ms(cpuTime(strconv.Itoa(o.pid))-gwCPU), "ms")
	result("resume_cpu_backend", ms(cpuTime(strconv.Itoa(cmd.Process.Pid))), "ms")
	result("resume_cpu_load", ms(cpuTime("self")-ownCPU), "ms")
	fmt.Printf("new backend pid %d\n", cmd.Process.Pid)
	return cmd.Process.Pid, nil
}
