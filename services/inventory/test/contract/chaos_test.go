package contract

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// faults are what a chaos round does at a random step of a wave: a kill -9 of a
// Hikkoshi process (the runner that leads, a converter worker, lbaas), or a restart
// of an OpenStack API process of the dev cloud.
var faults = []string{"runner", "converter", "lbaas", "octavia-api", "nova-api-old", "glance-new", "neutron-server"}

// processFaults are the faults that touch only the test's own processes: the tests
// of other packages, running beside this one on the same dev cloud, would see an
// API restart too, so the OpenStack restarts run only when asked for
// (HIKKOSHI_CHAOS_API_RESTARTS=1, as scripts/chaos.sh does).
var processFaults = []string{"runner", "converter", "lbaas"}

// TestWaveRunSurvivesChaos runs a wave of two web servers behind a load balancer
// while, at a random step of a random workload (seeded, printed), one fault
// strikes. Every round must end with the wave done, no request of the meter
// through the load balancer failed, and nothing done twice or left behind: one
// converter job per workload, one replacement server and port each, the pool's
// members exactly the replacements, no image pieces. HIKKOSHI_CHAOS_ROUNDS sets the
// rounds (default 2; scripts/chaos.sh runs 20, each kind of fault in turn),
// HIKKOSHI_CHAOS_SEED the seed, HIKKOSHI_CHAOS_API_RESTARTS=1 adds the API restarts.
func TestWaveRunSurvivesChaos(t *testing.T) {
	rounds := 2
	if n, err := strconv.Atoi(os.Getenv("HIKKOSHI_CHAOS_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	seed := uint64(time.Now().UnixNano())
	if n, err := strconv.ParseUint(os.Getenv("HIKKOSHI_CHAOS_SEED"), 10, 64); err == nil {
		seed = n
	}
	t.Logf("chaos: %d rounds, seed %d (HIKKOSHI_CHAOS_SEED=%d repeats them)", rounds, seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1|1))
	kinds := processFaults
	if os.Getenv("HIKKOSHI_CHAOS_API_RESTARTS") == "1" {
		kinds = faults
	}
	order := rng.Perm(len(kinds))
	var results []string
	for r := range rounds {
		fault := kinds[order[r%len(kinds)]]
		steps := statelessStepsForChaos()
		target, step := rng.IntN(2), steps[rng.IntN(len(steps))]
		name := fmt.Sprintf("round-%d-%s-at-%d-%s", r+1, fault, target, strings.ToLower(strings.TrimPrefix(step.String(), "RUN_STEP_")))
		ok := t.Run(name, func(t *testing.T) {
			results = append(results, chaosRound(t, fault, target, step))
		})
		if !ok {
			results = append(results, name+": FAILED")
			break
		}
	}
	t.Logf("chaos summary (seed %d):\n  %s", seed, strings.Join(results, "\n  "))
}

func statelessStepsForChaos() []inventoryv1.RunStep {
	return []inventoryv1.RunStep{
		inventoryv1.RunStep_RUN_STEP_CONVERT, inventoryv1.RunStep_RUN_STEP_JOIN, inventoryv1.RunStep_RUN_STEP_DRAIN,
		inventoryv1.RunStep_RUN_STEP_LEAVE, inventoryv1.RunStep_RUN_STEP_STOP_OLD,
	}
}

// chaosRound runs one wave with one fault and checks what it left.
func chaosRound(t *testing.T, fault string, target int, step inventoryv1.RunStep) string {
	tag := fmt.Sprintf("itest-run-%d", time.Now().UnixNano())
	s := newStack(t, tag, 2)
	ctx := t.Context()
	f := s.webWave(t)
	must(s.inv.client.AcceptPlan(ctx, &inventoryv1.AcceptPlanRequest{Name: f.plan.GetName()}))(t)
	run := &inventoryv1.Run{Wave: f.wave, Destination: "new", Networks: map[string]string{f.sub.NetworkID: f.newNet.ID},
		PreflightOverrideReason: "the test's own destination network is mapped in run.networks",
		Roles:                   map[string]*inventoryv1.RoleSettings{"web": {MaxSurge: 1, MinHealthy: 1, DrainSeconds: 2}}}
	m := devcloud.StartMeter(t, serviceBinary(t, "hikkoshi-devcloud"), "--addr", f.vip+":80", "--rate", "20")
	created := must(s.runs.CreateRun(ctx, &inventoryv1.CreateRunRequest{Run: run, RequestId: tag}))(t).GetRun()
	struck, what := false, ""
	done := make(chan string, 1)
	end := watchRun(t, s.runs, created.GetName(), func(r *inventoryv1.Run) bool {
		if struck || len(r.GetWorkloads()) <= target {
			return false
		}
		w := r.GetWorkloads()[target]
		if w.GetStep() != step || w.GetStepState() != inventoryv1.StepState_STEP_STATE_RUNNING {
			return false
		}
		struck = true
		t0 := time.Now()
		switch fault {
		case "runner":
			what = "killed the leading runner " + s.kill(t, "inventory", r.GetRunner())
			s.start(t, "inventory")
			done <- what
		case "converter", "lbaas":
			what = "killed " + fault + " " + s.kill(t, fault, "")
			s.start(t, fault)
			done <- what
		default:
			what = "restarted " + fault
			go func() {
				out, err := exec.Command(devcloud.Script(), "restart", fault).CombinedOutput()
				if err != nil {
					done <- fmt.Sprintf("restart %s: %v\n%s", fault, err, out)
					return
				}
				done <- fmt.Sprintf("restarted %s in %s", fault, time.Since(t0).Round(100*time.Millisecond))
			}()
		}
		t.Logf("fault: %s at %s's %s", what, w.GetDisplayName(), step)
		return false
	})
	rep := m.Stop(t)
	if struck {
		what = <-done
	}
	t.Logf("run:\n%s", describe(end))
	t.Logf("meter: sent %d, answered %d, failed %d %v; by address %s", rep.Sent, rep.Answered, rep.Failed, rep.Failures, addrs(rep))
	for _, w := range end.GetWorkloads() {
		f.replacements = append(f.replacements, w.GetNewServerId())
	}
	if !struck {
		t.Fatalf("the run never reached workload %d's %s: no fault struck", target, step)
	}
	if end.GetState() != inventoryv1.RunState_RUN_STATE_DONE {
		t.Fatalf("after %s the run ended %s, want DONE", what, end.GetState())
	}
	if rep.Failed != 0 {
		t.Fatalf("after %s, %d of %d requests failed: %v %v", what, rep.Failed, rep.Sent, rep.Failures, rep.Errors)
	}
	s.checkNothingTwice(t, f, end)
	return fmt.Sprintf("%s at workload %d's %s: done, %d requests, 0 failed", what, target, strings.ToLower(strings.TrimPrefix(step.String(), "RUN_STEP_")), rep.Sent)
}

// checkNothingTwice counts what the clouds have against what the run recorded:
// one converter job per workload, one replacement server and port each, the pool's
// members exactly the replacements, no image left in pieces.
func (s *stack) checkNothingTwice(t *testing.T, f *webWave, end *inventoryv1.Run) {
	t.Helper()
	ctx := t.Context()
	jobs := must(s.converter.ListJobs(ctx, &converterv1.ListJobsRequest{PageSize: 100}))(t).GetJobs()
	perWorkload := map[string]int{}
	for _, j := range jobs {
		perWorkload[j.GetWorkload()]++
		t.Cleanup(func() { _ = images.Delete(context.Background(), s.newI, j.GetCreated().GetImageId()).ExtractErr() })
	}
	var newAddrs, recorded []string
	for _, w := range end.GetWorkloads() {
		if n := perWorkload[w.GetWorkload()]; n != 1 {
			t.Fatalf("%s has %d converter jobs, want 1", w.GetDisplayName(), n)
		}
		newAddrs = append(newAddrs, fmt.Sprintf("%s:8080", w.GetNewAddress()))
		recorded = append(recorded, w.GetNewServerId())
	}
	pages := must(servers.List(s.newC, servers.ListOpts{Name: "^" + s.tag}).AllPages(ctx))(t)
	list := must(servers.ExtractServers(pages))(t)
	var found []string
	for _, srv := range list {
		found = append(found, srv.ID)
	}
	slices.Sort(found)
	slices.Sort(recorded)
	if !slices.Equal(found, recorded) {
		t.Fatalf("the new cloud has servers %v, the run recorded %v", found, recorded)
	}
	pp := must(ports.List(s.newN, ports.ListOpts{NetworkID: f.newNet.ID}).AllPages(ctx))(t)
	pl := must(ports.ExtractPorts(pp))(t)
	n := 0
	for _, p := range pl {
		if p.DeviceOwner != "network:dhcp" {
			n++
		}
	}
	if n != len(end.GetWorkloads()) {
		t.Fatalf("the replacements' network has %d ports, want %d", n, len(end.GetWorkloads()))
	}
	lb := must(s.lb.GetLoadBalancer(ctx, &lbaasv1.GetLoadBalancerRequest{Name: f.lbName}))(t)
	var members []string
	for _, l := range lb.GetLoadBalancer().GetListeners() {
		for _, m := range l.GetPool().GetMembers() {
			members = append(members, fmt.Sprintf("%s:%d", m.GetAddress(), m.GetPort()))
		}
	}
	slices.Sort(members)
	slices.Sort(newAddrs)
	if !slices.Equal(members, newAddrs) {
		t.Fatalf("the pool's members are %v, want exactly the replacements %v", members, newAddrs)
	}
	ip := must(images.List(s.newI, images.ListOpts{}).AllPages(ctx))(t)
	il := must(images.ExtractImages(ip))(t)
	for _, img := range il {
		for _, j := range jobs {
			if id := strings.TrimPrefix(j.GetName(), "jobs/"); strings.Contains(img.Name, id) && strings.Contains(img.Name, ".part-") {
				t.Fatalf("image piece %s of job %s is left", img.Name, id)
			}
		}
	}
	t.Logf("counted: %d jobs, servers %v, %d ports, members %v", len(jobs), found, n, members)
	// The old servers go with their snapshots (the replacements with the network).
	must(s.runs.DecommissionRun(ctx, &inventoryv1.DecommissionRunRequest{Name: end.GetName(),
		Workloads: []string{end.GetWorkloads()[0].GetWorkload(), end.GetWorkloads()[1].GetWorkload()}}))(t)
}
