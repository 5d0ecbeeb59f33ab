//go:build !linux

package epmd

import "net"

// connAlive cannot peek portably; it trusts the registration's own goroutine.
func connAlive(net.Conn) bool { return true }

func connFD(net.Conn) int { return -1 }
