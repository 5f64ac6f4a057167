package service

import (
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hikkoshi/hikkoshi/platform/mtls"
)

func TestParseFlagsPrecedence(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{name: "default", want: []string{DefaultEtcdEndpoint}},
		{name: "generic env", env: map[string]string{"HIKKOSHI_ETCD_ENDPOINTS": "http://a:1,http://b:2"}, want: []string{"http://a:1", "http://b:2"}},
		{name: "service env beats generic", env: map[string]string{
			"HIKKOSHI_ETCD_ENDPOINTS": "http://a:1", "HIKKOSHI_INVENTORY_ETCD_ENDPOINTS": "http://s:3",
		}, want: []string{"http://s:3"}},
		{name: "flag beats env", env: map[string]string{"HIKKOSHI_INVENTORY_ETCD_ENDPOINTS": "http://s:3"},
			args: []string{"--etcd-endpoints", "http://f:4, http://g:5"}, want: []string{"http://f:4", "http://g:5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg := NewConfig("inventory", 7401)
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			cfg.RegisterFlags(fs)
			if err := cfg.ParseFlags(fs, tt.args); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.EtcdEndpoints, tt.want) {
				t.Fatalf("endpoints %v, want %v", cfg.EtcdEndpoints, tt.want)
			}
		})
	}
}

func TestParseFlagsBadEnv(t *testing.T) {
	t.Setenv("HIKKOSHI_LEASE_TTL", "ten seconds")
	cfg := NewConfig("inventory", 7401)
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	err := cfg.ParseFlags(fs, nil)
	if err == nil || !strings.Contains(err.Error(), "HIKKOSHI_LEASE_TTL") {
		t.Fatalf("err = %v, want one naming HIKKOSHI_LEASE_TTL", err)
	}
}

func TestCredentialsFromEnvOnly(t *testing.T) {
	t.Setenv("HIKKOSHI_ETCD_PASSWORD", "s3cret")
	cfg := NewConfig("inventory", 7401)
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if fs.Lookup("etcd-password") != nil {
		t.Fatal("a password flag would put the secret in the process list")
	}
	if err := cfg.ParseFlags(fs, nil); err != nil {
		t.Fatal(err)
	}
	if cfg.EtcdPassword != "s3cret" {
		t.Fatal("password not read from the environment")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"ok", func(*Config) {}, ""},
		{"bad listen", func(c *Config) { c.Listen = "7401" }, "--listen"},
		{"no etcd", func(c *Config) { c.EtcdEndpoints = nil }, "--etcd-endpoints"},
		{"embedded etcd needs no endpoints", func(c *Config) { c.EtcdEndpoints = nil; c.EtcdEmbedDir = "/tmp/x" }, ""},
		{"short ttl", func(c *Config) { c.LeaseTTL = time.Second }, "--lease-ttl"},
		{"instance with slash", func(c *Config) { c.Instance = "a/b" }, "--instance"},
		{"cert without key", func(c *Config) { c.EtcdCertFile = "c.pem" }, "--etcd-key"},
		{"log format", func(c *Config) { c.LogFormat = "xml" }, "--log-format"},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "--log-level"},
		{"neither TLS nor plaintext", func(c *Config) { c.Plaintext = false }, "--tls-cert, --tls-key, --tls-ca and --authz-policy"},
		{"plaintext off loopback", func(c *Config) { c.Listen = "0.0.0.0:7401" }, "--plaintext serves only on a loopback address, not 0.0.0.0:7401"},
		{"plaintext metrics off loopback", func(c *Config) { c.MetricsListen = "10.0.0.5:7411" }, "not 10.0.0.5:7411"},
		{"TLS without a CA", func(c *Config) { c.Plaintext, c.TLS = false, mtls.Files{Cert: "c.pem", Key: "k.pem"} }, "give all three"},
		{"TLS without a policy", func(c *Config) { c.Plaintext, c.TLS = false, mtls.Files{Cert: "c.pem", Key: "k.pem", CA: "ca.pem"} }, "--authz-policy is required"},
		{"TLS off loopback", func(c *Config) {
			c.Plaintext, c.TLS, c.AuthzPolicy, c.Listen = false, mtls.Files{Cert: "c.pem", Key: "k.pem", CA: "ca.pem"}, "p.yaml", "0.0.0.0:7401"
		}, ""},
		{"both", func(c *Config) {
			c.TLS = mtls.Files{Cert: "c.pem", Key: "k.pem", CA: "ca.pem"}
			c.AuthzPolicy = "p.yaml"
		}, "choose one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := NewConfig("inventory", 7401)
			cfg.Plaintext = true
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want mention of %s", err, tt.want)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("inventory", "etcd-embed-client-url"); got != "HIKKOSHI_INVENTORY_ETCD_EMBED_CLIENT_URL" {
		t.Fatal(got)
	}
	if got := EnvName("", "listen"); got != "HIKKOSHI_LISTEN" {
		t.Fatal(got)
	}
}
