package devcloud

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
)

// FindImage returns the ID of the only image named name.
func FindImage(ctx context.Context, ic *gophercloud.ServiceClient, name string) (string, error) {
	pages, err := images.List(ic, images.ListOpts{Name: name}).AllPages(ctx)
	if err != nil {
		return "", err
	}
	list, err := images.ExtractImages(pages)
	if err != nil {
		return "", err
	}
	if len(list) != 1 {
		return "", fmt.Errorf("%d images named %s, want 1 (is the dev cloud seeded?)", len(list), name)
	}
	return list[0].ID, nil
}

// FindFlavor returns the ID of the flavor named name.
func FindFlavor(ctx context.Context, cc *gophercloud.ServiceClient, name string) (string, error) {
	pages, err := flavors.ListDetail(cc, nil).AllPages(ctx)
	if err != nil {
		return "", err
	}
	list, err := flavors.ExtractFlavors(pages)
	if err != nil {
		return "", err
	}
	for _, f := range list {
		if f.Name == name {
			return f.ID, nil
		}
	}
	return "", fmt.Errorf("no flavor %s (is the dev cloud seeded?)", name)
}

// FindSubnet returns the only subnet named name.
func FindSubnet(ctx context.Context, nc *gophercloud.ServiceClient, name string) (*subnets.Subnet, error) {
	pages, err := subnets.List(nc, subnets.ListOpts{Name: name}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	list, err := subnets.ExtractSubnets(pages)
	if err != nil {
		return nil, err
	}
	if len(list) != 1 {
		return nil, fmt.Errorf("%d subnets named %s, want 1 (is the dev cloud seeded?)", len(list), name)
	}
	return &list[0], nil
}

// CompareImages downloads two Glance images and compares their content with
// `qemu-img compare` (the second may be larger if the extra part is zeros). It
// returns qemu-img's report, or an error saying how they differ.
func CompareImages(ctx context.Context, ic *gophercloud.ServiceClient, aID, aFormat, bID, bFormat string) (string, error) {
	dir, err := os.MkdirTemp("", "hikkoshi-devcloud-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := download(ctx, ic, aID, a); err != nil {
		return "", err
	}
	if err := download(ctx, ic, bID, b); err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, "qemu-img", "compare", "-f", aFormat, "-F", bFormat, a, b).CombinedOutput()
	report := strings.Join(strings.Fields(string(out)), " ")
	if err != nil {
		return report, fmt.Errorf("qemu-img compare %s %s: %w: %s", aID, bID, err, report)
	}
	return report, nil
}

func download(ctx context.Context, ic *gophercloud.ServiceClient, id, path string) error {
	r, err := imagedata.Download(ctx, ic, id).Extract()
	if err != nil {
		return fmt.Errorf("download image %s: %w", id, err)
	}
	defer r.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("download image %s: %w", id, err)
	}
	return f.Close()
}
