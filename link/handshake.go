package link

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"time"
)

const (
	magic    = "HOLDFAST"
	version  = 1
	nonceLen = 32
	macLen   = sha256.Size
	// HandshakeTimeout bounds the whole authentication exchange.
	HandshakeTimeout = 10 * time.Second
)

func mac(cookie []byte, label string, a, b []byte) []byte {
	h := hmac.New(sha256.New, cookie)
	h.Write([]byte(label))
	h.Write(a)
	h.Write(b)
	return h.Sum(nil)
}

func hello(nonce []byte) []byte {
	b := append([]byte(magic), version)
	return append(b, nonce...)
}

func readHello(r io.Reader) ([]byte, error) {
	b := make([]byte, len(magic)+1+nonceLen)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	if string(b[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: not a holdfast peer", ErrProtocol)
	}
	if v := b[len(magic)]; v != version {
		return nil, fmt.Errorf("%w: peer speaks version %d, this side %d", ErrProtocol, v, version)
	}
	return b[len(magic)+1:], nil
}

func newNonce() []byte {
	n := make([]byte, nonceLen)
	rand.Read(n)
	return n
}

// GatewayHandshake authenticates a freshly dialed backend connection from
// the gateway's side. On success the connection is ready for yamux.
func GatewayHandshake(c net.Conn, cookie []byte) error {
	c.SetDeadline(time.Now().Add(HandshakeTimeout))
	defer c.SetDeadline(time.Time{})
	nonceB, err := readHello(c)
	if err != nil {
		return fmt.Errorf("link: handshake: %w", err)
	}
	nonceG := newNonce()
	msg := append(hello(nonceG), mac(cookie, "holdfast gateway", nonceB, nonceG)...)
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("link: handshake: %w", err)
	}
	got := make([]byte, macLen)
	if _, err := io.ReadFull(c, got); err != nil {
		// A backend that rejects our MAC closes without answering.
		return fmt.Errorf("%w: backend closed the handshake: %v", ErrAuth, err)
	}
	if !hmac.Equal(got, mac(cookie, "holdfast backend", nonceG, nonceB)) {
		return fmt.Errorf("%w: backend does not hold the cookie", ErrAuth)
	}
	return nil
}

// BackendHandshake authenticates an accepted gateway connection from the
// backend's side.
func BackendHandshake(c net.Conn, cookie []byte) error {
	c.SetDeadline(time.Now().Add(HandshakeTimeout))
	defer c.SetDeadline(time.Time{})
	nonceB := newNonce()
	if _, err := c.Write(hello(nonceB)); err != nil {
		return fmt.Errorf("link: handshake: %w", err)
	}
	nonceG, err := readHello(c)
	if err != nil {
		return fmt.Errorf("link: handshake: %w", err)
	}
	got := make([]byte, macLen)
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("link: handshake: %w", err)
	}
	if !hmac.Equal(got, mac(cookie, "holdfast gateway", nonceB, nonceG)) {
		return fmt.Errorf("%w: gateway does not hold the cookie", ErrAuth)
	}
	if _, err := c.Write(mac(cookie, "holdfast backend", nonceG, nonceB)); err != nil {
		return fmt.Errorf("link: handshake: %w", err)
	}
	return nil
}
