package mtls

import (
	"crypto/tls"
	"net"
	"os"
	"testing"
	"time"
)

// TestClientFollowsTheCABundle: a client verifies the server against its CA bundle
// as the file is now: a server of another CA is refused until the bundle names that
// CA, then accepted without a restart; the server's name (an address here) must
// match its certificate.
func TestClientFollowsTheCABundle(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		if err := WriteDevPKI(d, "inventory", "operator"); err != nil {
			t.Fatal(err)
		}
	}
	// The server is of CA b, and trusts both CAs' clients.
	sf := DevFiles(b, "inventory")
	both := append(must(os.ReadFile(DevFiles(a, "operator").CA)), must(os.ReadFile(sf.CA))...)
	bundle := t.TempDir() + "/both.pem"
	if err := os.WriteFile(bundle, both, 0o644); err != nil {
		t.Fatal(err)
	}
	scfg, err := ServerConfig(Files{Cert: sf.Cert, Key: sf.Key, CA: bundle})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			_ = c.Close()
		}
	}()
	// The client (gRPC credentials) is of CA a and trusts only CA a: refused.
	cf := DevFiles(a, "operator")
	creds, err := ClientCredentials(cf)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(authority string) error {
		raw, err := net.DialTimeout("tcp", lis.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer raw.Close()
		c, _, err := creds.ClientHandshake(t.Context(), authority, raw)
		if err == nil {
			_ = c.Close()
		}
		return err
	}
	if err := dial(lis.Addr().String()); err == nil {
		t.Fatal("a server of another CA was accepted")
	}
	// Its CA bundle now names CA b too: accepted, same credentials, no restart.
	if err := os.WriteFile(cf.CA, both, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(recheck + 100*time.Millisecond)
	if err := dial(lis.Addr().String()); err != nil {
		t.Fatalf("after the bundle changed: %v", err)
	}
	// A name the certificate does not carry is refused.
	if err := dial("db.example:7401"); err == nil {
		t.Fatal("a server name not in the certificate was accepted")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
