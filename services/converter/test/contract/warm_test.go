package contract

import (
	"testing"

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
