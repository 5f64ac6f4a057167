package contract

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
)

// TestCancelLeavesNothingBehind cancels a queued job (no worker: it ends at once,
// having made nothing) and a job in the middle of its image copy: the worker deletes
// the snapshot, the chunk images already copied, and starts the source again.
func TestCancelLeavesNothingBehind(t *testing.T) {
	c := open(t)
	srvID, netID := fixture(t, c)
	env := servicetest.NewEnv(t)
	req := &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source:      &converterv1.V2VSource{Cloud: "old", ServerId: srvID},
		Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: "10.101.0.79"},
	}}

	_, api := start(t, env, "--workers", "0")
	queued := must(api.CreateJob(t.Context(), req))(t).GetJob()
	got := must(api.CancelJob(t.Context(), &converterv1.CancelJobRequest{Name: queued.GetName()}))(t).GetJob()
	if got.GetState() != converterv1.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("queued job after cancel: %s", got.GetState())
	}

	_, client := start(t, env, "--copy-bandwidth", "1048576")
	job := must(client.CreateJob(t.Context(), req))(t).GetJob()
	var atCancel *converterv1.Job
	end := watchJob(t, client, job.GetName(), func(j *converterv1.Job) {
		if atCancel == nil && j.GetProgress().GetDoneBytes() >= 2<<20 {
			atCancel = j
			must(client.CancelJob(t.Context(), &converterv1.CancelJobRequest{Name: j.GetName()}))(t)
		}
	}, nil)
	if atCancel == nil || end.GetState() != converterv1.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("job %s (%s), cancelled at %v", end.GetState(), end.GetError(), atCancel != nil)
	}
	cr := end.GetCreated()
	if cr.GetSnapshotImageId() == "" || !cr.GetStoppedSource() {
		t.Fatalf("created %v: the job had stopped the source and made a snapshot before the cancel", cr)
	}
	if _, err := images.Get(t.Context(), c.oldI, cr.GetSnapshotImageId()).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Fatalf("the snapshot %s is still there (%v)", cr.GetSnapshotImageId(), err)
	}
	for _, ch := range end.GetProgress().GetChunks() {
		if _, err := images.Get(t.Context(), c.newI, ch.GetImageId()).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			t.Fatalf("chunk image %s is still there (%v)", ch.GetImageId(), err)
		}
	}
	if left, err := imagecopy.ChunkImages(t.Context(), imagecopy.NewGlance(c.newI), end.GetProgress().GetImageName()); err != nil || len(left) != 0 {
		t.Fatalf("%d chunk images of the job left in the new cloud (%v)", len(left), err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s, err := servers.Get(t.Context(), c.oldC, srvID).Extract()
		if err == nil && s.Status == "ACTIVE" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the source server is not started again: %v %v", s, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("cancelled at %d/%d bytes: snapshot and %d chunk images deleted, source ACTIVE again",
		atCancel.GetProgress().GetDoneBytes(), atCancel.GetProgress().GetTotalBytes(), len(end.GetProgress().GetChunks()))
}

// TestCancelAtEachStep cancels one job at each step of a V2V move — the moment the
// job reports the step — and checks both clouds by name, not only by what the job
// recorded: no snapshot, no image or chunk image, no port, no server, and the
// source running again. The copy is slowed (1 MiB/s) and the health probe aims at
// a closed loopback port, so those steps last; pre-flight is over in milliseconds,
// and the log says at which step each cancel was recorded.
func TestCancelAtEachStep(t *testing.T) {
	c := open(t)
	srvID, netID := fixture(t, c)
	src := must(servers.Get(t.Context(), c.oldC, srvID).Extract())(t)
	env := servicetest.NewEnv(t)
	_, client := start(t, env, "--copy-bandwidth", "1048576")
	closed := must(net.Listen("tcp", "127.0.0.1:0"))(t)
	_, closedPort, _ := net.SplitHostPort(closed.Addr().String())
	_ = closed.Close() // nothing listens there now: the probe never succeeds
	for _, step := range []converterv1.JobStep{
		converterv1.JobStep_JOB_STEP_PREFLIGHT, converterv1.JobStep_JOB_STEP_STOP, converterv1.JobStep_JOB_STEP_SNAPSHOT,
		converterv1.JobStep_JOB_STEP_COPY, converterv1.JobStep_JOB_STEP_BOOT, converterv1.JobStep_JOB_STEP_HEALTH,
	} {
		t.Run(strings.TrimPrefix(step.String(), "JOB_STEP_"), func(t *testing.T) {
			job := must(client.CreateJob(t.Context(), &converterv1.CreateJobRequest{Job: &converterv1.Job{
				Source: &converterv1.V2VSource{Cloud: "old", ServerId: srvID},
				Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: "10.101.0.80",
					HealthCheck: "tcp:" + closedPort, HealthCheckHost: "127.0.0.1"},
			}}))(t).GetJob()
			var landed converterv1.JobStep
			asked := false
			end := watchJob(t, client, job.GetName(), func(j *converterv1.Job) {
				if !asked && j.GetStep() >= step {
					asked = true
					landed = must(client.CancelJob(t.Context(), &converterv1.CancelJobRequest{Name: j.GetName()}))(t).GetJob().GetStep()
				}
			}, nil)
			if end.GetState() != converterv1.JobState_JOB_STATE_CANCELLED {
				t.Fatalf("job %s (%s), want CANCELLED", end.GetState(), end.GetError())
			}
			nothingLeft(t, c, end, src.Name, netID)
			waitStatus(t, c.oldC, srvID, "ACTIVE")
			t.Logf("cancel asked at %s, recorded at %s: nothing left in either cloud, source ACTIVE", step, landed)
		})
	}
}

// nothingLeft checks both clouds for anything a job may have made, by the names the
// job gives what it makes.
func nothingLeft(t *testing.T, c clouds, j *converterv1.Job, srvName, netID string) {
	t.Helper()
	id := strings.TrimPrefix(j.GetName(), "jobs/")
	count := func(ic *gophercloud.ServiceClient, name string) int {
		pages := must(images.List(ic, images.ListOpts{Name: name}).AllPages(t.Context()))(t)
		return len(must(images.ExtractImages(pages))(t))
	}
	if n := count(c.oldI, "hikkoshi-"+id+"-snapshot"); n != 0 {
		t.Errorf("%d snapshot image(s) left in the old Glance", n)
	}
	imageName := srvName + "-" + id
	if n := count(c.newI, imageName); n != 0 {
		t.Errorf("%d image(s) %s left in the new Glance", n, imageName)
	}
	if left, err := imagecopy.ChunkImages(t.Context(), imagecopy.NewGlance(c.newI), imageName); err != nil || len(left) != 0 {
		t.Errorf("%d chunk image(s) left in the new Glance (%v)", len(left), err)
	}
	for _, tag := range []string{imagecopy.PackTag, imagecopy.ManifestTag} {
		left, err := imagecopy.NewGlance(c.newI).Tagged(t.Context(), tag)
		for _, img := range left {
			if strings.HasPrefix(img.Name, imageName+".") {
				t.Errorf("%s image %s left in the new Glance", tag, img.Name)
			}
		}
		if err != nil {
			t.Error(err)
		}
	}
	pp := must(ports.List(c.newN, ports.ListOpts{NetworkID: netID, Name: "hikkoshi-" + id}).AllPages(t.Context()))(t)
	if ps := must(ports.ExtractPorts(pp))(t); len(ps) != 0 {
		t.Errorf("%d port(s) left in the new network", len(ps))
	}
	sp := must(servers.List(c.newC, servers.ListOpts{Name: "^" + srvName + "$"}).AllPages(t.Context()))(t)
	for _, s := range must(servers.ExtractServers(sp))(t) {
		if s.Metadata["hikkoshi_job"] == id && s.Status != "DELETED" {
			t.Errorf("server %s (%s) left in the new region", s.ID, s.Status)
		}
	}
}

// TestCancelWarm cancels a warm job in its pre-copy (a round sending, the server
// running) and in its cut-over's copy (the last round or the assembly): nothing is
// left in either cloud — no pre-copy snapshot, pack or manifest either — and the
// source runs. The sends are slowed (1 MiB/s) so the rounds last.
func TestCancelWarm(t *testing.T) {
	c := open(t)
	srvID, netID := fixture(t, c)
	src := must(servers.Get(t.Context(), c.oldC, srvID).Extract())(t)
	env := servicetest.NewEnv(t)
	_, client := start(t, env, "--copy-bandwidth", "1048576")
	for _, step := range []converterv1.JobStep{converterv1.JobStep_JOB_STEP_PRECOPY, converterv1.JobStep_JOB_STEP_COPY} {
		t.Run(strings.TrimPrefix(step.String(), "JOB_STEP_"), func(t *testing.T) {
			job := must(client.CreateJob(t.Context(), &converterv1.CreateJobRequest{Job: &converterv1.Job{
				Source:      &converterv1.V2VSource{Cloud: "old", ServerId: srvID, Warm: true},
				Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: "10.101.0.81"},
			}}))(t).GetJob()
			asked := false
			end := watchJob(t, client, job.GetName(), func(j *converterv1.Job) {
				if !asked && j.GetStep() == step {
					asked = true
					must(client.CancelJob(t.Context(), &converterv1.CancelJobRequest{Name: j.GetName()}))(t)
				}
			}, nil)
			if end.GetState() != converterv1.JobState_JOB_STATE_CANCELLED {
				t.Fatalf("job %s (%s), want CANCELLED", end.GetState(), end.GetError())
			}
			nothingLeft(t, c, end, src.Name, netID)
			waitStatus(t, c.oldC, srvID, "ACTIVE")
			t.Logf("cancelled in %s after %d round(s): nothing left, source ACTIVE", step, len(end.GetWarm().GetRounds()))
		})
	}
}
