package contract

import (
	"bytes"
	"context"
	"fmt"
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
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// volumeClouds are the two regions' Cinder clients.
func volumeClouds(t *testing.T) (oldV, newV *gophercloud.ServiceClient) {
	return must(devcloud.Open(t, "old").BlockStorage())(t), must(devcloud.Open(t, "new").BlockStorage())(t)
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

// cleanupVolumes deletes the new volumes a finished job made (after its server:
// cleanupJob is registered before, so it runs after this).
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
// region: the new volume holds the same bytes (digest of the whole volume), is of the
// mapped type ssd, same size and name, attached to the new server at the same
// device; nothing the job made to move it is left in either cloud, and the source
// volume is untouched and still attached.
func TestV2VMovesAttachedVolume(t *testing.T) {
	c := open(t)
	oldV, newV := volumeClouds(t)
	ctx := t.Context()
	tag := fmt.Sprintf("ctest-vol-%d", time.Now().UnixNano())
	data := bytes.Repeat([]byte(tag+" data volume "), (3<<20)/(len(tag)+13))
	src := devcloud.BootStandin(t, tag, "10.101.0.134", map[string]string{"role": "db"})
	volID := knownVolume(t, c, oldV, tag+"-data", devcloud.VolumeTypeLegacySSD, data)
	att := must(volumeattach.Create(ctx, src.Compute, src.ID, volumeattach.CreateOpts{VolumeID: volID}).Extract())(t)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	must(devcloud.WaitVolume(wctx, oldV, volID, "in-use"))(t)
	srcSum, srcSize := must3(devcloud.VolumeBytes(devcloud.RegionOld, volID))(t)

	netID := destNetwork(t, c, tag)
	env := servicetest.NewEnv(t)
	_, client := start(t, env)
	created := must(client.CreateJob(ctx, &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source: &converterv1.V2VSource{Cloud: "old", ServerId: src.ID},
		Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: "10.101.0.135",
			VolumeTypes: map[string]string{devcloud.VolumeTypeLegacySSD: devcloud.VolumeTypeSSD}},
	}}))(t).GetJob()
	j := watchJob(t, client, created.GetName(), nil, nil)
	cleanupJob(t, c, j)
	cleanupVolumes(t, newV, j)
	if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s: %s", j.GetState(), j.GetError())
	}
	if len(j.GetVolumes()) != 1 {
		t.Fatalf("job volumes %v, want the data volume", j.GetVolumes())
	}
	m := j.GetVolumes()[0]
	t.Logf("volume %s → %s: %d bytes copied", m.GetSourceVolumeId(), m.GetDestinationVolumeId(), m.GetProgress().GetDoneBytes())
	nv := must(volumes.Get(ctx, newV, m.GetDestinationVolumeId()).Extract())(t)
	if nv.Size != 1 || nv.VolumeType != devcloud.VolumeTypeSSD || nv.Name != tag+"-data" || !m.GetDone() || m.GetBoot() {
		t.Fatalf("new volume %s: size %d type %q name %q (job record %v)", nv.ID, nv.Size, nv.VolumeType, nv.Name, m)
	}
	if len(nv.Attachments) != 1 || nv.Attachments[0].ServerID != j.GetCreated().GetServerId() || nv.Attachments[0].Device != att.Device {
		t.Fatalf("new volume attachments %+v, want server %s at %s (the source's device)", nv.Attachments, j.GetCreated().GetServerId(), att.Device)
	}
	newSum, newSize := must3(devcloud.VolumeBytes(devcloud.RegionNew, nv.ID))(t)
	if newSum != srcSum || newSize != srcSize {
		t.Fatalf("new volume: %d bytes %x, the source's: %d bytes %x", newSize, newSum, srcSize, srcSum)
	}
	ov := must(volumes.Get(ctx, oldV, volID).Extract())(t)
	if ov.Status != "in-use" || len(ov.Attachments) != 1 || ov.Attachments[0].ServerID != src.ID {
		t.Fatalf("the source volume is %s, attachments %+v: want it still attached to %s", ov.Status, ov.Attachments, src.ID)
	}
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
	_, client := start(t, env)
	created := must(client.CreateJob(ctx, &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source:      &converterv1.V2VSource{Cloud: "old", ServerId: srv.ID},
		Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: "10.101.0.137"},
	}}))(t).GetJob()
	j := watchJob(t, client, created.GetName(), nil, nil)
	cleanupJob(t, c, j)
	cleanupVolumes(t, newV, j)
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
