package runner

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
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
	bridge := &netbridgev1.Bridge{Name: "bridges/b", Resources: []*netbridgev1.Resource{{Side: "new", Kind: "network", Id: newNet}},
		Old: &netbridgev1.OldSide{NetworkId: oldNet}, Split: &netbridgev1.PoolSplit{Cidr: "10.0.0.0/24"}}
	bridges := map[string]*netbridgev1.Bridge{oldNet: bridge}
	run := &inventoryv1.Run{Wave: 1, Destination: "new"}
	phys := func(addr string, p2v *converterv1.P2VSource, flavor string) *inventoryv1.Workload {
		return &inventoryv1.Workload{Name: "workloads/pg", State: inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED,
			Source: &inventoryv1.Workload_Physical{Physical: &inventoryv1.PhysicalSource{Hostname: "pg", Addresses: []string{addr}, P2V: p2v, Flavor: flavor}}}
	}
	disk := &converterv1.P2VSource{DiskPath: "/srv/p2v/pg.raw"}
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
		{phys("10.0.0.40", nil, "m1.small"), bridges, inventoryv1.Strategy_STRATEGY_UNSUPPORTED, "without physical.p2v"},
		{phys("10.0.0.40", disk, ""), bridges, inventoryv1.Strategy_STRATEGY_UNSUPPORTED, "without physical.flavor"},
		{phys("10.9.0.40", disk, "m1.small"), bridges, inventoryv1.Strategy_STRATEGY_UNSUPPORTED, "whose old subnet holds it"},
		{phys("10.0.0.40", disk, "m1.small"), bridges, inventoryv1.Strategy_STRATEGY_PHYSICAL, ""},
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
	a, b := jobRequest(run, w, wl), jobRequest(run, proto.Clone(w).(*inventoryv1.RunWorkload), wl)
	if !proto.Equal(a, b) || a.GetRequestId() != "run-r-web-1-convert" || !a.GetJob().GetSource().GetLive() ||
		!a.GetJob().GetDestination().GetNewAddress() || a.GetJob().GetDestination().GetHealthCheck() != "tcp:8080" {
		t.Fatalf("job request %v", a)
	}
	w.MovedPortId, w.Strategy = "port", inventoryv1.Strategy_STRATEGY_STATEFUL_ADDRESS_KEPT
	if s := jobRequest(run, w, wl); s.GetJob().GetDestination().GetPortId() != "port" || !s.GetJob().GetSource().GetAlreadyStopped() || s.GetJob().GetSource().GetLive() {
		t.Fatalf("stateful job request %v", s)
	}
	// The run's zone and key pair user go into each job.
	zoned := proto.CloneOf(run)
	zoned.AvailabilityZone, zoned.KeyPairUser = "az-2", "ops"
	if d := jobRequest(zoned, w, wl).GetJob().GetDestination(); d.GetAvailabilityZone() != "az-2" || d.GetKeyPairUser() != "ops" {
		t.Fatalf("a run with a zone and a key pair user: job destination %v", d)
	}
	// A physical server: a P2V job of its disks that boots the image on the moved
	// port, named as the workload is.
	w.Strategy, w.DisplayName = inventoryv1.Strategy_STRATEGY_PHYSICAL, "pg-legacy-1"
	pw := &inventoryv1.Workload{Source: &inventoryv1.Workload_Physical{Physical: &inventoryv1.PhysicalSource{
		Flavor: "m1.small", P2V: &converterv1.P2VSource{DiskPath: "/srv/p2v/pg.raw", KeyPairUser: "ops"}}}}
	p := jobRequest(run, w, pw)
	if j := p.GetJob(); j.GetSource() != nil || j.GetP2VSource().GetDiskPath() != "/srv/p2v/pg.raw" || j.GetP2VImage().GetName() != "pg-legacy-1" ||
		j.GetP2VImage().GetCloud() != "new" || j.GetDestination().GetPortId() != "port" || j.GetDestination().GetFlavor() != "m1.small" ||
		j.GetDestination().GetKeyPairUser() != "ops" || p.GetRequestId() != "run-r-web-1-convert" {
		t.Fatalf("physical job request %v", p)
	}
}

func TestValidateCreateRunNamesTheField(t *testing.T) {
	err := ValidateCreateRun(&inventoryv1.CreateRunRequest{RequestId: "bad id!", Run: &inventoryv1.Run{
		Roles:       map[string]*inventoryv1.RoleSettings{"Web": {MaxSurge: -1, DrainSeconds: 9999}},
		Networks:    map[string]string{"x": newNet},
		HealthCheck: "icmp",
		KeyPairUser: "Root Admin", AvailabilityZone: strings.Repeat("z", 256),
	}})
	v := apierr.FieldViolations(err)
	for _, f := range []string{"request_id", "run.wave", "run.destination", "run.roles[Web]", "run.roles[Web].max_surge",
		"run.roles[Web].drain_seconds", "run.networks[x]", "run.health_check", "run.key_pair_user", "run.availability_zone"} {
		if v[f] == "" {
			t.Errorf("no violation of %s in %v", f, err)
		}
	}
}

// TestWarmStatefulPlanAndJob: with warm_stateful a stateful server's move begins
// with the pre-copy, its job is created warm and holding on the bridge's network
// (the moved port comes with the cut-over), and the same request each time.
func TestWarmStatefulPlanAndJob(t *testing.T) {
	e := &Engine{}
	bridge := &netbridgev1.Bridge{Name: "bridges/b", Resources: []*netbridgev1.Resource{{Side: "new", Kind: "network", Id: newNet}},
		Old: &netbridgev1.OldSide{NetworkId: oldNet}, Split: &netbridgev1.PoolSplit{Cidr: "10.0.0.0/24"}}
	run := &inventoryv1.Run{Name: "runs/r", Wave: 1, Destination: "new", WarmStateful: true, WarmRounds: 2}
	wl := instance("db-1", "ACTIVE", true, "10.0.0.2")
	rw := e.planOne(run, wl, nil, map[string]*netbridgev1.Bridge{oldNet: bridge})
	if rw.GetStrategy() != inventoryv1.Strategy_STRATEGY_STATEFUL_ADDRESS_KEPT || rw.GetSteps()[0] != inventoryv1.RunStep_RUN_STEP_PRECOPY ||
		!warm(rw) || rw.GetDestinationNetworkId() != newNet {
		t.Fatalf("warm stateful plan %v", rw)
	}
	rw.RequestIds = map[string]string{"convert": "run-r-db-1-convert"}
	a := jobRequest(run, rw, wl)
	rw.MovedPortId = "port" // moved after the job was made: the same request still
	b := jobRequest(run, rw, wl)
	src, d := a.GetJob().GetSource(), a.GetJob().GetDestination()
	if !proto.Equal(a, b) || !src.GetWarm() || !src.GetHoldForCutover() || src.GetWarmRounds() != 2 || src.GetAlreadyStopped() ||
		d.GetNetworkId() != newNet || d.GetPortId() != "" {
		t.Fatalf("warm job request %v (then %v)", a, b)
	}
	// Without warm_stateful: the move as before.
	run.WarmStateful = false
	if rw := e.planOne(run, wl, nil, map[string]*netbridgev1.Bridge{oldNet: bridge}); warm(rw) {
		t.Fatalf("a cold run planned a pre-copy: %v", rw.GetSteps())
	}
}

// TestVolumesMoveWithTheirServer: a server with volumes is moved (its converter job
// carries the run's volume type mapping, a physical server's does not); one booted
// from a volume moves cold in a warm_stateful run (a warm pre-copy copies an
// image-backed root disk only), one with a data volume only still moves warm.
func TestVolumesMoveWithTheirServer(t *testing.T) {
	e := &Engine{}
	bridge := &netbridgev1.Bridge{Name: "bridges/b", Resources: []*netbridgev1.Resource{{Side: "new", Kind: "network", Id: newNet}},
		Old: &netbridgev1.OldSide{NetworkId: oldNet}, Split: &netbridgev1.PoolSplit{Cidr: "10.0.0.0/24"}}
	bridges := map[string]*netbridgev1.Bridge{oldNet: bridge}
	run := &inventoryv1.Run{Name: "runs/r", Wave: 1, Destination: "new", WarmStateful: true, VolumeTypes: map[string]string{"legacy-ssd": "ssd"}}
	data := instance("db-1", "ACTIVE", true, "10.0.0.2")
	data.GetFacts().GetInstance().Volumes = []*inventoryv1.VolumeFacts{{Id: "v1", SizeGb: 10, Device: "/dev/vdb", VolumeType: "legacy-ssd"}}
	bfv := instance("db-2", "ACTIVE", true, "10.0.0.3")
	bfv.GetFacts().GetInstance().Volumes = []*inventoryv1.VolumeFacts{{Id: "v2", SizeGb: 20, Device: "/dev/vda", Boot: true}}

	rw := e.planOne(run, data, nil, bridges)
	if rw.GetStrategy() != inventoryv1.Strategy_STRATEGY_STATEFUL_ADDRESS_KEPT || !warm(rw) {
		t.Fatalf("a server with a data volume: %s %q, steps %v", rw.GetStrategy(), rw.GetError(), rw.GetSteps())
	}
	rw.RequestIds = map[string]string{"convert": "run-r-db-1-convert"}
	if vt := jobRequest(run, rw, data).GetJob().GetDestination().GetVolumeTypes(); vt["legacy-ssd"] != "ssd" {
		t.Fatalf("job volume types %v, want the run's", vt)
	}
	rw = e.planOne(run, bfv, nil, bridges)
	if rw.GetStrategy() != inventoryv1.Strategy_STRATEGY_STATEFUL_ADDRESS_KEPT || warm(rw) {
		t.Fatalf("a server booted from a volume: %s %q, steps %v (want cold)", rw.GetStrategy(), rw.GetError(), rw.GetSteps())
	}
	if err := ValidateCreateRun(&inventoryv1.CreateRunRequest{Run: &inventoryv1.Run{Wave: 1, Destination: "new",
		VolumeTypes: map[string]string{"legacy-ssd": ""}}}); apierr.FieldViolations(err)[`run.volume_types["legacy-ssd"]`] == "" {
		t.Fatalf("an empty destination type: %v", err)
	}
}
