// Package mtls is the services' mutual TLS: server and client configurations from
// PEM files that are read again when they change (a renewed certificate is used
// from its next handshake, no restart), and the identity of a call's verified
// client certificate.
package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
)

// Files are one party's certificate, its key and the CA bundle it trusts.
type Files struct {
	Cert, Key, CA string
}

// Set reports whether any file is named.
func (f Files) Set() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// Check says which file is missing.
func (f Files) Check() error {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return fmt.Errorf("give all three: a certificate, its key and the CA bundle (got cert %q, key %q, CA %q)", f.Cert, f.Key, f.CA)
	}
	return nil
}

// recheck is how often the files' modification times are looked at.
const recheck = time.Second

// loader holds the files' last good contents and reads them again when one
// changed. A change that does not load (a half-written file) keeps the old ones
// until the files are whole again.
type loader struct {
	f       Files
	mu      sync.Mutex
	checked time.Time
	stamp   string
	cert    *tls.Certificate
	pool    *x509.CertPool
}

func newLoader(f Files) (*loader, error) {
	if err := f.Check(); err != nil {
		return nil, err
	}
	l := &loader{f: f}
	if err := l.load(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *loader) stampNow() string {
	s := ""
	for _, p := range []string{l.f.Cert, l.f.Key, l.f.CA} {
		if fi, err := os.Stat(p); err == nil {
			s += fmt.Sprintf("%s:%d:%d;", p, fi.ModTime().UnixNano(), fi.Size())
		}
	}
	return s
}

func (l *loader) load() error {
	stamp := l.stampNow()
	cert, err := tls.LoadX509KeyPair(l.f.Cert, l.f.Key)
	if err != nil {
		return fmt.Errorf("mtls: certificate %s and key %s: %w", l.f.Cert, l.f.Key, err)
	}
	ca, err := os.ReadFile(l.f.CA)
	if err != nil {
		return fmt.Errorf("mtls: CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("mtls: CA bundle %s holds no PEM certificate", l.f.CA)
	}
	l.cert, l.pool, l.stamp, l.checked = &cert, pool, stamp, time.Now()
	return nil
}

// current returns the certificate and CA pool, read again if a file changed.
func (l *loader) current() (*tls.Certificate, *x509.CertPool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.checked) >= recheck {
		l.checked = time.Now()
		if l.stampNow() != l.stamp {
			_ = l.load() // a failed load keeps the last good files
		}
	}
	return l.cert, l.pool
}

// ServerConfig is a TLS 1.3 server configuration that requires a client
// certificate issued by the CA bundle.
func ServerConfig(f Files) (*tls.Config, error) {
	l, err := newLoader(f)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := l.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*cert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    pool,
				NextProtos:   []string{"h2", "http/1.1"}, // gRPC, and /metrics
			}, nil
		},
	}, nil
}

// ClientConfig is a TLS 1.3 client configuration presenting f's certificate and
// trusting f's CA bundle.
func ClientConfig(f Files) (*tls.Config, error) {
	l, err := newLoader(f)
	if err != nil {
		return nil, err
	}
	_, pool := l.current()
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    pool, // as read now: a client made later reads the bundle again
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := l.current()
			return cert, nil
		},
	}, nil
}

// ClientCredentials are gRPC transport credentials presenting f's certificate and
// trusting f's CA bundle, both as the files are at each handshake (read again when
// they change): a long-lived connection's reconnects follow a renewed certificate
// or a rotated CA without a restart.
func ClientCredentials(f Files) (credentials.TransportCredentials, error) {
	l, err := newLoader(f)
	if err != nil {
		return nil, err
	}
	return &clientCreds{l: l}, nil
}

type clientCreds struct {
	l          *loader
	serverName string
}

func (c *clientCreds) tls() credentials.TransportCredentials {
	cert, pool := c.l.current()
	return credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{*cert}, ServerName: c.serverName})
}

func (c *clientCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.tls().ClientHandshake(ctx, authority, raw)
}

func (c *clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("mtls: client credentials do not serve")
}

func (c *clientCreds) Info() credentials.ProtocolInfo { return c.tls().Info() }

func (c *clientCreds) Clone() credentials.TransportCredentials {
	return &clientCreds{l: c.l, serverName: c.serverName}
}

// OverrideServerName is part of credentials.TransportCredentials.
func (c *clientCreds) OverrideServerName(name string) error {
	c.serverName = name
	return nil
}

// Identity is the common name of the call's verified client certificate; false
// when the call came without one (a plaintext listener).
func Identity(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	cn := ti.State.VerifiedChains[0][0].Subject.CommonName
	return cn, cn != ""
}

// Client is the transport credentials of a command-line client: f's mutual TLS
// when any file is named (all three must be), else plaintext (a service on a
// loopback --plaintext listener).
func Client(f Files) (credentials.TransportCredentials, error) {
	if !f.Set() {
		return insecure.NewCredentials(), nil
	}
	return ClientCredentials(f)
}

// FromEnv are the files named by HIKKOSHI_TLS_CERT, HIKKOSHI_TLS_KEY and
// HIKKOSHI_TLS_CA: the command-line clients' defaults.
func FromEnv() Files {
	return Files{Cert: os.Getenv("HIKKOSHI_TLS_CERT"), Key: os.Getenv("HIKKOSHI_TLS_KEY"), CA: os.Getenv("HIKKOSHI_TLS_CA")}
}
