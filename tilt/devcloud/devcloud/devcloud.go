// Package devcloud lets tests find the project's dev cloud: two real OpenStack clouds
// on 127.0.0.1 started by tilt/devcloud/devcloud.sh. A test that needs it calls
// Require: when the dev cloud is not up the test is skipped with a loud reason, except
// in CI (CI=true), where it fails.
package devcloud

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/services"

	"github.com/hikkoshi/hikkoshi/platform/cloud"
)

// EnvCloudsYAML overrides where the dev cloud's clouds.yaml is looked for.
const EnvCloudsYAML = "HIKKOSHI_DEVCLOUD_CLOUDS_YAML"

// KeystoneURL is where the dev cloud's Keystone answers.
const KeystoneURL = "http://127.0.0.1:5000/v3"

// Seeded names, created by tilt/devcloud/bootstrap.py.
const (
	SeedImage         = "hikkoshi-seed-raw"
	VLANNetwork       = "old-vlan-101"
	VLANSubnet        = "old-vlan-101-v4"
	ExternalNetwork   = "ext-net"
	FlavorTiny        = "m1.tiny"
	OldProject        = "hikkoshi-old"
	NewProject        = "hikkoshi-new"
	RegionOld         = "RegionOld"
	RegionNew         = "RegionNew"
	ComputeHostActive = "host-ovs-filter-active"
)

// The optional TCG computes (devcloud.sh up --libvirt): Nova's libvirt driver with qemu
// in TCG mode, one in each region. Only servers that ask for ZoneTCG land there, and
// they boot without network ports (networks "none", compute API ≥ 2.37). Their
// snapshots carry the disk's bytes, which the fake driver's do not. The new region's
// forces a config drive (a guest's cloud-init reads its metadata from it).
const (
	ZoneTCG           = "tcg"
	ComputeHostTCG    = "tcg-libvirt"
	ComputeHostTCGNew = "tcg-libvirt-new"
)

// Root returns the repository root: the nearest directory above the working
// directory that holds go.work (the working directory when there is none).
func Root() string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// CloudsYAML returns the path of the dev cloud's clouds.yaml: $HIKKOSHI_DEVCLOUD_CLOUDS_YAML,
// or tilt/.state/devcloud/clouds.yaml in the repository.
func CloudsYAML() string {
	if p := os.Getenv(EnvCloudsYAML); p != "" {
		return p
	}
	return filepath.Join(Root(), "tilt", ".state", "devcloud", "clouds.yaml")
}

// Script returns the path of devcloud.sh, the command that starts and stops it.
func Script() string { return filepath.Join(Root(), "tilt", "devcloud", "devcloud.sh") }

// Up reports why the dev cloud is not usable, or "" when it is.
func Up() string {
	path := CloudsYAML()
	if _, err := os.Stat(path); err != nil {
		return fmt.Sprintf("no clouds.yaml at %s", path)
	}
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(KeystoneURL)
	if err != nil {
		return fmt.Sprintf("Keystone does not answer at %s: %v", KeystoneURL, err)
	}
	_ = resp.Body.Close()
	return ""
}

// Require returns the dev cloud's clouds.yaml path, or skips tb loudly when the dev
// cloud is not up (fails it under CI=true).
func Require(tb testing.TB) string {
	tb.Helper()
	if why := Up(); why != "" {
		msg := "DEV CLOUD NOT UP (" + why + "): start it with tilt/devcloud/devcloud.sh up"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return CloudsYAML()
}

// RequireTCG skips tb loudly when the dev cloud's TCG computes are not up, the old
// region's and the new one's (fails it under CI=true, where scripts/test.sh starts
// the dev cloud with --libvirt).
func RequireTCG(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	why := ""
	var err error
	for _, c := range []struct{ cloud, host string }{{"old-admin", ComputeHostTCG}, {"new-admin", ComputeHostTCGNew}} {
		var cc *gophercloud.ServiceClient
		if cc, err = Open(tb, c.cloud).Compute(); err == nil {
			why, err = tcgState(ctx, cc, c.host)
		}
		if err != nil || why != "" {
			break
		}
	}
	if err != nil {
		tb.Fatalf("devcloud.RequireTCG: %v", err)
	}
	if why != "" {
		msg := "DEV CLOUD TCG COMPUTE NOT UP (" + why + "): start it with tilt/devcloud/devcloud.sh up --libvirt"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
}

func tcgState(ctx context.Context, cc *gophercloud.ServiceClient, host string) (string, error) {
	pages, err := services.List(cc, services.ListOpts{Binary: "nova-compute", Host: host}).AllPages(ctx)
	if err != nil {
		return "", err
	}
	list, err := services.ExtractServices(pages)
	if err != nil {
		return "", err
	}
	if len(list) == 0 {
		return "no nova-compute on host " + host, nil
	}
	if list[0].State != "up" || list[0].Status != "enabled" {
		return fmt.Sprintf("nova-compute on %s is %s and %s", host, list[0].State, list[0].Status), nil
	}
	return "", nil
}

// Open returns the dev cloud's clouds.yaml entry name (old, new or admin),
// authenticated, or skips tb as Require does.
func Open(tb testing.TB, name string) *cloud.Cloud {
	tb.Helper()
	path := Require(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := cloud.Open(ctx, name, cloud.WithCloudsYAML(path), cloud.WithUserAgent("hikkoshi-tests"))
	if err != nil {
		tb.Fatalf("devcloud.Open(%s): %v", name, err)
	}
	return c
}
