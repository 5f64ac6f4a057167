package devcloud_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// waitUntil polls get every 500 ms until it returns done, fails on an error or after
// limit.
func waitUntil(t *testing.T, what string, limit time.Duration, get func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		done, err := get()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, limit)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func volumeStatus(t *testing.T, bc *gophercloud.ServiceClient, id string, want string, limit time.Duration) volumes.Volume {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	return *must(devcloud.WaitVolume(ctx, bc, id, want))
}

func deleteVolume(t *testing.T, bc *gophercloud.ServiceClient, id string) {
	t.Cleanup(func() { _ = devcloud.DeleteVolume(bc, id) })
}

// volumeDigest uploads the volume to an image (Cinder's os-volume_upload_image, the
// driver's copy_volume_to_image), reads the image back and returns the SHA-256 of its
// bytes and their count.
func volumeDigest(t *testing.T, bc, ic *gophercloud.ServiceClient, volID string) ([32]byte, int64) {
	t.Helper()
	ctx := t.Context()
	up := must(volumes.UploadImage(ctx, bc, volID, volumes.UploadImageOpts{
		ImageName: "itest-upload-" + volID[:8], DiskFormat: "raw", ContainerFormat: "bare",
	}).Extract())
	t.Cleanup(func() { _ = images.Delete(context.Background(), ic, up.ImageID).ExtractErr() })
	waitUntil(t, "upload of "+volID, 2*time.Minute, func() (bool, error) {
		img, err := images.Get(ctx, ic, up.ImageID).Extract()
		if err != nil {
			return false, err
		}
		if img.Status == images.ImageStatusKilled || img.Status == images.ImageStatusDeleted {
			return false, fmt.Errorf("image %s", img.Status)
		}
		return img.Status == images.ImageStatusActive, nil
	})
	volumeStatus(t, bc, volID, "available", time.Minute)
	rc := must(imagedata.Download(ctx, ic, up.ImageID).Extract())
	defer rc.Close()
	h := sha256.New()
	n := must(io.Copy(h, rc))
	return [32]byte(h.Sum(nil)), n
}

// withZeros is the digest of data followed by zeros up to size bytes.
func withZeros(data []byte, size int64) [32]byte {
	h := sha256.New()
	h.Write(data)
	_, _ = io.CopyN(h, zeroReader{}, size-int64(len(data)))
	return [32]byte(h.Sum(nil))
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestVolumeBytesThroughGlance: the dev cloud's Cinder (the file driver) keeps real
// bytes: a volume made from an image holds the image's bytes, and a snapshot, a volume
// made from it (grown) keep them; upload-to-image gives them back through Glance. A
// clone extends. Each region has its own Cinder.
func TestVolumeBytesThroughGlance(t *testing.T) {
	devcloud.Require(t)
	ctx := t.Context()
	old := devcloud.Open(t, "old")
	bc, ic := client(t, old.BlockStorage), client(t, old.Image)
	newBC := client(t, devcloud.Open(t, "new").BlockStorage)
	if bc.Endpoint == newBC.Endpoint {
		t.Fatalf("old and new share the Cinder endpoint %s", bc.Endpoint)
	}

	data := bytes.Repeat([]byte("hikkoshi volume "), 192<<10) // 3 MiB
	private := images.ImageVisibilityPrivate
	img := must(images.Create(ctx, ic, images.CreateOpts{
		Name: fmt.Sprintf("itest-vol-src-%d", time.Now().UnixNano()), DiskFormat: "raw", ContainerFormat: "bare", Visibility: &private,
	}).Extract())
	t.Cleanup(func() { _ = images.Delete(context.Background(), ic, img.ID).ExtractErr() })
	if err := imagedata.Upload(ctx, ic, img.ID, bytes.NewReader(data)).ExtractErr(); err != nil {
		t.Fatal(err)
	}

	const gib = int64(1) << 30
	vol := must(volumes.Create(ctx, bc, volumes.CreateOpts{Name: "itest-vol-from-image", Size: 1, ImageID: img.ID, VolumeType: devcloud.VolumeTypeLegacySSD}, nil).Extract())
	deleteVolume(t, bc, vol.ID)
	v := volumeStatus(t, bc, vol.ID, "available", 2*time.Minute)
	if v.Bootable != "true" || v.VolumeType != devcloud.VolumeTypeLegacySSD || v.Size != 1 {
		t.Fatalf("volume from image: bootable %q type %q size %d", v.Bootable, v.VolumeType, v.Size)
	}
	if _, err := volumes.Get(ctx, newBC, vol.ID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Fatalf("the new Cinder answers %v for the old cloud's volume, want 404", err)
	}
	want1 := withZeros(data, gib)
	if got, n := volumeDigest(t, bc, ic, vol.ID); got != want1 || n != gib {
		t.Fatalf("volume from image: %d bytes, digest %x, want %d bytes %x", n, got, gib, want1)
	}

	snap := must(snapshots.Create(ctx, bc, snapshots.CreateOpts{VolumeID: vol.ID, Name: "itest-snap"}).Extract())
	t.Cleanup(func() { _ = snapshots.Delete(context.Background(), bc, snap.ID).ExtractErr() })
	waitUntil(t, "snapshot", time.Minute, func() (bool, error) {
		s, err := snapshots.Get(ctx, bc, snap.ID).Extract()
		if err != nil || s.Status == "error" {
			return false, fmt.Errorf("snapshot %v %v", s, err)
		}
		return s.Status == "available", nil
	})
	fromSnap := must(volumes.Create(ctx, bc, volumes.CreateOpts{Name: "itest-vol-from-snap", Size: 2, SnapshotID: snap.ID}, nil).Extract())
	deleteVolume(t, bc, fromSnap.ID)
	volumeStatus(t, bc, fromSnap.ID, "available", time.Minute)
	if got, n := volumeDigest(t, bc, ic, fromSnap.ID); got != withZeros(data, 2*gib) || n != 2*gib {
		t.Fatalf("volume from snapshot (grown to 2 GiB): %d bytes, digest differs", n)
	}

	clone := must(volumes.Create(ctx, bc, volumes.CreateOpts{Name: "itest-vol-clone", Size: 1, SourceVolID: vol.ID}, nil).Extract())
	deleteVolume(t, bc, clone.ID)
	volumeStatus(t, bc, clone.ID, "available", time.Minute)
	if err := volumes.ExtendSize(ctx, bc, clone.ID, volumes.ExtendSizeOpts{NewSize: 2}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "extend", time.Minute, func() (bool, error) {
		v, err := volumes.Get(ctx, bc, clone.ID).Extract()
		return err == nil && v.Status == "available" && v.Size == 2, err
	})
}

// TestVolumeAttachAndBootFromVolume: the fake-driver Nova attaches a volume (in-use,
// at a device) and detaches it, and boots a server from a volume.
func TestVolumeAttachAndBootFromVolume(t *testing.T) {
	devcloud.Require(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	old := devcloud.Open(t, "old")
	bc, cc, ic, nc := client(t, old.BlockStorage), client(t, old.Compute), client(t, old.Image), client(t, old.Network)
	flavor := findFlavor(t, cc, devcloud.FlavorTiny)
	image := findImage(t, ic, devcloud.SeedImage)
	net := findNetwork(t, nc, devcloud.VLANNetwork)

	boot := func(name string, opts servers.CreateOpts) string {
		opts.Name, opts.FlavorRef, opts.Networks = name, flavor, []servers.Network{{UUID: net.ID}}
		srv := must(servers.Create(ctx, cc, opts, nil).Extract())
		t.Cleanup(func() {
			_ = servers.Delete(context.Background(), cc, srv.ID).ExtractErr()
			waitUntil(t, "delete "+name, 2*time.Minute, func() (bool, error) {
				_, err := servers.Get(context.Background(), cc, srv.ID).Extract()
				return gophercloud.ResponseCodeIs(err, http.StatusNotFound), nil
			})
		})
		waitUntil(t, name+" ACTIVE", 2*time.Minute, func() (bool, error) {
			s, err := servers.Get(ctx, cc, srv.ID).Extract()
			if err == nil && s.Status == "ERROR" {
				return false, fmt.Errorf("ERROR: %+v\n%s", s.Fault, devcloud.ComputeErrors(srv.ID))
			}
			return err == nil && s.Status == "ACTIVE", err
		})
		return srv.ID
	}

	data := must(volumes.Create(ctx, bc, volumes.CreateOpts{Name: "itest-data", Size: 1}, nil).Extract())
	deleteVolume(t, bc, data.ID)
	volumeStatus(t, bc, data.ID, "available", time.Minute)
	srv := boot("itest-vol-attach", servers.CreateOpts{ImageRef: image})
	att := must(volumeattach.Create(ctx, cc, srv, volumeattach.CreateOpts{VolumeID: data.ID, Device: "/dev/vdb"}).Extract())
	v := volumeStatus(t, bc, data.ID, "in-use", time.Minute)
	if len(v.Attachments) != 1 || v.Attachments[0].ServerID != srv || v.Attachments[0].Device != att.Device {
		t.Fatalf("attachments %+v, want one to %s at %s", v.Attachments, srv, att.Device)
	}
	if err := volumeattach.Delete(ctx, cc, srv, data.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	volumeStatus(t, bc, data.ID, "available", time.Minute)

	root := must(volumes.Create(ctx, bc, volumes.CreateOpts{Name: "itest-root", Size: 1, ImageID: image}, nil).Extract())
	deleteVolume(t, bc, root.ID)
	volumeStatus(t, bc, root.ID, "available", 2*time.Minute)
	bfv := boot("itest-bfv", servers.CreateOpts{BlockDevice: []servers.BlockDevice{{
		SourceType: servers.SourceVolume, DestinationType: servers.DestinationVolume, UUID: root.ID, BootIndex: 0,
	}}})
	s := must(servers.Get(ctx, cc, bfv).Extract())
	if id, _ := s.Image["id"].(string); id != "" {
		t.Fatalf("boot-from-volume server has image %q", id)
	}
	v = volumeStatus(t, bc, root.ID, "in-use", time.Minute)
	if len(v.Attachments) != 1 || v.Attachments[0].ServerID != bfv {
		t.Fatalf("root volume attachments %+v, want one to %s", v.Attachments, bfv)
	}
}
