package contract

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/p2vtest"
	"github.com/hikkoshi/hikkoshi/platform/service"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/platform/sweep"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud/meter"
)

// binaries of the services a wave run calls, built once for the package.
var (
	buildOnce sync.Once
	binErr    error
	bins      = map[string]string{}
	// binCleanups remove the build directories; TestMain calls them at the end.
	binCleanups []func()
)

func serviceBinary(t *testing.T, svc string) string {
	t.Helper()
	buildOnce.Do(func() {
		for _, s := range []struct{ name, pkg string }{
			{"converter", "github.com/hikkoshi/hikkoshi/services/converter/cmd/converter"},
			{"lbaas", "github.com/hikkoshi/hikkoshi/services/lbaas/cmd/lbaas"},
			{"netbridge", "github.com/hikkoshi/hikkoshi/services/netbridge/cmd/netbridge"},
			{"hikkoshi-devcloud", "github.com/hikkoshi/hikkoshi/tilt/devcloud/cmd/hikkoshi-devcloud"},
		} {
			bin, cleanup, err := servicetest.Build(s.pkg)
			if err != nil {
				binErr = err
				return
			}
			bins[s.name] = bin
			binCleanups = append(binCleanups, cleanup)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return bins[svc]
}

// stack is every service of a wave run on one etcd, against the dev cloud. The
// test's clients find the services in the registry, as the runner does: they
// follow a killed service's successor.
type stack struct {
	env       *servicetest.Env
	tag       string
	args      map[string][]string
	procs     map[string][]*servicetest.Proc
	all       []*servicetest.Proc // every process started, killed ones too
	inv       *proc
	runs      inventoryv1.WaveRunServiceClient
	lb        lbaasv1.LoadBalancerServiceClient
	converter converterv1.ConverterServiceClient
	oldC      *gophercloud.ServiceClient
	newC      *gophercloud.ServiceClient
	oldN      *gophercloud.ServiceClient
	newN      *gophercloud.ServiceClient
	oldI      *gophercloud.ServiceClient
	newI      *gophercloud.ServiceClient
}

func newStack(t *testing.T, tag string, inventories int) *stack {
	t.Helper()
	devcloud.Require(t)
	if !devcloud.NetnsUp() {
		t.Skip("the dev cloud's data plane is not up")
	}
	// The services speak mutual TLS, with each other too (the runner's calls carry
	// the inventory's certificate); the test calls them as the admin.
	s := &stack{env: servicetest.NewEnv(t), tag: tag, procs: map[string][]*servicetest.Proc{}}
	oc, nc := devcloud.Open(t, "old-admin"), devcloud.Open(t, "new")
	s.oldC, s.oldN, s.oldI = mustClient(t, oc.Compute), mustClient(t, oc.Network), mustClient(t, oc.Image)
	s.newC, s.newN, s.newI = mustClient(t, nc.Compute), mustClient(t, nc.Network), mustClient(t, nc.Image)
	cy := devcloud.CloudsYAML()
	s.args = map[string][]string{
		"lbaas": {"--cloud", "old", "--clouds-yaml", cy, "--owner-tag", tag, "--octavia-timeout", "3m"},
		"converter": {"--clouds-yaml", cy, "--chunk-bytes", "1048576", "--poll", "250ms", "--workers", "2",
			"--probe-proxy", devcloud.Bastion, "--p2v-disk-root", p2vtest.CacheDir(), "--p2v-work-dir", filepath.Join(t.TempDir(), "p2v")},
		"netbridge": {"--clouds-yaml", cy},
		"inventory": {"--clouds-yaml", cy, "--source-clouds", "old", "--destination-clouds", "new", "--log-level", "info", "--log-format", "text"},
	}
	for _, svc := range []string{"lbaas", "converter", "netbridge"} {
		s.start(t, svc)
	}
	for range inventories {
		s.start(t, "inventory")
	}
	conn := func(svc string) *grpc.ClientConn {
		c, err := service.DialService(s.env.Cli, svc, grpc.WithTransportCredentials(s.env.Creds(t, "admin")))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	s.inv = &proc{client: inventoryv1.NewInventoryServiceClient(conn("inventory"))}
	s.runs = inventoryv1.NewWaveRunServiceClient(conn("inventory"))
	s.lb = lbaasv1.NewLoadBalancerServiceClient(conn("lbaas"))
	s.converter = converterv1.NewConverterServiceClient(conn("converter"))
	return s
}

// start starts one more process of svc.
func (s *stack) start(t *testing.T, svc string) *servicetest.Proc {
	t.Helper()
	bin := binary
	if svc != "inventory" {
		bin = serviceBinary(t, svc)
	}
	p := s.env.Start(t, bin, svc, s.args[svc]...)
	s.procs[svc] = append(s.procs[svc], p)
	s.all = append(s.all, p)
	return p
}

// sweep looks for the secrets the services hold — clouds.yaml's passwords and the
// private keys of their certificates — in every log of every process the stack
// ran (killed ones too) and in every etcd key and value: none may be there.
func (s *stack) sweep(t *testing.T) {
	t.Helper()
	secrets, err := sweep.FromCloudsYAML(devcloud.CloudsYAML())
	if err != nil {
		t.Fatal(err)
	}
	keys, err := sweep.FromPEMKeys(s.env.PKI)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, keys...)
	if len(secrets) < 2 {
		t.Fatalf("the sweep found %d secrets to look for", len(secrets))
	}
	var places sweep.Places
	for _, p := range s.all {
		places.Add(p.Service+" "+p.Instance+" log", p.Logs())
	}
	resp, err := s.env.Cli.Get(context.Background(), "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		places.Add("etcd "+string(kv.Key), string(kv.Key)+" "+string(kv.Value))
	}
	for _, h := range places.Find(secrets) {
		t.Error(h)
	}
	t.Logf("secret sweep: %d secrets looked for in %d logs and %d etcd keys: none found", len(secrets), len(s.all), len(resp.Kvs))
}

// kill kills (SIGKILL) the process of svc named instance ("" for the first live
// one) and returns its instance name.
func (s *stack) kill(t *testing.T, svc, instance string) string {
	t.Helper()
	for i, p := range s.procs[svc] {
		if instance == "" || p.Instance == instance {
			p.Kill()
			s.procs[svc] = append(s.procs[svc][:i:i], s.procs[svc][i+1:]...)
			return p.Instance
		}
	}
	t.Fatalf("no live %s %q to kill", svc, instance)
	return ""
}

func mustClient(t *testing.T, f func() (*gophercloud.ServiceClient, error)) *gophercloud.ServiceClient {
	t.Helper()
	c, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// watchRun follows a run until it ends (or until stop says so), calling each on
// every version.
func watchRun(t *testing.T, c inventoryv1.WaveRunServiceClient, name string, each func(*inventoryv1.Run) bool) *inventoryv1.Run {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	var last *inventoryv1.Run
	seen := map[string]string{}
	for ctx.Err() == nil {
		stream, err := c.WatchRun(ctx, &inventoryv1.WatchRunRequest{Name: name})
		if err != nil {
			time.Sleep(time.Second)
			continue
		}
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return last
			}
			if err != nil {
				break // the inventory was restarted: watch again
			}
			last = m.GetRun()
			for _, w := range last.GetWorkloads() {
				if st := w.GetStep().String() + "/" + w.GetStepState().String(); seen[w.GetWorkload()] != st {
					seen[w.GetWorkload()] = st
					t.Logf("%s %s: %s", last.GetState(), w.GetDisplayName(), st)
				}
			}
			if each != nil && each(last) {
				return last
			}
		}
	}
	t.Fatalf("run %s did not end in time:\n%s", name, describe(last))
	return nil
}

func describe(r *inventoryv1.Run) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s (%s)", r.GetName(), r.GetState(), r.GetStateReason())
	for _, w := range r.GetWorkloads() {
		fmt.Fprintf(&b, "\n  %s %s %s/%s %s gates=%q err=%q", w.GetDisplayName(), w.GetStrategy(), w.GetStep(), w.GetStepState(), w.GetNewAddress(), w.GetGates(), w.GetError())
		for _, e := range w.GetEvents() {
			fmt.Fprintf(&b, "\n    %s", e)
		}
	}
	return b.String()
}

// cloudState is what a run may leave behind in both clouds.
type cloudState struct {
	oldServers map[string]string // ID → status
	newServers []string
	newPorts   []string
	images     []string
	members    []string
}

func (s *stack) state(t *testing.T, oldIDs []string, newNet, lbName string, jobs []string) cloudState {
	t.Helper()
	ctx := t.Context()
	st := cloudState{oldServers: map[string]string{}}
	for _, id := range oldIDs {
		srv, err := servers.Get(ctx, s.oldC, id).Extract()
		if err != nil {
			t.Fatal(err)
		}
		st.oldServers[id] = srv.Status
	}
	pages, err := servers.List(s.newC, servers.ListOpts{Name: "^" + s.tag}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list, _ := servers.ExtractServers(pages)
	for _, srv := range list {
		st.newServers = append(st.newServers, srv.Name+" "+srv.ID)
	}
	pp, err := ports.List(s.newN, ports.ListOpts{NetworkID: newNet}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pl, _ := ports.ExtractPorts(pp)
	for _, p := range pl {
		if p.DeviceOwner != "network:dhcp" {
			st.newPorts = append(st.newPorts, p.ID)
		}
	}
	for _, ic := range []*gophercloud.ServiceClient{s.oldI, s.newI} {
		ip, err := images.List(ic, images.ListOpts{}).AllPages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		il, _ := images.ExtractImages(ip)
		for _, img := range il {
			for _, j := range jobs {
				if strings.Contains(img.Name, strings.TrimPrefix(j, "jobs/")) {
					st.images = append(st.images, img.Name)
				}
			}
		}
	}
	lb, err := s.lb.GetLoadBalancer(ctx, &lbaasv1.GetLoadBalancerRequest{Name: lbName})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lb.GetLoadBalancer().GetListeners() {
		for _, m := range l.GetPool().GetMembers() {
			st.members = append(st.members, fmt.Sprintf("%s:%d weight %d", m.GetAddress(), m.GetPort(), m.GetWeight()))
		}
	}
	sort.Strings(st.members)
	return st
}

// webWave is a role of two web servers behind a load balancer in the old cloud,
// a network for their replacements in the new one, and a proposed plan putting
// them in a wave.
type webWave struct {
	a, b         *devcloud.Standin
	sub          *subnets.Subnet
	newNet       *networks.Network
	lbName, vip  string
	plan         *inventoryv1.Plan
	wave         int32
	oldIDs       []string
	replacements []string
}

func (s *stack) webWave(t *testing.T) *webWave {
	t.Helper()
	ctx := t.Context()
	tag := s.tag
	f := &webWave{}
	f.a = devcloud.BootStandin(t, tag+"-web-a", "10.101.0.111", map[string]string{"role": "web"})
	f.b = devcloud.BootStandin(t, tag+"-web-b", "10.101.0.112", map[string]string{"role": "web"})
	f.oldIDs = []string{f.a.ID, f.b.ID}
	var err error
	if f.sub, err = devcloud.FindSubnet(ctx, s.oldN, devcloud.VLANSubnet); err != nil {
		t.Fatal(err)
	}
	lbResp, err := s.lb.CreateLoadBalancer(ctx, &lbaasv1.CreateLoadBalancerRequest{LoadBalancer: &lbaasv1.LoadBalancer{
		DisplayName: tag, Vip: &lbaasv1.Vip{SubnetId: f.sub.ID},
		Listeners: []*lbaasv1.Listener{{Protocol: "TCP", Port: 80, Pool: &lbaasv1.Pool{
			DisplayName: tag + "-pool", Protocol: "PROXYV2",
			Members:       []*lbaasv1.Member{{DisplayName: f.a.Name, Address: f.a.IP, Port: 8080}, {DisplayName: f.b.Name, Address: f.b.IP, Port: 8080}},
			HealthMonitor: &lbaasv1.HealthMonitor{Type: "TCP", DelaySeconds: 1, TimeoutSeconds: 1, MaxRetries: 1},
		}}},
	}})
	if err != nil {
		t.Fatalf("load balancer: %v", err)
	}
	f.lbName, f.vip = lbResp.GetLoadBalancer().GetName(), lbResp.GetLoadBalancer().GetVip().GetAddress()
	t.Cleanup(func() {
		_, _ = s.lb.DeleteLoadBalancer(context.Background(), &lbaasv1.DeleteLoadBalancerRequest{Name: f.lbName, AllowMissing: true})
	})
	// The new cloud's network for the replacements, 10.101.0.113-118 (tests keep
	// 10.101.0.100-149 to themselves).
	f.newNet = must(networks.Create(ctx, s.newN, networks.CreateOpts{Name: tag}).Extract())(t)
	t.Cleanup(func() {
		// What the run's replacements left (their servers and images) goes first.
		for _, id := range f.replacements {
			_ = servers.Delete(context.Background(), s.newC, id).ExtractErr()
		}
		for range 60 {
			pp, _ := ports.List(s.newN, ports.ListOpts{NetworkID: f.newNet.ID, DeviceOwner: "compute:nova"}).AllPages(context.Background())
			if l, _ := ports.ExtractPorts(pp); len(l) == 0 {
				break
			}
			time.Sleep(time.Second)
		}
		// Then any port still on the network (a replacement the record missed, an
		// interface a crash left), so that the network goes too: a test that leaves
		// one behind says so.
		var err error
		for range 30 {
			pp, _ := ports.List(s.newN, ports.ListOpts{NetworkID: f.newNet.ID}).AllPages(context.Background())
			l, _ := ports.ExtractPorts(pp)
			for _, p := range l {
				if p.DeviceOwner == "compute:nova" {
					_ = servers.Delete(context.Background(), s.newC, p.DeviceID).ExtractErr()
				} else if p.DeviceOwner != "network:dhcp" {
					_ = ports.Delete(context.Background(), s.newN, p.ID).ExtractErr()
				}
			}
			if err = networks.Delete(context.Background(), s.newN, f.newNet.ID).ExtractErr(); err == nil || gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
				return
			}
			time.Sleep(2 * time.Second)
		}
		t.Errorf("the test's network %s (%s) is left in the new cloud: %v", f.newNet.Name, f.newNet.ID, err)
	})
	must(subnets.Create(ctx, s.newN, subnets.CreateOpts{
		NetworkID: f.newNet.ID, Name: tag + "-v4", CIDR: "10.101.0.0/24", IPVersion: gophercloud.IPv4,
		AllocationPools: []subnets.AllocationPool{{Start: "10.101.0.113", End: "10.101.0.118"}},
	}).Extract())(t)

	// The inventory knows the servers (a sync) and has a plan.
	syncTo(t, s.inv, inventoryv1.SyncMode_SYNC_MODE_FULL)
	f.plan = must(s.inv.client.CreatePlan(ctx, &inventoryv1.CreatePlanRequest{Plan: &inventoryv1.Plan{
		Rules: []*inventoryv1.RoleRule{{NamePattern: "^" + tag + "-web-", Role: "web"}},
	}}))(t).GetPlan()
	for _, w := range f.plan.GetWaves() {
		if slices.Contains(w.GetRoles(), "web") {
			f.wave = w.GetWave()
		}
	}
	if f.wave == 0 {
		t.Fatalf("no wave has the web role: %v", f.plan.GetWaves())
	}
	return f
}

// TestWaveRunMovesAStatelessRoleWithoutAFailedRequest: wave 1 (two web servers
// behind an Octavia load balancer, a traffic meter running through its VIP the
// whole time) is aborted in the middle — everything is put back, nothing is left
// in either cloud, no request failed — then run again to the end: the load
// balancer sends to the new servers only, still without a failed request. Bad
// requests are refused naming the field or the state.
func TestWaveRunMovesAStatelessRoleWithoutAFailedRequest(t *testing.T) {
	tag := fmt.Sprintf("itest-run-%d", time.Now().UnixNano())
	s := newStack(t, tag, 1)
	ctx := t.Context()
	f := s.webWave(t)
	a, b, sub, newNet, lbName, vip, plan, wave := f.a, f.b, f.sub, f.newNet, f.lbName, f.vip, f.plan, f.wave
	var err error

	// Bad input, before the plan is accepted.
	run := &inventoryv1.Run{Wave: wave, Destination: "new", Networks: map[string]string{sub.NetworkID: newNet.ID},
		PreflightOverrideReason: "the test's own destination network is mapped in run.networks",
		Roles:                   map[string]*inventoryv1.RoleSettings{"web": {MaxSurge: 1, MinHealthy: 1, DrainSeconds: 2}}}
	_, err = s.runs.CreateRun(ctx, &inventoryv1.CreateRunRequest{Run: run})
	wantField(t, err, "run.wave", "not in an accepted plan")
	must(s.inv.client.AcceptPlan(ctx, &inventoryv1.AcceptPlanRequest{Name: plan.GetName()}))(t)
	bad := &inventoryv1.Run{Wave: wave, Destination: "nowhere"}
	_, err = s.runs.CreateRun(ctx, &inventoryv1.CreateRunRequest{Run: bad})
	wantField(t, err, "run.destination", "not a destination cloud")

	dry := must(s.runs.CreateRun(ctx, &inventoryv1.CreateRunRequest{Run: withDry(run)}))(t).GetRun()
	t.Logf("dry run:\n%s", describe(dry))
	for _, w := range dry.GetWorkloads() {
		if w.GetStrategy() != inventoryv1.Strategy_STRATEGY_STATELESS_LB || len(w.GetMembers()) != 1 || w.GetDestinationNetworkId() != newNet.ID {
			t.Fatalf("dry run: %s", describe(dry))
		}
	}
	if len(dry.GetWorkloads()) != 2 {
		t.Fatalf("dry run has %d workloads, want 2: %s", len(dry.GetWorkloads()), describe(dry))
	}
	if runs := must(s.runs.ListRuns(ctx, &inventoryv1.ListRunsRequest{}))(t).GetRuns(); len(runs) != 0 {
		t.Fatalf("a dry run recorded %d runs", len(runs))
	}

	meterBin := serviceBinary(t, "hikkoshi-devcloud")
	oldIDs := f.oldIDs
	before := s.state(t, oldIDs, newNet.ID, lbName, nil)
	t.Logf("before: %+v", before)

	// 1. An abort in the middle: web-a has moved, web-b is being converted.
	m := devcloud.StartMeter(t, meterBin, "--addr", vip+":80", "--rate", "20")
	first := must(s.runs.CreateRun(ctx, &inventoryv1.CreateRunRequest{Run: run, RequestId: tag + "-first"}))(t).GetRun()
	_, err = s.runs.CreateRun(ctx, &inventoryv1.CreateRunRequest{Run: run, RequestId: tag + "-second"})
	wantCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(err.Error(), first.GetName()) {
		t.Fatalf("a second run of the wave: %v", err)
	}
	again := must(s.runs.CreateRun(ctx, &inventoryv1.CreateRunRequest{Run: run, RequestId: tag + "-first"}))(t).GetRun()
	if again.GetName() != first.GetName() {
		t.Fatalf("the same request_id started %s, then %s", first.GetName(), again.GetName())
	}
	_, err = s.runs.ApproveStep(ctx, &inventoryv1.ApproveStepRequest{Name: first.GetName(), Workload: first.GetWorkloads()[0].GetWorkload()})
	wantCode(t, err, codes.FailedPrecondition)
	aborted := false
	end := watchRun(t, s.runs, first.GetName(), func(r *inventoryv1.Run) bool {
		if !aborted && len(r.GetWorkloads()) == 2 && r.GetWorkloads()[0].GetStep() == inventoryv1.RunStep_RUN_STEP_DONE &&
			r.GetWorkloads()[1].GetStep() >= inventoryv1.RunStep_RUN_STEP_CONVERT {
			aborted = true
			t.Logf("aborting with %s at %s", r.GetWorkloads()[1].GetDisplayName(), r.GetWorkloads()[1].GetStep())
			must(s.runs.AbortRun(ctx, &inventoryv1.AbortRunRequest{Name: r.GetName(), Reason: "the test aborts in the middle"}))(t)
		}
		return false
	})
	rep := m.Stop(t)
	firstEnd := end
	t.Logf("aborted run:\n%s", describe(end))
	t.Logf("meter during the aborted run: sent %d, answered %d, failed %d %v; by address %v", rep.Sent, rep.Answered, rep.Failed, rep.Failures, addrs(rep))
	if end.GetState() != inventoryv1.RunState_RUN_STATE_ABORTED {
		t.Fatalf("the run ended %s, want ABORTED", end.GetState())
	}
	if rep.Failed != 0 || rep.Answered == 0 {
		t.Fatalf("%d of %d requests failed during the aborted run: %v %v", rep.Failed, rep.Sent, rep.Failures, rep.Errors)
	}
	var jobs []string
	for _, w := range end.GetWorkloads() {
		if w.GetJob() != "" {
			jobs = append(jobs, w.GetJob())
		}
		wl := must(s.inv.client.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{Name: w.GetWorkload()}))(t).GetWorkload()
		if wl.GetState() != inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED {
			t.Fatalf("%s is %s after the abort, want planned", w.GetDisplayName(), wl.GetState())
		}
	}
	after := s.state(t, oldIDs, newNet.ID, lbName, jobs)
	t.Logf("after the abort: %+v", after)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("the abort left the clouds changed:\nbefore %+v\nafter  %+v", before, after)
	}

	// 2. The whole wave: the replacements take over, the old servers stop.
	m = devcloud.StartMeter(t, meterBin, "--addr", vip+":80", "--rate", "20")
	second := must(s.runs.CreateRun(ctx, &inventoryv1.CreateRunRequest{Run: run, RequestId: tag + "-again"}))(t).GetRun()
	end = watchRun(t, s.runs, second.GetName(), nil)
	rep = m.Stop(t)
	t.Logf("run:\n%s", describe(end))
	t.Logf("meter during the run: sent %d, answered %d, failed %d %v; by address %v", rep.Sent, rep.Answered, rep.Failed, rep.Failures, addrs(rep))
	if end.GetState() != inventoryv1.RunState_RUN_STATE_DONE {
		t.Fatalf("the run ended %s, want DONE", end.GetState())
	}
	if rep.Failed != 0 {
		t.Fatalf("%d of %d requests failed during the run: %v %v", rep.Failed, rep.Sent, rep.Failures, rep.Errors)
	}
	var newAddrs []string
	for _, w := range end.GetWorkloads() {
		if w.GetStep() != inventoryv1.RunStep_RUN_STEP_DONE || w.GetNewAddress() == "" {
			t.Fatalf("%s did not move", w.GetDisplayName())
		}
		newAddrs = append(newAddrs, w.GetNewAddress()+":8080")
	}
	// Answers came from the old servers at the start and from the new ones only at
	// the end.
	oldLast, newFirst := int64(0), int64(1<<62)
	for addr, sv := range rep.Addresses {
		if slices.Contains(newAddrs, addr) {
			newFirst = min(newFirst, sv.FirstSentUnixMs)
		} else if addr == a.IP+":8080" || addr == b.IP+":8080" {
			oldLast = max(oldLast, sv.LastSentUnixMs)
		}
	}
	if rep.Addresses[a.IP+":8080"] == nil || rep.Addresses[newAddrs[0]] == nil || rep.Addresses[newAddrs[1]] == nil {
		t.Fatalf("answers by address %v: want the old servers' and the new ones'", addrs(rep))
	}
	final := devcloud.Meter(t, meterBin, "--addr", vip+":80", "--rate", "20", "--for", "2s")
	for addr := range final.Addresses {
		if !slices.Contains(newAddrs, addr) {
			t.Fatalf("after the run %s still answers through the load balancer: %v", addr, addrs(final))
		}
	}
	for _, id := range oldIDs {
		if srv := must(servers.Get(ctx, s.oldC, id).Extract())(t); srv.Status != "SHUTOFF" {
			t.Fatalf("old server %s is %s, want SHUTOFF (kept until decommissioned)", id, srv.Status)
		}
	}
	t.Logf("old servers answered until %s, new ones from %s", time.UnixMilli(oldLast).Format("15:04:05.000"), time.UnixMilli(newFirst).Format("15:04:05.000"))
	// One converter job per workload and run: nothing was done twice.
	all := must(s.converter.ListJobs(ctx, &converterv1.ListJobsRequest{PageSize: 100}))(t).GetJobs()
	perWorkload := map[string]int{}
	for _, j := range all {
		perWorkload[j.GetWorkload()]++
	}
	firstJobs := map[string]int{}
	for _, w := range firstEnd.GetWorkloads() {
		if w.GetJob() != "" {
			firstJobs[w.GetWorkload()] = 1
		}
	}
	for _, w := range end.GetWorkloads() {
		if n, want := perWorkload[w.GetWorkload()], firstJobs[w.GetWorkload()]+1; n != want {
			t.Fatalf("%s has %d converter jobs over the two runs, want %d (one per run that reached its conversion)", w.GetDisplayName(), n, want)
		}
	}

	// The operator decommissions: the old servers are deleted, the workloads done.
	_, err = s.runs.DecommissionRun(ctx, &inventoryv1.DecommissionRunRequest{Name: end.GetName(), Workloads: []string{"workloads/nope"}})
	wantField(t, err, "workloads[0]", "not in run")
	dec := must(s.runs.DecommissionRun(ctx, &inventoryv1.DecommissionRunRequest{Name: end.GetName(),
		Workloads: []string{end.GetWorkloads()[0].GetWorkload(), end.GetWorkloads()[1].GetWorkload()}}))(t)
	t.Logf("decommissioned: %v", dec.GetDecommissioned())
	if _, err := servers.Get(ctx, s.oldC, end.GetWorkloads()[0].GetSourceServerId()).Extract(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Fatalf("the decommissioned old server is still there: %v", err)
	}
	// The replacements and their images are the test's to delete.
	for _, w := range end.GetWorkloads() {
		f.replacements = append(f.replacements, w.GetNewServerId())
		if j, err := s.converter.GetJob(ctx, &converterv1.GetJobRequest{Name: w.GetJob()}); err == nil {
			t.Cleanup(func() {
				_ = images.Delete(context.Background(), s.newI, j.GetJob().GetCreated().GetImageId()).ExtractErr()
			})
		}
	}
	_, err = s.runs.PauseRun(ctx, &inventoryv1.PauseRunRequest{Name: end.GetName()})
	wantCode(t, err, codes.FailedPrecondition)
	s.sweep(t)
}

func withDry(r *inventoryv1.Run) *inventoryv1.Run {
	c := proto.Clone(r).(*inventoryv1.Run)
	c.DryRun = true
	return c
}

// addrs says how many answers came from each address, in the order they began.
func addrs(r *meter.Report) string {
	var keys []string
	for k := range r.Addresses {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return r.Addresses[keys[i]].FirstSentUnixMs < r.Addresses[keys[j]].FirstSentUnixMs
	})
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s=%d", k, r.Addresses[k].Count))
	}
	return strings.Join(out, " ")
}

func wantField(t *testing.T, err error, field, text string) {
	t.Helper()
	wantCode(t, err, codes.InvalidArgument)
	if v := apierr.FieldViolations(err)[field]; !strings.Contains(v, text) {
		t.Fatalf("want a violation of %s saying %q, got %v", field, text, err)
	}
}
