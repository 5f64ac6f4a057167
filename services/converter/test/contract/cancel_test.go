package contract

import (
	"net/http"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

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
