package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/pagetoken"
	"github.com/hikkoshi/hikkoshi/platform/service"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/cloudinit"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/p2v"
)

// Server implements hikkoshi.converter.v1.ConverterService.
type Server struct {
	converterv1.UnimplementedConverterServiceServer
	store    *Store
	etcd     *clientv3.Client
	stopping <-chan struct{}
	exec     Executor
	inv      inventoryv1.InventoryServiceClient
	log      *slog.Logger
}

// Register registers the service and its validators on rt. exec decommissions
// sources; inv (may be nil) is the inventory whose workloads follow the jobs;
// policy is what a job may name.
func Register(rt *service.Runtime, store *Store, exec Executor, inv inventoryv1.InventoryServiceClient, policy Policy) {
	converterv1.RegisterConverterServiceServer(rt.GRPC, &Server{store: store, etcd: rt.Etcd, stopping: rt.Stopping(), exec: exec, inv: inv, log: rt.Logger})
	service.AddValidator(rt, func(r *converterv1.CreateJobRequest) error {
		if err := ValidateCreateJob(r); err != nil {
			return err
		}
		return policy.Err(r.GetJob())
	})
	service.AddValidator(rt, func(r *converterv1.GetJobRequest) error { return checkName(r.GetName()) })
	service.AddValidator(rt, func(r *converterv1.CancelJobRequest) error { return checkName(r.GetName()) })
	service.AddValidator(rt, func(r *converterv1.CutOverJobRequest) error {
		if err := checkName(r.GetName()); err != nil {
			return err
		}
		if p := r.GetPortId(); p != "" && !apierr.IsUUID(p) {
			return apierr.InvalidArgument("port_id", "%q: give the destination port's ID (a UUID), or leave it empty for the job's destination", p)
		}
		return nil
	})
	service.AddValidator(rt, func(r *converterv1.WatchJobRequest) error { return checkName(r.GetName()) })
	service.AddValidator(rt, func(r *converterv1.RevertJobRequest) error { return checkName(r.GetName()) })
	service.AddValidator(rt, func(r *converterv1.DecommissionSourceRequest) error {
		if err := checkName(r.GetName()); err != nil {
			return err
		}
		if r.GetConfirmServerId() == "" {
			return apierr.InvalidArgument("confirm_server_id", "required: the job's source server ID (source.server_id in GetJob), to confirm that this server is to be deleted")
		}
		return nil
	})
}

func checkName(name string) error {
	if _, ok := ID(name); !ok {
		return apierr.InvalidArgument("name", "%q is not a job name: use jobs/{job_id} (the name CreateJob returned)", name)
	}
	return nil
}

// MaxJobBytes bounds a job as given to CreateJob.
const MaxJobBytes = 64 << 10

// ValidateCreateJob checks a CreateJobRequest: a V2V job (source and destination)
// or a P2V job (p2v_source and p2v_image), never both.
func ValidateCreateJob(r *converterv1.CreateJobRequest) error {
	var v apierr.Violations
	v.RequestID("request_id", r.GetRequestId())
	j := r.GetJob()
	if n := proto.Size(j); n > MaxJobBytes {
		v.Add("job", "%d bytes: at most %d", n, MaxJobBytes)
		return v.Err()
	}
	if IsP2V(j) {
		if j.GetSource() != nil {
			v.Add("job.source", "a job is V2V (source, destination) or P2V (p2v_source, p2v_image, and destination to boot the image), not both")
		}
		if d := j.GetDestination(); d != nil {
			switch {
			case j.GetP2VSource().GetInspectOnly():
				v.Add("job.destination", "a dry run (p2v_source.inspect_only) boots nothing: leave destination empty")
			case d.GetCloud() != "" && d.GetCloud() != j.GetP2VImage().GetCloud():
				v.Add("job.destination.cloud", "%q: the image boots where it is uploaded, give p2v_image.cloud (%q) here too", d.GetCloud(), j.GetP2VImage().GetCloud())
			}
			if d.GetFlavor() == "" {
				v.Add("job.destination.flavor", "required for a P2V boot: the destination flavor's name (a physical server has no flavor to keep)")
			}
			if len(d.GetVolumeTypes()) > 0 {
				v.Add("job.destination.volume_types", "a P2V job writes its disks into an image, not into Cinder volumes: leave volume_types empty")
			}
			if len(d.GetNics()) > 0 {
				v.Add("job.destination.nics", "a P2V boot has one NIC: give port_id, or network_id (and fixed_ip); p2v_source.nics pins the guest's interface names")
			}
			if d.GetNoNics() {
				v.Add("job.destination.no_nics", "a P2V boot has one NIC: give port_id, or network_id (and fixed_ip)")
			}
			validateDestination(&v, d)
		}
		switch src := j.GetP2VSource(); {
		case src.GetAgentUrl() != "" && src.GetDiskPath() != "":
			v.Add("job.p2v_source.agent_url", "give disk_path (a disk on the worker) or agent_url (a disk served by hikkoshi-p2v-agent), not both")
		case src.GetAgentUrl() != "":
			if u, err := url.Parse(src.GetAgentUrl()); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.Add("job.p2v_source.agent_url", "%q: give the agent's URL, http://HOST:PORT", src.GetAgentUrl())
			}
			if src.GetAgentDisk() < 0 {
				v.Add("job.p2v_source.agent_disk", "%d: give the agent's disk index (0 for the first)", src.GetAgentDisk())
			}
		case !filepath.IsAbs(src.GetDiskPath()):
			v.Add("job.p2v_source.disk_path", "%q: give the absolute path of the disk (a raw image file or a block device) on the converter worker, or agent_url", src.GetDiskPath())
		}
		for i, m := range j.GetP2VSource().GetMoreDiskPaths() {
			switch {
			case j.GetP2VSource().GetAgentUrl() != "":
				v.Add(fmt.Sprintf("job.p2v_source.more_disk_paths[%d]", i), "further disks on the worker go with disk_path; through an agent, give the agent's disk indexes in more_agent_disks")
			case !filepath.IsAbs(m):
				v.Add(fmt.Sprintf("job.p2v_source.more_disk_paths[%d]", i), "%q: give the absolute path of the server's disk on the converter worker", m)
			}
		}
		src := j.GetP2VSource()
		seen := map[int32]string{src.GetAgentDisk(): "agent_disk"}
		for i, d := range src.GetMoreAgentDisks() {
			field := fmt.Sprintf("job.p2v_source.more_agent_disks[%d]", i)
			switch other, dup := seen[d]; {
			case src.GetAgentUrl() == "":
				v.Add(field, "further agent disks go with agent_url; for disks on the worker, give more_disk_paths")
			case d < 0:
				v.Add(field, "%d: give the agent's disk index (0 for the first)", d)
			case dup:
				v.Add(field, "disk %d is also %s: give each of the server's disks once", d, other)
			}
			seen[d] = field
		}
		for i, n := range j.GetP2VSource().GetNics() {
			if _, err := p2v.ParseNICs([]string{n}); err != nil {
				v.Add(fmt.Sprintf("job.p2v_source.nics[%d]", i), "%v", err)
			}
		}
		if err := cloudinit.CheckUser(j.GetP2VSource().GetKeyPairUser()); err != nil {
			v.Add("job.p2v_source.key_pair_user", "%v", err)
		}
		if j.GetP2VImage().GetCloud() == "" && !j.GetP2VSource().GetInspectOnly() {
			v.Add("job.p2v_image.cloud", "required: the clouds.yaml entry whose Glance gets the image (or set p2v_source.inspect_only for a dry run)")
		}
		return v.Err()
	}
	if j.GetP2VImage() != nil {
		v.Add("job.p2v_image", "only for a P2V job (with p2v_source)")
	}
	if j.GetSource().GetCloud() == "" {
		v.Add("job.source.cloud", "required: the source cloud's clouds.yaml entry")
	}
	if !apierr.IsUUID(j.GetSource().GetServerId()) {
		v.Add("job.source.server_id", "%q: give the source server's ID (a UUID)", j.GetSource().GetServerId())
	}
	switch src := j.GetSource(); {
	case src.GetHoldForCutover() && !src.GetWarm():
		v.Add("job.source.hold_for_cutover", "only with warm")
	case src.GetWarmRoundInterval() != nil && !src.GetHoldForCutover():
		v.Add("job.source.warm_round_interval", "only with hold_for_cutover: rounds repeat while the job holds")
	case src.GetWarmRoundInterval() != nil && src.GetWarmRoundInterval().AsDuration() < 10*time.Second:
		v.Add("job.source.warm_round_interval", "%s: give at least 10s", src.GetWarmRoundInterval().AsDuration())
	case src.GetWarm() && src.GetLive():
		v.Add("job.source.warm", "a warm job stops the server for its last round; live leaves it running: give one of them")
	case src.GetWarm() && src.GetAlreadyStopped():
		v.Add("job.source.warm", "a warm job copies a running server before it stops it; a server already stopped moves cold: drop warm")
	case src.GetWarmRounds() != 0 && !src.GetWarm():
		v.Add("job.source.warm_rounds", "only with warm")
	case src.GetWarmRounds() < 0 || src.GetWarmRounds() > MaxWarmRounds:
		v.Add("job.source.warm_rounds", "%d: give 0 to %d pre-copy rounds (0 means 1)", src.GetWarmRounds(), MaxWarmRounds)
	}
	validateDestination(&v, j.GetDestination())
	return v.Err()
}

// MaxWarmRounds caps a warm job's pre-copy rounds.
const MaxWarmRounds = 10

// validateDestination checks where a job boots its server.
func validateDestination(v *apierr.Violations, d *converterv1.V2VDestination) {
	if d.GetCloud() == "" {
		v.Add("job.destination.cloud", "required: the destination cloud's clouds.yaml entry")
	}
	for i, n := range d.GetNics() {
		f := fmt.Sprintf("job.destination.nics[%d]", i)
		switch {
		case n.GetPortId() != "" && !apierr.IsUUID(n.GetPortId()):
			v.Add(f+".port_id", "%q: give the destination port's ID (a UUID), or network_id for a new port", n.GetPortId())
		case n.GetPortId() == "" && !apierr.IsUUID(n.GetNetworkId()):
			v.Add(f+".network_id", "%q: give the destination network's ID (a UUID), or port_id of a port made for this NIC", n.GetNetworkId())
		case n.GetPortId() != "" && (n.GetFixedIp() != "" || n.GetNetworkId() != ""):
			v.Add(f+".port_id", "a port brings its own network and address: give port_id alone, or network_id (and fixed_ip)")
		}
		if ip := n.GetFixedIp(); ip != "" && net.ParseIP(ip) == nil {
			v.Add(f+".fixed_ip", "%q is not an IP address", ip)
		}
	}
	switch {
	case d.GetNoNics():
		if d.GetNetworkId() != "" || d.GetFixedIp() != "" || d.GetPortId() != "" || len(d.GetNics()) > 0 || d.GetNewAddress() {
			v.Add("job.destination.no_nics", "a server without NICs has no network, address or port: leave network_id, fixed_ip, port_id, nics and new_address empty, or no_nics false")
		}
		if d.GetHealthCheck() != "" && d.GetHealthCheckHost() == "" {
			v.Add("job.destination.health_check", "a server without NICs has no address to probe: give health_check_host (a jump host's forward), or no health_check")
		}
	case len(d.GetNics()) > 0:
		if d.GetNetworkId() != "" || d.GetFixedIp() != "" || d.GetPortId() != "" {
			v.Add("job.destination.nics", "give nics, or network_id/fixed_ip/port_id for a server with one NIC, not both")
		}
	case d.GetPortId() != "" && !apierr.IsUUID(d.GetPortId()):
		v.Add("job.destination.port_id", "%q: give the destination port's ID (a UUID), or leave it empty for a new port on network_id", d.GetPortId())
	case d.GetPortId() == "" && !apierr.IsUUID(d.GetNetworkId()):
		v.Add("job.destination.network_id", "%q: give the destination network's ID (a UUID), or port_id of a port made for the server (or no_nics for a server without NICs)", d.GetNetworkId())
	case d.GetPortId() != "" && d.GetFixedIp() != "":
		v.Add("job.destination.fixed_ip", "with port_id the server keeps the port's own address: leave fixed_ip empty")
	}
	if ip := d.GetFixedIp(); ip != "" && net.ParseIP(ip) == nil {
		v.Add("job.destination.fixed_ip", "%q is not an IP address", ip)
	}
	if z := d.GetAvailabilityZone(); len(z) > 255 {
		v.Add("job.destination.availability_zone", "%q: give the name of one of the destination's availability zones (at most 255 characters), or leave it empty for its default", z)
	}
	v.VolumeTypes("job.destination.volume_types", d.GetVolumeTypes())
	if err := cloudinit.CheckUser(d.GetKeyPairUser()); err != nil {
		v.Add("job.destination.key_pair_user", "%v", err)
	}
	if d.GetNewAddress() && (d.GetFixedIp() != "" || d.GetPortId() != "" || len(d.GetNics()) > 0) {
		v.Add("job.destination.new_address", "a new address is chosen by Neutron on network_id: leave fixed_ip, port_id and nics empty")
	}
}

// CreateJob implements ConverterService.
func (s *Server) CreateJob(ctx context.Context, req *converterv1.CreateJobRequest) (*converterv1.CreateJobResponse, error) {
	fp := ""
	if req.GetRequestId() != "" {
		fp = pagetoken.MessageFingerprint(req, func(r *converterv1.CreateJobRequest) { r.RequestId = "" })
	}
	in := &converterv1.Job{Workload: req.GetJob().GetWorkload(), Source: req.GetJob().GetSource(), Destination: req.GetJob().GetDestination(),
		P2VSource: req.GetJob().GetP2VSource(), P2VImage: req.GetJob().GetP2VImage()}
	j, err := s.store.Create(ctx, in, req.GetRequestId(), fp)
	if err != nil {
		return nil, err
	}
	return &converterv1.CreateJobResponse{Job: j}, nil
}

// GetJob implements ConverterService.
func (s *Server) GetJob(ctx context.Context, req *converterv1.GetJobRequest) (*converterv1.GetJobResponse, error) {
	id, _ := ID(req.GetName())
	j, _, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return &converterv1.GetJobResponse{Job: j}, nil
}

// ListJobs implements ConverterService.
func (s *Server) ListJobs(ctx context.Context, req *converterv1.ListJobsRequest) (*converterv1.ListJobsResponse, error) {
	size := pagetoken.Size(req.GetPageSize(), 50, 500)
	fp := pagetoken.MessageFingerprint(req, func(r *converterv1.ListJobsRequest) { r.PageSize, r.PageToken = 0, "" })
	after, err := pagetoken.Decode(req.GetPageToken(), fp)
	if err != nil {
		return nil, apierr.InvalidArgument("page_token", "not a next_page_token of an earlier ListJobs with the same state: start again without page_token")
	}
	afterID := ""
	if after != "" {
		afterID, _ = ID(after)
	}
	list, more, err := s.store.Page(ctx, afterID, size, func(j *converterv1.Job) bool {
		return req.GetState() == 0 || j.GetState() == req.GetState()
	})
	if err != nil {
		return nil, err
	}
	resp := &converterv1.ListJobsResponse{Jobs: list}
	if more && len(list) > 0 {
		resp.NextPageToken = pagetoken.Encode(list[len(list)-1].GetName(), fp)
	}
	return resp, nil
}

// CancelJob implements ConverterService.
func (s *Server) CancelJob(ctx context.Context, req *converterv1.CancelJobRequest) (*converterv1.CancelJobResponse, error) {
	id, _ := ID(req.GetName())
	j, err := s.store.RequestCancel(ctx, id)
	if err != nil {
		return nil, err
	}
	return &converterv1.CancelJobResponse{Job: j}, nil
}

// CutOverJob implements ConverterService: it records the request under its own key
// (the job's worker writes the job's record whole, and would write over it), where
// the holding worker reads it.
func (s *Server) CutOverJob(ctx context.Context, req *converterv1.CutOverJobRequest) (*converterv1.CutOverJobResponse, error) {
	id, _ := ID(req.GetName())
	j, _, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	switch {
	case Terminal(j.GetState()):
		return nil, apierr.New(codes.FailedPrecondition, ReasonJobEnded, "job %s has already ended (%s)", j.GetName(), j.GetState())
	case !j.GetSource().GetHoldForCutover():
		return nil, apierr.New(codes.FailedPrecondition, "NOT_HOLDING",
			"job %s does not hold for a cut-over (create it with source.warm and source.hold_for_cutover)", j.GetName())
	}
	co := &converterv1.CutOver{PortId: req.GetPortId(), SourceStopped: req.GetSourceStopped(), RequestTime: timestamppb.Now()}
	val, err := proto.Marshal(co)
	if err != nil {
		return nil, apierr.New(codes.Internal, "ENCODE", "the cut-over request cannot be encoded: %v", err)
	}
	key := keys.JobCutOver(id)
	resp, err := s.etcd.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(clientv3.OpPut(key, string(val))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return nil, apierr.Etcd("CutOverJob", err)
	}
	if !resp.Succeeded {
		// An earlier request (the key stays until the job ends, taken by its worker
		// or not): the same is a repeat, another is refused.
		var prev converterv1.CutOver
		if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) == 1 && proto.Unmarshal(kvs[0].Value, &prev) == nil &&
			(prev.GetPortId() != co.GetPortId() || prev.GetSourceStopped() != co.GetSourceStopped()) {
			return nil, apierr.New(codes.FailedPrecondition, "CUTOVER_TAKEN",
				"job %s has a cut-over request already, with port %q (source stopped: %v): it cannot change", j.GetName(), prev.GetPortId(), prev.GetSourceStopped())
		}
	}
	return &converterv1.CutOverJobResponse{Job: j}, nil
}

// CutOverRequest reads job id's CutOverJob request (nil: none yet).
func CutOverRequest(ctx context.Context, c *clientv3.Client, id string) (*converterv1.CutOver, error) {
	resp, err := c.Get(ctx, keys.JobCutOver(id))
	if err != nil || len(resp.Kvs) == 0 {
		return nil, err
	}
	var co converterv1.CutOver
	if err := proto.Unmarshal(resp.Kvs[0].Value, &co); err != nil {
		return nil, fmt.Errorf("the cut-over request of job %s cannot be read: %w", id, err)
	}
	return &co, nil
}

// WatchJob implements ConverterService.
func (s *Server) WatchJob(req *converterv1.WatchJobRequest, stream grpc.ServerStreamingServer[converterv1.WatchJobResponse]) error {
	ctx := stream.Context()
	id, _ := ID(req.GetName())
	j, rev, err := s.store.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := stream.Send(&converterv1.WatchJobResponse{Job: j}); err != nil || Terminal(j.GetState()) {
		return err
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	ch := s.etcd.Watch(wctx, keys.Job(id), clientv3.WithRev(rev+1))
	for {
		select {
		case <-s.stopping:
			return apierr.New(codes.Unavailable, "SHUTTING_DOWN", "this converter is shutting down: watch %s again", req.GetName())
		case wr, ok := <-ch:
			if !ok {
				return ctx.Err()
			}
			if err := wr.Err(); err != nil {
				return apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "watch job: %v", err)
			}
			for _, ev := range wr.Events {
				cur, err := s.store.Decode(ev.Kv)
				if err != nil {
					return err
				}
				if err := stream.Send(&converterv1.WatchJobResponse{Job: cur}); err != nil || Terminal(cur.GetState()) {
					return err
				}
			}
		}
	}
}

// RevertJob implements ConverterService.
func (s *Server) RevertJob(ctx context.Context, req *converterv1.RevertJobRequest) (*converterv1.RevertJobResponse, error) {
	id, _ := ID(req.GetName())
	j, _, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	switch {
	case j.GetState() == converterv1.JobState_JOB_STATE_REVERTED:
		return &converterv1.RevertJobResponse{Job: j}, nil
	case j.GetDecommission().GetTime() != nil:
		return nil, apierr.New(codes.FailedPrecondition, "JOB_DECOMMISSIONED", "job %s's source is decommissioned (deleted): the move cannot be undone", j.GetName())
	case j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED:
		return nil, apierr.New(codes.FailedPrecondition, "JOB_NOT_SUCCEEDED",
			"job %s is %s: only a succeeded job is reverted (cancel a running one; a failed or cancelled one has deleted what it made)", j.GetName(), j.GetState())
	}
	if err := s.exec.Cleanup(ctx, j); err != nil {
		return nil, apierr.New(codes.Unavailable, "REVERT_FAILED", "revert %s: %v (what was deleted stays deleted; call again)", j.GetName(), err)
	}
	j, err = s.store.Update(ctx, id, func(cur *converterv1.Job) (bool, error) {
		if cur.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
			return false, nil
		}
		cur.State, cur.EndTime = converterv1.JobState_JOB_STATE_REVERTED, timestamppb.Now()
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("job reverted", "job", j.GetName(), "server", j.GetCreated().GetServerId())
	followWorkload(ctx, s.inv, s.log, j, inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED, "")
	return &converterv1.RevertJobResponse{Job: j}, nil
}

// DecommissionSource implements ConverterService.
func (s *Server) DecommissionSource(ctx context.Context, req *converterv1.DecommissionSourceRequest) (*converterv1.DecommissionSourceResponse, error) {
	id, _ := ID(req.GetName())
	j, _, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if j.GetDecommission().GetTime() != nil {
		return &converterv1.DecommissionSourceResponse{Job: j}, nil
	}
	if IsP2V(j) {
		return nil, apierr.New(codes.FailedPrecondition, "NOT_DECOMMISSIONABLE", "job %s converted a physical server: its operator switches it off, not the cloud", j.GetName())
	}
	if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
		return nil, apierr.New(codes.FailedPrecondition, "JOB_NOT_SUCCEEDED",
			"job %s is %s: only the source of a succeeded job is decommissioned (a failed or cancelled job has started its source again)", j.GetName(), j.GetState())
	}
	if req.GetConfirmServerId() != j.GetSource().GetServerId() {
		return nil, apierr.InvalidArgument("confirm_server_id", "%q is not this job's source server: give its source.server_id (GetJob shows it) to confirm the deletion", req.GetConfirmServerId())
	}
	d, err := s.exec.Decommission(ctx, j)
	if err != nil {
		return nil, apierr.New(codes.Unavailable, "DECOMMISSION_FAILED", "decommission %s: %v (nothing is recorded; call again)", j.GetName(), err)
	}
	j, err = s.store.Update(ctx, id, func(cur *converterv1.Job) (bool, error) {
		if cur.GetDecommission().GetTime() != nil {
			return false, nil
		}
		cur.Decommission = d
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("source decommissioned", "job", j.GetName(), "server", d.GetSourceServerId(), "snapshot", d.GetSnapshotImageId())
	followWorkload(ctx, s.inv, s.log, j, inventoryv1.WorkloadState_WORKLOAD_STATE_DONE, "")
	return &converterv1.DecommissionSourceResponse{Job: j}, nil
}
