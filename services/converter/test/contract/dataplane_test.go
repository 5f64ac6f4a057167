package contract

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/attachinterfaces"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/jobs"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// TestV2VMovesAFakeDriverServer: a web server of the estate on Nova's fake driver —
// the dev cloud's driver gives it a disk and a stand-in that answers on its address —
// moved live by one job (snapshot while it runs, source left running, as the wave
// runner moves a stateless server). The new Glance's image holds the snapshot's bytes
// (digests equal) and the marker naming the server it was taken from; the moved
// server answers on its new address under its name, and the source still does. Then
// the source, stopped, moves cold: its replacement is left stopped and does not answer.
func TestV2VMovesAFakeDriverServer(t *testing.T) {
	c := open(t)
	ctx := t.Context()
	tag := fmt.Sprintf("ctest-web-%d", time.Now().UnixNano())
	src := devcloud.BootStandin(t, tag, "10.101.0.131", map[string]string{"role": "web"})
	meterBin, cleanup, err := servicetest.Build("github.com/hikkoshi/hikkoshi/tilt/devcloud/cmd/hikkoshi-devcloud")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	if r := devcloud.Meter(t, meterBin, "--addr", src.IP+":8080", "--rate", "10", "--for", "1s"); r.Failed != 0 || r.Servers[tag] == nil {
		t.Fatalf("the source does not answer on %s: %+v", src.IP, r)
	}

	netID := destNetwork(t, c, tag)
	env := servicetest.NewEnv(t)
	_, client := start(t, env, "--probe-proxy", devcloud.Bastion)
	const newIP = "10.101.0.132"
	created := must(client.CreateJob(ctx, &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source: &converterv1.V2VSource{Cloud: "old", ServerId: src.ID, Live: true},
		// The health check reaches the new server's own address through the dev
		// cloud's jump host, as an SRE's probe goes through a bastion.
		Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: newIP, HealthCheck: "http:8080/healthz"},
	}}))(t).GetJob()
	start := time.Now()
	j := watchJob(t, client, created.GetName(), nil, nil)
	cleanupJob(t, c, j)
	if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s: %s", j.GetState(), j.GetError())
	}
	t.Logf("job %s in %s: %d bytes", j.GetName(), time.Since(start).Round(100*time.Millisecond), j.GetProgress().GetTotalBytes())

	snap := must(images.Get(ctx, c.oldI, j.GetCreated().GetSnapshotImageId()).Extract())(t)
	img := must(images.Get(ctx, c.newI, j.GetCreated().GetImageId()).Extract())(t)
	if snap.SizeBytes == 0 || img.Checksum != snap.Checksum || img.Properties["os_hash_value"] != snap.Properties["os_hash_value"] {
		t.Fatalf("destination image (%d bytes, md5 %s) differs from the snapshot (%d bytes, md5 %s)", img.SizeBytes, img.Checksum, snap.SizeBytes, snap.Checksum)
	}
	m, err := devcloud.ReadDiskMarker(ctx, c.newI, img.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m.Fields["server_id"] != src.ID || m.Fields["name"] != tag {
		t.Fatalf("the image's marker names %v, want server %s (%s)", m.Fields, src.ID, tag)
	}
	t.Logf("image %s: %d bytes, sha256 %s…, marker %v", img.ID, m.Size, m.SHA256[:16], m.Fields)

	r := devcloud.Meter(t, meterBin, "--addr", newIP+":8080", "--rate", "10", "--for", "1s")
	if r.Failed != 0 || r.Servers[tag] == nil || r.Servers[tag].Count != r.Sent {
		t.Fatalf("the moved server does not answer on %s as %s: %+v", newIP, tag, r)
	}
	r = devcloud.Meter(t, meterBin, "--addr", src.IP+":8080", "--rate", "10", "--for", "1s")
	if r.Failed != 0 || r.Servers[tag] == nil {
		t.Fatalf("the source, moved live, no longer answers on %s: %+v", src.IP, r)
	}
	waitStatus(t, c.oldC, src.ID, "ACTIVE")

	// Cold: the source stopped, its replacement booted and left stopped.
	src.Stop(t)
	r = devcloud.Meter(t, meterBin, "--addr", src.IP+":8080", "--rate", "4", "--for", "1s", "--timeout", "1s")
	if r.Answered != 0 {
		t.Fatalf("the stopped source still answers on %s: %+v", src.IP, r)
	}
	const coldIP = "10.101.0.133"
	cold := must(client.CreateJob(ctx, &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source:      &converterv1.V2VSource{Cloud: "old", ServerId: src.ID},
		Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: coldIP, Stopped: true, HealthCheck: "tcp:8080"},
	}}))(t).GetJob()
	j = watchJob(t, client, cold.GetName(), nil, nil)
	cleanupJob(t, c, j)
	if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("cold job %s: %s", j.GetState(), j.GetError())
	}
	waitStatus(t, c.newC, j.GetCreated().GetServerId(), "SHUTOFF")
	r = devcloud.Meter(t, meterBin, "--addr", coldIP+":8080", "--rate", "4", "--for", "1s", "--timeout", "1s")
	if r.Answered != 0 {
		t.Fatalf("the replacement of a stopped server answers on %s: %+v", coldIP, r)
	}
	if s := waitStatus(t, c.oldC, src.ID, "SHUTOFF"); s == nil {
		t.Fatal("source")
	}
}

// TestV2VKeepsEveryNIC: a server with two NICs on two networks moves with both, in
// the order the guest sees them, each with its network's address and its MAC; the
// moved server answers on both addresses. Without destination.nics the pre-flight
// refuses, naming the NICs.
func TestV2VKeepsEveryNIC(t *testing.T) {
	c := open(t)
	ctx := t.Context()
	tag := fmt.Sprintf("ctest-nics-%d", time.Now().UnixNano())
	oc := devcloud.Open(t, "old-admin")
	on := must(oc.Network())(t)
	occ := must(oc.Compute())(t)
	// A second network in the old cloud, 10.102.0.0/24.
	n2 := must(networks.Create(ctx, on, networks.CreateOpts{Name: tag}).Extract())(t)
	t.Cleanup(func() { _ = networks.Delete(context.Background(), on, n2.ID).ExtractErr() })
	s2 := must(subnets.Create(ctx, on, subnets.CreateOpts{NetworkID: n2.ID, Name: tag + "-v4", CIDR: "10.102.0.0/24", IPVersion: gophercloud.IPv4}).Extract())(t)
	p2 := must(ports.Create(ctx, on, ports.CreateOpts{Name: tag + "-nic1", NetworkID: n2.ID, FixedIPs: []ports.IP{{SubnetID: s2.ID, IPAddress: "10.102.0.5"}}}).Extract())(t)
	t.Cleanup(func() { _ = ports.Delete(context.Background(), on, p2.ID).ExtractErr() })
	src := devcloud.BootStandin(t, tag, "10.101.0.134", nil)
	// The second NIC is attached after the boot: the guest sees it as its second.
	must(attachinterfaces.Create(ctx, occ, src.ID, attachinterfaces.CreateOpts{PortID: p2.ID}).Extract())(t)
	var ifaces []attachinterfaces.Interface
	for range 60 {
		ifaces = must(attachinterfaces.ExtractInterfaces(must(attachinterfaces.List(occ, src.ID).AllPages(ctx))(t)))(t)
		if len(ifaces) == 2 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(ifaces) != 2 {
		t.Fatalf("the source has %d NICs, want 2", len(ifaces))
	}
	srcMACs := must(jobs.GuestMACOrder(ctx, occ, src.ID))(t)
	net1, net2 := destNetwork(t, c, tag+"-a"), must(networks.Create(ctx, c.newN, networks.CreateOpts{Name: tag + "-b"}).Extract())(t)
	t.Cleanup(func() { _ = networks.Delete(context.Background(), c.newN, net2.ID).ExtractErr() })
	must(subnets.Create(ctx, c.newN, subnets.CreateOpts{NetworkID: net2.ID, Name: tag + "-b-v4", CIDR: "10.102.0.0/24", IPVersion: gophercloud.IPv4}).Extract())(t)

	env := servicetest.NewEnv(t)
	_, client := start(t, env)
	// One network for a server with two NICs: refused, naming them.
	bad := must(client.CreateJob(ctx, &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source:      &converterv1.V2VSource{Cloud: "old", ServerId: src.ID},
		Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: net1},
	}}))(t).GetJob()
	if j := watchJob(t, client, bad.GetName(), nil, nil); j.GetState() != converterv1.JobState_JOB_STATE_FAILED || !strings.Contains(j.GetError(), "2 NICs") {
		t.Fatalf("a two-NIC server with one network: %s %q, want failed naming its NICs", j.GetState(), j.GetError())
	}
	waitStatus(t, c.oldC, src.ID, "ACTIVE")

	created := must(client.CreateJob(ctx, &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source: &converterv1.V2VSource{Cloud: "old", ServerId: src.ID},
		Destination: &converterv1.V2VDestination{Cloud: "new", Nics: []*converterv1.V2VNic{
			{NetworkId: net1, KeepMac: true}, {NetworkId: net2.ID, KeepMac: true}}},
	}}))(t).GetJob()
	j := watchJob(t, client, created.GetName(), nil, nil)
	cleanupJob(t, c, j)
	t.Cleanup(func() {
		for _, pid := range j.GetCreated().GetPortIds() {
			_ = ports.Delete(context.Background(), c.newN, pid).ExtractErr()
		}
	})
	if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s: %s", j.GetState(), j.GetError())
	}
	got := must(jobs.GuestMACOrder(ctx, c.newC, j.GetCreated().GetServerId()))(t)
	if strings.Join(got, ",") != strings.Join(srcMACs, ",") || len(got) != 2 {
		t.Fatalf("the moved server's NICs in the guest's order %v, the source's %v", got, srcMACs)
	}
	t.Logf("NICs in the guest's order, MACs kept: %v; source interfaces %s", got, describe(ifaces))
	meterBin, cleanup, err := servicetest.Build("github.com/hikkoshi/hikkoshi/tilt/devcloud/cmd/hikkoshi-devcloud")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	for _, ip := range []string{"10.101.0.134", "10.102.0.5"} {
		if r := devcloud.Meter(t, meterBin, "--addr", ip+":8080", "--rate", "10", "--for", "1s"); r.Failed != 0 || r.Servers[tag] == nil {
			t.Fatalf("the moved server does not answer on %s: %+v", ip, r)
		}
	}
}

func describe(ifs []attachinterfaces.Interface) string {
	var out []string
	for _, f := range ifs {
		out = append(out, f.MACAddr+" "+f.FixedIPs[0].IPAddress)
	}
	return strings.Join(out, ", ")
}
