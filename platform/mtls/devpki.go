package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// DevIdentities are the identities of a development PKI: the four services (each
// both a server and a client of the others), the collector on physical servers,
// and one person per role.
var DevIdentities = []string{"inventory", "converter", "netbridge", "lbaas", "collector", "viewer", "operator", "admin"}

// DevPolicy is the authorization policy (package authz) of a development PKI: each
// service's identity is a service, each person's identity has its name's role.
const DevPolicy = `identities:
  inventory: [service]
  converter: [service]
  netbridge: [service]
  lbaas: [service]
  collector: [collector]
  viewer: [viewer]
  operator: [operator]
  admin: [admin]
`

var identityRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// WriteDevPKI makes a development CA in dir (ca.pem; its key ca-key.pem) and, for
// each identity, NAME.pem and NAME-key.pem: an ECDSA P-256 certificate with the
// identity as common name, good for both server and client authentication, for
// 127.0.0.1, ::1 and localhost, valid for a year. Files that exist are kept, so a
// second call adds identities to the same CA. Keys are 0600. For development and
// tests: a production PKI issues the same shape of certificates from its own CA.
func WriteDevPKI(dir string, identities ...string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caCert, caKey, err := devCA(dir)
	if err != nil {
		return err
	}
	for _, id := range identities {
		if !identityRE.MatchString(id) {
			return fmt.Errorf("mtls: identity %q: lower-case letters, digits and '-', from a letter", id)
		}
		if _, err := os.Stat(filepath.Join(dir, id+".pem")); err == nil {
			continue
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(), Subject: pkix.Name{CommonName: id, Organization: []string{"hikkoshi-dev"}},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			DNSNames:    []string{"localhost", id}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		if err := writePair(dir, id, der, key); err != nil {
			return err
		}
	}
	return nil
}

func devCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if c, err := os.ReadFile(certPath); err == nil {
		k, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, nil, err
		}
		cb, _ := pem.Decode(c)
		kb, _ := pem.Decode(k)
		if cb == nil || kb == nil {
			return nil, nil, fmt.Errorf("mtls: %s or %s is not PEM", certPath, keyPath)
		}
		cert, err := x509.ParseCertificate(cb.Bytes)
		if err != nil {
			return nil, nil, err
		}
		key, err := x509.ParseECPrivateKey(kb.Bytes)
		return cert, key, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "hikkoshi development CA", Organization: []string{"hikkoshi-dev"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(2, 0, 0),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePair(dir, "ca", der, key); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func writePair(dir, name string, der []byte, key *ecdsa.PrivateKey) error {
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// DevFiles are identity's files in a development PKI directory.
func DevFiles(dir, identity string) Files {
	return Files{Cert: filepath.Join(dir, identity+".pem"), Key: filepath.Join(dir, identity+"-key.pem"), CA: filepath.Join(dir, "ca.pem")}
}
