package contract

import (
	"os"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/credentials"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/service"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
)

var binary string

func TestMain(m *testing.M) {
	bin, cleanup := servicetest.MustBuild("github.com/hikkoshi/hikkoshi/services/inventory/cmd/inventory")
	binary = bin
	code := m.Run()
	cleanup()
	for _, c := range binCleanups {
		c()
	}
	os.Exit(code)
}

// proc is a running inventory process and a client of it.
type proc struct {
	*servicetest.Proc
	client inventoryv1.InventoryServiceClient
}

// env is one etcd server and a client of it.
type env struct{ *servicetest.Env }

func newEnv(t testing.TB) *env { return &env{servicetest.NewEnv(t)} }

// start runs an inventory against the env's etcd and waits until it is registered.
func (e *env) start(t testing.TB, extra ...string) *proc {
	t.Helper()
	return withClient(e.Start(t, binary, "inventory", extra...))
}

func launch(t testing.TB, args, env []string) *proc {
	t.Helper()
	return &proc{Proc: servicetest.Launch(t, binary, "inventory", args, env)}
}

func withClient(p *servicetest.Proc) *proc {
	return &proc{Proc: p, client: inventoryv1.NewInventoryServiceClient(p.Conn)}
}

func (p *proc) dial(addr string, creds credentials.TransportCredentials) {
	p.DialWith(addr, creds)
	p.client = inventoryv1.NewInventoryServiceClient(p.Conn)
}

// registration reads an instance's registration, or nil.
func (e *env) registration(t testing.TB, instance string) (*service.Registration, *clientv3.GetResponse) {
	t.Helper()
	return e.Registration(t, "inventory", instance)
}

func (e *env) waitRegistered(t testing.TB, instance string, timeout time.Duration) *service.Registration {
	t.Helper()
	return e.WaitRegistered(t, "inventory", instance, timeout)
}

var (
	freePort    = servicetest.FreePort
	waitServing = servicetest.WaitServing
	wantCode    = servicetest.WantCode
)

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
