package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// proxyHeaderBuffer is the read buffer of a connection that starts with a
// PROXY header: enough for a v1 line (at most 107 bytes) and a v2 header
// with its addresses. Larger v2 headers are read past it, up to the
// library's bound of 4 KiB (TLVs included); beyond that the connection is
// refused.
const proxyHeaderBuffer = 256

// withProxy makes ln expect a PROXY header (v1 or v2) from the sources in
// from, and only from them: anybody else could claim any address. A
// trusted source that sends no header is refused, as the protocol asks.
func withProxy(ln net.Listener, from []string, timeout time.Duration) (net.Listener, error) {
	if len(from) == 0 {
		return ln, nil
	}
	policy, err := proxyproto.PolicyFromRanges(from, proxyproto.REQUIRE, proxyproto.SKIP)
	if err != nil {
		return nil, fmt.Errorf("-proxy-protocol: %w", err)
	}
	return &proxyproto.Listener{
		Listener:          ln,
		ConnPolicy:        policy,
		ReadHeaderTimeout: timeout,
		ReadBufferSize:    proxyHeaderBuffer,
	}, nil
}

// certificate is the TLS listener's certificate, replaced on reload while
// handshakes go on.
type certificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

func loadCert(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading %s and %s: %w", certFile, keyFile, err)
	}
	return &c, nil
}

// reload reads the files again; on failure the certificate in use stays.
func (c *certificate) reload() error {
	cert, err := loadCert(c.certFile, c.keyFile)
	if err != nil {
		return err
	}
	c.cur.Store(cert)
	return nil
}

func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// tlsListener wraps ln in TLS with the reloadable certificate. The
// handshake happens on the gateway's admission, bounded by its timeout.
func tlsListener(ln net.Listener, cert *certificate) net.Listener {
	return tls.NewListener(ln, &tls.Config{
		GetCertificate: cert.get,
		MinVersion:     tls.VersionTLS12,
	})
}
