package contract

import (
	"fmt"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/devcloud"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
)

// TestV2VMovesAFakeDriverServer: a web server of the estate on Nova's fake driver —
// the dev cloud's driver gives it a disk and a stand-in that answers on its address —
// moved live by one job (snapshot while it runs, source left running, as the wave
// runner moves a stateless server). The new Glance's image holds the snapshot's bytes
// (digests equal) and the marker naming the server it was taken from; the moved
// server answers on its new address under its name, and the source still does. Then
// the source, stopped, moves cold: its replacement is left stopped and does not answer.
func TestV2VMovesAFakeDriverServer(t *testing.T) {
	c := open(t)
	ctx := t.Context()
	tag := fmt.Sprintf("ctest-web-%d", time.Now().UnixNano())
	src := devcloud.BootStandin(t, tag, "10.101.0.131", map[string]string{"role": "web"})
	meterBin, cleanup, err := servicetest.Build("github.com/hikkoshi/hikkoshi/platform/cmd/hikkoshi-devcloud")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	if r := devcloud.Meter(t, meterBin, "--addr", src.IP+":8080", "--rate", "10", "--for", "1s"); r.Failed != 0 || r.Servers[tag] == nil {
		t.Fatalf("the source does not answer on %s: %+v", src.IP, r)
	}

	netID := destNetwork(t, c, tag)
	env := servicetest.NewEnv(t)
	_, client := start(t, env, "--probe-proxy", devcloud.Bastion)
	const newIP = "10.101.0.132"
	created := must(client.CreateJob(ctx, &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source: &converterv1.V2VSource{Cloud: "old", ServerId: src.ID, Live: true},
		// The health check reaches the new server's own address through the dev
		// cloud's jump host, as an SRE's probe goes through a bastion.
		Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: newIP, HealthCheck: "http:8080/healthz"},
	}}))(t).GetJob()
	start := time.Now()
	j := watchJob(t, client, created.GetName(), nil, nil)
	cleanupJob(t, c, j)
	if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s: %s", j.GetState(), j.GetError())
	}
	t.Logf("job %s in %s: %d bytes", j.GetName(), time.Since(start).Round(100*time.Millisecond), j.GetProgress().GetTotalBytes())

	snap := must(images.Get(ctx, c.oldI, j.GetCreated().GetSnapshotImageId()).Extract())(t)
	img := must(images.Get(ctx, c.newI, j.GetCreated().GetImageId()).Extract())(t)
	if snap.SizeBytes == 0 || img.Checksum != snap.Checksum || img.Properties["os_hash_value"] != snap.Properties["os_hash_value"] {
		t.Fatalf("destination image (%d bytes, md5 %s) differs from the snapshot (%d bytes, md5 %s)", img.SizeBytes, img.Checksum, snap.SizeBytes, snap.Checksum)
	}
	m, err := devcloud.ReadDiskMarker(ctx, c.newI, img.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m.Fields["server_id"] != src.ID || m.Fields["name"] != tag {
		t.Fatalf("the image's marker names %v, want server %s (%s)", m.Fields, src.ID, tag)
	}
	t.Logf("image %s: %d bytes, sha256 %s…, marker %v", img.ID, m.Size, m.SHA256[:16], m.Fields)

	r := devcloud.Meter(t, meterBin, "--addr", newIP+":8080", "--rate", "10", "--for", "1s")
	if r.Failed != 0 || r.Servers[tag] == nil || r.Servers[tag].Count != r.Sent {
		t.Fatalf("the moved server does not answer on %s as %s: %+v", newIP, tag, r)
	}
	r = devcloud.Meter(t, meterBin, "--addr", src.IP+":8080", "--rate", "10", "--for", "1s")
	if r.Failed != 0 || r.Servers[tag] == nil {
		t.Fatalf("the source, moved live, no longer answers on %s: %+v", src.IP, r)
	}
	waitStatus(t, c.oldC, src.ID, "ACTIVE")

	// Cold: the source stopped, its replacement booted and left stopped.
	src.Stop(t)
	r = devcloud.Meter(t, meterBin, "--addr", src.IP+":8080", "--rate", "4", "--for", "1s", "--timeout", "1s")
	if r.Answered != 0 {
		t.Fatalf("the stopped source still answers on %s: %+v", src.IP, r)
	}
	const coldIP = "10.101.0.133"
	cold := must(client.CreateJob(ctx, &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source:      &converterv1.V2VSource{Cloud: "old", ServerId: src.ID},
		Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: coldIP, Stopped: true, HealthCheck: "tcp:8080"},
	}}))(t).GetJob()
	j = watchJob(t, client, cold.GetName(), nil, nil)
	cleanupJob(t, c, j)
	if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("cold job %s: %s", j.GetState(), j.GetError())
	}
	waitStatus(t, c.newC, j.GetCreated().GetServerId(), "SHUTOFF")
	r = devcloud.Meter(t, meterBin, "--addr", coldIP+":8080", "--rate", "4", "--for", "1s", "--timeout", "1s")
	if r.Answered != 0 {
		t.Fatalf("the replacement of a stopped server answers on %s: %+v", coldIP, r)
	}
	if s := waitStatus(t, c.oldC, src.ID, "SHUTOFF"); s == nil {
		t.Fatal("source")
	}
}
