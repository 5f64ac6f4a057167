package mtls

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRenewedCertificateIsUsed: a certificate replaced on disk (renewed) is served
// from the next handshake on, without a restart; a half-written one is not, and the
// last good one stays.
func TestRenewedCertificateIsUsed(t *testing.T) {
	dir := t.TempDir()
	if err := WriteDevPKI(dir, "inventory", "operator"); err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerConfig(DevFiles(dir, "inventory"))
	if err != nil {
		t.Fatal(err)
	}
	served := func() string {
		c, err := cfg.GetConfigForClient(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificates[0].Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	if got := served(); got != "inventory" {
		t.Fatalf("serves %q", got)
	}
	f := DevFiles(dir, "inventory")
	_ = os.WriteFile(f.Cert, []byte("-----BEGIN CERT"), 0o644) // half-written
	time.Sleep(recheck + 100*time.Millisecond)
	if got := served(); got != "inventory" {
		t.Fatalf("after a broken write it serves %q", got)
	}
	// "Renewed": the operator's pair takes the inventory's files.
	o := DevFiles(dir, "operator")
	for from, to := range map[string]string{o.Cert: f.Cert, o.Key: f.Key} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Clean(to), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(recheck + 100*time.Millisecond)
	if got := served(); got != "operator" {
		t.Fatalf("after the renewal it serves %q", got)
	}
	if _, err := ServerConfig(Files{Cert: f.Cert, Key: f.Key}); err == nil {
		t.Fatal("no CA accepted")
	}
}
