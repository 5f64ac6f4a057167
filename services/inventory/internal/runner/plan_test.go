package runner

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

const (
	oldNet = "11111111-1111-4111-8111-111111111111"
	newNet = "22222222-2222-4222-8222-222222222222"
)

func instance(name, status string, stateful bool, ips ...string) *inventoryv1.Workload {
	w := &inventoryv1.Workload{
		Name: "workloads/" + name, Role: "web", Stateful: stateful, State: inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED,
		Source: &inventoryv1.Workload_Instance{Instance: &inventoryv1.InstanceSource{Cloud: "old", ServerId: "srv-" + name}},
	}
	f := &inventoryv1.InstanceFacts{Name: name, Status: status}
	for _, ip := range ips {
		f.Ports = append(f.Ports, &inventoryv1.PortFacts{NetworkId: oldNet, FixedIps: []*inventoryv1.FixedIP{{IpAddress: ip}}})
	}
	w.Facts = &inventoryv1.Facts{Kind: &inventoryv1.Facts_Instance{Instance: f}}
	return w
}

// TestPlanChoosesAStrategyFromFactsAndRole: behind a load balancer a stateless
// server moves beside itself; a stateful one keeps its address on a bridged network;
// what cannot be moved says why.
func TestPlanChoosesAStrategyFromFactsAndRole(t *testing.T) {
	e := &Engine{}
	members := map[string][]*inventoryv1.RunMember{"10.0.0.1": {{LoadBalancer: "loadBalancers/x", Pool: "p", Address: "10.0.0.1", Port: 8080, Weight: 1}}}
	bridge := &netbridgev1.Bridge{Name: "bridges/b", Resources: []*netbridgev1.Resource{{Side: "new", Kind: "network", Id: newNet}}}
	bridges := map[string]*netbridgev1.Bridge{oldNet: bridge}
	run := &inventoryv1.Run{Wave: 1, Destination: "new"}
	physical := &inventoryv1.Workload{Name: "workloads/pg", State: inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED,
		Source: &inventoryv1.Workload_Physical{Physical: &inventoryv1.PhysicalSource{Hostname: "pg"}}}
	done := instance("old", "ACTIVE", false, "10.0.0.9")
	done.State = inventoryv1.WorkloadState_WORKLOAD_STATE_CUT_OVER
	tests := []struct {
		w        *inventoryv1.Workload
		bridges  map[string]*netbridgev1.Bridge
		strategy inventoryv1.Strategy
		why      string
	}{
		{instance("web-1", "ACTIVE", false, "10.0.0.1"), bridges, inventoryv1.Strategy_STRATEGY_STATELESS_LB, ""},
		{instance("web-1", "ACTIVE", false, "10.0.0.1"), nil, inventoryv1.Strategy_STRATEGY_UNSUPPORTED, "no destination network"},
		{instance("db-1", "ACTIVE", true, "10.0.0.2"), bridges, inventoryv1.Strategy_STRATEGY_STATEFUL_ADDRESS_KEPT, ""},
		{instance("db-1", "ACTIVE", true, "10.0.0.2"), nil, inventoryv1.Strategy_STRATEGY_UNSUPPORTED, "needs an applied shared-L2 netbridge bridge"},
		{instance("db-0", "ACTIVE", true), bridges, inventoryv1.Strategy_STRATEGY_UNSUPPORTED, "0 NICs"},
		{instance("two", "ACTIVE", false, "10.0.0.1", "10.0.1.1"), bridges, inventoryv1.Strategy_STRATEGY_UNSUPPORTED, "2 NICs"},
		{instance("off", "SHUTOFF", false, "10.0.0.1"), bridges, inventoryv1.Strategy_STRATEGY_UNSUPPORTED, "it is SHUTOFF"},
		{physical, bridges, inventoryv1.Strategy_STRATEGY_UNSUPPORTED, "physical server"},
		{done, bridges, inventoryv1.Strategy_STRATEGY_UNSUPPORTED, "already moved (cut_over)"},
	}
	for _, tt := range tests {
		rw := e.planOne(run, tt.w, members, tt.bridges)
		if rw.GetStrategy() != tt.strategy || !strings.Contains(rw.GetError(), tt.why) {
			t.Errorf("%s: %s %q, want %s %q", tt.w.GetName(), rw.GetStrategy(), rw.GetError(), tt.strategy, tt.why)
		}
		if rw.GetStrategy() == inventoryv1.Strategy_STRATEGY_STATELESS_LB && (rw.GetDestinationNetworkId() != newNet || len(rw.GetMembers()) != 1) {
			t.Errorf("%s: destination %q members %v", tt.w.GetName(), rw.GetDestinationNetworkId(), rw.GetMembers())
		}
	}
	// A mapping in the run wins over the bridge.
	run.Networks = map[string]string{oldNet: "33333333-3333-4333-8333-333333333333"}
	if rw := e.planOne(run, instance("web-1", "ACTIVE", false, "10.0.0.1"), members, bridges); rw.GetDestinationNetworkId() != run.Networks[oldNet] {
		t.Errorf("run.networks not used: %q", rw.GetDestinationNetworkId())
	}
}

// TestJobRequestIsTheSameEachTime: a repeat of the converter job (a successor
// runner, a rollback finding a job whose name was lost) is the same request with
// the same request_id, so the converter returns the job the first call made.
func TestJobRequestIsTheSameEachTime(t *testing.T) {
	run := &inventoryv1.Run{Name: "runs/r", Destination: "new"}
	w := &inventoryv1.RunWorkload{Workload: "workloads/web-1", SourceServerId: "s", DestinationNetworkId: newNet,
		Members: []*inventoryv1.RunMember{{Port: 8080}}, RequestIds: map[string]string{"convert": "run-r-web-1-convert"}}
	wl := instance("web-1", "ACTIVE", false, "10.0.0.1")
	a, b := jobRequest(run, w, wl, false), jobRequest(run, proto.Clone(w).(*inventoryv1.RunWorkload), wl, false)
	if !proto.Equal(a, b) || a.GetRequestId() != "run-r-web-1-convert" || !a.GetJob().GetSource().GetLive() ||
		!a.GetJob().GetDestination().GetNewAddress() || a.GetJob().GetDestination().GetHealthCheck() != "tcp:8080" {
		t.Fatalf("job request %v", a)
	}
	w.MovedPortId = "port"
	if s := jobRequest(run, w, wl, true); s.GetJob().GetDestination().GetPortId() != "port" || !s.GetJob().GetSource().GetAlreadyStopped() || s.GetJob().GetSource().GetLive() {
		t.Fatalf("stateful job request %v", s)
	}
}

func TestValidateCreateRunNamesTheField(t *testing.T) {
	err := ValidateCreateRun(&inventoryv1.CreateRunRequest{RequestId: "bad id!", Run: &inventoryv1.Run{
		Roles:       map[string]*inventoryv1.RoleSettings{"Web": {MaxSurge: -1, DrainSeconds: 9999}},
		Networks:    map[string]string{"x": newNet},
		HealthCheck: "icmp",
	}})
	v := apierr.FieldViolations(err)
	for _, f := range []string{"request_id", "run.wave", "run.destination", "run.roles[Web]", "run.roles[Web].max_surge",
		"run.roles[Web].drain_seconds", "run.networks[x]", "run.health_check"} {
		if v[f] == "" {
			t.Errorf("no violation of %s in %v", f, err)
		}
	}
}
