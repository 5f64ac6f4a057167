package runner

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Steps of each strategy, in order.
var (
	statelessSteps = []inventoryv1.RunStep{
		inventoryv1.RunStep_RUN_STEP_CONVERT, inventoryv1.RunStep_RUN_STEP_JOIN, inventoryv1.RunStep_RUN_STEP_DRAIN,
		inventoryv1.RunStep_RUN_STEP_LEAVE, inventoryv1.RunStep_RUN_STEP_STOP_OLD,
	}
	addressKeptSteps = []inventoryv1.RunStep{
		inventoryv1.RunStep_RUN_STEP_APPROVE, inventoryv1.RunStep_RUN_STEP_STOP, inventoryv1.RunStep_RUN_STEP_MOVE_ADDRESS,
		inventoryv1.RunStep_RUN_STEP_CONVERT, inventoryv1.RunStep_RUN_STEP_JOIN,
	}
	// A stateful server copied warm: its disk's pre-copy before the operator's go
	// and the stop; the convert step is the cut-over.
	warmAddressKeptSteps = []inventoryv1.RunStep{
		inventoryv1.RunStep_RUN_STEP_PRECOPY, inventoryv1.RunStep_RUN_STEP_APPROVE, inventoryv1.RunStep_RUN_STEP_STOP,
		inventoryv1.RunStep_RUN_STEP_MOVE_ADDRESS, inventoryv1.RunStep_RUN_STEP_CONVERT, inventoryv1.RunStep_RUN_STEP_JOIN,
	}
	// A physical server is not stopped by the run: the operator's go says it is off
	// (or in its live Linux with the P2V agent).
	physicalSteps = []inventoryv1.RunStep{
		inventoryv1.RunStep_RUN_STEP_APPROVE, inventoryv1.RunStep_RUN_STEP_MOVE_ADDRESS,
		inventoryv1.RunStep_RUN_STEP_CONVERT, inventoryv1.RunStep_RUN_STEP_JOIN,
	}
)

// acceptedWave reports whether an accepted plan holds wave.
func acceptedWave(ctx context.Context, c *clientv3.Client, wave int32) (bool, error) {
	resp, err := c.Get(ctx, keys.Plan(""), clientv3.WithPrefix())
	if err != nil {
		return false, apierr.Etcd("read plans", err)
	}
	for _, kv := range resp.Kvs {
		p := &inventoryv1.Plan{}
		if proto.Unmarshal(kv.Value, p) != nil || p.GetState() != inventoryv1.PlanState_PLAN_STATE_ACCEPTED {
			continue
		}
		for _, w := range p.GetWaves() {
			if w.GetWave() == wave {
				return true, nil
			}
		}
	}
	return false, nil
}

// plan fills r.Workloads: each workload of the wave with the strategy its facts
// and role call for, found members and the destination network, in the order they
// move (stateless roles first, then by role and name).
func (e *Engine) plan(ctx context.Context, r *inventoryv1.Run) error {
	ok, err := acceptedWave(ctx, e.Etcd, r.GetWave())
	if err != nil {
		return err
	}
	if !ok {
		return apierr.InvalidArgument("run.wave", "wave %d is not in an accepted plan: CreatePlan and AcceptPlan first", r.GetWave())
	}
	var ws []*inventoryv1.Workload
	if _, err := e.Workloads.Scan(ctx, func(w *inventoryv1.Workload, _ int64) error {
		if w.GetWave() == r.GetWave() && !w.GetVanished() {
			ws = append(ws, w)
		}
		return nil
	}); err != nil {
		return err
	}
	if len(ws) == 0 {
		return apierr.InvalidArgument("run.wave", "no workload is in wave %d", r.GetWave())
	}
	members, err := e.findMembers(ctx)
	if err != nil {
		return err
	}
	bridges, err := e.findBridges(ctx)
	if err != nil {
		return err
	}
	sort.SliceStable(ws, func(i, j int) bool {
		a, b := ws[i], ws[j]
		if a.GetStateful() != b.GetStateful() {
			return !a.GetStateful()
		}
		if a.GetRole() != b.GetRole() {
			return a.GetRole() < b.GetRole()
		}
		return name(a) < name(b)
	})
	r.Workloads = nil
	for _, w := range ws {
		r.Workloads = append(r.Workloads, e.planOne(r, w, members, bridges))
	}
	return nil
}

func name(w *inventoryv1.Workload) string {
	if n := w.GetFacts().GetInstance().GetName(); n != "" {
		return n
	}
	if w.GetDisplayName() != "" {
		return w.GetDisplayName()
	}
	if h := w.GetPhysical().GetHostname(); h != "" {
		return h
	}
	return strings.TrimPrefix(w.GetName(), "workloads/")
}

func (e *Engine) planOne(r *inventoryv1.Run, w *inventoryv1.Workload, members map[string][]*inventoryv1.RunMember, bridges map[string]*netbridgev1.Bridge) *inventoryv1.RunWorkload {
	rw := &inventoryv1.RunWorkload{Workload: w.GetName(), DisplayName: name(w), Role: w.GetRole(), RequestIds: map[string]string{}}
	unsupported := func(format string, args ...any) *inventoryv1.RunWorkload {
		rw.Strategy, rw.Error = inventoryv1.Strategy_STRATEGY_UNSUPPORTED, fmt.Sprintf(format, args...)
		return rw
	}
	switch w.GetState() {
	case inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED:
	case inventoryv1.WorkloadState_WORKLOAD_STATE_CUT_OVER, inventoryv1.WorkloadState_WORKLOAD_STATE_DONE:
		return unsupported("already moved (%s)", stateWord(w.GetState()))
	default:
		return unsupported("it is %s, not planned: plan it again first", stateWord(w.GetState()))
	}
	if ph := w.GetPhysical(); ph != nil {
		return e.planPhysical(rw, ph, members, bridges, unsupported)
	}
	f := w.GetFacts().GetInstance()
	if f == nil {
		return unsupported("no facts about it: sync its cloud (CreateSync) first")
	}
	rw.SourceServerId = w.GetInstance().GetServerId()
	if len(f.GetPorts()) != 1 || len(f.GetPorts()[0].GetFixedIps()) == 0 {
		return unsupported("it has %d NICs: the runner moves servers with one NIC and an address (a converter job with destination.nics moves the others)", len(f.GetPorts()))
	}
	if f.GetStatus() != "ACTIVE" {
		return unsupported("it is %s: the runner moves running servers (a converter job with destination.stopped moves a stopped one cold)", f.GetStatus())
	}
	p := f.GetPorts()[0]
	rw.SourceAddress, rw.SourceNetworkId = p.GetFixedIps()[0].GetIpAddress(), p.GetNetworkId()
	rw.Members = members[rw.SourceAddress]
	b := bridges[rw.SourceNetworkId]
	if w.GetStateful() || len(rw.Members) == 0 {
		if b == nil {
			return unsupported("its address %s stays with it, which needs an applied shared-L2 netbridge bridge of network %s: there is none", rw.SourceAddress, rw.SourceNetworkId)
		}
		rw.Strategy, rw.Steps, rw.Bridge = inventoryv1.Strategy_STRATEGY_STATEFUL_ADDRESS_KEPT, addressKeptSteps, b.GetName()
		if r.GetWarmStateful() && !bootsFromVolume(f) {
			// The job's pre-copy boots nothing; its destination network is the
			// bridge's until the cut-over names the moved port. (A server booted
			// from a volume moves cold: a warm pre-copy copies an image-backed root
			// disk; attached volumes are copied after the stop either way.)
			rw.Steps, rw.DestinationNetworkId = warmAddressKeptSteps, bridgeNetwork(b)
		}
		return rw
	}
	dst := r.GetNetworks()[rw.SourceNetworkId]
	if dst == "" && b != nil {
		dst = bridgeNetwork(b)
	}
	if dst == "" {
		return unsupported("no destination network for network %s: map it in run.networks, or bridge it with netbridge", rw.SourceNetworkId)
	}
	rw.Strategy, rw.Steps, rw.DestinationNetworkId = inventoryv1.Strategy_STRATEGY_STATELESS_LB, statelessSteps, dst
	return rw
}

// planPhysical plans a physical server's move: its first address stays with it, so
// it must lie in the old subnet of an applied shared-L2 bridge.
func (e *Engine) planPhysical(rw *inventoryv1.RunWorkload, ph *inventoryv1.PhysicalSource, members map[string][]*inventoryv1.RunMember,
	bridges map[string]*netbridgev1.Bridge, unsupported func(string, ...any) *inventoryv1.RunWorkload) *inventoryv1.RunWorkload {
	p := ph.GetP2V()
	switch {
	case p == nil:
		return unsupported("a physical server without physical.p2v: say how the converter reads its disks (disk_path or agent_url) to move it")
	case p.GetDiskPath() == "" && p.GetAgentUrl() == "":
		return unsupported("physical.p2v gives neither disk_path nor agent_url: the converter cannot read its disks")
	case p.GetInspectOnly():
		return unsupported("physical.p2v.inspect_only is set: a dry run moves nothing")
	case ph.GetFlavor() == "":
		return unsupported("a physical server without physical.flavor: name the destination flavor it boots as")
	case len(ph.GetAddresses()) == 0:
		return unsupported("a physical server without physical.addresses: its address is what moves with it")
	}
	addr, err := netip.ParseAddr(ph.GetAddresses()[0])
	if err != nil {
		return unsupported("physical.addresses[0] %q is not an IP address", ph.GetAddresses()[0])
	}
	rw.SourceAddress = addr.String()
	rw.Members = members[rw.SourceAddress]
	for _, b := range bridges {
		if pfx, err := netip.ParsePrefix(b.GetSplit().GetCidr()); err == nil && pfx.Contains(addr) {
			rw.SourceNetworkId = b.GetOld().GetNetworkId()
			rw.Strategy, rw.Steps, rw.Bridge = inventoryv1.Strategy_STRATEGY_PHYSICAL, physicalSteps, b.GetName()
			return rw
		}
	}
	return unsupported("its address %s stays with it, which needs an applied shared-L2 netbridge bridge whose old subnet holds it: there is none", rw.SourceAddress)
}

func stateWord(s inventoryv1.WorkloadState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "WORKLOAD_STATE_"))
}

// findMembers lists every load balancer of the lbaas service and returns their
// pool members by address.
func (e *Engine) findMembers(ctx context.Context) (map[string][]*inventoryv1.RunMember, error) {
	out := map[string][]*inventoryv1.RunMember{}
	if e.Deps.LB == nil {
		return out, nil
	}
	token := ""
	for {
		resp, err := e.Deps.LB.ListLoadBalancers(ctx, &lbaasv1.ListLoadBalancersRequest{PageSize: 500, PageToken: token})
		if err != nil {
			return nil, apierr.New(codes.Unavailable, "LBAAS_UNAVAILABLE", "list the load balancers (lbaas): %v", err)
		}
		for _, sum := range resp.GetLoadBalancers() {
			// The list has summaries: each tree is read whole.
			got, err := e.Deps.LB.GetLoadBalancer(ctx, &lbaasv1.GetLoadBalancerRequest{Name: sum.GetName()})
			if err != nil {
				return nil, apierr.New(codes.Unavailable, "LBAAS_UNAVAILABLE", "read %s (lbaas): %v", sum.GetName(), err)
			}
			lb := got.GetLoadBalancer()
			for _, l := range lb.GetListeners() {
				pool := l.GetPool()
				for _, m := range pool.GetMembers() {
					weight := int32(1)
					if m.Weight != nil {
						weight = m.GetWeight()
					}
					out[m.GetAddress()] = append(out[m.GetAddress()], &inventoryv1.RunMember{
						LoadBalancer: lb.GetName(), Pool: pool.GetId(), Address: m.GetAddress(), Port: m.GetPort(),
						Weight: weight, DisplayName: m.GetDisplayName(),
					})
				}
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}

// findBridges returns netbridge's applied shared-L2 bridges by their old network.
func (e *Engine) findBridges(ctx context.Context) (map[string]*netbridgev1.Bridge, error) {
	out := map[string]*netbridgev1.Bridge{}
	if e.Deps.Netbridge == nil {
		return out, nil
	}
	token := ""
	for {
		resp, err := e.Deps.Netbridge.ListBridges(ctx, &netbridgev1.ListBridgesRequest{PageSize: 500, PageToken: token})
		if err != nil {
			return nil, apierr.New(codes.Unavailable, "NETBRIDGE_UNAVAILABLE", "list the bridges (netbridge): %v", err)
		}
		for _, b := range resp.GetBridges() {
			if b.GetState() == netbridgev1.BridgeState_BRIDGE_STATE_APPLIED && b.GetMode() == netbridgev1.BridgeMode_BRIDGE_MODE_SHARED_L2 {
				out[b.GetOld().GetNetworkId()] = b
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}

// bridgeNetwork is the bridge's network in the new cloud.
func bridgeNetwork(b *netbridgev1.Bridge) string {
	for _, r := range b.GetResources() {
		if r.GetSide() == "new" && r.GetKind() == "network" {
			return r.GetId()
		}
	}
	return ""
}

// bootsFromVolume reports whether an instance's root disk is a Cinder volume.
func bootsFromVolume(f *inventoryv1.InstanceFacts) bool {
	return slices.ContainsFunc(f.GetVolumes(), (*inventoryv1.VolumeFacts).GetBoot)
}
