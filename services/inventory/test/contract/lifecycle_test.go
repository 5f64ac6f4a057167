package contract

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
)

// TestSIGKILLKeepsWorkloads runs the one-process development mode (--etcd-embed)
// as the demo does, over mutual TLS and with etcd's auth on (the root password from
// the environment): a workload created, the process killed with SIGKILL and started
// again on the same data directory, and the workload is still there with the same
// etag. The embedded etcd refuses a client without the password, and the password
// is in no log line.
func TestSIGKILLKeepsWorkloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")
	grpcPort, clientPort, peerPort := freePort(t), freePort(t), freePort(t)
	pki := (&servicetest.Env{}).WithTLS(t)
	const password = "sentinel-etcd-password-7d1f"
	env := []string{"HIKKOSHI_ETCD_USERNAME=root", "HIKKOSHI_ETCD_PASSWORD=" + password}
	args := append([]string{
		"--listen", fmt.Sprintf("127.0.0.1:%d", grpcPort),
		"--metrics-listen", "",
		"--etcd-embed", dir,
		"--etcd-embed-client-url", fmt.Sprintf("http://127.0.0.1:%d", clientPort),
		"--etcd-embed-peer-url", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--instance", "embedded",
		"--lease-ttl", "2s",
		"--log-level", "debug",
	}, pki.TLSArgs("inventory")...)
	p1 := launch(t, args, env)
	p1.dial(fmt.Sprintf("127.0.0.1:%d", grpcPort), pki.Creds(t, "operator"))
	waitServing(t, p1.Conn, 60*time.Second)
	created, err := p1.client.CreateWorkload(t.Context(), &inventoryv1.CreateWorkloadRequest{
		WorkloadId: "survivor", Workload: instanceWorkload("db", 3, map[string]string{"tier": "gold"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	anon, err := clientv3.New(clientv3.Config{Endpoints: []string{fmt.Sprintf("http://127.0.0.1:%d", clientPort)}, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := anon.Get(t.Context(), "/", clientv3.WithPrefix()); err == nil {
		t.Error("the embedded etcd served a client without the password")
	}
	p1.Signal(syscall.SIGKILL)
	_ = p1.Wait(10 * time.Second)

	p2 := launch(t, args, env)
	p2.dial(fmt.Sprintf("127.0.0.1:%d", grpcPort), pki.Creds(t, "viewer"))
	// The instance name is the same: p2 waits for p1's registration to expire first.
	waitServing(t, p2.Conn, 60*time.Second)
	got, err := p2.client.GetWorkload(t.Context(), &inventoryv1.GetWorkloadRequest{Name: "workloads/survivor"})
	if err != nil {
		t.Fatalf("after SIGKILL and restart: %v", err)
	}
	if !proto.Equal(got.GetWorkload(), created.GetWorkload()) {
		t.Fatalf("after restart %v\nwant %v", got.GetWorkload(), created.GetWorkload())
	}
	for i, p := range []*proc{p1, p2} {
		if strings.Contains(p.Logs(), password) {
			t.Errorf("process %d logged etcd's password", i+1)
		}
	}
	t.Logf("etag before kill %s, after restart %s", created.GetWorkload().GetEtag(), got.GetWorkload().GetEtag())
}

// TestKilledInstanceLeavesRegistry checks that a SIGKILLed process's registration
// disappears from etcd on its own, by lease expiry, within the lease TTL.
func TestKilledInstanceLeavesRegistry(t *testing.T) {
	e := newEnv(t)
	const ttl = 2 * time.Second
	p := e.start(t, "--lease-ttl", ttl.String())
	_, resp := e.registration(t, p.Instance)
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)
	if lease == 0 {
		t.Fatal("registration is not under a lease")
	}
	p.Signal(syscall.SIGKILL)
	_ = p.Wait(10 * time.Second)
	killed := time.Now()
	for {
		if r, _ := e.registration(t, p.Instance); r == nil {
			break
		}
		// etcd checks for expired leases twice a second; allow for that on top of the TTL.
		if time.Since(killed) > ttl+2*time.Second {
			t.Fatalf("registration still present %s after SIGKILL (TTL %s)", time.Since(killed), ttl)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("registration gone %s after SIGKILL (lease TTL %s)", time.Since(killed).Round(10*time.Millisecond), ttl)
}

// TestSIGTERMShutsDownGracefully checks the graceful path: the registration goes at
// once (not by expiry), an open watch is told where to resume, the process exits 0.
func TestSIGTERMShutsDownGracefully(t *testing.T) {
	e := newEnv(t)
	p := e.start(t, "--lease-ttl", "30s")
	w, err := p.client.CreateWorkload(t.Context(), &inventoryv1.CreateWorkloadRequest{WorkloadId: "a", Workload: instanceWorkload("web", 1, nil)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.client.WatchWorkloads(t.Context(), &inventoryv1.WatchWorkloadsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	p.Signal(syscall.SIGTERM)
	for {
		_, err := s.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.Unavailable || apierr.Reason(err) != "SHUTTING_DOWN" {
			t.Fatalf("watch at shutdown ended with %v, want UNAVAILABLE/SHUTTING_DOWN", err)
		}
		t.Logf("watch told: %s", status.Convert(err).Message())
		break
	}
	if err := p.Wait(20 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if r, _ := e.registration(t, p.Instance); r != nil {
		t.Fatalf("registration still present after graceful exit (TTL 30s): %+v", r)
	}
	_ = w
}

// TestLeaseLossReRegisters revokes the instance's lease behind its back: the instance
// must notice, and register again under a new lease before it serves again.
func TestLeaseLossReRegisters(t *testing.T) {
	e := newEnv(t)
	p := e.start(t)
	_, resp := e.registration(t, p.Instance)
	old := clientv3.LeaseID(resp.Kvs[0].Lease)
	if _, err := e.Cli.Revoke(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("instance did not register again after losing its lease")
		}
		if r, resp := e.registration(t, p.Instance); r != nil && clientv3.LeaseID(resp.Kvs[0].Lease) != old {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Once registered again it serves.
	waitServing(t, p.Conn, 10*time.Second)
	if _, err := p.client.ListWorkloads(t.Context(), &inventoryv1.ListWorkloadsRequest{}); err != nil {
		t.Fatalf("after re-registration: %v", err)
	}
}
