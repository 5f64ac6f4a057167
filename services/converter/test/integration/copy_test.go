// Package integration copies images between the dev cloud's two Glance services
// (tilt/devcloud): old (RegionOld, :9292) to new (RegionNew, :9293). Skipped loudly
// when the dev cloud is down, failed under CI=true.
package integration

import (
	"context"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// TestCopySeedImageBetweenClouds streams the seed image from the old cloud's Glance
// to the new one's in 1 MiB chunks (so Glance's Range downloads are exercised) and
// checks the copy against Glance's own multihash of the source.
func TestCopySeedImageBetweenClouds(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	oi, ni, srcID := glances(ctx, t)
	src, dst := imagecopy.NewGlance(oi), imagecopy.NewGlance(ni)
	var saves int
	c := &imagecopy.Copier{Src: src, Dst: dst, ChunkSize: 1 << 20, Save: func(context.Context, *converterv1.CopyProgress) error { saves++; return nil }}
	p := &converterv1.CopyProgress{}
	start := time.Now()
	name := "itest-copy-" + time.Now().Format("150405.000")
	id, err := c.Copy(ctx, srcID, name, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dst.Delete(context.Background(), id) })
	took := time.Since(start)
	s, err := src.Image(ctx, srcID)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dst.Image(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != images.ImageStatusActive || d.SizeBytes != s.SizeBytes || d.Checksum != s.Checksum ||
		d.Properties["os_hash_value"] != s.Properties["os_hash_value"] || d.DiskFormat != s.DiskFormat {
		t.Fatalf("copy %s: status %s size %d md5 %s hash %v; source size %d md5 %s hash %v",
			id, d.Status, d.SizeBytes, d.Checksum, d.Properties["os_hash_value"], s.SizeBytes, s.Checksum, s.Properties["os_hash_value"])
	}
	left, err := imagecopy.ChunkImages(ctx, dst, name)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("%d chunk images left in the new cloud", len(left))
	}
	t.Logf("copied %d bytes in %d chunks (%d saves) in %s, sha256 %s…, %s %s…", p.GetTotalBytes(), len(p.GetChunks()), saves,
		took.Round(time.Millisecond), p.GetSha256()[:16], s.Properties["os_hash_algo"], s.Properties["os_hash_value"].(string)[:16])
}

// glances returns the image clients of the dev cloud's old and new regions and the
// ID of the old one's seed image.
func glances(ctx context.Context, tb testing.TB) (oi, ni *gophercloud.ServiceClient, seedID string) {
	tb.Helper()
	oi, err := devcloud.Open(tb, "old").Image()
	if err == nil {
		ni, err = devcloud.Open(tb, "new").Image()
	}
	if err == nil {
		seedID, err = devcloud.FindImage(ctx, oi, devcloud.SeedImage)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return oi, ni, seedID
}

// TestCopyOneChunkStraightAndTakeover: with the default 64 MiB chunks the 8 MiB seed
// image goes straight into the final image (no chunk image is ever made), which the
// real Glance stores with the source's ID as a property; a second copy under the same
// name — a worker taking over after the first died unrecorded — takes that image as
// it is, reading nothing, and one image is left.
func TestCopyOneChunkStraightAndTakeover(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	oi, ni, srcID := glances(ctx, t)
	src, dst := imagecopy.NewGlance(oi), imagecopy.NewGlance(ni)
	name := "itest-straight-" + time.Now().Format("150405.000")
	p := &converterv1.CopyProgress{}
	id, err := (&imagecopy.Copier{Src: src, Dst: dst}).Copy(ctx, srcID, name, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = (&imagecopy.Copier{Dst: dst}).Discard(context.Background(), &converterv1.CopyProgress{ImageName: name})
	})
	s, err := src.Image(ctx, srcID)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dst.Image(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != images.ImageStatusActive || d.Properties["os_hash_value"] != s.Properties["os_hash_value"] || d.Properties[imagecopy.SourceProperty] != srcID ||
		len(p.GetChunks()) != 0 || p.GetTransferredBytes() != s.SizeBytes {
		t.Fatalf("straight copy %s: %s, hash equal %v, source property %v; progress %v", id, d.Status,
			d.Properties["os_hash_value"] == s.Properties["os_hash_value"], d.Properties[imagecopy.SourceProperty], p)
	}
	q := &converterv1.CopyProgress{}
	again, err := (&imagecopy.Copier{Src: src, Dst: dst}).Copy(ctx, srcID, name, q)
	if err != nil || again != id || q.GetTransferredBytes() != 0 {
		t.Fatalf("takeover: %s, %v (want %s), read %d bytes", again, err, id, q.GetTransferredBytes())
	}
	named, err := imagecopy.Named(ctx, dst, name)
	if err != nil || len(named) != 1 {
		t.Fatalf("%d images named %s (%v), want 1", len(named), name, err)
	}
}
