// Package systemd implements the two pieces of the systemd protocol the
// daemons use: socket activation (LISTEN_FDS) and readiness notification
// (NOTIFY_SOCKET). Both are a few lines of the standard library.
package systemd

import (
	"fmt"
	"net"
	"os"
	"strconv"
)

const listenFDsStart = 3

// Listeners returns the listening sockets systemd passed to this process,
// or nil when it passed none.
func Listeners() ([]net.Listener, error) {
	pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
	if err != nil || pid != os.Getpid() {
		return nil, nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return nil, nil
	}
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	var lns []net.Listener
	for fd := listenFDsStart; fd < listenFDsStart+n; fd++ {
		f := os.NewFile(uintptr(fd), "systemd-listener-"+strconv.Itoa(fd))
		ln, err := net.FileListener(f)
		f.Close() // FileListener made its own copy
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("systemd: socket %d: %w", fd, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// Ready tells systemd that the service is ready (Type=notify). Without
// NOTIFY_SOCKET it does nothing.
func Ready() error { return notify("READY=1") }

// Notify sends systemd any state, such as "MAINPID=123\nREADY=1" from a
// process that takes over the service from its main process.
func Notify(state string) error { return notify(state) }

// Stopping tells systemd that the service is shutting down.
func Stopping() error { return notify("STOPPING=1") }

func notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("systemd: notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("systemd: notify: %w", err)
	}
	return nil
}
