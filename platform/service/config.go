package service

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/hikkoshi/hikkoshi/platform/mtls"
)

// Defaults shared by every service.
const (
	DefaultLeaseTTL        = 10 * time.Second
	DefaultShutdownTimeout = 15 * time.Second
	DefaultEtcdDialTimeout = 5 * time.Second
	DefaultEtcdEndpoint    = "http://127.0.0.1:2379"
	// EnvPrefix starts every environment variable the services read.
	EnvPrefix = "HIKKOSHI_"
)

// Config is the configuration every Hikkoshi service shares. Each service embeds it in
// its own configuration struct.
type Config struct {
	// Service is the service's name ("inventory"); it names the registration key.
	Service string
	// Listen is the gRPC listen address.
	Listen string
	// MetricsListen is the HTTP listen address of /metrics; empty disables it.
	MetricsListen string
	// EnablePprof serves net/http/pprof's handlers beside /metrics.
	EnablePprof bool
	// EtcdEndpoints are the client URLs of an etcd cluster.
	EtcdEndpoints []string
	// EtcdEmbedDir, when set, starts an embedded etcd server keeping its data there,
	// and connects to it instead of EtcdEndpoints.
	EtcdEmbedDir string
	// EtcdEmbedClientURL is the client URL of the embedded server.
	EtcdEmbedClientURL string
	// EtcdEmbedPeerURL is the peer URL of the embedded server.
	EtcdEmbedPeerURL string
	// EtcdDialTimeout bounds the first connection to etcd.
	EtcdDialTimeout time.Duration
	// EtcdCertFile, EtcdKeyFile and EtcdCAFile configure TLS to etcd.
	EtcdCertFile, EtcdKeyFile, EtcdCAFile string
	// EtcdUsername and EtcdPassword authenticate to etcd. They are read from the
	// environment only (HIKKOSHI_ETCD_USERNAME, HIKKOSHI_ETCD_PASSWORD), never from
	// flags, and never logged.
	EtcdUsername, EtcdPassword string
	// LeaseTTL is the TTL of the process's etcd session lease: how long a dead
	// process's registration and claims outlive it.
	LeaseTTL time.Duration
	// Instance names this process in the registry; default host name and PID.
	Instance string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// LogFormat is json or text.
	LogFormat string
	// ShutdownTimeout bounds how long in-flight calls may finish at shutdown.
	ShutdownTimeout time.Duration
	// MaxStreamsPerClient caps the streams (watches) one client host holds open.
	MaxStreamsPerClient int
	// MaxRecvBytes and MaxSendBytes cap one gRPC message each way.
	MaxRecvBytes, MaxSendBytes int
	// TLS are the process's certificate, key and the CA bundle its clients' (and
	// the other services') certificates are issued by: mutual TLS on the gRPC and
	// metrics listeners, and on its own calls to the other services.
	TLS mtls.Files
	// Plaintext serves without TLS: only on a loopback address, and only when
	// asked (--plaintext, HIKKOSHI_PLAINTEXT=true), for development.
	Plaintext bool
	// AuthzPolicy is the policy file mapping client identities to roles (required
	// with TLS; without it a plaintext listener allows every call).
	AuthzPolicy string
}

// NewConfig returns the defaults for a service listening on 127.0.0.1:port, with
// metrics on 127.0.0.1:port+10.
func NewConfig(svc string, port int) Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	return Config{
		Service:             svc,
		Listen:              fmt.Sprintf("127.0.0.1:%d", port),
		MetricsListen:       fmt.Sprintf("127.0.0.1:%d", port+10),
		EtcdEndpoints:       []string{DefaultEtcdEndpoint},
		EtcdEmbedClientURL:  DefaultEtcdEndpoint,
		EtcdEmbedPeerURL:    "http://127.0.0.1:2380",
		EtcdDialTimeout:     DefaultEtcdDialTimeout,
		LeaseTTL:            DefaultLeaseTTL,
		Instance:            fmt.Sprintf("%s-%d", host, os.Getpid()),
		LogLevel:            "info",
		LogFormat:           "json",
		ShutdownTimeout:     DefaultShutdownTimeout,
		MaxStreamsPerClient: DefaultMaxStreamsPerClient,
		MaxRecvBytes:        DefaultMaxRecvBytes,
		MaxSendBytes:        DefaultMaxSendBytes,
	}
}

// RegisterFlags defines the common flags on fs, with c's values as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "gRPC listen address")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "HTTP address serving /metrics (empty: off)")
	fs.BoolVar(&c.EnablePprof, "enable-pprof", c.EnablePprof, "serve Go's profiles at /debug/pprof/ on --metrics-listen too (like etcd's --enable-pprof; behind the same mutual TLS)")
	fs.Func("etcd-endpoints", "comma-separated etcd client URLs (default "+strings.Join(c.EtcdEndpoints, ",")+")", func(s string) error {
		c.EtcdEndpoints = SplitList(s)
		return nil
	})
	fs.StringVar(&c.EtcdEmbedDir, "etcd-embed", c.EtcdEmbedDir, "run an embedded etcd server with its data in this directory (one-process development)")
	fs.StringVar(&c.EtcdEmbedClientURL, "etcd-embed-client-url", c.EtcdEmbedClientURL, "client URL of the embedded etcd server")
	fs.StringVar(&c.EtcdEmbedPeerURL, "etcd-embed-peer-url", c.EtcdEmbedPeerURL, "peer URL of the embedded etcd server")
	fs.DurationVar(&c.EtcdDialTimeout, "etcd-dial-timeout", c.EtcdDialTimeout, "how long to wait for etcd at start")
	fs.StringVar(&c.EtcdCertFile, "etcd-cert", c.EtcdCertFile, "client certificate for etcd (TLS)")
	fs.StringVar(&c.EtcdKeyFile, "etcd-key", c.EtcdKeyFile, "client key for etcd (TLS)")
	fs.StringVar(&c.EtcdCAFile, "etcd-cacert", c.EtcdCAFile, "CA bundle for etcd (TLS)")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", c.LeaseTTL, "TTL of this process's etcd lease (registration, claims, locks)")
	fs.StringVar(&c.Instance, "instance", c.Instance, "name of this instance in the service registry")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: json or text")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long in-flight calls may finish at shutdown")
	fs.IntVar(&c.MaxStreamsPerClient, "max-streams-per-client", c.MaxStreamsPerClient, "most streams (watches) one client host may hold open at once")
	fs.IntVar(&c.MaxRecvBytes, "max-recv-bytes", c.MaxRecvBytes, "largest gRPC request message accepted")
	fs.IntVar(&c.MaxSendBytes, "max-send-bytes", c.MaxSendBytes, "largest gRPC response message sent")
	fs.StringVar(&c.TLS.Cert, "tls-cert", c.TLS.Cert, "this process's certificate (PEM; read again when it changes): mutual TLS on its listeners and its calls")
	fs.StringVar(&c.TLS.Key, "tls-key", c.TLS.Key, "the certificate's key (PEM)")
	fs.StringVar(&c.TLS.CA, "tls-ca", c.TLS.CA, "CA bundle (PEM) that issues the clients' and the other services' certificates")
	fs.BoolVar(&c.Plaintext, "plaintext", c.Plaintext, "serve without TLS (development; only on a loopback --listen)")
	fs.StringVar(&c.AuthzPolicy, "authz-policy", c.AuthzPolicy, "policy file (YAML): client identities (certificate common names) to roles")
}

// Validate checks the configuration and says what to fix.
func (c *Config) Validate() error {
	var errs []error
	if c.Service == "" {
		errs = append(errs, errors.New("service name is empty"))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: want host:port", c.Listen))
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-listen %q: want host:port", c.MetricsListen))
		}
	}
	if c.EtcdEmbedDir == "" && len(c.EtcdEndpoints) == 0 {
		errs = append(errs, errors.New("--etcd-endpoints is empty and --etcd-embed is not set: give one"))
	}
	if c.LeaseTTL < 2*time.Second {
		errs = append(errs, fmt.Errorf("--lease-ttl %s: must be at least 2s", c.LeaseTTL))
	}
	if strings.ContainsAny(c.Instance, "/ \t\n") || c.Instance == "" {
		errs = append(errs, fmt.Errorf("--instance %q: must be non-empty, without '/' or spaces", c.Instance))
	}
	if c.MaxStreamsPerClient < 1 {
		errs = append(errs, fmt.Errorf("--max-streams-per-client %d: must be at least 1", c.MaxStreamsPerClient))
	}
	if c.MaxRecvBytes < 1<<10 || c.MaxSendBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("--max-recv-bytes %d, --max-send-bytes %d: each must be at least 1024", c.MaxRecvBytes, c.MaxSendBytes))
	}
	switch {
	case c.TLS.Set() && c.Plaintext:
		errs = append(errs, errors.New("--plaintext and --tls-cert/--tls-key/--tls-ca: choose one"))
	case c.TLS.Set():
		if err := c.TLS.Check(); err != nil {
			errs = append(errs, fmt.Errorf("--tls-cert, --tls-key, --tls-ca: %w", err))
		}
		if c.AuthzPolicy == "" {
			errs = append(errs, errors.New("--authz-policy is required with TLS: name which client identities have which roles"))
		}
	case !c.Plaintext:
		errs = append(errs, errors.New("no TLS: give --tls-cert, --tls-key, --tls-ca and --authz-policy (scripts/devpki.sh makes a development set), or --plaintext for development on a loopback address"))
	default:
		for _, addr := range []string{c.Listen, c.MetricsListen} {
			if host, _, err := net.SplitHostPort(addr); err == nil && !loopback(host) {
				errs = append(errs, fmt.Errorf("--plaintext serves only on a loopback address, not %s: give --tls-cert, --tls-key, --tls-ca and --authz-policy to listen there", addr))
			}
		}
	}
	if (c.EtcdCertFile == "") != (c.EtcdKeyFile == "") {
		errs = append(errs, errors.New("--etcd-cert and --etcd-key go together"))
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		errs = append(errs, fmt.Errorf("--log-format %q: want json or text", c.LogFormat))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Parse is a service's configuration read whole: the common flags and the
// service's own (register), args parsed with the environment filling what they leave
// unset (ParseFlags), then the service's own check (validate), which names the flag.
func (c *Config) Parse(args []string, register func(*flag.FlagSet), validate func() error) error {
	fs := flag.NewFlagSet(c.Service, flag.ContinueOnError)
	c.RegisterFlags(fs)
	register(fs)
	if err := c.ParseFlags(fs, args); err != nil {
		return err
	}
	return validate()
}

// ParseFlags parses args into fs after applying the environment: a flag --foo-bar is
// also read from HIKKOSHI_<SVC>_FOO_BAR, or else HIKKOSHI_FOO_BAR; a flag given on the
// command line wins. It also reads the etcd credentials from the environment.
func (c *Config) ParseFlags(fs *flag.FlagSet, args []string) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		for _, name := range []string{EnvName(c.Service, f.Name), EnvName("", f.Name)} {
			if v, ok := os.LookupEnv(name); ok {
				if err := fs.Set(f.Name, v); err != nil {
					errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
				}
				return
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.EtcdUsername = os.Getenv(EnvPrefix + "ETCD_USERNAME")
	c.EtcdPassword = os.Getenv(EnvPrefix + "ETCD_PASSWORD")
	return fs.Parse(args)
}

// EnvName returns the environment variable for a flag: HIKKOSHI_[SVC_]FLAG_NAME.
func EnvName(svc, flagName string) string {
	n := EnvPrefix
	if svc != "" {
		n += strings.ToUpper(svc) + "_"
	}
	return n + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// loopback reports whether host is a loopback address or localhost.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SplitList splits a comma-separated flag value, spaces trimmed, empty items
// dropped.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// List is a flag of values, comma-separated or repeated (--clouds a,b --clouds c).
type List []string

func (l *List) String() string { return strings.Join(*l, ",") }

// Set adds the comma-separated values of v.
func (l *List) Set(v string) error { *l = append(*l, SplitList(v)...); return nil }
