package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"holdfast/gateway"
	"holdfast/internal/cli"
)

// serveAdmin serves the operator's endpoints on addr: Prometheus metrics,
// a health check, the sessions held, and the log level (GET to read it,
// PUT level=debug to change it).
func serveAdmin(log *zap.Logger, addr string, gw *gateway.Server, reg *prometheus.Registry, level zap.AtomicLevel) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		backend := "waiting"
		if gw.Linked() {
			backend = "linked"
		}
		// The gateway is healthy while a backend restarts: that is its job.
		writeJSON(w, map[string]any{"status": "ok", "backend": backend, "sessions": gw.SessionCount()})
	})
	mux.HandleFunc("GET /sessions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, gw.Sessions())
	})
	mux.Handle("/loglevel", level)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	go srv.Serve(ln)
	log.Info("gateway: admin listening", zap.Stringer("addr", ln.Addr()))
	return srv, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// serveDebug serves Go's profiler: goroutine counts, heap and CPU profiles
// of a running gateway.
func serveDebug(log *zap.Logger, addr string) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-debug-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	log.Info("gateway: debug listening", zap.Stringer("addr", ln.Addr()))
	return srv, nil
}

// adminFlags are the flags of the commands that ask a running gateway.
func adminFlags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("gateway "+name, flag.ExitOnError)
	addr := os.Getenv("HOLDFAST_" + cli.EnvName("metrics"))
	if addr == "" {
		addr = defaultAdmin
	}
	return fs, fs.String("metrics", addr, "the gateway's -metrics address")
}

// runSessions prints the sessions a running gateway holds, like
// `epmd -names` does for nodes.
func runSessions(args []string, out io.Writer) error {
	fs, addr := adminFlags("sessions")
	asJSON := fs.Bool("json", false, "print the JSON the gateway serves")
	fs.Parse(args)
	body, err := ask(http.MethodGet, *addr, "/sessions", "")
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := out.Write(body)
		return err
	}
	var list []gateway.SessionInfo
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("reading /sessions: %w", err)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCLIENT\tCONNECTED\tTERMINAL\tSIZE\tSTATE\tRESUMED\tIN\tOUT")
	now := time.Now()
	for _, s := range list {
		state := "waiting"
		if s.Attached {
			state = "attached"
		}
		client := s.Client
		if s.TLS {
			client += " (tls)"
		}
		size := "-"
		if s.Width > 0 {
			size = fmt.Sprintf("%dx%d", s.Width, s.Height)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s (%s ago)\t%s\t%s\t%s\t%d\t%d\t%d\n", s.ID, client,
			s.Since.Local().Format(time.DateTime), now.Sub(s.Since).Round(time.Second),
			orDash(s.Terminal), size, state, s.Resumed, s.BytesIn, s.BytesOut)
	}
	tw.Flush()
	fmt.Fprintf(out, "%d sessions\n", len(list))
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runLogLevel prints a running gateway's log level, or sets it.
func runLogLevel(args []string, out io.Writer) error {
	fs, addr := adminFlags("log-level")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: gateway log-level [-metrics ADDR] [debug|info|warn|error]")
		fs.PrintDefaults()
	}
	fs.Parse(args)
	method, form := http.MethodGet, ""
	switch fs.NArg() {
	case 0:
	case 1:
		method, form = http.MethodPut, "level="+fs.Arg(0)
	default:
		fs.Usage()
		return errors.New("one level at most")
	}
	body, err := ask(method, *addr, "/loglevel", form)
	if err != nil {
		return err
	}
	var v struct{ Level string }
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("reading /loglevel: %w", err)
	}
	fmt.Fprintln(out, v.Level)
	return nil
}

// ask makes one request of the admin server and returns the body of a
// 200 answer.
func ask(method, addr, path, form string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, strings.NewReader(form))
	if err != nil {
		return nil, err
	}
	if form != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking the gateway at %s (its -metrics address): %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}
