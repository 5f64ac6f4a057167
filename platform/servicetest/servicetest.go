// Package servicetest runs a Hikkoshi service's real binary for contract tests: it
// builds the binary once (with -race when the tests run with it), starts processes
// against a real etcd, waits until they have registered, and dials them over gRPC.
// Processes are killed, and their logs printed if the test failed, when the test ends.
package servicetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/hikkoshi/hikkoshi/platform/etcdtest"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/mtls"
	"github.com/hikkoshi/hikkoshi/platform/service"
)

// Build builds the Go package pkg (an import path, or a directory relative to the
// test) into a temporary directory and returns the binary's path and a function that
// removes it. Meant for TestMain; the binary is built with -race when Race is true.
func Build(pkg string) (string, func(), error) {
	dir, err := os.MkdirTemp("", "hikkoshi-test-bin-")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	args := []string{"build", "-o", bin}
	if Race {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, pkg)...).CombinedOutput()
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, func() { _ = os.RemoveAll(dir) }, nil
}

// MustBuildAll is MustBuild for several packages, by name: their binaries by the
// same names, and one function that removes them all.
func MustBuildAll(pkgs map[string]string) (map[string]string, func()) {
	bins := map[string]string{}
	var cleanups []func()
	cleanup := func() {
		for _, c := range cleanups {
			c()
		}
	}
	for name, pkg := range pkgs {
		bin, c, err := Build(pkg)
		if err != nil {
			cleanup()
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		bins[name] = bin
		cleanups = append(cleanups, c)
	}
	return bins, cleanup
}

// MustBuild is Build for TestMain: it exits the test binary when the build fails.
func MustBuild(pkg string) (string, func()) {
	bin, cleanup, err := Build(pkg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return bin, cleanup
}

// Env is one real etcd server and a client of it, and, after WithTLS, a
// development PKI the services and the test's clients use.
type Env struct {
	Etcd *etcdtest.Server
	Cli  *clientv3.Client
	// PKI is the development PKI's directory (WithTLS); empty: plaintext.
	PKI string
	// Policy is the authorization policy file the services get (WithTLS).
	Policy string
}

// WithTLS gives e a development PKI (mtls.DevIdentities) and mtls.DevPolicy: the
// services it starts serve mutual TLS with authorization, and Proc.Conn dials as
// the admin identity.
func (e *Env) WithTLS(tb testing.TB) *Env {
	tb.Helper()
	if e.PKI != "" {
		return e
	}
	e.PKI = filepath.Join(tb.TempDir(), "pki")
	if err := mtls.WriteDevPKI(e.PKI, mtls.DevIdentities...); err != nil {
		tb.Fatal(err)
	}
	e.Policy = filepath.Join(e.PKI, "policy.yaml")
	if err := os.WriteFile(e.Policy, []byte(mtls.DevPolicy), 0o644); err != nil {
		tb.Fatal(err)
	}
	return e
}

// Creds are the transport credentials of a client of e's services with identity
// ("" for none: TLS without a client certificate); plaintext without a PKI.
func (e *Env) Creds(tb testing.TB, identity string) credentials.TransportCredentials {
	tb.Helper()
	if e.PKI == "" {
		return insecure.NewCredentials()
	}
	f := mtls.DevFiles(e.PKI, identity)
	if identity == "" {
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(f.CA)
		if err != nil || !pool.AppendCertsFromPEM(ca) {
			tb.Fatalf("CA %s: %v", f.CA, err)
		}
		return credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool})
	}
	c, err := mtls.ClientCredentials(f)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// DialAs connects to addr as identity; the connection is closed when the test
// ends.
func (e *Env) DialAs(tb testing.TB, addr, identity string) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(e.Creds(tb, identity)))
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// tlsArgs are the flags of service svc in e's PKI.
func (e *Env) tlsArgs(svc string) []string {
	f := mtls.DevFiles(e.PKI, svc)
	return []string{"--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-ca", f.CA, "--authz-policy", e.Policy}
}

// NewEnv starts an etcd server for the test, and gives it a development PKI: the
// services it starts speak mutual TLS with authorization, as they do in production
// (WithTLS).
func NewEnv(tb testing.TB) *Env {
	tb.Helper()
	e := etcdtest.Start(tb)
	return (&Env{Etcd: e, Cli: e.Client(tb)}).WithTLS(tb)
}

// ClientFlags are the --tls-cert, --tls-key and --tls-ca flags of a command-line
// client (hikkoshi-inv, hikkoshi-collect) with identity; none without a PKI.
func (e *Env) ClientFlags(identity string) []string {
	if e.PKI == "" {
		return nil
	}
	f := mtls.DevFiles(e.PKI, identity)
	return []string{"--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-ca", f.CA}
}

// HTTPClient is an HTTPS client with identity's certificate, for a service's
// /metrics (plain HTTP without a PKI).
func (e *Env) HTTPClient(tb testing.TB, identity string) *http.Client {
	tb.Helper()
	if e.PKI == "" {
		return http.DefaultClient
	}
	c, err := mtls.ClientConfig(mtls.DevFiles(e.PKI, identity))
	if err != nil {
		tb.Fatal(err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: c}}
}

// MetricsURL is the /metrics URL of a service's metrics address.
func (e *Env) MetricsURL(addr string) string {
	if e.PKI == "" {
		return "http://" + addr + "/metrics"
	}
	return "https://" + addr + "/metrics"
}

// Proc is a running service process.
type Proc struct {
	tb       testing.TB
	cmd      *exec.Cmd
	Service  string
	Instance string
	// Addr is the gRPC address the process registered.
	Addr string
	// Conn is a gRPC connection to Addr.
	Conn    *grpc.ClientConn
	logs    *syncBuffer
	done    chan struct{}
	exitErr error
	creds   credentials.TransportCredentials
}

// Start runs bin (service svc) against the env's etcd with test defaults (free
// loopback port, no metrics, a 2 s lease, warn logs) and extra flags after them, and
// waits until it has registered, then dials it.
func (e *Env) Start(tb testing.TB, bin, svc string, extra ...string) *Proc {
	tb.Helper()
	instance := fmt.Sprintf("contract-%d", time.Now().UnixNano())
	args := append([]string{
		"--listen", "127.0.0.1:0",
		"--metrics-listen", "",
		"--etcd-endpoints", e.Etcd.Endpoints()[0],
		"--instance", instance,
		"--lease-ttl", "2s",
		"--log-level", "warn",
	}, extra...)
	if e.PKI != "" {
		args = append(args, e.tlsArgs(svc)...)
	}
	p := Launch(tb, bin, svc, args, nil)
	p.Instance = instance
	reg := e.WaitRegistered(tb, svc, instance, 60*time.Second)
	p.creds = e.Creds(tb, "admin")
	p.Dial(reg.Address)
	return p
}

// Launch starts bin with args (and env added to the test's environment) without
// waiting for anything.
func Launch(tb testing.TB, bin, svc string, args, env []string) *Proc {
	tb.Helper()
	p := &Proc{tb: tb, Service: svc, logs: &syncBuffer{}, done: make(chan struct{}), creds: insecure.NewCredentials()}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	if !slices.Contains(args, "--tls-cert") {
		// A test's service serves plaintext on loopback unless given a PKI: said
		// explicitly, as the services require.
		p.cmd.Env = append(p.cmd.Env, service.EnvName("", "plaintext")+"=true")
	}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", svc, err)
	}
	go func() { p.exitErr = p.cmd.Wait(); close(p.done) }()
	tb.Cleanup(func() {
		p.Kill()
		if tb.Failed() {
			tb.Logf("%s %s logs:\n%s", svc, p.Instance, p.logs.String())
		}
	})
	return p
}

// DialWith connects Conn to addr with creds (Env.Creds) instead of the process's
// own: for a process started with Launch.
func (p *Proc) DialWith(addr string, creds credentials.TransportCredentials) {
	p.tb.Helper()
	p.creds = creds
	p.Dial(addr)
}

// TLSArgs are the --tls-cert, --tls-key, --tls-ca and --authz-policy flags of svc
// in e's PKI: for a process started with Launch.
func (e *Env) TLSArgs(svc string) []string { return e.tlsArgs(svc) }

// Dial connects Conn to addr; the connection is closed when the test ends.
func (p *Proc) Dial(addr string) {
	p.tb.Helper()
	p.Addr = addr
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(p.creds))
	if err != nil {
		p.tb.Fatalf("dial %s: %v", addr, err)
	}
	p.tb.Cleanup(func() { _ = conn.Close() })
	p.Conn = conn
}

// Logs returns what the process wrote so far.
func (p *Proc) Logs() string { return p.logs.String() }

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// PeakRSS is the process's peak resident memory so far (VmHWM), in bytes; 0 when
// it cannot be read.
func (p *Proc) PeakRSS() int64 {
	if p.cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib << 10
		}
	}
	return 0
}

// Kill kills the process (SIGKILL) and waits for it, unless it has exited.
func (p *Proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.Signal(syscall.SIGKILL)
	<-p.done
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns its exit error.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.exitErr
	case <-time.After(timeout):
		p.tb.Fatalf("%s did not exit within %s", p.Service, timeout)
		return nil
	}
}

// Registration reads an instance's registration; nil when there is none.
func (e *Env) Registration(tb testing.TB, svc, instance string) (*service.Registration, *clientv3.GetResponse) {
	tb.Helper()
	resp, err := e.Cli.Get(tb.Context(), keys.Registration(svc, instance))
	if err != nil {
		tb.Fatalf("etcd get: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, resp
	}
	var r service.Registration
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		tb.Fatalf("registration value: %v", err)
	}
	return &r, resp
}

// WaitRegistered waits until the instance has registered.
func (e *Env) WaitRegistered(tb testing.TB, svc, instance string, timeout time.Duration) *service.Registration {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if r, _ := e.Registration(tb, svc, instance); r != nil {
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("%s instance %s did not register within %s", svc, instance, timeout)
	return nil
}

// FreePort returns a loopback port that was free a moment ago, for a process the
// test starts (and may restart on the same port). It is chosen above the kernel's
// ephemeral range (ip_local_port_range; below it if too little is left above), so
// no outgoing connection of another test can take it between now and the start, as
// a port the kernel handed out for ":0" could be.
func FreePort(tb testing.TB) int {
	tb.Helper()
	from, to := 61000, 65535
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var lo, hi int
		if _, err := fmt.Sscan(string(b), &lo, &hi); err == nil {
			from, to = hi+1, 65535
			if to-from < 1000 && lo > 11000 {
				from, to = 10000, lo-1
			}
		}
	}
	for range 200 {
		port := from + rand.IntN(to-from+1)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			_ = l.Close()
			return port
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitServing waits until the server's health check answers SERVING.
func WaitServing(tb testing.TB, conn *grpc.ClientConn, timeout time.Duration) {
	tb.Helper()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(tb.Context(), time.Second)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("service not SERVING within %s", timeout)
}

// WantCode fails the test unless err has the gRPC code want.
func WantCode(tb testing.TB, err error, want codes.Code) {
	tb.Helper()
	if got := status.Code(err); got != want {
		tb.Fatalf("code = %s (%v), want %s", got, err, want)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
