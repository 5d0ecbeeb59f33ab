package link

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"time"
)

const (
	magic   = "HOLDFAST"
	version = 2
	macLen  = sha256.Size
	// exporterLabel is RFC 9266's: the value is the same at both ends of
	// one TLS connection and unknown to anyone else, a relay included.
	exporterLabel = "EXPORTER-Channel-Binding"
	exporterLen   = 32
	// maxInstance bounds the instance name a backend sends.
	maxInstance = 255
	// HandshakeTimeout bounds the whole authentication exchange.
	HandshakeTimeout = 10 * time.Second
)

// The labels tell the two proofs apart, so that neither can be reflected
// back as the other.
const (
	gatewayLabel = "holdfast 2 gateway"
	backendLabel = "holdfast 2 backend"
)

// Credentials is what a backend process proves itself with on every link:
// the cookie, its instance name, and the TLS certificate made at start.
type Credentials struct {
	Cookie   []byte
	Instance string
	cert     tls.Certificate
}

// NewCredentials makes a backend process's credentials: a random instance
// name and a self-signed certificate with a fresh key. An instance made
// here says nothing of when its process started; a backend that may be
// deployed sets Instance with NewInstance.
//
// The certificate authenticates nothing: the gateway cannot know it in
// advance, so it does not check it. It is there because TLS needs one;
// what authenticates both sides is the cookie proof bound to the TLS
// connection (see Handshake in the package doc).
func NewCredentials(cookie []byte) (*Credentials, error) {
	if len(cookie) == 0 {
		return nil, fmt.Errorf("%w: empty cookie", ErrAuth)
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("link: credentials: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "holdfast backend"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(100 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("link: credentials: %w", err)
	}
	return &Credentials{
		Cookie:   cookie,
		Instance: rand.Text(),
		cert:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}, nil
}

// An instance name that orders its process is its start, in decimal, a
// dot, and a random part. It is proven in the handshake with the rest, so
// a gateway learns the order of two backends from them and from nothing
// else: not from the registry, which any local process may write to, and
// which forgets everything when it restarts.
const instanceSep = "."

// NewInstance returns an instance name for a process that started at
// started: nanoseconds on a clock that every backend process under one
// name reads alike and that never goes back (on Linux, CLOCK_BOOTTIME:
// the processes that register one name share the registry's host).
func NewInstance(started int64) string {
	return strconv.FormatInt(started, 10) + instanceSep + rand.Text()
}

// instanceStart returns when the process of an instance name made by
// NewInstance started.
func instanceStart(instance string) (int64, bool) {
	s, _, ok := strings.Cut(instance, instanceSep)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// Newer reports whether the backend process named by instance a started
// after the one named by b. Only a backend proven newer than the one a
// gateway is linked to can take its players: so that whatever the registry
// says, and in whatever order backends register after it restarts, the
// players only ever move forward, and end on the newest backend. Instances
// that do not say when they started are never newer, nor is one equal.
func Newer(a, b string) bool {
	sa, ok := instanceStart(a)
	if !ok {
		return false
	}
	sb, ok := instanceStart(b)
	return ok && sa > sb
}

func tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The link's writer already gathers frames into large writes;
		// small records at the start of a connection would only split
		// them again.
		DynamicRecordSizingDisabled: true,
		SessionTicketsDisabled:      true,
	}
}

// proof is one side's MAC of the channel binding under the cookie.
func proof(cookie []byte, label string, binding []byte, instance string) []byte {
	h := hmac.New(sha256.New, cookie)
	h.Write([]byte(label))
	h.Write(binding)
	h.Write([]byte(instance))
	return h.Sum(nil)
}

func binding(c *tls.Conn) ([]byte, error) {
	st := c.ConnectionState()
	b, err := st.ExportKeyingMaterial(exporterLabel, nil, exporterLen)
	if err != nil {
		return nil, fmt.Errorf("link: handshake: channel binding: %w", err)
	}
	return b, nil
}

func preamble() []byte { return append([]byte(magic), version) }

func readPreamble(r io.Reader) error {
	b := make([]byte, len(magic)+1)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	if string(b[:len(magic)]) != magic {
		return fmt.Errorf("%w: not a holdfast peer", ErrProtocol)
	}
	if v := b[len(magic)]; v != version {
		return fmt.Errorf("%w: peer speaks version %d, this side %d", ErrProtocol, v, version)
	}
	return nil
}

// conn is the link's encrypted connection. Its Close closes the TCP
// connection at once: TLS's own close (close_notify) would wait up to 5 s
// for a peer that does not read, and the link says goodbye in its frames.
type conn struct {
	*tls.Conn
	raw net.Conn
}

func (c conn) Close() error { return c.raw.Close() }

// GatewayHandshake authenticates a freshly dialed backend connection from
// the gateway's side. It returns the encrypted connection, ready for
// the link's streams (Client), and the backend's instance name, learnt over it.
func GatewayHandshake(c net.Conn, cookie []byte) (net.Conn, string, error) {
	c.SetDeadline(time.Now().Add(HandshakeTimeout))
	defer c.SetDeadline(time.Time{})
	if err := readPreamble(c); err != nil {
		return nil, "", fmt.Errorf("link: handshake: %w", err)
	}
	if _, err := c.Write(preamble()); err != nil {
		return nil, "", fmt.Errorf("link: handshake: %w", err)
	}
	cfg := tlsConfig()
	// The backend's certificate is made at its start and cannot be known
	// here; the cookie proof below, bound to this connection, is what
	// authenticates the backend.
	cfg.InsecureSkipVerify = true
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, "", fmt.Errorf("link: handshake: tls: %w", err)
	}
	cb, err := binding(tc)
	if err != nil {
		return nil, "", err
	}
	if _, err := tc.Write(proof(cookie, gatewayLabel, cb, "")); err != nil {
		return nil, "", fmt.Errorf("link: handshake: %w", err)
	}
	got := make([]byte, macLen+2)
	if _, err := io.ReadFull(tc, got); err != nil {
		// A backend that rejects our proof closes without answering.
		return nil, "", fmt.Errorf("%w: backend closed the handshake: %v", ErrAuth, err)
	}
	n := int(binary.BigEndian.Uint16(got[macLen:]))
	if n == 0 || n > maxInstance {
		return nil, "", fmt.Errorf("%w: instance name of %d bytes", ErrProtocol, n)
	}
	inst := make([]byte, n)
	if _, err := io.ReadFull(tc, inst); err != nil {
		return nil, "", fmt.Errorf("link: handshake: %w", err)
	}
	if !hmac.Equal(got[:macLen], proof(cookie, backendLabel, cb, string(inst))) {
		return nil, "", fmt.Errorf("%w: backend does not hold the cookie", ErrAuth)
	}
	return conn{tc, c}, string(inst), nil
}

// BackendHandshake authenticates an accepted gateway connection from the
// backend's side, and returns the encrypted connection, ready for the
// link's streams (Server).
func BackendHandshake(c net.Conn, cr *Credentials) (net.Conn, error) {
	if len(cr.Instance) == 0 || len(cr.Instance) > maxInstance {
		return nil, fmt.Errorf("link: handshake: instance name of %d bytes", len(cr.Instance))
	}
	c.SetDeadline(time.Now().Add(HandshakeTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(preamble()); err != nil {
		return nil, fmt.Errorf("link: handshake: %w", err)
	}
	if err := readPreamble(c); err != nil {
		return nil, fmt.Errorf("link: handshake: %w", err)
	}
	cfg := tlsConfig()
	cfg.Certificates = []tls.Certificate{cr.cert}
	tc := tls.Server(c, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("link: handshake: tls: %w", err)
	}
	cb, err := binding(tc)
	if err != nil {
		return nil, err
	}
	got := make([]byte, macLen)
	if _, err := io.ReadFull(tc, got); err != nil {
		return nil, fmt.Errorf("link: handshake: %w", err)
	}
	if !hmac.Equal(got, proof(cr.Cookie, gatewayLabel, cb, "")) {
		return nil, fmt.Errorf("%w: gateway does not hold the cookie", ErrAuth)
	}
	msg := proof(cr.Cookie, backendLabel, cb, cr.Instance)
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(cr.Instance)))
	msg = append(msg, cr.Instance...)
	if _, err := tc.Write(msg); err != nil {
		return nil, fmt.Errorf("link: handshake: %w", err)
	}
	return conn{tc, c}, nil
}
