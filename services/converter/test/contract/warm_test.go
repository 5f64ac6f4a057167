package contract

import (
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
)

// TestV2VWarm moves a running instance of the old region's TCG compute warm: two
// pre-copy rounds of live snapshots while it runs, then the cut-over (stop, final
// snapshot, a round that sends only what the store does not hold, the image
// assembled in the new cloud). The image equals the final snapshot; the job
// records each round's bytes and the downtime; no pack, manifest or pre-copy
// snapshot is left.
func TestV2VWarm(t *testing.T) {
	c := open(t)
	srvID, netID := fixture(t, c)
	env := servicetest.NewEnv(t)
	_, client := start(t, env)
	probe, _ := listen(t)
	created := must(client.CreateJob(t.Context(), &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source:      &converterv1.V2VSource{Cloud: "old", ServerId: srvID, Warm: true, WarmRounds: 2},
		Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: "10.101.0.79", HealthCheck: "tcp:" + probe.Port, HealthCheckHost: probe.Host},
	}}))(t).GetJob()
	running := map[int]string{} // the source's status when each round was recorded
	j := watchJob(t, client, created.GetName(), func(j *converterv1.Job) {
		if n := len(j.GetWarm().GetRounds()); n > 0 && running[n] == "" {
			s, err := servers.Get(t.Context(), c.oldC, srvID).Extract()
			if err == nil {
				running[n] = s.Status
			}
		}
	}, nil)
	cleanupJob(t, c, j)
	if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s: %s", j.GetState(), j.GetError())
	}
	rs := j.GetWarm().GetRounds()
	if len(rs) != 3 || rs[0].GetFinal() || rs[1].GetFinal() || !rs[2].GetFinal() || running[1] != "ACTIVE" {
		t.Fatalf("rounds %v; the source was %q at the first round's end, want ACTIVE", rs, running[1])
	}
	for i, r := range rs {
		t.Logf("round %d (final %v): read %d, sent %d, found %d bytes (%d of %d pieces)", i, r.GetFinal(), r.GetBytesRead(), r.GetBytesSent(), r.GetBytesFound(), r.GetPiecesFound(), r.GetPieces())
		if r.GetBytesSent()+r.GetBytesFound() != r.GetBytesRead() || r.GetBytesRead() == 0 {
			t.Fatalf("round %d does not add up: %v", i, r)
		}
	}
	// The first round finds only pieces repeated within the snapshot itself (runs of
	// zeros); the last finds what the earlier rounds sent.
	if rs[0].GetBytesSent() == 0 || rs[2].GetBytesFound() == 0 {
		t.Fatalf("the first round sent nothing, or the last found nothing: %v", rs)
	}
	if j.GetDowntime() == nil || j.GetStopTime() == nil || j.GetDowntime().AsDuration() <= 0 {
		t.Fatalf("downtime %v from %v", j.GetDowntime(), j.GetStopTime())
	}
	t.Logf("downtime (stop asked → new server ACTIVE and answering): %s", j.GetDowntime().AsDuration())
	snap := must(images.Get(t.Context(), c.oldI, j.GetCreated().GetSnapshotImageId()).Extract())(t)
	img := must(images.Get(t.Context(), c.newI, j.GetCreated().GetImageId()).Extract())(t)
	if img.Checksum != snap.Checksum || img.SizeBytes != snap.SizeBytes {
		t.Fatalf("destination image (%d bytes, md5 %s) differs from the final snapshot (%d bytes, md5 %s)", img.SizeBytes, img.Checksum, snap.SizeBytes, snap.Checksum)
	}
	dst := imagecopy.NewGlance(c.newI)
	for _, tag := range []string{imagecopy.PackTag, imagecopy.ManifestTag} {
		if left, err := dst.Tagged(t.Context(), tag); err != nil || len(left) != 0 {
			t.Fatalf("%d images tagged %s left (%v)", len(left), tag, err)
		}
	}
	if j.GetCreated().GetPrecopySnapshotImageId() != "" {
		t.Fatalf("a pre-copy snapshot is still recorded: %s", j.GetCreated().GetPrecopySnapshotImageId())
	}
	if list, err := images.List(c.oldI, images.ListOpts{Name: snap.Name}).AllPages(t.Context()); err == nil {
		all, _ := images.ExtractImages(list)
		if len(all) != 1 {
			t.Fatalf("%d images named %s in the old cloud, want the final snapshot alone", len(all), snap.Name)
		}
	}
}

// TestV2VWarmHoldsForCutOver: a warm job that holds after its pre-copy waits,
// the source running, until CutOverJob; the caller stops the source itself first
// (as the wave runner does), and the job goes on without stopping it. CutOverJob
// refuses a job that does not hold, and a second, different request.
func TestV2VWarmHoldsForCutOver(t *testing.T) {
	c := open(t)
	srvID, netID := fixture(t, c)
	env := servicetest.NewEnv(t)
	_, client := start(t, env)
	created := must(client.CreateJob(t.Context(), &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source:      &converterv1.V2VSource{Cloud: "old", ServerId: srvID, Warm: true, HoldForCutover: true},
		Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: "10.101.0.82"},
	}}))(t).GetJob()
	var holding *converterv1.Job
	for end := time.Now().Add(2 * time.Minute); holding == nil && time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if j := must(client.GetJob(t.Context(), &converterv1.GetJobRequest{Name: created.GetName()}))(t).GetJob(); j.GetWarm().GetHolding() {
			holding = j
		}
	}
	if holding == nil || holding.GetStep() != converterv1.JobStep_JOB_STEP_PRECOPY || len(holding.GetWarm().GetRounds()) != 1 {
		t.Fatalf("the job did not hold after one pre-copy round: %v", holding)
	}
	if s := must(servers.Get(t.Context(), c.oldC, srvID).Extract())(t); s.Status != "ACTIVE" {
		t.Fatalf("the source is %s while the job holds, want ACTIVE", s.Status)
	}
	// A job that does not hold: none such here, so one that is not there.
	if _, err := client.CutOverJob(t.Context(), &converterv1.CutOverJobRequest{Name: "jobs/job-20261207t000000z-000000"}); status.Code(err) != codes.NotFound {
		t.Fatalf("CutOverJob of a job that is not there: %v, want NOT_FOUND", err)
	}
	stopAt := time.Now()
	// The caller stops the source, then lets the job cut over.
	if err := servers.Stop(t.Context(), c.oldC, srvID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c.oldC, srvID, "SHUTOFF")
	t.Logf("the source stopped in %s", time.Since(stopAt).Round(time.Second))
	cutAt := time.Now()
	req := &converterv1.CutOverJobRequest{Name: created.GetName(), SourceStopped: true}
	must(client.CutOverJob(t.Context(), req))(t)
	must(client.CutOverJob(t.Context(), req))(t) // a repeat
	if _, err := client.CutOverJob(t.Context(), &converterv1.CutOverJobRequest{Name: created.GetName()}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("a different second CutOverJob: %v, want FAILED_PRECONDITION", err)
	}
	j := watchJob(t, client, created.GetName(), nil, nil)
	cleanupJob(t, c, j)
	if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED || !j.GetCutover().GetSourceStopped() || j.GetCreated().GetStoppedSource() {
		t.Fatalf("job %s (%s): cutover %v, stopped by the job: %v", j.GetState(), j.GetError(), j.GetCutover(), j.GetCreated().GetStoppedSource())
	}
	rs := j.GetWarm().GetRounds()
	t.Logf("held after %d round(s); cut over in %s: sent %d of %d bytes", len(rs)-1, time.Since(cutAt).Round(time.Second), rs[len(rs)-1].GetBytesSent(), rs[len(rs)-1].GetBytesRead())
	if err := servers.Start(t.Context(), c.oldC, srvID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c.oldC, srvID, "ACTIVE")
}

// TestWarmWorkerKilledMidPrecopy: the converter holding a warm job is killed
// (SIGKILL) while its pre-copy round sends (slowed to 1 MiB/s); a second converter
// takes the job over, deletes the packs the dead round left, runs the round again
// from its recorded snapshot and finishes: the image is the final snapshot, and
// nothing of the copy is left.
func TestWarmWorkerKilledMidPrecopy(t *testing.T) {
	c := open(t)
	srvID, netID := fixture(t, c)
	env := servicetest.NewEnv(t)
	first, client := start(t, env, "--copy-bandwidth", "1048576")
	created := must(client.CreateJob(t.Context(), &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source:      &converterv1.V2VSource{Cloud: "old", ServerId: srvID, Warm: true},
		Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: "10.101.0.84"},
	}}))(t).GetJob()
	var sending *converterv1.Job
	for end := time.Now().Add(2 * time.Minute); sending == nil && time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		j := must(client.GetJob(t.Context(), &converterv1.GetJobRequest{Name: created.GetName()}))(t).GetJob()
		if snap := j.GetCreated().GetPrecopySnapshotImageId(); snap != "" {
			if img, err := images.Get(t.Context(), c.oldI, snap).Extract(); err == nil && img.Status == images.ImageStatusActive {
				sending = j
			}
		}
	}
	if sending == nil {
		t.Fatal("the pre-copy never began")
	}
	time.Sleep(3 * time.Second) // a few MiB into the round's packs
	first.Signal(syscall.SIGKILL)
	_ = first.Wait(10 * time.Second)
	packs, err := imagecopy.NewGlance(c.newI).Tagged(t.Context(), imagecopy.PackTag)
	if err != nil || len(packs) == 0 {
		t.Fatalf("no pack in flight when the worker was killed (%v): the test killed it too late", err)
	}
	_, client2 := start(t, env)
	j := watchJob(t, client2, created.GetName(), nil, nil)
	cleanupJob(t, c, j)
	if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED || j.GetAttempts() != 2 || len(j.GetWarm().GetRounds()) != 2 {
		t.Fatalf("job %s after %d attempts, %d rounds: %s", j.GetState(), j.GetAttempts(), len(j.GetWarm().GetRounds()), j.GetError())
	}
	snap := must(images.Get(t.Context(), c.oldI, j.GetCreated().GetSnapshotImageId()).Extract())(t)
	img := must(images.Get(t.Context(), c.newI, j.GetCreated().GetImageId()).Extract())(t)
	if img.Checksum != snap.Checksum {
		t.Fatal("the image differs from the final snapshot after the takeover")
	}
	for _, tag := range []string{imagecopy.PackTag, imagecopy.ManifestTag} {
		if left, err := imagecopy.NewGlance(c.newI).Tagged(t.Context(), tag); err != nil || len(left) != 0 {
			t.Fatalf("%d images tagged %s left (%v)", len(left), tag, err)
		}
	}
	if list, err := images.List(c.oldI, images.ListOpts{Name: snap.Name}).AllPages(t.Context()); err == nil {
		if all, _ := images.ExtractImages(list); len(all) != 1 {
			t.Fatalf("%d images named %s in the old cloud, want the final snapshot alone", len(all), snap.Name)
		}
	}
	t.Logf("killed with %d pack(s) in flight; the second worker ran the round again and finished", len(packs))
}
