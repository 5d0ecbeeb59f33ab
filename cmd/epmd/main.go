// Command epmd is holdfast's registry as a daemon of its own, and the CLI
// that asks a running registry, with Erlang's epmd flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"

	"holdfast/epmd"
)

func main() {
	var (
		port    = flag.Int("port", epmd.PortFromEnv(), "port to listen on or ask (default from ERL_EPMD_PORT, else 4369)")
		names   = flag.Bool("names", false, "list the names registered in the running epmd")
		debug   = flag.Bool("d", false, "log to stderr")
		relaxed = flag.Bool("relaxed_command_check", os.Getenv("ERL_EPMD_RELAXED_COMMAND_CHECK") != "", "allow stop and kill with live nodes")
	)
	flag.Parse()
	if *names {
		os.Exit(listNames(*port))
	}
	log := zap.NewNop()
	if *debug {
		l, err := zap.NewDevelopment()
		if err == nil {
			log = l
		}
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(*port))
	if err != nil {
		// Like Erlang's epmd: the port is taken, so an epmd already runs.
		log.Info("epmd: port in use; assuming another epmd runs", zap.Error(err))
		return
	}
	srv := &epmd.Server{Logger: log, Relaxed: *relaxed}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, epmd.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "epmd: %v\n", err)
		os.Exit(1)
	}
}

func listNames(port int) int {
	c := &epmd.Client{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	p, list, err := c.Names(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "epmd: Cannot connect to local epmd")
		return 1
	}
	fmt.Printf("epmd: up and running on port %d with data:\n", p)
	for _, n := range list {
		fmt.Printf("name %s at port %d\n", n.Name, n.Port)
	}
	return 0
}
