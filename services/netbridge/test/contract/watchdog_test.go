package contract

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// haRouterOpts creates an HA router (gophercloud's CreateOpts has no "ha").
type haRouterOpts struct{ name, project string }

func (o haRouterOpts) ToRouterCreateMap() (map[string]any, error) {
	return map[string]any{"router": map[string]any{"name": o.name, "ha": true, "project_id": o.project}}, nil
}

func routerHealth(st *netbridgev1.WatchdogStatus, id string) *netbridgev1.RouterHealth {
	for _, r := range st.GetRouters() {
		if r.GetRouterId() == id {
			return r
		}
	}
	return nil
}

func events(st *netbridgev1.WatchdogStatus, id, kind string) (n int, by map[string]int) {
	by = map[string]int{}
	for _, e := range st.GetEvents() {
		if e.GetKind() == kind && (id == "" || e.GetRouterId() == id) {
			n++
			by[e.GetInstance()]++
		}
	}
	return n, by
}

// TestWatchdogLeaderHandover runs two netbridge replicas watching the new cloud's
// HA routers. The dev cloud has no L3 agents, so an HA router it makes has no VRRP
// port and no active agent: a real degraded router, which the leader detects and
// heals (disable, enable) under back-off. The leader is killed (SIGKILL); the other
// replica leads within the lease's TTL, carries the heal history on, and gives up
// at the limit — two heals in all, not two per leader. The router is left enabled.
func TestWatchdogLeaderHandover(t *testing.T) {
	n := devcloud.Open(t, "new-admin")
	if devcloud.HAUp(t) {
		t.Skip("the dev cloud runs L3 agents (up --ha): its HA routers are not degraded by themselves; TestWatchdogOnARealHARouter proves the watchdog on them")
	}
	nc := must(n.Network())(t)
	ctx := t.Context()
	r := must(routers.Create(ctx, nc, haRouterOpts{name: fmt.Sprintf("ctest-ha-%d", time.Now().UnixNano()), project: must(n.ProjectID())(t)}).Extract())(t)
	t.Cleanup(func() { _ = routers.Delete(context.Background(), nc, r.ID).ExtractErr() })
	env := servicetest.NewEnv(t)
	args := []string{"--clouds-yaml", devcloud.CloudsYAML(), "--watch-clouds", "new-admin", "--watch-interval", "300ms",
		"--heal-backoff", "4s", "--heal-max-backoff", "8s", "--heal-max", "2", "--heal-settle", "100ms"}
	procs := map[string]*servicetest.Proc{}
	var client netbridgev1.NetbridgeServiceClient
	for range 2 {
		p := env.Start(t, binary, "netbridge", args...)
		procs[p.Instance] = p
		client = netbridgev1.NewNetbridgeServiceClient(p.Conn)
	}
	status := func() *netbridgev1.WatchdogStatus {
		return must(client.GetWatchdogStatus(ctx, &netbridgev1.GetWatchdogStatusRequest{}))(t).GetStatus()
	}
	wait := func(what string, ok func(*netbridgev1.WatchdogStatus) bool) *netbridgev1.WatchdogStatus {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if st := status(); ok(st) {
				return st
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("watchdog: %s did not happen in time; status %v", what, status())
		return nil
	}
	st := wait("a first heal", func(st *netbridgev1.WatchdogStatus) bool {
		h := routerHealth(st, r.ID)
		healed, _ := events(st, r.ID, "healed")
		return h != nil && !h.GetHealthy() && healed >= 1
	})
	first := st.GetLeader()
	h := routerHealth(st, r.ID)
	if !strings.Contains(strings.Join(h.GetProblems(), ";"), "no L3 agent is active") || h.GetVrrpPorts() != 0 {
		t.Fatalf("problems %v (%d VRRP ports)", h.GetProblems(), h.GetVrrpPorts())
	}
	procs[first].Signal(syscall.SIGKILL)
	killed := time.Now()
	var second string
	for inst := range procs {
		if inst != first {
			second = inst
			client = netbridgev1.NewNetbridgeServiceClient(procs[inst].Conn)
		}
	}
	st = wait("a new leader", func(st *netbridgev1.WatchdogStatus) bool { return st.GetLeader() == second })
	handover := time.Since(killed)
	st = wait("giving up at the limit", func(st *netbridgev1.WatchdogStatus) bool {
		h := routerHealth(st, r.ID)
		return h != nil && h.GetGaveUp()
	})
	healed, by := events(st, r.ID, "healed")
	if healed != 2 || by[first] != 1 || by[second] != 1 {
		t.Fatalf("heals %d by instance %v: want one by each leader, two in all", healed, by)
	}
	time.Sleep(time.Second) // given up: no more heals
	if n, _ := events(status(), r.ID, "healed"); n != 2 {
		t.Fatalf("%d heals after giving up", n)
	}
	if got := must(routers.Get(ctx, nc, r.ID).Extract())(t); !got.AdminStateUp {
		t.Fatal("the watchdog left the router disabled")
	}
	t.Logf("leader %s killed; %s led %s later (lease TTL 2 s); heals by leader %v, then gave up", first, second, handover.Round(100*time.Millisecond), by)
}
