package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"holdfast/gateway"
)

// serveAdmin serves Prometheus metrics and a health check on ln, and
// nothing else: operators open it to a scraper on another host, and the
// control of the gateway is on its own socket (control.go). The health
// check names the serving process, so that an upgrade can be seen.
func serveAdmin(log *zap.Logger, ln net.Listener, gw *gateway.Server, reg *prometheus.Registry) *http.Server {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		backend := "waiting"
		if gw.Linked() {
			backend = "linked"
		}
		// The gateway is healthy while a backend restarts: that is its job.
		// Draining, it is not, so that a balancer sends its players elsewhere.
		status := "ok"
		if gw.DrainStatus().Draining {
			status = "draining"
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		writeJSON(w, map[string]any{"status": status, "backend": backend, "sessions": gw.SessionCount(),
			"pid": os.Getpid(), "version": version})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	go srv.Serve(ln)
	log.Info("gateway: admin listening", zap.Stringer("addr", ln.Addr()))
	return srv
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// serveDebug serves Go's profiler: goroutine counts, heap and CPU profiles
// and execution traces of a running gateway.
func serveDebug(log *zap.Logger, ln net.Listener) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	log.Info("gateway: debug listening", zap.Stringer("addr", ln.Addr()))
	return srv
}
