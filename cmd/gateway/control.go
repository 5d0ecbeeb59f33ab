package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"holdfast/gateway"
)

// The control socket: the sessions view and the log level, for the
// operator's commands, on a Unix socket whose file permissions say who may
// use it. It is kept apart from the -metrics address, which operators open
// to a scraper on another host: the players' addresses and the control of
// the gateway must not go with it.

// controlMode lets the gateway's user and its group use the socket.
const controlMode = 0o660

// defaultControl is the control socket's path unless -control says
// otherwise, and the same rule finds it for the commands: systemd's
// RuntimeDirectory for the service (/run/holdfast, which the commands
// also find), else the user's runtime directory, else a directory of the
// user's own under the temporary directory.
func defaultControl() string {
	if d, _, _ := strings.Cut(os.Getenv("RUNTIME_DIRECTORY"), ":"); d != "" {
		return filepath.Join(d, "gateway.sock")
	}
	if fi, err := os.Stat("/run/holdfast"); err == nil && fi.IsDir() {
		return "/run/holdfast/gateway.sock"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "holdfast-gateway.sock")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("holdfast-%d", os.Getuid()), "gateway.sock")
}

// listenControl opens the control socket at path. A socket file left by a
// gateway that crashed is removed; one that a running gateway answers on
// is an error, as is any other file there.
func listenControl(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("-control: %w", err)
	}
	if err := checkControlDir(dir); err != nil {
		return nil, fmt.Errorf("-control: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("-control: %s exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("-control: a running gateway answers on %s", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("-control: %s: %w", path, err)
		}
		// Nobody listens: left by a gateway that did not close it.
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("-control: removing the stale %s: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("-control: %w", err)
	}
	if err := os.Chmod(path, controlMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("-control: %w", err)
	}
	return ln, nil
}

// checkControlDir refuses a directory that others could have put there or
// could write to: they could replace the socket with their own.
func checkControlDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	case ok && st.Uid != uint32(os.Getuid()) && st.Uid != 0:
		return fmt.Errorf("%s belongs to another user", dir)
	case fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0:
		return fmt.Errorf("%s may be written by others", dir)
	}
	return nil
}

// serveControl serves the operator's commands on ln: GET /sessions, the
// log level (GET to read it, PUT level=debug to change it), POST
// /upgrade, which answers once the upgrade has succeeded or failed, and
// the drain (drain.go).
func serveControl(log *zap.Logger, ln net.Listener, gw *gateway.Server, level http.Handler, up *upgrader) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sessions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, gw.Sessions())
	})
	mux.Handle("/loglevel", level)
	mux.HandleFunc("POST /drain", handleDrain(log, gw))
	mux.HandleFunc("GET /drain", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, gw.DrainStatus())
	})
	mux.HandleFunc("POST /upgrade", func(w http.ResponseWriter, r *http.Request) {
		if gw != nil && gw.DrainStatus().Draining {
			// The new process would serve players the drain is sending away.
			http.Error(w, "the gateway is draining", http.StatusConflict)
			return
		}
		res, err := up.upgrade()
		if err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, errUpgrading) {
				status = http.StatusConflict
			}
			http.Error(w, err.Error(), status)
			return
		}
		writeJSON(w, res)
		if f, ok := w.(http.Flusher); ok {
			f.Flush() // the answer goes before the sockets are closed
		}
		up.leave()
	})
	// No write timeout: an upgrade answers when it is over.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	log.Info("gateway: control listening", zap.Stringer("path", ln.Addr()))
	return srv
}
