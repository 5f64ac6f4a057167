package contract

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// TestSyncDiscoversVolumes, against the dev cloud's real Cinder: a server booted from
// a volume and a server with an attached data volume become workloads whose facts
// name each volume (size, type, device, Cinder's bootable flag) and which one the
// server boots from; the pre-flight counts the boot-from-volume server's disk from
// its volume, not its flavor, and names the volume types the destination lacks
// (none once the run maps them); a volume attached or detached later shows in the next
// incremental sync, though the server's updated_at does not move.
func TestSyncDiscoversVolumes(t *testing.T) {
	devcloud.Require(t)
	old := devcloud.Open(t, "old")
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	bc := must(old.BlockStorage())(t)
	cc := must(old.Compute())(t)
	ic := must(old.Image())(t)
	nc := must(old.Network())(t)
	sub := must(devcloud.FindSubnet(ctx, nc, devcloud.VLANSubnet))(t)
	flavor := must(devcloud.FindFlavor(ctx, cc, devcloud.FlavorTiny))(t)
	image := must(devcloud.FindImage(ctx, ic, devcloud.SeedImage))(t)
	tag := fmt.Sprintf("%d", time.Now().UnixNano()%1e6)

	volume := func(name, typ, fromImage string) string {
		v := must(volumes.Create(ctx, bc, volumes.CreateOpts{Name: name + "-" + tag, Size: 1, VolumeType: typ, ImageID: fromImage}, nil).Extract())(t)
		t.Cleanup(func() { _ = devcloud.DeleteVolume(bc, v.ID) })
		must(devcloud.WaitVolume(ctx, bc, v.ID, "available"))(t)
		return v.ID
	}
	boot := func(name string, opts servers.CreateOpts) string {
		opts.Name, opts.FlavorRef, opts.Networks = name+"-"+tag, flavor, []servers.Network{{UUID: sub.NetworkID}}
		s := must(servers.Create(ctx, cc, opts, nil).Extract())(t)
		t.Cleanup(func() {
			_ = servers.Delete(context.Background(), cc, s.ID).ExtractErr()
			waitServer(context.Background(), t, cc, s.ID, "")
		})
		waitServer(ctx, t, cc, s.ID, "ACTIVE")
		return s.ID
	}

	root := volume("ctest-root", devcloud.VolumeTypeLegacySSD, image)
	data := volume("ctest-data", devcloud.VolumeTypeStandard, "")
	later := volume("ctest-later", devcloud.VolumeTypeStandard, "")
	bfv := boot("ctest-bfv", servers.CreateOpts{BlockDevice: []servers.BlockDevice{{
		SourceType: servers.SourceVolume, DestinationType: servers.DestinationVolume, UUID: root, BootIndex: 0,
	}}})
	db := boot("ctest-db", servers.CreateOpts{ImageRef: image})
	att := must(volumeattach.Create(ctx, cc, db, volumeattach.CreateOpts{VolumeID: data}).Extract())(t)
	must(devcloud.WaitVolume(ctx, bc, data, "in-use"))(t)

	p := newEnv(t).start(t, "--source-clouds", "old", "--destination-clouds", "new", "--clouds-yaml", devcloud.CloudsYAML())
	syncTo(t, p, inventoryv1.SyncMode_SYNC_MODE_FULL)
	facts := func(server string) *inventoryv1.InstanceFacts {
		return must(p.client.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{Name: "workloads/i-" + server}))(t).GetWorkload().GetFacts().GetInstance()
	}

	f := facts(bfv)
	if f.GetImageId() != "" || len(f.GetVolumes()) != 1 {
		t.Fatalf("boot-from-volume server: image %q, volumes %v", f.GetImageId(), f.GetVolumes())
	}
	if v := f.GetVolumes()[0]; v.GetId() != root || !v.GetBoot() || !v.GetBootable() || v.GetSizeGb() != 1 ||
		v.GetVolumeType() != devcloud.VolumeTypeLegacySSD || v.GetDevice() == "" {
		t.Fatalf("boot volume facts %v, want %s: boot, bootable, 1 GiB, %s, at a device", v, root, devcloud.VolumeTypeLegacySSD)
	}
	f = facts(db)
	if len(f.GetVolumes()) != 1 {
		t.Fatalf("db server volumes %v, want the data volume", f.GetVolumes())
	}
	if v := f.GetVolumes()[0]; v.GetId() != data || v.GetBoot() || v.GetBootable() || v.GetDevice() != att.Device ||
		v.GetVolumeType() != devcloud.VolumeTypeStandard || v.GetName() != "ctest-data-"+tag {
		t.Fatalf("data volume facts %v, want %s at %s, not boot", v, data, att.Device)
	}

	// Pre-flight of a wave holding both: the boot-from-volume server's 1 GiB is its
	// volume's (its flavor's 1 GiB disk is not used); the db server's is its flavor's
	// root disk and its data volume.
	for _, id := range []string{bfv, db} {
		must(p.client.UpdateWorkload(ctx, &inventoryv1.UpdateWorkloadRequest{
			Workload:   &inventoryv1.Workload{Name: "workloads/i-" + id, Wave: 91},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"wave"}},
		}))(t)
	}
	rep := must(p.client.GetPreflight(ctx, &inventoryv1.GetPreflightRequest{Wave: 91, Destination: "new"}))(t).GetReport()
	if rep.GetWorkloads() != 2 || rep.GetDiskBytes() != 3<<30 {
		t.Fatalf("pre-flight %v: want 2 workloads and 3 GiB", rep)
	}
	// The new region has no legacy-ssd (the boot volume's type): missing, unless
	// the run maps it to ssd, which the new region's Cinder has.
	if l := rep.GetMissingVolumeTypes(); len(l) != 1 || l[0] != devcloud.VolumeTypeLegacySSD || rep.GetOk() {
		t.Fatalf("pre-flight missing volume types %v (ok %t), want %s", l, rep.GetOk(), devcloud.VolumeTypeLegacySSD)
	}
	rep = must(p.client.GetPreflight(ctx, &inventoryv1.GetPreflightRequest{Wave: 91, Destination: "new",
		VolumeTypes: map[string]string{devcloud.VolumeTypeLegacySSD: devcloud.VolumeTypeSSD}}))(t).GetReport()
	if len(rep.GetMissingVolumeTypes()) != 0 {
		t.Fatalf("pre-flight with legacy-ssd mapped to ssd: missing %v", rep.GetMissingVolumeTypes())
	}

	// Attached after the sync: the next incremental sync sees it.
	must(volumeattach.Create(ctx, cc, db, volumeattach.CreateOpts{VolumeID: later}).Extract())(t)
	must(devcloud.WaitVolume(ctx, bc, later, "in-use"))(t)
	if sy := syncTo(t, p, inventoryv1.SyncMode_SYNC_MODE_AUTO); sy.GetMode() != inventoryv1.SyncMode_SYNC_MODE_INCREMENTAL {
		t.Fatalf("sync mode %v, want incremental", sy.GetMode())
	}
	if vs := facts(db).GetVolumes(); len(vs) != 2 {
		t.Fatalf("after attaching %s: volumes %v", later, vs)
	}
	// Detached: gone from the facts at the next incremental sync.
	if err := volumeattach.Delete(ctx, cc, db, data).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	must(devcloud.WaitVolume(ctx, bc, data, "available"))(t)
	syncTo(t, p, inventoryv1.SyncMode_SYNC_MODE_AUTO)
	if vs := facts(db).GetVolumes(); len(vs) != 1 || vs[0].GetId() != later {
		t.Fatalf("after detaching %s: volumes %v, want only %s", data, vs, later)
	}
}
