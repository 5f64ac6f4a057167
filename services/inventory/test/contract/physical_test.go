package contract

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/p2vtest"
	"github.com/hikkoshi/hikkoshi/platform/service"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// dbNet is a VLAN network of the old project of the test's own (10.<vlan>.0.0/26,
// pools .10–.50), joined to the new cloud by an applied netbridge shared-L2 bridge.
type dbNet struct {
	net, sub, prefix string
	bridge           string
	nb               netbridgev1.NetbridgeServiceClient
}

func (s *stack) dbNet(t *testing.T) *dbNet {
	t.Helper()
	ctx := t.Context()
	o := devcloud.Open(t, "old-admin")
	oldProject := must(o.ProjectID())(t)
	f := &dbNet{}
	for i := range 50 {
		vlan := 150 + (rand.IntN(50)+i)%50
		n, err := networks.Create(ctx, s.oldN, provider.CreateOptsExt{
			CreateOptsBuilder: networks.CreateOpts{Name: s.tag, ProjectID: oldProject},
			Segments:          []provider.Segment{{NetworkType: "vlan", PhysicalNetwork: "physnet1", SegmentationID: vlan}},
		}).Extract()
		if err != nil {
			continue // that VLAN is in use
		}
		f.net, f.prefix = n.ID, fmt.Sprintf("10.%d.0", vlan)
		break
	}
	if f.net == "" {
		t.Fatal("no free VLAN on physnet1 150–199")
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for range 60 { // the stand-in's port goes with its server
			pp, _ := ports.List(s.oldN, ports.ListOpts{NetworkID: f.net, DeviceOwner: "compute:nova"}).AllPages(ctx)
			if l, _ := ports.ExtractPorts(pp); len(l) == 0 {
				break
			}
			time.Sleep(time.Second)
		}
		if err := networks.Delete(ctx, s.oldN, f.net).ExtractErr(); err != nil {
			t.Errorf("delete the test's old network: %v", err)
		}
	})
	gw := f.prefix + ".1"
	f.sub = must(subnets.Create(ctx, s.oldN, subnets.CreateOpts{
		NetworkID: f.net, Name: s.tag + "-v4", CIDR: f.prefix + ".0/26", IPVersion: gophercloud.IPv4, GatewayIP: &gw, ProjectID: oldProject,
		AllocationPools: []subnets.AllocationPool{{Start: f.prefix + ".10", End: f.prefix + ".50"}},
	}).Extract())(t).ID
	return f
}

// join bridges the network into the new cloud (netbridge: create, plan, apply);
// the test's end rolls it back.
func (f *dbNet) join(t *testing.T, s *stack) {
	t.Helper()
	ctx := t.Context()
	conn := must(service.DialService(s.env.Cli, "netbridge", grpc.WithTransportCredentials(s.env.Creds(t, "admin"))))(t)
	t.Cleanup(func() { _ = conn.Close() })
	f.nb = netbridgev1.NewNetbridgeServiceClient(conn)
	b := must(f.nb.CreateBridge(ctx, &netbridgev1.CreateBridgeRequest{Bridge: &netbridgev1.Bridge{
		Mode:     netbridgev1.BridgeMode_BRIDGE_MODE_SHARED_L2,
		Old:      &netbridgev1.OldSide{Cloud: "old-admin", NetworkId: f.net},
		New:      &netbridgev1.NewSide{Cloud: "new-admin", PhysicalNetwork: "physnet2"},
		SharedL2: &netbridgev1.SharedL2{OldKeepFree: 5},
	}}))(t).GetBridge()
	f.bridge = b.GetName()
	t.Cleanup(func() {
		if _, err := f.nb.RollbackBridge(context.Background(), &netbridgev1.RollbackBridgeRequest{Name: f.bridge}); err != nil {
			t.Errorf("roll the test's bridge back: %v", err)
		}
	})
	plan := must(f.nb.PlanBridge(ctx, &netbridgev1.PlanBridgeRequest{Name: f.bridge}))(t).GetPlan()
	applied := must(f.nb.ApplyBridge(ctx, &netbridgev1.ApplyBridgeRequest{Name: f.bridge, PlanEtag: plan.GetPlanEtag()}))(t)
	if applied.GetBridge().GetState() != netbridgev1.BridgeState_BRIDGE_STATE_APPLIED {
		t.Fatalf("bridge %s: %s (%s)", f.bridge, applied.GetBridge().GetState(), applied.GetBridge().GetError())
	}
}

// TestWaveRunMovesADatabaseAndAPhysicalHost: a wave of the database role — a
// database server (a stand-in on the fake driver) and a physical database host (the
// P2V fixture's disk; a port in the old cloud holds its address) — on a VLAN network
// joined to the new cloud by a netbridge bridge. The run waits for the operator's
// go for each (approving one that is not waiting is refused); then each keeps its
// address: the database stopped, snapshotted, copied and booted on the moved port;
// the physical host's disk converted (P2V) and its image booted on its moved
// address. Each answers there (its health probe, then real requests through the
// data plane), its downtime is recorded, each has one converter job. Reverted, the
// new cloud keeps nothing of them.
func TestWaveRunMovesADatabaseAndAPhysicalHost(t *testing.T) {
	disk := p2vtest.Fixture(t)
	tag := fmt.Sprintf("itest-db-%d", time.Now().UnixNano())
	s := newStack(t, tag, 1)
	ctx := t.Context()
	f := s.dbNet(t)
	// The servers are there before the networks are joined.
	db := devcloud.BootStandinOn(t, f.sub, tag+"-db", f.prefix+".12", map[string]string{"role": "db"})
	physIP := f.prefix + ".15"
	hold := must(ports.Create(ctx, s.oldN, ports.CreateOpts{Name: tag + "-db-phys", NetworkID: f.net, Description: "a physical host's address",
		FixedIPs: []ports.IP{{SubnetID: f.sub, IPAddress: physIP}}}).Extract())(t)
	t.Cleanup(func() { _ = ports.Delete(context.Background(), s.oldN, hold.ID).ExtractErr() })
	f.join(t, s)

	must(s.inv.client.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{WorkloadId: tag + "-db-phys", Workload: &inventoryv1.Workload{
		DisplayName: tag + "-db-phys",
		Source: &inventoryv1.Workload_Physical{Physical: &inventoryv1.PhysicalSource{Hostname: "pg-legacy-1", Addresses: []string{physIP},
			Flavor: "m1.small", P2V: &converterv1.P2VSource{DiskPath: disk, Nics: []string{"eno1=52:54:00:12:34:56"}, KeyPairUser: "ops"}}},
	}}))(t)
	_, err := s.inv.client.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{WorkloadId: tag + "-bad", Workload: &inventoryv1.Workload{
		Source: &inventoryv1.Workload_Physical{Physical: &inventoryv1.PhysicalSource{Hostname: "bad", P2V: &converterv1.P2VSource{InspectOnly: true}}},
	}})
	wantField(t, err, "workload.physical.p2v.inspect_only", "leave inspect_only")
	syncTo(t, s.inv, inventoryv1.SyncMode_SYNC_MODE_FULL)
	plan := must(s.inv.client.CreatePlan(ctx, &inventoryv1.CreatePlanRequest{Plan: &inventoryv1.Plan{
		Rules: []*inventoryv1.RoleRule{{NamePattern: "^" + tag + "-db", Role: "ctdb", Stateful: true}},
	}}))(t).GetPlan()
	var wave int32
	for _, w := range plan.GetWaves() {
		if slices.Contains(w.GetRoles(), "ctdb") {
			wave = w.GetWave()
		}
	}
	must(s.inv.client.AcceptPlan(ctx, &inventoryv1.AcceptPlanRequest{Name: plan.GetName()}))(t)
	run := &inventoryv1.Run{Wave: wave, Destination: "new", HealthCheck: "tcp:8080",
		PreflightOverrideReason: "the test's own network is bridged; the fixture's flavor is named"}

	dry := must(s.runs.CreateRun(ctx, &inventoryv1.CreateRunRequest{Run: withDry(run)}))(t).GetRun()
	t.Logf("dry run:\n%s", describe(dry))
	strategies := map[string]inventoryv1.Strategy{}
	for _, w := range dry.GetWorkloads() {
		strategies[w.GetDisplayName()] = w.GetStrategy()
		if w.GetBridge() != f.bridge {
			t.Fatalf("%s crosses bridge %q, want %s", w.GetDisplayName(), w.GetBridge(), f.bridge)
		}
	}
	if len(strategies) != 2 || strategies[tag+"-db"] != inventoryv1.Strategy_STRATEGY_STATEFUL_ADDRESS_KEPT ||
		strategies[tag+"-db-phys"] != inventoryv1.Strategy_STRATEGY_PHYSICAL {
		t.Fatalf("strategies %v", strategies)
	}

	started := must(s.runs.CreateRun(ctx, &inventoryv1.CreateRunRequest{Run: run, RequestId: tag}))(t).GetRun()
	var jobs []string
	t.Cleanup(func() { s.revert(t, f, jobs) })
	approved := map[string]bool{}
	refused := false
	end := watchRun(t, s.runs, started.GetName(), func(r *inventoryv1.Run) bool {
		for i, w := range r.GetWorkloads() {
			if w.GetJob() != "" && !slices.Contains(jobs, w.GetJob()) {
				jobs = append(jobs, w.GetJob())
			}
			if w.GetStepState() != inventoryv1.StepState_STEP_STATE_WAITING || approved[w.GetWorkload()] {
				continue
			}
			if !refused { // the other one is not waiting
				_, err := s.runs.ApproveStep(ctx, &inventoryv1.ApproveStepRequest{Name: r.GetName(), Workload: r.GetWorkloads()[1-i].GetWorkload()})
				wantCode(t, err, codes.FailedPrecondition)
				refused = true
			}
			t.Logf("approving %s", w.GetDisplayName())
			must(s.runs.ApproveStep(ctx, &inventoryv1.ApproveStepRequest{Name: r.GetName(), Workload: w.GetWorkload()}))(t)
			approved[w.GetWorkload()] = true
		}
		return false
	})
	t.Logf("run:\n%s", describe(end))
	if end.GetState() != inventoryv1.RunState_RUN_STATE_DONE || len(approved) != 2 {
		t.Fatalf("the run ended %s with %d approvals, want DONE after 2", end.GetState(), len(approved))
	}
	meterBin := serviceBinary(t, "hikkoshi-devcloud")
	for _, w := range end.GetWorkloads() {
		if w.GetStep() != inventoryv1.RunStep_RUN_STEP_DONE || w.GetDowntimeMs() <= 0 || w.GetNewAddress() != w.GetSourceAddress() {
			t.Fatalf("%s: %s, downtime %d ms, new address %q (was %s)", w.GetDisplayName(), w.GetStep(), w.GetDowntimeMs(), w.GetNewAddress(), w.GetSourceAddress())
		}
		srv := must(servers.Get(ctx, s.newC, w.GetNewServerId()).Extract())(t)
		// Real requests to its address, through the data plane: the new server answers.
		rep := devcloud.Meter(t, meterBin, "--addr", w.GetNewAddress()+":8080", "--rate", "10", "--for", "2s")
		if srv.Status != "ACTIVE" || rep.Answered == 0 || rep.Failed != 0 {
			t.Fatalf("%s's replacement %s is %s; %d of %d requests to %s answered", w.GetDisplayName(), srv.ID, srv.Status, rep.Answered, rep.Sent, w.GetNewAddress())
		}
		t.Logf("%s: %s in the new cloud on %s, downtime %.1f s; %d of %d requests answered", w.GetDisplayName(), srv.ID, w.GetNewAddress(),
			float64(w.GetDowntimeMs())/1000, rep.Answered, rep.Sent)
	}
	if srv := must(servers.Get(ctx, s.oldC, db.ID).Extract())(t); srv.Status != "SHUTOFF" {
		t.Fatalf("the old database server is %s, want SHUTOFF", srv.Status)
	}
	// The physical host's job converted its disk and booted the image; one job each.
	all := must(s.converter.ListJobs(ctx, &converterv1.ListJobsRequest{PageSize: 100}))(t).GetJobs()
	if len(all) != 2 {
		t.Fatalf("%d converter jobs, want one per workload", len(all))
	}
	for _, j := range all {
		if j.GetP2VSource() == nil {
			continue
		}
		img := must(images.Get(ctx, s.newI, j.GetCreated().GetImageId()).Extract())(t)
		if img.Name != tag+"-db-phys" || j.GetP2VResult().GetInspection().GetOsId() != "debian" || j.GetDestination().GetPortId() == "" {
			t.Fatalf("P2V job %s: image %q, inspection %v, port %q", j.GetName(), img.Name, j.GetP2VResult().GetInspection().GetOsId(), j.GetDestination().GetPortId())
		}
		t.Logf("P2V job %s: %d-byte image, timings %v ms", j.GetName(), j.GetP2VResult().GetImageBytes(), j.GetP2VResult().GetTimingsMs())
	}
	s.sweep(t)
}

// revert undoes a finished wave of the test's network: the jobs reverted (their
// servers and images deleted), the addresses moved back, the old servers started;
// then nothing of the jobs may be left in the new cloud.
func (s *stack) revert(t *testing.T, f *dbNet, jobs []string) {
	ctx := context.Background()
	for _, j := range jobs {
		if _, err := s.converter.RevertJob(ctx, &converterv1.RevertJobRequest{Name: j}); err != nil {
			t.Logf("revert %s: %v", j, err)
		}
	}
	if f.bridge != "" {
		b, err := f.nb.GetBridge(ctx, &netbridgev1.GetBridgeRequest{Name: f.bridge})
		if err == nil {
			for _, m := range b.GetBridge().GetMoved() {
				if _, err := f.nb.MoveAddressBack(ctx, &netbridgev1.MoveAddressBackRequest{Bridge: f.bridge, IpAddress: m.GetIpAddress()}); err != nil {
					t.Errorf("move %s back: %v", m.GetIpAddress(), err)
				}
			}
		}
	}
	pages, err := servers.List(s.newC, servers.ListOpts{Name: "^" + s.tag}).AllPages(ctx)
	if err == nil {
		if left, _ := servers.ExtractServers(pages); len(left) > 0 {
			t.Errorf("the new cloud still has %d servers of the test: %s", len(left), left[0].Name)
		}
	}
	ip, err := images.List(s.newI, images.ListOpts{}).AllPages(ctx)
	if err == nil {
		il, _ := images.ExtractImages(ip)
		for _, img := range il {
			for _, j := range jobs {
				if strings.Contains(img.Name, strings.TrimPrefix(j, "jobs/")) || img.Name == s.tag+"-db-phys" {
					t.Errorf("image %s (%s) is left in the new cloud", img.Name, img.ID)
					_ = images.Delete(ctx, s.newI, img.ID).ExtractErr()
				}
			}
		}
	}
}
