package contract

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// volumeClouds are the two regions' Cinder clients.
func volumeClouds(t *testing.T) (oldV, newV *gophercloud.ServiceClient) {
	return must(devcloud.Open(t, "old").BlockStorage())(t), must(devcloud.Open(t, "new").BlockStorage())(t)
}

// volumeServer boots a stand-in server at ip in the old cloud with a 1 GiB data
// volume of type legacy-ssd attached (size random bytes at its start, the rest
// zeros, as a thin volume is), and returns the server, the volume and its
// device.
func volumeServer(t *testing.T, c clouds, oldV *gophercloud.ServiceClient, tag, ip string, size int) (*devcloud.Standin, string, string) {
	t.Helper()
	ctx := t.Context()
	// Random bytes: what Cinder's upload compresses away would not show a copy.
	data := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte([]byte(fmt.Sprintf("%-32.32s", tag)))).Read(data)
	src := devcloud.BootStandin(t, tag, ip, map[string]string{"role": "db"})
	volID := knownVolume(t, c, oldV, tag+"-data", devcloud.VolumeTypeLegacySSD, data)
	att := must(volumeattach.Create(ctx, src.Compute, src.ID, volumeattach.CreateOpts{VolumeID: volID}).Extract())(t)
	t.Cleanup(func() { _ = volumeattach.Delete(context.Background(), src.Compute, src.ID, volID).ExtractErr() })
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	must(devcloud.WaitVolume(wctx, oldV, volID, "in-use"))(t)
	return src, volID, att.Device
}

// sourceVolumeKept fails unless the source volume is still in use by its server.
func sourceVolumeKept(t *testing.T, oldV *gophercloud.ServiceClient, volID, serverID string) {
	t.Helper()
	ov := must(volumes.Get(t.Context(), oldV, volID).Extract())(t)
	if ov.Status != "in-use" || len(ov.Attachments) != 1 || ov.Attachments[0].ServerID != serverID {
		t.Fatalf("the source volume is %s, attachments %+v: want it still attached to %s", ov.Status, ov.Attachments, serverID)
	}
}

// knownVolume makes a 1 GiB volume of type typ in the old cloud holding data at its
// start (made from an image of those bytes: Cinder's own image-to-volume).
func knownVolume(t *testing.T, c clouds, oldV *gophercloud.ServiceClient, name, typ string, data []byte) string {
	t.Helper()
	ctx := t.Context()
	var imageID string
	if data != nil {
		private := images.ImageVisibilityPrivate
		img := must(images.Create(ctx, c.oldI, images.CreateOpts{Name: name + "-bytes", DiskFormat: "raw", ContainerFormat: "bare", Visibility: &private}).Extract())(t)
		t.Cleanup(func() { _ = images.Delete(context.Background(), c.oldI, img.ID).ExtractErr() })
		if err := imagedata.Upload(ctx, c.oldI, img.ID, bytes.NewReader(data)).ExtractErr(); err != nil {
			t.Fatal(err)
		}
		imageID = img.ID
	}
	v := must(volumes.Create(ctx, oldV, volumes.CreateOpts{Name: name, Size: 1, VolumeType: typ, ImageID: imageID}, nil).Extract())(t)
	t.Cleanup(func() { _ = devcloud.DeleteVolume(oldV, v.ID) })
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	must(devcloud.WaitVolume(wctx, oldV, v.ID, "available"))(t)
	return v.ID
}

// cleanupVolumes deletes the new volumes a finished job made once its server is gone
// (register it before cleanupJob: clean-ups run last first).
func cleanupVolumes(t *testing.T, newV *gophercloud.ServiceClient, j *converterv1.Job) {
	t.Cleanup(func() {
		for _, m := range j.GetVolumes() {
			if m.GetDestinationVolumeId() != "" {
				_ = devcloud.DeleteVolume(newV, m.GetDestinationVolumeId())
			}
		}
	})
}

// assertNoVolumeParts fails when anything a job makes to move its volumes
// (hikkoshi-<job>-vol<i>: snapshots, temporary volumes, images) is left in either
// cloud.
func assertNoVolumeParts(t *testing.T, c clouds, oldV, newV *gophercloud.ServiceClient, j *converterv1.Job) {
	t.Helper()
	ctx := t.Context()
	id := j.GetName()[len("jobs/"):]
	for i, m := range j.GetVolumes() {
		name := fmt.Sprintf("hikkoshi-%s-vol%d", id, i)
		for _, ic := range []*gophercloud.ServiceClient{c.oldI, c.newI} {
			pages := must(images.List(ic, images.ListOpts{Name: name}).AllPages(ctx))(t)
			if l := must(images.ExtractImages(pages))(t); len(l) > 0 {
				t.Errorf("image %s left in %s", name, ic.Endpoint)
			}
		}
		pages := must(volumes.List(oldV, volumes.ListOpts{Name: name}).AllPages(ctx))(t)
		if l := must(volumes.ExtractVolumes(pages))(t); len(l) > 0 {
			t.Errorf("temporary volume %s left in the old cloud", name)
		}
		pages = must(snapshots.List(oldV, snapshots.ListOpts{VolumeID: m.GetSourceVolumeId()}).AllPages(ctx))(t)
		if l := must(snapshots.ExtractSnapshots(pages))(t); len(l) > 0 {
			t.Errorf("%d snapshots of %s left in the old cloud", len(l), m.GetSourceVolumeId())
		}
	}
}

// TestV2VMovesAttachedVolume: a server with an attached 1 GiB data volume (known bytes
// written into it beforehand) of the old cloud's type legacy-ssd moves to the new
// region: only the blocks in use cross (the upload is qcow2), the new volume holds
// the same bytes (digest of the whole volume), is of the mapped type ssd, same size
// and name, attached to the new server at the same device; nothing the job made to move it is left in either cloud, and the source
// volume is untouched and still attached.
func TestV2VMovesAttachedVolume(t *testing.T) {
	c := open(t)
	oldV, newV := volumeClouds(t)
	ctx := t.Context()
	tag := fmt.Sprintf("ctest-vol-%d", time.Now().UnixNano())
	src, volID, device := volumeServer(t, c, oldV, tag, "10.101.0.138", 3<<20)
	srcSum, srcSize := must3(devcloud.VolumeBytes(devcloud.RegionOld, volID))(t)

	netID := destNetwork(t, c, tag)
	env := servicetest.NewEnv(t)
	_, client := start(t, env, "--chunk-bytes", fmt.Sprint(64<<20))
	created := must(client.CreateJob(ctx, &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source: &converterv1.V2VSource{Cloud: "old", ServerId: src.ID},
		Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: "10.101.0.139",
			VolumeTypes: map[string]string{devcloud.VolumeTypeLegacySSD: devcloud.VolumeTypeSSD}},
	}}))(t).GetJob()
	j := watchJob(t, client, created.GetName(), stepTimes(t), nil)
	cleanupVolumes(t, newV, j)
	cleanupJob(t, c, j)
	if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s: %s", j.GetState(), j.GetError())
	}
	if len(j.GetVolumes()) != 1 {
		t.Fatalf("job volumes %v, want the data volume", j.GetVolumes())
	}
	m := j.GetVolumes()[0]
	t.Logf("volume %s → %s: %d bytes copied for a 1 GiB volume holding 3 MiB (random)", m.GetSourceVolumeId(), m.GetDestinationVolumeId(), m.GetProgress().GetDoneBytes())
	if m.GetProgress().GetTotalBytes() > 16<<20 {
		t.Fatalf("%d bytes crossed for a volume with 3 MiB in use: the thin volume's zeros were copied", m.GetProgress().GetTotalBytes())
	}
	nv := must(volumes.Get(ctx, newV, m.GetDestinationVolumeId()).Extract())(t)
	if nv.Size != 1 || nv.VolumeType != devcloud.VolumeTypeSSD || nv.Name != tag+"-data" || !m.GetDone() || m.GetBoot() {
		t.Fatalf("new volume %s: size %d type %q name %q (job record %v)", nv.ID, nv.Size, nv.VolumeType, nv.Name, m)
	}
	if len(nv.Attachments) != 1 || nv.Attachments[0].ServerID != j.GetCreated().GetServerId() || nv.Attachments[0].Device != device {
		t.Fatalf("new volume attachments %+v, want server %s at %s (the source's device)", nv.Attachments, j.GetCreated().GetServerId(), device)
	}
	newSum, newSize := must3(devcloud.VolumeBytes(devcloud.RegionNew, nv.ID))(t)
	if newSum != srcSum || newSize != srcSize {
		t.Fatalf("new volume: %d bytes %x, the source's: %d bytes %x", newSize, newSum, srcSize, srcSum)
	}
	sourceVolumeKept(t, oldV, volID, src.ID)
	assertNoVolumeParts(t, c, oldV, newV, j)
}

// TestV2VMovesBootFromVolume: a server booted from a volume moves and boots, in the
// new region, from its volume's copy (no image: Nova's snapshot of such a server
// holds no bytes); the new root volume holds the old one's bytes.
func TestV2VMovesBootFromVolume(t *testing.T) {
	c := open(t)
	oldV, newV := volumeClouds(t)
	ctx := t.Context()
	tag := fmt.Sprintf("ctest-bfv-%d", time.Now().UnixNano())
	root := knownVolume(t, c, oldV, tag+"-root", devcloud.VolumeTypeStandard,
		bytes.Repeat([]byte(tag+" root "), (1<<20)/(len(tag)+6)))
	admin := devcloud.Open(t, "old-admin")
	ac, an := must(admin.Compute())(t), must(admin.Network())(t)
	sub := must(devcloud.FindSubnet(ctx, an, devcloud.VLANSubnet))(t)
	port := must(ports.Create(ctx, an, ports.CreateOpts{Name: tag, NetworkID: sub.NetworkID,
		FixedIPs: []ports.IP{{SubnetID: sub.ID, IPAddress: "10.101.0.136"}}}).Extract())(t)
	t.Cleanup(func() { _ = ports.Delete(context.Background(), an, port.ID).ExtractErr() })
	srv := must(servers.Create(ctx, ac, servers.CreateOpts{
		Name: tag, FlavorRef: must(devcloud.FindFlavor(ctx, ac, devcloud.FlavorTiny))(t), Networks: []servers.Network{{Port: port.ID}},
		BlockDevice: []servers.BlockDevice{{SourceType: servers.SourceVolume, DestinationType: servers.DestinationVolume, UUID: root, BootIndex: 0}},
	}, nil).Extract())(t)
	t.Cleanup(func() {
		_ = servers.Delete(context.Background(), ac, srv.ID).ExtractErr()
		waitGone(c.oldC, srv.ID)
	})
	waitStatus(t, c.oldC, srv.ID, "ACTIVE")
	srcSum, _ := must3(devcloud.VolumeBytes(devcloud.RegionOld, root))(t)

	netID := destNetwork(t, c, tag)
	env := servicetest.NewEnv(t)
	_, client := start(t, env, "--chunk-bytes", fmt.Sprint(64<<20))
	created := must(client.CreateJob(ctx, &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source:      &converterv1.V2VSource{Cloud: "old", ServerId: srv.ID},
		Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: "10.101.0.137"},
	}}))(t).GetJob()
	j := watchJob(t, client, created.GetName(), stepTimes(t), nil)
	cleanupVolumes(t, newV, j)
	cleanupJob(t, c, j)
	if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s: %s", j.GetState(), j.GetError())
	}
	if j.GetCreated().GetSnapshotImageId() != "" || j.GetCreated().GetImageId() != "" {
		t.Fatalf("a boot-from-volume job made images %q and %q: its root disk is a volume", j.GetCreated().GetSnapshotImageId(), j.GetCreated().GetImageId())
	}
	if len(j.GetVolumes()) != 1 || !j.GetVolumes()[0].GetBoot() {
		t.Fatalf("job volumes %v, want the boot volume", j.GetVolumes())
	}
	ns := waitStatus(t, c.newC, j.GetCreated().GetServerId(), "ACTIVE")
	if id, _ := ns.Image["id"].(string); id != "" {
		t.Fatalf("the new server booted from image %s, not from its volume", id)
	}
	nv := must(volumes.Get(ctx, newV, j.GetVolumes()[0].GetDestinationVolumeId()).Extract())(t)
	if len(nv.Attachments) != 1 || nv.Attachments[0].ServerID != ns.ID || nv.Bootable != "true" {
		t.Fatalf("new root volume: attachments %+v bootable %q, want attached to %s and bootable", nv.Attachments, nv.Bootable, ns.ID)
	}
	if sum, _ := must3(devcloud.VolumeBytes(devcloud.RegionNew, nv.ID))(t); sum != srcSum {
		t.Fatal("the new root volume's bytes differ from the old one's")
	}
	assertNoVolumeParts(t, c, oldV, newV, j)
}

// stepTimes logs, for a job being watched, how long each step took (the volume
// tests' time is mostly Cinder's and Glance's: this says whose).
func stepTimes(t *testing.T) func(*converterv1.Job) {
	step, since := converterv1.JobStep_JOB_STEP_UNSPECIFIED, time.Now()
	var part string
	partSince := since
	return func(j *converterv1.Job) {
		if j.GetStep() != step {
			t.Logf("%s: %.1f s", step, time.Since(since).Seconds())
			step, since = j.GetStep(), time.Now()
		}
		for i, m := range j.GetVolumes() {
			p := fmt.Sprintf("volume %d: snapshot %t, temporary volume %t, image %t, copy %t, new volume %t, done %t", i,
				m.GetSourceSnapshotId() != "", m.GetSourceTempVolumeId() != "", m.GetSourceImageId() != "",
				m.GetImageId() != "", m.GetDestinationVolumeId() != "", m.GetDone())
			if i == len(j.GetVolumes())-1 && p != part {
				t.Logf("%s after %.1f s", p, time.Since(partSince).Seconds())
				part, partSince = p, time.Now()
			}
		}
	}
}

// must3 is must for a call that returns two values and an error.
func must3[A, B any](a A, b B, err error) func(testing.TB) (A, B) {
	return func(tb testing.TB) (A, B) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		return a, b
	}
}

// waitGone waits (up to a minute) until Nova no longer has the server.
func waitGone(cc *gophercloud.ServiceClient, id string) {
	for range 240 {
		if _, err := servers.Get(context.Background(), cc, id).Extract(); gophercloud.ResponseCodeIs(err, 404) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// noNewVolumes fails when the destination Cinder holds a volume the job made.
func noNewVolumes(t *testing.T, newV *gophercloud.ServiceClient, j *converterv1.Job) {
	t.Helper()
	id := strings.TrimPrefix(j.GetName(), "jobs/")
	pages := must(volumes.List(newV, volumes.ListOpts{Metadata: map[string]string{"hikkoshi_job": id}}).AllPages(t.Context()))(t)
	for _, v := range must(volumes.ExtractVolumes(pages))(t) {
		t.Errorf("volume %s (%s) of the job left in the new cloud", v.ID, v.Status)
	}
}

// volumePoint is a moment in a volume's move, as the job's record shows it.
type volumePoint struct {
	name    string
	reached func(*converterv1.Job) bool
}

func firstVolume(j *converterv1.Job) *converterv1.VolumeMove {
	if len(j.GetVolumes()) == 0 {
		return nil
	}
	return j.GetVolumes()[0]
}

// TestCancelVolumeMove cancels a job moving a server's data volume at each point of
// the volume's way — its snapshot made, the temporary volume made, the upload to an
// image begun, the copy under way, the new volume made — and once the new server
// boots with it: each time, neither cloud keeps anything the job made (snapshots,
// temporary volumes, images, new volumes, the server), the source runs again and its
// volume stays attached. The copy is slowed (1 MiB/s) so it lasts.
func TestCancelVolumeMove(t *testing.T) {
	c := open(t)
	oldV, newV := volumeClouds(t)
	tag := fmt.Sprintf("ctest-volcancel-%d", time.Now().UnixNano())
	src, volID, _ := volumeServer(t, c, oldV, tag, "10.101.0.143", 4<<20)
	netID := destNetwork(t, c, tag)
	env := servicetest.NewEnv(t)
	// The volume's image holds its 4 MiB in use (qcow2): 1 MiB chunks at 1 MiB/s
	// make its copy last.
	_, client := start(t, env, "--chunk-bytes", fmt.Sprint(1<<20), "--copy-bandwidth", fmt.Sprint(1<<20))
	for _, p := range []volumePoint{
		{"snapshot", func(j *converterv1.Job) bool { return firstVolume(j).GetSourceSnapshotId() != "" }},
		{"temporary-volume", func(j *converterv1.Job) bool { return firstVolume(j).GetSourceTempVolumeId() != "" }},
		{"upload", func(j *converterv1.Job) bool { return firstVolume(j).GetSourceImageId() != "" }},
		{"copy", func(j *converterv1.Job) bool { return firstVolume(j).GetProgress().GetDoneBytes() > 0 }},
		{"new-volume", func(j *converterv1.Job) bool { return firstVolume(j).GetDestinationVolumeId() != "" }},
		{"boot", func(j *converterv1.Job) bool { return j.GetStep() == converterv1.JobStep_JOB_STEP_BOOT }},
	} {
		t.Run(p.name, func(t *testing.T) {
			job := must(client.CreateJob(t.Context(), &converterv1.CreateJobRequest{Job: &converterv1.Job{
				Source: &converterv1.V2VSource{Cloud: "old", ServerId: src.ID},
				Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: "10.101.0.144",
					VolumeTypes: map[string]string{devcloud.VolumeTypeLegacySSD: devcloud.VolumeTypeSSD}},
			}}))(t).GetJob()
			var at *converterv1.Job
			end := watchJob(t, client, job.GetName(), func(j *converterv1.Job) {
				if at == nil && p.reached(j) {
					at = j
					must(client.CancelJob(t.Context(), &converterv1.CancelJobRequest{Name: j.GetName()}))(t)
				}
			}, nil)
			if at == nil || end.GetState() != converterv1.JobState_JOB_STATE_CANCELLED {
				t.Fatalf("job %s (%s), cancelled at %s: %t", end.GetState(), end.GetError(), p.name, at != nil)
			}
			nothingLeft(t, c, end, src.Name, netID)
			assertNoVolumeParts(t, c, oldV, newV, end)
			noNewVolumes(t, newV, end)
			waitStatus(t, c.oldC, src.ID, "ACTIVE")
			sourceVolumeKept(t, oldV, volID, src.ID)
			t.Logf("cancelled at %s (step %s, %d bytes copied): nothing left, source ACTIVE with its volume",
				p.name, at.GetStep(), firstVolume(at).GetProgress().GetDoneBytes())
		})
	}
}

// TestWorkerKilledMidVolumeCopy: the converter moving a server's data volume is
// killed (SIGKILL) in the middle of the volume's copy; a second converter takes the
// job over once the first's lease is gone and finishes it: the new volume holds the
// source's bytes, the copy read again at most the chunk the first had begun, and
// nothing the two made to move it is left.
func TestWorkerKilledMidVolumeCopy(t *testing.T) {
	c := open(t)
	oldV, newV := volumeClouds(t)
	tag := fmt.Sprintf("ctest-volkill-%d", time.Now().UnixNano())
	src, volID, _ := volumeServer(t, c, oldV, tag, "10.101.0.145", 6<<20)
	srcSum, _ := must3(devcloud.VolumeBytes(devcloud.RegionOld, volID))(t)
	netID := destNetwork(t, c, tag)
	env := servicetest.NewEnv(t)
	chunk := int64(1 << 20)
	first, client := start(t, env, "--chunk-bytes", fmt.Sprint(chunk), "--copy-bandwidth", fmt.Sprint(1<<20))
	created := must(client.CreateJob(t.Context(), &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source: &converterv1.V2VSource{Cloud: "old", ServerId: src.ID},
		Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: "10.101.0.146",
			VolumeTypes: map[string]string{devcloud.VolumeTypeLegacySSD: devcloud.VolumeTypeSSD}},
	}}))(t).GetJob()
	var atKill *converterv1.Job
	watchJob(t, client, created.GetName(), func(j *converterv1.Job) {
		if atKill == nil && firstVolume(j).GetProgress().GetDoneBytes() >= 2*chunk {
			atKill = j
			first.Signal(syscall.SIGKILL)
		}
	}, func() bool { return atKill != nil })
	if atKill == nil {
		// Cancelled, so that its worker deletes what it made before the test ends.
		_, _ = client.CancelJob(context.Background(), &converterv1.CancelJobRequest{Name: created.GetName()})
		watchJob(t, client, created.GetName(), nil, nil)
		t.Fatal("the volume's copy ended before the kill")
	}
	_ = first.Wait(10 * time.Second)
	_, client2 := start(t, env, "--chunk-bytes", fmt.Sprint(chunk))
	j := watchJob(t, client2, created.GetName(), nil, nil)
	cleanupVolumes(t, newV, j)
	cleanupJob(t, c, j)
	if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED || j.GetAttempts() != 2 {
		t.Fatalf("job %s after %d attempts: %s", j.GetState(), j.GetAttempts(), j.GetError())
	}
	m, k := firstVolume(j), firstVolume(atKill)
	t.Logf("killed at %d/%d bytes of the volume (%d chunks verified); the second worker finished: %d bytes read in all",
		k.GetProgress().GetDoneBytes(), m.GetProgress().GetTotalBytes(), len(k.GetProgress().GetChunks()), m.GetProgress().GetTransferredBytes())
	if m.GetProgress().GetTransferredBytes() > m.GetProgress().GetTotalBytes()+chunk {
		t.Fatalf("%d bytes read for a %d-byte volume: the takeover read verified chunks again", m.GetProgress().GetTransferredBytes(), m.GetProgress().GetTotalBytes())
	}
	if sum, _ := must3(devcloud.VolumeBytes(devcloud.RegionNew, m.GetDestinationVolumeId()))(t); sum != srcSum {
		t.Fatal("the new volume's bytes differ from the source's after the takeover")
	}
	if k.GetSourceSnapshotId() != m.GetSourceSnapshotId() || k.GetSourceImageId() != m.GetSourceImageId() {
		t.Fatalf("the second worker made its own snapshot or image (%v, then %v)", k, m)
	}
	assertNoVolumeParts(t, c, oldV, newV, j)
	sourceVolumeKept(t, oldV, volID, src.ID)
	if left, err := imagecopy.ChunkImages(t.Context(), imagecopy.NewGlance(c.newI), m.GetProgress().GetImageName()); err != nil || len(left) != 0 {
		t.Fatalf("%d chunk images of the volume's copy left (%v)", len(left), err)
	}
}
