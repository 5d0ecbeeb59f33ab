package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"holdfast/gateway"
)

// A drain, for a gateway that is to stop while others serve on: see
// gateway.Server.Drain. The control socket's POST /drain begins it and
// answers with its progress, one JSON line each time the players left
// change (and every drainBeat regardless), the last one done; GET /drain
// tells how it stands. /healthz answers 503 from the start, so that a
// balancer sends no new players, and the gateway exits 0 once nobody is
// left (main).

// drainBeat is how often the progress is sent when nothing changes, so
// that the command can tell a quiet drain from a gateway that hangs.
const drainBeat = 10 * time.Second

// drainCheck is how often the handler looks at the players left.
const drainCheck = 250 * time.Millisecond

func handleDrain(log *zap.Logger, gw *gateway.Server) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := gw.Drain(); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		log.Info("gateway: drain asked for on the control socket")
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		enc := json.NewEncoder(w)
		t := time.NewTicker(drainCheck)
		defer t.Stop()
		var last gateway.DrainStatus
		var sent time.Time
		for {
			st := gw.DrainStatus()
			if st != last || time.Since(sent) >= drainBeat {
				if enc.Encode(st) != nil || rc.Flush() != nil {
					return // the command has gone; the drain goes on
				}
				last, sent = st, time.Now()
			}
			if st.Done {
				return
			}
			select {
			case <-gw.Emptied():
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		}
	}
}

// runDrain drains a running gateway and prints its progress until nobody
// is left, as a unit's ExecStop or a Kubernetes preStop hook runs it.
func runDrain(args []string, out io.Writer) error {
	fs, path := controlFlags("drain")
	asJSON := fs.Bool("json", false, "print the progress as the gateway sends it, one JSON object a line")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: gateway drain [-control PATH] [-json]")
		fs.PrintDefaults()
	}
	fs.Parse(args)
	if fs.NArg() > 0 {
		fs.Usage()
		return errors.New("no arguments")
	}
	req, err := http.NewRequest(http.MethodPost, "http://gateway/drain", nil)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			d := net.Dialer{Timeout: 10 * time.Second}
			return d.DialContext(ctx, "unix", *path)
		},
		ResponseHeaderTimeout: 10 * time.Second,
	}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("asking the gateway on its control socket %s: %w", *path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return fmt.Errorf("POST /drain: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	// A gateway that sends nothing for several beats hangs, or is gone
	// without closing the connection (its host).
	lines := make(chan []byte)
	errc := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- append([]byte(nil), sc.Bytes()...)
		}
		errc <- sc.Err()
	}()
	for {
		var line []byte
		select {
		case line = <-lines:
		case err := <-errc:
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("the gateway stopped answering before it was empty: %w", err)
		case <-time.After(3 * drainBeat):
			resp.Body.Close()
			return fmt.Errorf("the gateway sent no progress for %v", 3*drainBeat)
		}
		var st gateway.DrainStatus
		if err := json.Unmarshal(line, &st); err != nil {
			return fmt.Errorf("reading the drain's progress: %w", err)
		}
		if *asJSON {
			fmt.Fprintf(out, "%s\n", line)
		} else {
			fmt.Fprintln(out, drainLine(st, time.Now()))
		}
		if st.Done {
			return nil
		}
	}
}

// drainLine says how a drain stands, for an operator's terminal or a
// unit's journal.
func drainLine(st gateway.DrainStatus, now time.Time) string {
	if st.Done {
		return "drained: no player is left; the gateway exits"
	}
	s := fmt.Sprintf("draining: %d players left (telnet %d, telnet+tls %d, web %d)", st.Left(), st.Telnet, st.TelnetTLS, st.Web)
	if st.Telnet+st.TelnetTLS > 0 {
		if left := st.Deadline.Sub(now).Round(time.Second); left > 0 {
			s += fmt.Sprintf("; the telnet players are disconnected in %v", left)
		} else {
			s += "; disconnecting the telnet players"
		}
	}
	return s
}
