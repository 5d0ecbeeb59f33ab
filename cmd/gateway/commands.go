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
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"holdfast/gateway"
	"holdfast/internal/cli"
)

// controlFlags are the flags of the commands that ask a running gateway.
func controlFlags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("gateway "+name, flag.ExitOnError)
	path := os.Getenv("HOLDFAST_" + cli.EnvName("control"))
	if path == "" {
		path = defaultControl()
	}
	return fs, fs.String("control", path, "the gateway's -control socket")
}

// runSessions prints the sessions a running gateway holds, like
// `epmd -names` does for nodes.
func runSessions(args []string, out io.Writer) error {
	fs, path := controlFlags("sessions")
	asJSON := fs.Bool("json", false, "print the JSON the gateway serves")
	fs.Parse(args)
	body, err := ask(http.MethodGet, *path, "/sessions", "")
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
	fmt.Fprintln(tw, "ID\tCLIENT\tKIND\tCONNECTED\tTERMINAL\tSIZE\tSTATE\tRESUMED\tIN\tOUT")
	now := time.Now()
	for _, s := range list {
		state := "waiting"
		if s.Attached {
			state = "attached"
		}
		client := s.Client
		size := "-"
		if s.Width > 0 {
			size = fmt.Sprintf("%dx%d", s.Width, s.Height)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s (%s ago)\t%s\t%s\t%s\t%d\t%d\t%d\n", shown(s.ID), shown(client), orDash(shown(s.Kind)),
			s.Since.Local().Format(time.DateTime), now.Sub(s.Since).Round(time.Second),
			orDash(shown(s.Terminal)), size, state, s.Resumed, s.BytesIn, s.BytesOut)
	}
	tw.Flush()
	fmt.Fprintf(out, "%d sessions\n", len(list))
	return nil
}

// shown returns a field for an operator's terminal: what a player
// supplied (a terminal type) or another process reported. Anything but
// printable ASCII is written as a Go escape (\x1b, \t, \u202e), and a
// backslash as \\, so that a player can neither set the operator's
// window title nor forge a row or a column.
func shown(s string) string {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '\\' {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	q := strconv.QuoteToASCII(s)
	return strings.ReplaceAll(q[1:len(q)-1], `\"`, `"`)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runLogLevel prints a running gateway's log level, or sets it.
func runLogLevel(args []string, out io.Writer) error {
	fs, path := controlFlags("log-level")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: gateway log-level [-control PATH] [debug|info|warn|error]")
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
	body, err := ask(method, *path, "/loglevel", form)
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

// ask makes one request of the gateway's control socket at path and
// returns the body of a 200 answer.
func ask(method, path, urlPath, form string) ([]byte, error) {
	return askFor(method, path, urlPath, form, 10*time.Second)
}

// askFor is ask with a bound of its own.
func askFor(method, path, urlPath, form string, limit time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://gateway"+urlPath, strings.NewReader(form))
	if err != nil {
		return nil, err
	}
	if form != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking the gateway on its control socket %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s: %s", method, urlPath, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}
