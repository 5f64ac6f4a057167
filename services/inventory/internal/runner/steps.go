package runner

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
)

func stepWord(s inventoryv1.RunStep) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "RUN_STEP_"))
}

func strategyWord(s inventoryv1.Strategy) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(s.String(), "STRATEGY_"), "_", "-"))
}

// healthCheck is the probe of w's replacement.
func healthCheck(r *inventoryv1.Run, w *inventoryv1.RunWorkload) string {
	if r.GetHealthCheck() != "" {
		return r.GetHealthCheck()
	}
	if len(w.GetMembers()) > 0 {
		return fmt.Sprintf("tcp:%d", w.GetMembers()[0].GetPort())
	}
	return ""
}

// step does step st of workload i (its record says RUNNING already). Every call
// is idempotent or looked up first, so a runner that takes over repeats it safely.
func (e *Engine) step(ctx context.Context, id string, i int, r *inventoryv1.Run, w *inventoryv1.RunWorkload, st inventoryv1.RunStep) error {
	stateful := w.GetStrategy() != inventoryv1.Strategy_STRATEGY_STATELESS_LB // its address moves with it
	switch st {
	case inventoryv1.RunStep_RUN_STEP_APPROVE:
		return e.approve(ctx, id, i, r)
	case inventoryv1.RunStep_RUN_STEP_STOP:
		return e.stopOld(ctx, id, i, r, w, true)
	case inventoryv1.RunStep_RUN_STEP_MOVE_ADDRESS:
		if w.GetStrategy() == inventoryv1.Strategy_STRATEGY_PHYSICAL && w.GetStoppedTime() == nil {
			// The operator's go: the server is off (or in its live Linux) from now.
			if _, err := e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) { w.StoppedTime = timestamppb.Now() }); err != nil {
				return err
			}
		}
		resp, err := e.Deps.Netbridge.MoveAddress(ctx, &netbridgev1.MoveAddressRequest{Bridge: w.GetBridge(), IpAddress: w.GetSourceAddress(), KeepMac: true})
		if err != nil {
			return fmt.Errorf("netbridge MoveAddress %s: %w", w.GetSourceAddress(), err)
		}
		_, err = e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
			w.MovedPortId = resp.GetNewPortId()
			event(w, "address %s moved to port %s of the new cloud", w.GetSourceAddress(), resp.GetNewPortId())
		})
		return err
	case inventoryv1.RunStep_RUN_STEP_PRECOPY:
		return e.precopy(ctx, id, i, r, w)
	case inventoryv1.RunStep_RUN_STEP_CONVERT:
		return e.convert(ctx, id, i, r, w)
	case inventoryv1.RunStep_RUN_STEP_JOIN:
		addr := w.GetNewAddress()
		for _, m := range w.GetMembers() {
			if !stateful {
				if _, err := e.Deps.LB.UpdateLoadBalancer(ctx, &lbaasv1.UpdateLoadBalancerRequest{Name: m.GetLoadBalancer(), MemberChanges: []*lbaasv1.MemberChange{{
					Pool: m.GetPool(), Change: &lbaasv1.MemberChange_Add{Add: &lbaasv1.Member{
						DisplayName: w.GetDisplayName() + "-new", Address: addr, Port: m.GetPort(), Weight: &m.Weight,
					}},
				}}}); err != nil {
					return fmt.Errorf("add %s:%d to pool %s: %w", addr, m.GetPort(), m.GetPool(), err)
				}
			} else {
				addr = m.GetAddress()
			}
			t0 := time.Now()
			if err := e.waitMember(ctx, m, addr, m.GetPort()); err != nil {
				return err
			}
			if _, err := e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
				w.Gates = append(w.Gates, fmt.Sprintf("member %s:%d of %s healthy in Octavia after %s", addr, m.GetPort(), m.GetLoadBalancer(), time.Since(t0).Round(100*time.Millisecond)))
			}); err != nil {
				return err
			}
		}
		return nil
	case inventoryv1.RunStep_RUN_STEP_DRAIN:
		settings := r.GetRoles()[w.GetRole()]
		for _, m := range w.GetMembers() {
			if err := e.waitHealthy(ctx, m, max(1, int(settings.GetMinHealthy()))); err != nil {
				return err
			}
			if _, err := e.Deps.LB.UpdateLoadBalancer(ctx, &lbaasv1.UpdateLoadBalancerRequest{Name: m.GetLoadBalancer(), MemberChanges: []*lbaasv1.MemberChange{{
				Pool: m.GetPool(), Change: &lbaasv1.MemberChange_Drain{Drain: &lbaasv1.MemberRef{Address: m.GetAddress(), Port: m.GetPort()}},
			}}}); err != nil {
				return fmt.Errorf("drain %s:%d: %w", m.GetAddress(), m.GetPort(), err)
			}
		}
		d := time.Duration(settings.GetDrainSeconds()) * time.Second
		if d <= 0 {
			d = 5 * time.Second
		}
		_, _ = e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) { event(w, "old member drained; its connections get %s", d) })
		sleep(ctx, d)
		return ctx.Err()
	case inventoryv1.RunStep_RUN_STEP_LEAVE:
		for _, m := range w.GetMembers() {
			if _, err := e.Deps.LB.UpdateLoadBalancer(ctx, &lbaasv1.UpdateLoadBalancerRequest{Name: m.GetLoadBalancer(), MemberChanges: []*lbaasv1.MemberChange{{
				Pool: m.GetPool(), Change: &lbaasv1.MemberChange_Remove{Remove: &lbaasv1.MemberRef{Address: m.GetAddress(), Port: m.GetPort()}},
			}}}); err != nil {
				return fmt.Errorf("remove %s:%d: %w", m.GetAddress(), m.GetPort(), err)
			}
		}
		return nil
	case inventoryv1.RunStep_RUN_STEP_STOP_OLD:
		return e.stopOld(ctx, id, i, r, w, false)
	}
	return fmt.Errorf("unknown step %s", st)
}

// approve waits until the operator approves workload i (or the run approves every
// stateful workload).
func (e *Engine) approve(ctx context.Context, id string, i int, r *inventoryv1.Run) error {
	if r.GetApproveStateful() {
		_, err := e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
			w.Approved = true
			event(w, "approved by the run (approve_stateful)")
		})
		return err
	}
	for {
		cur, rev, err := e.Store.Get(ctx, id)
		if err != nil {
			return err
		}
		w := cur.GetWorkloads()[i]
		if w.GetApproved() {
			return nil
		}
		if w.GetStepState() != inventoryv1.StepState_STEP_STATE_WAITING {
			if _, err := e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
				w.StepState = inventoryv1.StepState_STEP_STATE_WAITING
				event(w, "waiting for the operator's ApproveStep")
			}); err != nil {
				return err
			}
			continue
		}
		e.waitChange(ctx, id, rev)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// compute returns Nova of the workload's source cloud.
func (e *Engine) compute(ctx context.Context, w *inventoryv1.RunWorkload) (*gophercloud.ServiceClient, error) {
	wl, err := e.Workloads.Get(ctx, trimWorkload(w.GetWorkload()))
	if err != nil {
		return nil, err
	}
	return e.Deps.Compute(ctx, wl.GetInstance().GetCloud())
}

// stopOld stops the old server (a state check first) and waits for SHUTOFF.
func (e *Engine) stopOld(ctx context.Context, id string, i int, r *inventoryv1.Run, w *inventoryv1.RunWorkload, downtime bool) error {
	cc, err := e.compute(ctx, w)
	if err != nil {
		return fmt.Errorf("source cloud: %w", err)
	}
	s, err := servers.Get(ctx, cc, w.GetSourceServerId()).Extract()
	if err != nil {
		return fmt.Errorf("old server %s: %w", w.GetSourceServerId(), err)
	}
	if s.Status == "ACTIVE" {
		if _, err := e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
			w.StoppedSource = true
			if downtime && w.StoppedTime == nil {
				w.StoppedTime = timestamppb.Now()
			}
		}); err != nil {
			return err
		}
		if err := servers.Stop(ctx, cc, w.GetSourceServerId()).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
			return fmt.Errorf("stop the old server: %w", err)
		}
	}
	if err := e.waitServer(ctx, cc, w.GetSourceServerId(), "SHUTOFF"); err != nil {
		return err
	}
	_, err = e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
		w.StoppedSource = true
		event(w, "old server %s stopped (kept until decommissioned)", w.GetSourceServerId())
	})
	return err
}

// startOld starts the old server again (a state check first) and waits for ACTIVE.
func (e *Engine) startOld(ctx context.Context, w *inventoryv1.RunWorkload) error {
	cc, err := e.compute(ctx, w)
	if err != nil {
		return fmt.Errorf("source cloud: %w", err)
	}
	s, err := servers.Get(ctx, cc, w.GetSourceServerId()).Extract()
	if err != nil {
		return fmt.Errorf("old server %s: %w", w.GetSourceServerId(), err)
	}
	if s.Status == "SHUTOFF" {
		if err := servers.Start(ctx, cc, w.GetSourceServerId()).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
			return fmt.Errorf("start the old server: %w", err)
		}
	}
	return e.waitServer(ctx, cc, w.GetSourceServerId(), "ACTIVE")
}

func (e *Engine) waitServer(ctx context.Context, cc *gophercloud.ServiceClient, sid, want string) error {
	deadline := time.Now().Add(e.waitTimeout())
	last := ""
	for {
		s, err := servers.Get(ctx, cc, sid).Extract()
		if err == nil {
			last = s.Status
			if s.Status == want && s.TaskState == "" {
				return nil
			}
			if s.Status == "ERROR" {
				return permanent(fmt.Errorf("server %s is in ERROR", sid))
			}
		}
		if time.Now().After(deadline) {
			return permanent(fmt.Errorf("server %s is %s after %s, not %s", sid, last, e.waitTimeout(), want))
		}
		sleep(ctx, e.poll())
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// convert runs the converter job of workload i and waits for its end, recording
// its progress.
func (e *Engine) convert(ctx context.Context, id string, i int, r *inventoryv1.Run, w *inventoryv1.RunWorkload) error {
	wl, err := e.Workloads.Get(ctx, trimWorkload(w.GetWorkload()))
	if err != nil {
		return err
	}
	job, err := e.job(ctx, id, i, r, w, wl)
	if err != nil {
		return err
	}
	if warm(w) {
		// The server is stopped and its address moved: the job's cut-over boots on
		// the moved port, sending only what changed since its pre-copy.
		if _, err := e.Deps.Converter.CutOverJob(ctx, &converterv1.CutOverJobRequest{Name: job, PortId: w.GetMovedPortId(), SourceStopped: true}); err != nil {
			return fmt.Errorf("converter CutOverJob %s: %w", job, err)
		}
	}
	var lastSave time.Time
	for {
		resp, err := e.Deps.Converter.GetJob(ctx, &converterv1.GetJobRequest{Name: job})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if status.Code(err) == codes.NotFound {
				return permanent(fmt.Errorf("converter job %s is gone", job))
			}
			sleep(ctx, e.poll()) // the converter restarts: its jobs live in etcd
			continue
		}
		j := resp.GetJob()
		switch j.GetState() {
		case converterv1.JobState_JOB_STATE_SUCCEEDED:
			_, err := e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
				w.NewServerId = j.GetCreated().GetServerId()
				if ips := j.GetCreated().GetFixedIps(); len(ips) > 0 {
					w.NewAddress = ips[0]
				}
				if hc := j.GetDestination().GetHealthCheck(); hc != "" {
					w.Gates = append(w.Gates, fmt.Sprintf("health %s of %s passed (converter)", hc, w.GetNewAddress()))
				}
				if w.GetStoppedTime() != nil {
					w.DowntimeMs = j.GetEndTime().AsTime().Sub(w.GetStoppedTime().AsTime()).Milliseconds()
				}
				event(w, "replacement %s runs on %s", w.GetNewServerId(), w.GetNewAddress())
			})
			return err
		case converterv1.JobState_JOB_STATE_FAILED, converterv1.JobState_JOB_STATE_CANCELLED, converterv1.JobState_JOB_STATE_REVERTED:
			return permanent(fmt.Errorf("converter job %s %s: %s", job, strings.ToLower(strings.TrimPrefix(j.GetState().String(), "JOB_STATE_")), j.GetError()))
		}
		if p := j.GetProgress(); time.Since(lastSave) > 2*time.Second {
			lastSave = time.Now()
			js := strings.ToLower(strings.TrimPrefix(j.GetStep().String(), "JOB_STEP_"))
			if j.GetStep() == converterv1.JobStep_JOB_STEP_UNSPECIFIED {
				js = "queued"
			}
			_, _ = e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
				w.Progress = &inventoryv1.RunProgress{
					JobStep: js, TotalBytes: p.GetTotalBytes(),
					DoneBytes: p.GetDoneBytes(), BytesPerSecond: p.GetBytesPerSecond(), EtaSeconds: p.GetEtaSeconds(),
				}
			})
		}
		sleep(ctx, e.poll())
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// job returns workload w's converter job, created the first time.
func (e *Engine) job(ctx context.Context, id string, i int, r *inventoryv1.Run, w *inventoryv1.RunWorkload, wl *inventoryv1.Workload) (string, error) {
	if job := w.GetJob(); job != "" {
		return job, nil
	}
	resp, err := e.Deps.Converter.CreateJob(ctx, jobRequest(r, w, wl))
	if err != nil {
		return "", fmt.Errorf("converter CreateJob: %w", err)
	}
	job := resp.GetJob().GetName()
	if _, err := e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
		w.Job = job
		event(w, "converter job %s", job)
	}); err != nil {
		return "", err
	}
	return job, nil
}

// warm reports whether w moves warm (its steps begin with the pre-copy).
func warm(w *inventoryv1.RunWorkload) bool {
	return slices.Contains(w.GetSteps(), inventoryv1.RunStep_RUN_STEP_PRECOPY)
}

// precopy starts w's warm converter job and waits until its pre-copy is done and
// it holds for the cut-over, the server still running.
func (e *Engine) precopy(ctx context.Context, id string, i int, r *inventoryv1.Run, w *inventoryv1.RunWorkload) error {
	wl, err := e.Workloads.Get(ctx, trimWorkload(w.GetWorkload()))
	if err != nil {
		return err
	}
	job, err := e.job(ctx, id, i, r, w, wl)
	if err != nil {
		return err
	}
	for {
		resp, err := e.Deps.Converter.GetJob(ctx, &converterv1.GetJobRequest{Name: job})
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case status.Code(err) == codes.NotFound:
			return permanent(fmt.Errorf("converter job %s is gone", job))
		case err == nil:
			j := resp.GetJob()
			if ended := j.GetState() == converterv1.JobState_JOB_STATE_FAILED || j.GetState() == converterv1.JobState_JOB_STATE_CANCELLED ||
				j.GetState() == converterv1.JobState_JOB_STATE_REVERTED; ended {
				return permanent(fmt.Errorf("converter job %s %s in its pre-copy: %s", job, strings.ToLower(strings.TrimPrefix(j.GetState().String(), "JOB_STATE_")), j.GetError()))
			}
			if j.GetWarm().GetHolding() || j.GetCutover() != nil {
				rs := j.GetWarm().GetRounds()
				var sent int64
				for _, rd := range rs {
					sent += rd.GetBytesSent()
				}
				_, err := e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
					event(w, "pre-copy done: %d round(s), %d MiB sent; the job holds for the cut-over", len(rs), sent>>20)
				})
				return err
			}
		}
		sleep(ctx, e.poll())
	}
}

// jobRequest is the converter job of workload w: the same request, with the same
// request_id, each time it is made (a repeat returns the job the first made).
func jobRequest(r *inventoryv1.Run, w *inventoryv1.RunWorkload, wl *inventoryv1.Workload) *converterv1.CreateJobRequest {
	d := &converterv1.V2VDestination{Cloud: r.GetDestination(), HealthCheck: healthCheck(r, w), VolumeTypes: r.GetVolumeTypes(),
		AvailabilityZone: r.GetAvailabilityZone(), KeyPairUser: r.GetKeyPairUser()}
	rid := w.GetRequestIds()[stepWord(inventoryv1.RunStep_RUN_STEP_CONVERT)]
	if w.GetStrategy() == inventoryv1.Strategy_STRATEGY_PHYSICAL {
		// A P2V job that boots its image on the moved address: the server is named
		// as the workload is, and so is its image.
		ph := wl.GetPhysical()
		d.PortId, d.Flavor, d.KeyPairUser, d.VolumeTypes = w.GetMovedPortId(), ph.GetFlavor(), ph.GetP2V().GetKeyPairUser(), nil
		return &converterv1.CreateJobRequest{RequestId: rid, Job: &converterv1.Job{
			Workload: w.GetWorkload(), P2VSource: ph.GetP2V(), Destination: d,
			P2VImage: &converterv1.P2VImage{Cloud: r.GetDestination(), Name: w.GetDisplayName()},
		}}
	}
	src := &converterv1.V2VSource{Cloud: wl.GetInstance().GetCloud(), ServerId: w.GetSourceServerId()}
	switch {
	case warm(w):
		// Created before the stop: it pre-copies, then holds until CutOverJob names
		// the moved port.
		d.NetworkId = w.GetDestinationNetworkId()
		src.Warm, src.HoldForCutover, src.WarmRounds = true, true, r.GetWarmRounds()
	case w.GetStrategy() == inventoryv1.Strategy_STRATEGY_STATEFUL_ADDRESS_KEPT:
		d.PortId, src.AlreadyStopped = w.GetMovedPortId(), true
	default:
		d.NetworkId, d.NewAddress, src.Live = w.GetDestinationNetworkId(), true, true
	}
	return &converterv1.CreateJobRequest{
		RequestId: rid,
		Job:       &converterv1.Job{Workload: w.GetWorkload(), Source: src, Destination: d},
	}
}

// pool reads a member's pool.
func (e *Engine) pool(ctx context.Context, m *inventoryv1.RunMember) (*lbaasv1.Pool, error) {
	resp, err := e.Deps.LB.GetLoadBalancer(ctx, &lbaasv1.GetLoadBalancerRequest{Name: m.GetLoadBalancer()})
	if err != nil {
		return nil, err
	}
	for _, l := range resp.GetLoadBalancer().GetListeners() {
		if l.GetPool().GetId() == m.GetPool() {
			return l.GetPool(), nil
		}
	}
	return nil, fmt.Errorf("pool %s of %s is gone", m.GetPool(), m.GetLoadBalancer())
}

func healthy(p *lbaasv1.Pool, mb *lbaasv1.Member) bool {
	st := mb.GetStatus().GetOperatingStatus()
	return st == "ONLINE" || (p.GetHealthMonitor() == nil && st == "NO_MONITOR")
}

// waitMember waits until the pool's member addr:port is healthy in Octavia.
func (e *Engine) waitMember(ctx context.Context, m *inventoryv1.RunMember, addr string, port int32) error {
	deadline := time.Now().Add(e.waitTimeout())
	last := "absent"
	for {
		p, err := e.pool(ctx, m)
		if err == nil {
			last = "absent"
			for _, mb := range p.GetMembers() {
				if mb.GetAddress() == addr && mb.GetPort() == port {
					if healthy(p, mb) {
						return nil
					}
					last = mb.GetStatus().GetOperatingStatus()
				}
			}
		}
		if time.Now().After(deadline) {
			return permanent(fmt.Errorf("member %s:%d of pool %s is %s after %s: the load balancer does not see it healthy", addr, port, m.GetPool(), last, e.waitTimeout()))
		}
		sleep(ctx, e.poll())
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// waitHealthy waits until the pool has at least n healthy members taking traffic
// besides m.
func (e *Engine) waitHealthy(ctx context.Context, m *inventoryv1.RunMember, n int) error {
	deadline := time.Now().Add(e.waitTimeout())
	have := 0
	for {
		p, err := e.pool(ctx, m)
		if err == nil {
			have = 0
			for _, mb := range p.GetMembers() {
				if (mb.GetAddress() == m.GetAddress() && mb.GetPort() == m.GetPort()) || (mb.Weight != nil && mb.GetWeight() == 0) {
					continue
				}
				if healthy(p, mb) {
					have++
				}
			}
			if have >= n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return permanent(fmt.Errorf("pool %s has %d healthy members besides %s:%d after %s, fewer than min_healthy %d: not draining it", m.GetPool(), have, m.GetAddress(), m.GetPort(), e.waitTimeout(), n))
		}
		sleep(ctx, e.poll())
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// undoJob ends workload w's converter job and deletes what it made: a running job
// is cancelled, a succeeded one reverted.
func (e *Engine) undoJob(ctx context.Context, id string, i int, w *inventoryv1.RunWorkload) error {
	job := w.GetJob()
	if job == "" {
		rid := w.GetRequestIds()[stepWord(inventoryv1.RunStep_RUN_STEP_CONVERT)]
		if rid == "" {
			return nil
		}
		// The job's name may have been lost with a runner: the request_id finds it
		// (a job that was never created is created and cancelled at once).
		r, _, err := e.Store.Get(ctx, id)
		if err != nil {
			return err
		}
		wl, err := e.Workloads.Get(ctx, trimWorkload(w.GetWorkload()))
		if err != nil {
			return err
		}
		resp, err := e.Deps.Converter.CreateJob(ctx, jobRequest(r, w, wl))
		if err != nil {
			return fmt.Errorf("find the job of request %s: %w", rid, err)
		}
		job = resp.GetJob().GetName()
		if _, err := e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
			w.Job = job
			event(w, "converter job %s (found by its request_id)", job)
		}); err != nil {
			return err
		}
	}
	for {
		resp, err := e.Deps.Converter.GetJob(ctx, &converterv1.GetJobRequest{Name: job})
		if err != nil {
			return fmt.Errorf("converter GetJob %s: %w", job, err)
		}
		switch resp.GetJob().GetState() {
		case converterv1.JobState_JOB_STATE_FAILED, converterv1.JobState_JOB_STATE_CANCELLED, converterv1.JobState_JOB_STATE_REVERTED:
			return nil
		case converterv1.JobState_JOB_STATE_SUCCEEDED:
			if _, err := e.Deps.Converter.RevertJob(ctx, &converterv1.RevertJobRequest{Name: job}); err != nil {
				return fmt.Errorf("converter RevertJob %s: %w", job, err)
			}
			_, _ = e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
				event(w, "job %s reverted: the replacement and its image deleted", job)
			})
			return nil
		default:
			if !resp.GetJob().GetCancelRequested() {
				if _, err := e.Deps.Converter.CancelJob(ctx, &converterv1.CancelJobRequest{Name: job}); err != nil && status.Code(err) != codes.FailedPrecondition {
					return fmt.Errorf("converter CancelJob %s: %w", job, err)
				}
			}
			sleep(ctx, e.poll())
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
}

// rollback undoes workload i's move from its recorded step, in reverse: for a
// stateless workload the old member is back at its old weight before the new one
// leaves; for one whose address moved, the replacement is deleted before the
// address moves back and the old server starts.
func (e *Engine) rollback(ctx context.Context, id string, i int) error {
	r, _, err := e.Store.Get(ctx, id)
	if err != nil {
		return err
	}
	w := r.GetWorkloads()[i]
	if w.GetStep() == inventoryv1.RunStep_RUN_STEP_ROLLED_BACK {
		return nil
	}
	reached := func(st inventoryv1.RunStep) bool {
		at, k := slices.Index(w.GetSteps(), w.GetStep()), slices.Index(w.GetSteps(), st)
		return k >= 0 && at >= 0 && (at > k || (at == k && w.GetStepState() != inventoryv1.StepState_STEP_STATE_UNSPECIFIED))
	}
	if w.GetStep() == inventoryv1.RunStep_RUN_STEP_DONE {
		reached = func(inventoryv1.RunStep) bool { return true }
	}
	if _, err := e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
		if w.GetStepState() != inventoryv1.StepState_STEP_STATE_ROLLING_BACK {
			event(w, "rolling back from %s", stepWord(w.GetStep()))
		}
		w.StepState = inventoryv1.StepState_STEP_STATE_ROLLING_BACK
	}); err != nil {
		return err
	}
	if w.GetStrategy() == inventoryv1.Strategy_STRATEGY_STATELESS_LB {
		if reached(inventoryv1.RunStep_RUN_STEP_STOP_OLD) || w.GetStoppedSource() {
			if err := e.startOld(ctx, w); err != nil {
				return err
			}
		}
		if reached(inventoryv1.RunStep_RUN_STEP_DRAIN) {
			for _, m := range w.GetMembers() {
				if _, err := e.Deps.LB.UpdateLoadBalancer(ctx, &lbaasv1.UpdateLoadBalancerRequest{Name: m.GetLoadBalancer(), MemberChanges: []*lbaasv1.MemberChange{{
					Pool: m.GetPool(), Change: &lbaasv1.MemberChange_Add{Add: &lbaasv1.Member{DisplayName: m.GetDisplayName(), Address: m.GetAddress(), Port: m.GetPort(), Weight: &m.Weight}},
				}}}); err != nil {
					return fmt.Errorf("put %s:%d back at weight %d: %w", m.GetAddress(), m.GetPort(), m.GetWeight(), err)
				}
				if err := e.waitMember(ctx, m, m.GetAddress(), m.GetPort()); err != nil {
					return err
				}
			}
		}
		if reached(inventoryv1.RunStep_RUN_STEP_JOIN) && w.GetNewAddress() != "" {
			for _, m := range w.GetMembers() {
				if _, err := e.Deps.LB.UpdateLoadBalancer(ctx, &lbaasv1.UpdateLoadBalancerRequest{Name: m.GetLoadBalancer(), MemberChanges: []*lbaasv1.MemberChange{{
					Pool: m.GetPool(), Change: &lbaasv1.MemberChange_Drain{Drain: &lbaasv1.MemberRef{Address: w.GetNewAddress(), Port: m.GetPort()}},
				}}}); err != nil {
					return fmt.Errorf("drain the new member %s:%d: %w", w.GetNewAddress(), m.GetPort(), err)
				}
			}
			d := time.Duration(r.GetRoles()[w.GetRole()].GetDrainSeconds()) * time.Second
			if d <= 0 {
				d = 5 * time.Second
			}
			sleep(ctx, d)
			for _, m := range w.GetMembers() {
				if _, err := e.Deps.LB.UpdateLoadBalancer(ctx, &lbaasv1.UpdateLoadBalancerRequest{Name: m.GetLoadBalancer(), MemberChanges: []*lbaasv1.MemberChange{{
					Pool: m.GetPool(), Change: &lbaasv1.MemberChange_Remove{Remove: &lbaasv1.MemberRef{Address: w.GetNewAddress(), Port: m.GetPort()}},
				}}}); err != nil {
					return fmt.Errorf("remove the new member %s:%d: %w", w.GetNewAddress(), m.GetPort(), err)
				}
			}
		}
		if reached(inventoryv1.RunStep_RUN_STEP_CONVERT) {
			if err := e.undoJob(ctx, id, i, w); err != nil {
				return err
			}
		}
	} else {
		if reached(inventoryv1.RunStep_RUN_STEP_CONVERT) || reached(inventoryv1.RunStep_RUN_STEP_PRECOPY) {
			if err := e.undoJob(ctx, id, i, w); err != nil {
				return err
			}
		}
		if reached(inventoryv1.RunStep_RUN_STEP_MOVE_ADDRESS) {
			if _, err := e.Deps.Netbridge.MoveAddressBack(ctx, &netbridgev1.MoveAddressBackRequest{Bridge: w.GetBridge(), IpAddress: w.GetSourceAddress()}); err != nil &&
				status.Code(err) != codes.NotFound {
				return fmt.Errorf("netbridge MoveAddressBack %s: %w", w.GetSourceAddress(), err)
			}
			if w.GetStrategy() == inventoryv1.Strategy_STRATEGY_PHYSICAL {
				_, _ = e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
					event(w, "address %s is back in the old cloud: boot the physical server from its own disks again (the run cannot)", w.GetSourceAddress())
				})
			}
		}
		if reached(inventoryv1.RunStep_RUN_STEP_STOP) && w.GetStoppedSource() {
			if err := e.startOld(ctx, w); err != nil {
				return err
			}
			for _, m := range w.GetMembers() {
				if err := e.waitMember(ctx, m, m.GetAddress(), m.GetPort()); err != nil {
					return err
				}
			}
		}
	}
	_, err = e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
		w.Step, w.StepState, w.EndTime = inventoryv1.RunStep_RUN_STEP_ROLLED_BACK, inventoryv1.StepState_STEP_STATE_DONE, timestamppb.Now()
		event(w, "rolled back: the old server serves as before")
	})
	return err
}
