package contract

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// syncTo runs a sync of cloud old to its end, following it with WatchSync.
func syncTo(t *testing.T, p *proc, mode inventoryv1.SyncMode) *inventoryv1.Sync {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	created, err := p.client.CreateSync(ctx, &inventoryv1.CreateSyncRequest{Sync: &inventoryv1.Sync{Cloud: "old", Mode: mode}})
	if err != nil {
		t.Fatalf("CreateSync: %v", err)
	}
	stream, err := p.client.WatchSync(ctx, &inventoryv1.WatchSyncRequest{Name: created.GetSync().GetName()})
	if err != nil {
		t.Fatalf("WatchSync: %v", err)
	}
	var last *inventoryv1.Sync
	phases := 0
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("WatchSync: %v", err)
		}
		last = m.GetSync()
		phases++
	}
	if last.GetState() != inventoryv1.SyncState_SYNC_STATE_SUCCEEDED {
		t.Fatalf("sync %s ended %s: %s", last.GetName(), last.GetState(), last.GetError())
	}
	t.Logf("%s %s: %d updates watched, counts %v, notes %q", last.GetName(), last.GetMode(), phases, last.GetCounts(), last.GetNotes())
	return last
}

// must returns v, or fails the test with err.
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// TestSyncDiscoversAServer boots a server on a VLAN port in the dev cloud's old
// region and syncs: the server becomes a workload with the port's MAC, IP, subnet and
// network; a sync with nothing changed writes nothing; the operator's role and wave
// survive syncs; the server deleted in the cloud is marked vanished, not deleted.
func TestSyncDiscoversAServer(t *testing.T) {
	devcloud.Require(t)
	old := devcloud.Open(t, "old")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	nc, err := old.Network()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := old.Compute()
	if err != nil {
		t.Fatal(err)
	}
	ic, err := old.Image()
	if err != nil {
		t.Fatal(err)
	}
	sub := must(devcloud.FindSubnet(ctx, nc, devcloud.VLANSubnet))(t)
	netName := must(networks.Get(ctx, nc, sub.NetworkID).Extract())(t).Name
	port := must(ports.Create(ctx, nc, ports.CreateOpts{
		Name: fmt.Sprintf("ctest-sync-%d", time.Now().UnixNano()), NetworkID: sub.NetworkID,
		FixedIPs: []ports.IP{{SubnetID: sub.ID}},
	}).Extract())(t)
	t.Cleanup(func() { _ = ports.Delete(context.Background(), nc, port.ID).ExtractErr() })
	srv := must(servers.Create(ctx, cc, servers.CreateOpts{
		Name: "ctest-sync", FlavorRef: must(devcloud.FindFlavor(ctx, cc, devcloud.FlavorTiny))(t),
		ImageRef: must(devcloud.FindImage(ctx, ic, devcloud.SeedImage))(t), Networks: []servers.Network{{Port: port.ID}},
	}, nil).Extract())(t)
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			_ = servers.Delete(context.Background(), cc, srv.ID).ExtractErr()
		}
	})
	waitServer(ctx, t, cc, srv.ID, "ACTIVE")

	p := newEnv(t).start(t, "--source-clouds", "old", "--destination-clouds", "new", "--clouds-yaml", devcloud.CloudsYAML())
	first := syncTo(t, p, inventoryv1.SyncMode_SYNC_MODE_AUTO)
	if first.GetMode() != inventoryv1.SyncMode_SYNC_MODE_FULL || first.GetCounts().GetCreated() < 1 {
		t.Fatalf("first sync %v %v: want a full sync that created workloads", first.GetMode(), first.GetCounts())
	}
	name := "workloads/i-" + srv.ID
	w := must(p.client.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{Name: name}))(t).GetWorkload()
	f := w.GetFacts().GetInstance()
	if f.GetName() != "ctest-sync" || f.GetStatus() != "ACTIVE" || f.GetFlavor().GetName() != devcloud.FlavorTiny ||
		w.GetInstance().GetServerId() != srv.ID || w.GetInstance().GetCloud() != "old" || w.GetFacts().GetSync() != first.GetName() {
		t.Fatalf("workload %v", w)
	}
	if len(f.GetPorts()) != 1 {
		t.Fatalf("ports %v, want the one port", f.GetPorts())
	}
	pf := f.GetPorts()[0]
	if pf.GetId() != port.ID || pf.GetMacAddress() != port.MACAddress || pf.GetNetworkName() != netName ||
		len(pf.GetFixedIps()) != 1 || pf.GetFixedIps()[0].GetIpAddress() != port.FixedIPs[0].IPAddress ||
		pf.GetFixedIps()[0].GetSubnetId() != sub.ID || pf.GetFixedIps()[0].GetCidr() != sub.CIDR {
		t.Fatalf("port facts %v, want port %s MAC %s IP %s on %s (%s)", pf, port.ID, port.MACAddress, port.FixedIPs[0].IPAddress, sub.CIDR, netName)
	}

	// The operator's decisions.
	w = must(p.client.UpdateWorkload(ctx, &inventoryv1.UpdateWorkloadRequest{
		Workload:   &inventoryv1.Workload{Name: name, Role: "web", Wave: 1},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"role", "wave"}},
	}))(t).GetWorkload()

	// Nothing changed: no writes. Other tests may change the shared old project
	// meanwhile, so allow a few tries for a quiet moment; this workload is never
	// written either way.
	quiet := false
	for _, mode := range []inventoryv1.SyncMode{inventoryv1.SyncMode_SYNC_MODE_AUTO, inventoryv1.SyncMode_SYNC_MODE_FULL,
		inventoryv1.SyncMode_SYNC_MODE_AUTO, inventoryv1.SyncMode_SYNC_MODE_FULL} {
		sy := syncTo(t, p, mode)
		if mode == inventoryv1.SyncMode_SYNC_MODE_AUTO && sy.GetMode() != inventoryv1.SyncMode_SYNC_MODE_INCREMENTAL {
			t.Fatalf("an AUTO sync right after a successful one is %v, want incremental", sy.GetMode())
		}
		if sy.GetCounts().GetEtcdWrites() == 0 {
			quiet = true
		}
		again := must(p.client.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{Name: name}))(t).GetWorkload()
		if again.GetEtag() != w.GetEtag() {
			t.Fatalf("%v sync rewrote the unchanged workload (etag %s → %s)", sy.GetMode(), w.GetEtag(), again.GetEtag())
		}
	}
	if !quiet {
		t.Fatal("no sync with nothing changed made zero etcd writes")
	}

	// Pre-flight of wave 1 (this workload) against the new cloud, read live: its own
	// Glance is empty and the old VLAN network is not there yet; the flavor is.
	rep := must(p.client.GetPreflight(ctx, &inventoryv1.GetPreflightRequest{Wave: 1, Destination: "new"}))(t).GetReport()
	t.Logf("pre-flight: %v", rep)
	if rep.GetWorkloads() != 1 || rep.GetDiskBytes() != 1<<30 || rep.GetOk() || len(rep.GetMissingFlavors()) != 0 ||
		!slices.Contains(rep.GetMissingImages(), devcloud.SeedImage) || !slices.Contains(rep.GetMissingNetworks(), netName) {
		t.Fatalf("pre-flight %v: want 1 workload, 1 GiB, image %s and network %s missing, flavor present", rep, devcloud.SeedImage, netName)
	}
	_, err = p.client.GetPreflight(ctx, &inventoryv1.GetPreflightRequest{Wave: 1, Destination: "old2"})
	wantCode(t, err, codes.InvalidArgument)

	// Deleted in the cloud: vanished, and the operator's fields kept.
	if err := servers.Delete(ctx, cc, srv.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	deleted = true
	waitServer(ctx, t, cc, srv.ID, "")
	sy := syncTo(t, p, inventoryv1.SyncMode_SYNC_MODE_AUTO)
	w = must(p.client.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{Name: name}))(t).GetWorkload()
	if !w.GetVanished() || w.GetVanishTime() == nil || w.GetRole() != "web" || w.GetWave() != 1 {
		t.Fatalf("after the server's deletion (%v sync): vanished=%v role=%q wave=%d", sy.GetMode(), w.GetVanished(), w.GetRole(), w.GetWave())
	}
	vanished := must(p.client.ListWorkloads(ctx, &inventoryv1.ListWorkloadsRequest{Cloud: "old", Vanished: ptr(true)}))(t).GetWorkloads()
	found := false
	for _, v := range vanished {
		found = found || v.GetName() == name
	}
	if !found {
		t.Fatalf("ListWorkloads {vanished: true} lacks %s", name)
	}

	nets := must(p.client.ListNetworks(ctx, &inventoryv1.ListNetworksRequest{Cloud: "old"}))(t).GetNetworks()
	ok := false
	for _, n := range nets {
		for _, s := range n.GetSubnets() {
			ok = ok || (s.GetId() == sub.ID && s.GetCidr() == sub.CIDR && len(s.GetAllocationPools()) == len(sub.AllocationPools))
		}
	}
	if !ok {
		t.Fatalf("ListNetworks lacks subnet %s %s with its pools: %v", sub.ID, sub.CIDR, nets)
	}

	_, err = p.client.CreateSync(ctx, &inventoryv1.CreateSyncRequest{Sync: &inventoryv1.Sync{Cloud: "nope"}})
	wantCode(t, err, codes.InvalidArgument)
	if apierr.FieldViolations(err)["sync.cloud"] == "" {
		t.Fatalf("unknown cloud: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

// waitServer waits for a server's status ("" waits until it is gone).
func waitServer(ctx context.Context, t *testing.T, cc *gophercloud.ServiceClient, id, want string) {
	t.Helper()
	for {
		s, err := servers.Get(ctx, cc, id).Extract()
		switch {
		case want == "" && gophercloud.ResponseCodeIs(err, http.StatusNotFound):
			return
		case err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound):
			t.Fatal(err)
		case err == nil && want != "" && s.Status == want:
			return
		case err == nil && s.Status == "ERROR":
			t.Fatalf("server %s went to ERROR: %+v\n%s", id, s.Fault, devcloud.ComputeErrors(id))
		}
		select {
		case <-ctx.Done():
			t.Fatalf("server %s: not %q in time", id, want)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
