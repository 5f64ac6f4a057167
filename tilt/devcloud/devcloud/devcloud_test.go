package devcloud_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/listeners"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/loadbalancers"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/monitors"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/pools"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/hikkoshi/hikkoshi/platform/cloud"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// must returns v, or fails the test (by panicking: the testing package reports the
// panic as a failure and still runs the test's cleanups) when err is set.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func client(t *testing.T, f func() (*gophercloud.ServiceClient, error)) *gophercloud.ServiceClient {
	t.Helper()
	sc, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestTokensForBothClouds(t *testing.T) {
	for _, name := range []string{"old", "new", "admin"} {
		c := devcloud.Open(t, name)
		if c.Provider.Token() == "" {
			t.Fatalf("%s: no token", name)
		}
		want := map[string]string{"old": devcloud.RegionOld, "new": devcloud.RegionNew, "admin": devcloud.RegionOld}[name]
		if c.Region() != want {
			t.Fatalf("%s: region %q, want %q", name, c.Region(), want)
		}
		// Each region has its own Glance.
		ic := client(t, c.Image)
		t.Logf("%s: image endpoint %s", name, ic.Endpoint)
	}
	oldImg := client(t, devcloud.Open(t, "old").Image).Endpoint
	newImg := client(t, devcloud.Open(t, "new").Image).Endpoint
	if oldImg == newImg {
		t.Fatalf("old and new share the Glance endpoint %s", oldImg)
	}
}

func TestImageStaysInItsCloud(t *testing.T) {
	ctx := t.Context()
	oldc := client(t, devcloud.Open(t, "old").Image)
	newc := client(t, devcloud.Open(t, "new").Image)
	data := bytes.Repeat([]byte("hikkoshi"), 128<<10) // 1 MiB
	private := images.ImageVisibilityPrivate
	img := must(images.Create(ctx, oldc, images.CreateOpts{
		Name: fmt.Sprintf("itest-%d", time.Now().UnixNano()), DiskFormat: "raw", ContainerFormat: "bare", Visibility: &private,
	}).Extract())
	t.Cleanup(func() { _ = images.Delete(context.Background(), oldc, img.ID).ExtractErr() })
	if err := imagedata.Upload(ctx, oldc, img.ID, bytes.NewReader(data)).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	got := must(images.Get(ctx, oldc, img.ID).Extract())
	if got.Status != images.ImageStatusActive || got.SizeBytes != int64(len(data)) {
		t.Fatalf("old image %s: status %s size %d", got.ID, got.Status, got.SizeBytes)
	}
	rc := must(imagedata.Download(ctx, oldc, img.ID).Extract())
	back, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil || sha256.Sum256(back) != sha256.Sum256(data) {
		t.Fatalf("downloaded bytes differ (%d bytes, %v)", len(back), err)
	}
	_, err = images.Get(ctx, newc, img.ID).Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Fatalf("the new Glance answers %v for the old cloud's image, want 404", err)
	}
	// The seeded image is in the old cloud only.
	for cl, want := range map[*gophercloud.ServiceClient]int{oldc: 1, newc: 0} {
		pages := must(images.List(cl, images.ListOpts{Name: devcloud.SeedImage}).AllPages(ctx))
		list := must(images.ExtractImages(pages))
		if len(list) != want {
			t.Fatalf("%s lists %d images named %s, want %d", cl.Endpoint, len(list), devcloud.SeedImage, want)
		}
	}
}

func TestServerBootsOnVLANPortWithFixedIP(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	old := devcloud.Open(t, "old")
	nc, cc, ic := client(t, old.Network), client(t, old.Compute), client(t, old.Image)

	net := findNetwork(t, nc, devcloud.VLANNetwork)
	if net.ID == "" {
		t.Fatalf("network %s not seeded", devcloud.VLANNetwork)
	}
	sub := findSubnet(t, nc, devcloud.VLANSubnet)
	const ip = "10.101.0.57"
	port := must(ports.Create(ctx, nc, ports.CreateOpts{
		Name: "itest-boot", NetworkID: net.ID, FixedIPs: []ports.IP{{SubnetID: sub.ID, IPAddress: ip}},
	}).Extract())
	t.Cleanup(func() { _ = ports.Delete(context.Background(), nc, port.ID).ExtractErr() })

	flavor := findFlavor(t, cc, devcloud.FlavorTiny)
	image := findImage(t, ic, devcloud.SeedImage)
	srv := must(servers.Create(ctx, cc, servers.CreateOpts{
		Name: "itest-vlan", FlavorRef: flavor, ImageRef: image, Networks: []servers.Network{{Port: port.ID}},
	}, nil).Extract())
	t.Cleanup(func() { _ = servers.Delete(context.Background(), cc, srv.ID).ExtractErr() })

	start := time.Now()
	for {
		s := must(servers.Get(ctx, cc, srv.ID).Extract())
		if s.Status == "ACTIVE" {
			t.Logf("server ACTIVE after %s", time.Since(start).Round(100*time.Millisecond))
			if !strings.Contains(fmt.Sprint(s.Addresses), ip) {
				t.Fatalf("server addresses %v do not hold %s", s.Addresses, ip)
			}
			break
		}
		if s.Status == "ERROR" {
			t.Fatalf("server went to ERROR: %+v\n%s", s.Fault, devcloud.ComputeErrors(srv.ID))
		}
		select {
		case <-ctx.Done():
			t.Fatalf("server still %s: %v", s.Status, ctx.Err())
		case <-time.After(time.Second):
		}
	}
	p := must(ports.Get(ctx, nc, port.ID).Extract())
	if p.DeviceID != srv.ID || len(p.FixedIPs) != 1 || p.FixedIPs[0].IPAddress != ip {
		t.Fatalf("port %+v: want device %s with fixed IP %s", p, srv.ID, ip)
	}
}

func TestOctaviaProxyPoolActiveAndCascadeDeleted(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	old := devcloud.Open(t, "old")
	lc, nc := client(t, old.LoadBalancer), client(t, old.Network)
	sub := findSubnet(t, nc, devcloud.VLANSubnet)
	tag := fmt.Sprintf("itest-%d", time.Now().UnixNano())
	lb := must(loadbalancers.Create(ctx, lc, loadbalancers.CreateOpts{
		Name: "itest-proxy", VipSubnetID: sub.ID, Tags: []string{tag},
		Listeners: []listeners.CreateOpts{{
			Name: "tcp-80", Protocol: listeners.ProtocolTCP, ProtocolPort: 80,
			DefaultPool: &pools.CreateOpts{
				Name: "proxy", Protocol: pools.ProtocolPROXY, LBMethod: pools.LBMethodRoundRobin,
				Members: []pools.CreateMemberOpts{
					{Address: "10.101.0.21", ProtocolPort: 8080},
					{Address: "10.101.0.22", ProtocolPort: 8080},
				},
				Monitor: &monitors.CreateOpts{Type: monitors.TypeTCP, Delay: 5, Timeout: 3, MaxRetries: 3},
			},
		}},
	}).Extract())
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			_ = loadbalancers.Delete(context.Background(), lc, lb.ID, loadbalancers.DeleteOpts{Cascade: true}).ExtractErr()
		}
	})
	start := time.Now()
	for {
		got := must(loadbalancers.Get(ctx, lc, lb.ID).Extract())
		if got.ProvisioningStatus == "ACTIVE" {
			t.Logf("load balancer ACTIVE after %s", time.Since(start).Round(100*time.Millisecond))
			break
		}
		if got.ProvisioningStatus == "ERROR" {
			t.Fatal("load balancer went to ERROR")
		}
		select {
		case <-ctx.Done():
			t.Fatalf("load balancer still %s", got.ProvisioningStatus)
		case <-time.After(500 * time.Millisecond):
		}
	}
	st := must(loadbalancers.GetStatuses(ctx, lc, lb.ID).Extract())
	ls := st.Loadbalancer.Listeners
	if len(ls) != 1 || len(ls[0].Pools) != 1 || len(ls[0].Pools[0].Members) != 2 {
		t.Fatalf("status tree: %d listeners, want 1 with 1 pool and 2 members", len(ls))
	}
	pool := must(pools.Get(ctx, lc, ls[0].Pools[0].ID).Extract())
	if pool.Protocol != string(pools.ProtocolPROXY) || pool.MonitorID == "" {
		t.Fatalf("pool protocol %s, monitor %q: want PROXY with a monitor", pool.Protocol, pool.MonitorID)
	}
	mon := must(monitors.Get(ctx, lc, pool.MonitorID).Extract())
	if mon.Type != monitors.TypeTCP {
		t.Fatalf("monitor type %s, want TCP", mon.Type)
	}
	if err := loadbalancers.Delete(ctx, lc, lb.ID, loadbalancers.DeleteOpts{Cascade: true}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	deleted = true
	for {
		_, err := loadbalancers.Get(ctx, lc, lb.ID).Extract()
		if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("load balancer not gone after cascade delete: %v", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	pages := must(loadbalancers.List(lc, loadbalancers.ListOpts{Tags: []string{tag}}).AllPages(ctx))
	if left := must(loadbalancers.ExtractLoadBalancers(pages)); len(left) != 0 {
		t.Fatalf("%d load balancers left with tag %s", len(left), tag)
	}
	pp := must(pools.List(lc, pools.ListOpts{Name: "proxy", LoadbalancerID: lb.ID}).AllPages(ctx))
	if left := must(pools.ExtractPools(pp)); len(left) != 0 {
		t.Fatalf("%d pools left after cascade delete", len(left))
	}
}

// TestStateSurvivesRestart runs devcloud.sh down and up and checks that what existed
// before still exists. It restarts the whole dev cloud, so it runs only when asked
// (HIKKOSHI_DEVCLOUD_RESTART=1, as scripts/test.sh does before the other tests).
func TestStateSurvivesRestart(t *testing.T) {
	if os.Getenv("HIKKOSHI_DEVCLOUD_RESTART") != "1" {
		t.Skip("restarts the dev cloud: set HIKKOSHI_DEVCLOUD_RESTART=1")
	}
	ctx := t.Context()
	old := devcloud.Open(t, "old")
	imgBefore := findImage(t, client(t, old.Image), devcloud.SeedImage)
	netBefore := findNetwork(t, client(t, old.Network), devcloud.VLANNetwork).ID
	// A server of the fake driver, answering: its guest is gone while the dev cloud
	// is down and runs again after up (the driver keeps its instances' state), and
	// Nova can still stop it (the stock fake driver forgets its instances).
	meterBin, cleanup, err := servicetest.Build("github.com/hikkoshi/hikkoshi/tilt/devcloud/cmd/hikkoshi-devcloud")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	srv := devcloud.BootStandin(t, fmt.Sprintf("itest-restart-%d", time.Now().UnixNano()), "10.101.0.142", nil)
	if r := devcloud.Meter(t, meterBin, "--addr", srv.IP+":8080", "--rate", "10", "--for", "1s"); r.Failed != 0 {
		t.Fatalf("the server does not answer before the restart: %+v", r)
	}

	for _, args := range [][]string{{"down"}, {"up"}} {
		cmd := exec.CommandContext(ctx, devcloud.Script(), args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("devcloud.sh %s: %v\n%s", args[0], err, out)
		}
		t.Logf("devcloud.sh %s:\n%s", args[0], lastLines(string(out), 12))
		if args[0] == "down" {
			// down stops the data plane too: no namespace, no stand-in, no haproxy,
			// and the host's unreachable routes gone with them.
			if devcloud.NetnsUp() {
				t.Fatalf("the data plane's namespace %s is still there after down", devcloud.Netns)
			}
			var ps []byte
			for range 20 { // a process killed a moment ago may not have been reaped yet
				if ps, _ = exec.Command("pgrep", "-af", "standin.py|/usr/sbin/haproxy").Output(); len(ps) == 0 {
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
			if len(ps) != 0 {
				t.Fatalf("data plane processes left after down:\n%s", ps)
			}
		}
	}
	if !devcloud.NetnsUp() {
		t.Fatalf("the data plane's namespace %s is missing after up", devcloud.Netns)
	}
	if r := devcloud.Meter(t, meterBin, "--addr", srv.IP+":8080", "--rate", "10", "--for", "1s"); r.Failed != 0 || r.Servers[srv.Name] == nil {
		t.Fatalf("the server does not answer after down and up: %+v", r)
	}
	srv.Stop(t)
	if r := devcloud.Meter(t, meterBin, "--addr", srv.IP+":8080", "--rate", "4", "--for", "1s", "--timeout", "1s"); r.Answered != 0 {
		t.Fatalf("the server still answers after Nova stopped it: %+v", r)
	}
	old2, err := cloud.Open(ctx, "old", cloud.WithCloudsYAML(devcloud.CloudsYAML()))
	if err != nil {
		t.Fatal(err)
	}
	if got := findImage(t, client(t, old2.Image), devcloud.SeedImage); got != imgBefore {
		t.Fatalf("seed image %s after restart, was %s", got, imgBefore)
	}
	if got := findNetwork(t, client(t, old2.Network), devcloud.VLANNetwork).ID; got != netBefore {
		t.Fatalf("network %s after restart, was %s", got, netBefore)
	}
	// A plain up keeps the choice of up --libvirt.
	if _, err := os.Stat(filepath.Join(filepath.Dir(devcloud.CloudsYAML()), "libvirt.enabled")); err == nil {
		devcloud.RequireTCG(t)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// findOne returns the only item a list call finds, or fails the test.
func findOne[T any](t *testing.T, pager pagination.Pager, extract func(pagination.Page) ([]T, error), what string) T {
	t.Helper()
	list := must(extract(must(pager.AllPages(t.Context()))))
	if len(list) != 1 {
		t.Fatalf("%d %s, want exactly 1", len(list), what)
	}
	return list[0]
}

func findNetwork(t *testing.T, nc *gophercloud.ServiceClient, name string) networks.Network {
	t.Helper()
	return findOne(t, networks.List(nc, networks.ListOpts{Name: name}), networks.ExtractNetworks, "networks named "+name)
}

func findSubnet(t *testing.T, nc *gophercloud.ServiceClient, name string) subnets.Subnet {
	t.Helper()
	return *must(devcloud.FindSubnet(t.Context(), nc, name))
}

func findFlavor(t *testing.T, cc *gophercloud.ServiceClient, name string) string {
	t.Helper()
	return must(devcloud.FindFlavor(t.Context(), cc, name))
}

func findImage(t *testing.T, ic *gophercloud.ServiceClient, name string) string {
	t.Helper()
	return must(devcloud.FindImage(t.Context(), ic, name))
}
