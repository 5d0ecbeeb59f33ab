// Command epmd is holdfast's registry as a daemon of its own, and the CLI
// that asks a running registry. It takes Erlang's epmd flags and gives the
// same outputs and exit codes, so it can stand in for Erlang's epmd.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"holdfast/epmd"
)

const usage = `usage: epmd [-d|-debug] [DbgExtra...] [-address List]
            [-port No] [-daemon] [-relaxed_command_check]
       epmd [-d|-debug] [-port No] [-names|-kill|-stop name]

Regular options
    -address List           listen only on these comma-separated IP addresses
                            (and on the loopback interface); default: all
    -port No                listen on, or ask, this port (default
                            ERL_EPMD_PORT, else 4369)
    -d, -debug              log to standard error
    -daemon                 start detached
    -relaxed_command_check  allow -kill with registered nodes, and -stop
    -systemd                take the listening socket from systemd

DbgExtra options
    -packet_timeout Seconds close a connection idle this long (default 60)
    -delay_accept Seconds   accepted for compatibility; ignored
    -delay_write Seconds    accepted for compatibility; ignored

Interactive options
    -names                  list the names registered with the running epmd
    -dump                   dump the running epmd's table
    -kill                   stop the running epmd
    -stop Name              forcibly unregister a name (relaxed epmd only)

Environment: ERL_EPMD_PORT, ERL_EPMD_ADDRESS, ERL_EPMD_RELAXED_COMMAND_CHECK.
`

// options are the parsed command line.
type options struct {
	port          int
	address       string
	debug         bool
	daemon        bool
	relaxed       bool
	systemd       bool
	packetTimeout int
	names         bool
	dump          bool
	kill          bool
	stop          string
	stopSet       bool
}

func parse(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("epmd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&o.port, "port", epmd.PortFromEnv(), "")
	fs.StringVar(&o.address, "address", os.Getenv("ERL_EPMD_ADDRESS"), "")
	fs.BoolVar(&o.debug, "d", false, "")
	fs.BoolVar(&o.debug, "debug", false, "")
	fs.BoolVar(&o.daemon, "daemon", false, "")
	fs.BoolVar(&o.relaxed, "relaxed_command_check", os.Getenv("ERL_EPMD_RELAXED_COMMAND_CHECK") != "", "")
	fs.BoolVar(&o.systemd, "systemd", false, "")
	fs.IntVar(&o.packetTimeout, "packet_timeout", 60, "")
	fs.Int("delay_accept", 0, "")
	fs.Int("delay_write", 0, "")
	fs.BoolVar(&o.names, "names", false, "")
	fs.BoolVar(&o.dump, "dump", false, "")
	fs.BoolVar(&o.kill, "kill", false, "")
	fs.Func("stop", "", func(s string) error { o.stop, o.stopSet = s, true; return nil })
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.port <= 0 || o.port > 65535 {
		return nil, fmt.Errorf("bad port %d", o.port)
	}
	return o, nil
}

func main() {
	o, err := parse(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "epmd: %v\n%s", err, usage)
		os.Exit(1)
	}
	switch {
	case o.names:
		os.Exit(names(o.port, os.Stdout, os.Stderr))
	case o.dump:
		os.Exit(dump(o.port, os.Stdout, os.Stderr))
	case o.kill:
		os.Exit(kill(o.port, os.Stdout, os.Stderr))
	case o.stopSet:
		os.Exit(stop(o.port, o.stop, os.Stdout, os.Stderr))
	}
	os.Exit(daemon(o))
}

// local finds the running epmd as Erlang's CLI does: [::1] first, then
// 127.0.0.1. Only a failed dial moves on to the next address.
func local(port int, try func(*epmd.Client) error) error {
	var err error
	for _, host := range []string{"::1", "127.0.0.1"} {
		c := &epmd.Client{Addr: net.JoinHostPort(host, strconv.Itoa(port)), Timeout: 5 * time.Second}
		err = try(c)
		var op *net.OpError
		if err == nil || !errors.As(err, &op) || op.Op != "dial" {
			return err
		}
	}
	return err
}

func cannotConnect(stderr io.Writer) int {
	fmt.Fprintln(stderr, "epmd: Cannot connect to local epmd")
	return 1
}

func names(port int, stdout, stderr io.Writer) int {
	var p int
	var list []epmd.NameEntry
	err := local(port, func(c *epmd.Client) (err error) {
		p, list, err = c.Names(context.Background())
		return err
	})
	if err != nil {
		return cannotConnect(stderr)
	}
	fmt.Fprintf(stdout, "epmd: up and running on port %d with data:\n", p)
	for _, n := range list {
		fmt.Fprintf(stdout, "name %s at port %d\n", n.Name, n.Port)
	}
	return 0
}

func dump(port int, stdout, stderr io.Writer) int {
	var p int
	var text []byte
	err := local(port, func(c *epmd.Client) (err error) {
		p, text, err = c.Dump(context.Background())
		return err
	})
	if err != nil {
		return cannotConnect(stderr)
	}
	fmt.Fprintf(stdout, "epmd: up and running on port %d with data:\n", p)
	stdout.Write(text)
	return 0
}

func kill(port int, stdout, stderr io.Writer) int {
	var reply string
	err := local(port, func(c *epmd.Client) (err error) {
		reply, err = c.Kill(context.Background())
		return err
	})
	switch {
	case err != nil:
		return cannotConnect(stderr)
	case reply == "OK":
		fmt.Fprintln(stdout, "Killed")
		return 0
	default:
		fmt.Fprintln(stdout, "Killing not allowed - living nodes in database.")
		return 1
	}
}

func stop(port int, name string, stdout, stderr io.Writer) int {
	var reply string
	err := local(port, func(c *epmd.Client) (err error) {
		reply, err = c.Stop(context.Background(), name)
		return err
	})
	switch {
	case err != nil:
		return cannotConnect(stderr)
	case reply == "":
		fmt.Fprintln(stdout, "epmd: local epmd responded with <>")
		return 1
	default:
		fmt.Fprintln(stdout, reply)
		return 0
	}
}
