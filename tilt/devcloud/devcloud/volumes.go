package devcloud

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
)

// Volume types the dev cloud seeds: both regions have VolumeTypeStandard; the old
// region's VolumeTypeLegacySSD has no namesake in the new one, which has
// VolumeTypeSSD instead.
const (
	VolumeTypeStandard  = "standard"
	VolumeTypeLegacySSD = "legacy-ssd"
	VolumeTypeSSD       = "ssd"
)

// WaitVolume polls the volume every 500 ms until its status is want, and fails at
// an error status or when ctx ends.
func WaitVolume(ctx context.Context, bc *gophercloud.ServiceClient, id, want string) (*volumes.Volume, error) {
	for {
		v, err := volumes.Get(ctx, bc, id).Extract()
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", id, err)
		}
		if v.Status == want {
			return v, nil
		}
		if v.Status == "error" || v.Status == "error_extending" || v.Status == "error_deleting" {
			return v, fmt.Errorf("volume %s is %s, want %s", id, v.Status, want)
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("volume %s still %s, want %s: %w", id, v.Status, want, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// DeleteVolume deletes the volume with its snapshots and waits (up to a minute)
// until Cinder no longer knows it; a volume already gone is fine. For cleanups.
func DeleteVolume(bc *gophercloud.ServiceClient, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A volume may stay in-use a moment after its server's deletion: the delete is
	// asked again until Cinder takes it.
	_ = volumes.Delete(ctx, bc, id, volumes.DeleteOpts{Cascade: true}).ExtractErr()
	for {
		_, err := volumes.Get(ctx, bc, id).Extract()
		if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("volume %s not deleted: %w", id, ctx.Err())
		case <-time.After(500 * time.Millisecond):
			_ = volumes.Delete(ctx, bc, id, volumes.DeleteOpts{Cascade: true}).ExtractErr()
		}
	}
}

// VolumeBytes reads a volume's bytes from the dev cloud's file volume driver (its
// backend: lib/cinder-<old|new>/volumes/volume-<id> in the state beside
// clouds.yaml) and returns their SHA-256 and count — what a test compares, without
// attaching or uploading the volume. region is RegionOld or RegionNew.
func VolumeBytes(region, id string) ([32]byte, int64, error) {
	dir := map[string]string{RegionOld: "cinder-old", RegionNew: "cinder-new"}[region]
	if dir == "" {
		return [32]byte{}, 0, fmt.Errorf("no region %q", region)
	}
	f, err := os.Open(filepath.Join(filepath.Dir(CloudsYAML()), "lib", dir, "volumes", "volume-"+id))
	if err != nil {
		return [32]byte{}, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return [32]byte(h.Sum(nil)), n, err
}
