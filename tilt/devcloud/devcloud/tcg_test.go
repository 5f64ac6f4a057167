package devcloud_test

import (
	"context"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// TestTCGSnapshotCarriesDiskBytes boots the seed image on the TCG compute (a real qemu
// guest under libvirt), snapshots it through Nova, and checks that the snapshot Glance
// holds has the seed image's bytes: what the fake driver cannot do, and what a V2V
// conversion starts from.
func TestTCGSnapshotCarriesDiskBytes(t *testing.T) {
	devcloud.RequireTCG(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	old := devcloud.Open(t, "old")
	cc, ic := client(t, old.Compute), client(t, old.Image)
	cc.Microversion = "2.37" // networks "none"

	seed := findImage(t, ic, devcloud.SeedImage)
	srv := must(servers.Create(ctx, cc, servers.CreateOpts{
		Name: "itest-tcg", FlavorRef: findFlavor(t, cc, devcloud.FlavorTiny), ImageRef: seed,
		AvailabilityZone: devcloud.ZoneTCG, Networks: "none",
	}, nil).Extract())
	t.Cleanup(func() { _ = servers.Delete(context.Background(), cc, srv.ID).ExtractErr() })

	start := time.Now()
	s := waitFor(ctx, t, "server", func() (string, error) {
		s, err := servers.Get(ctx, cc, srv.ID).Extract()
		if err != nil {
			return "", err
		}
		if s.Status == "ERROR" {
			t.Fatalf("server went to ERROR: %+v\n%s", s.Fault, devcloud.ComputeErrors(srv.ID))
		}
		return s.Status, nil
	}, "ACTIVE")
	got := must(servers.Get(ctx, cc, srv.ID).Extract())
	t.Logf("server %s after %s in zone %s", s, time.Since(start).Round(100*time.Millisecond), got.AvailabilityZone)
	if got.AvailabilityZone != devcloud.ZoneTCG {
		t.Fatalf("server in zone %q, want %q", got.AvailabilityZone, devcloud.ZoneTCG)
	}

	start = time.Now()
	snapID := must(servers.CreateImage(ctx, cc, srv.ID, servers.CreateImageOpts{Name: "itest-tcg-snap"}).ExtractImageID())
	t.Cleanup(func() { _ = images.Delete(context.Background(), ic, snapID).ExtractErr() })
	waitFor(ctx, t, "snapshot", func() (string, error) {
		img, err := images.Get(ctx, ic, snapID).Extract()
		if err != nil {
			return "", err
		}
		return string(img.Status), nil
	}, string(images.ImageStatusActive))
	snap := must(images.Get(ctx, ic, snapID).Extract())
	t.Logf("snapshot active after %s: %s, %d bytes", time.Since(start).Round(100*time.Millisecond), snap.DiskFormat, snap.SizeBytes)
	if snap.SizeBytes == 0 {
		t.Fatal("snapshot has no bytes")
	}

	// The guest never wrote to its disk (the seed image boots no OS), so the snapshot's
	// content is the seed image's, grown to the flavor's root disk with zeros.
	report, err := devcloud.CompareImages(ctx, ic, seed, "raw", snapID, snap.DiskFormat)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("qemu-img compare seed snapshot: %s", report)
}

// waitFor polls state until it returns want, once a second, until ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, state func() (string, error), want string) string {
	t.Helper()
	for {
		s, err := state()
		if err != nil && !gophercloud.ResponseCodeIs(err, 404) {
			t.Fatalf("%s: %v", what, err)
		}
		if s == want {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s still %q, want %q: %v", what, s, want, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
