package contract

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/etcdtest"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/service"
)

var (
	raceEnabled bool
	binary      string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "inventory-contract-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "inventory")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/hikkoshi/hikkoshi/services/inventory/cmd/inventory")
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the inventory binary:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running inventory process.
type proc struct {
	t        testing.TB
	cmd      *exec.Cmd
	instance string
	addr     string
	conn     *grpc.ClientConn
	client   inventoryv1.InventoryServiceClient
	logs     *syncBuffer
	done     chan struct{}
	exitErr  error
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

// env is one etcd server and a client of it.
type env struct {
	etcd *etcdtest.Server
	cli  *clientv3.Client
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := etcdtest.Start(t)
	return &env{etcd: e, cli: e.Client(t)}
}

// start runs an inventory against the env's etcd and waits until it is registered.
func (e *env) start(t testing.TB, extra ...string) *proc {
	t.Helper()
	instance := fmt.Sprintf("contract-%d", time.Now().UnixNano())
	args := append([]string{
		"--listen", "127.0.0.1:0",
		"--metrics-listen", "",
		"--etcd-endpoints", e.etcd.Endpoints()[0],
		"--instance", instance,
		"--lease-ttl", "2s",
		"--log-level", "warn",
	}, extra...)
	p := launch(t, args)
	p.instance = instance
	reg := e.waitRegistered(t, instance, 60*time.Second)
	p.dial(reg.Address)
	return p
}

func launch(t testing.TB, args []string) *proc {
	t.Helper()
	p := &proc{t: t, logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start inventory: %v", err)
	}
	go func() { p.exitErr = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("inventory logs:\n%s", p.logs.String())
		}
	})
	return p
}

func (p *proc) dial(addr string) {
	p.t.Helper()
	p.addr = addr
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		p.t.Fatalf("dial %s: %v", addr, err)
	}
	p.t.Cleanup(func() { _ = conn.Close() })
	p.conn = conn
	p.client = inventoryv1.NewInventoryServiceClient(conn)
}

func (p *proc) signal(sig syscall.Signal) {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.signal(syscall.SIGKILL)
	<-p.done
}

// wait waits for the process to exit and returns its exit error.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.exitErr
	case <-time.After(timeout):
		p.t.Fatalf("inventory did not exit within %s", timeout)
		return nil
	}
}

// registration reads an instance's registration, or nil.
func (e *env) registration(t testing.TB, instance string) (*service.Registration, *clientv3.GetResponse) {
	t.Helper()
	resp, err := e.cli.Get(t.Context(), keys.Registration("inventory", instance))
	if err != nil {
		t.Fatalf("etcd get: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, resp
	}
	var r service.Registration
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		t.Fatalf("registration value: %v", err)
	}
	return &r, resp
}

func (e *env) waitRegistered(t testing.TB, instance string, timeout time.Duration) *service.Registration {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if r, _ := e.registration(t, instance); r != nil {
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("instance %s did not register within %s", instance, timeout)
	return nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

func waitServing(t *testing.T, conn *grpc.ClientConn, timeout time.Duration) {
	t.Helper()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("service not SERVING within %s", timeout)
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code = %s (%v), want %s", got, err, want)
	}
}

func etagInt(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("etag %q: %v", s, err)
	}
	return n
}

func instanceWorkload(role string, wave int32, labels map[string]string) *inventoryv1.Workload {
	return &inventoryv1.Workload{
		DisplayName: role + " server",
		Role:        role,
		Wave:        wave,
		Labels:      labels,
		Source: &inventoryv1.Workload_Instance{Instance: &inventoryv1.InstanceSource{
			Cloud: "old", Region: "RegionOne", ProjectId: "p1", ServerId: "srv-" + role,
		}},
	}
}
