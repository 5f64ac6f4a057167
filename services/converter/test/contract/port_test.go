package contract

import (
	"context"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
)

// TestBootsOnGivenPort: a job given destination.port_id (the port netbridge's
// MoveAddress makes; made by hand here) boots the server on that port with its
// address, and makes no port of its own; port_id with fixed_ip is refused.
func TestBootsOnGivenPort(t *testing.T) {
	c := open(t)
	srvID, netID := fixture(t, c)
	port := must(ports.Create(t.Context(), c.newN, ports.CreateOpts{Name: "ctest-moved", NetworkID: netID,
		FixedIPs: []ports.IP{{IPAddress: "10.101.0.81"}}}).Extract())(t)
	t.Cleanup(func() { _ = ports.Delete(context.Background(), c.newN, port.ID).ExtractErr() })
	env := servicetest.NewEnv(t)
	_, client := start(t, env)
	bad, err := client.CreateJob(t.Context(), &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source:      &converterv1.V2VSource{Cloud: "old", ServerId: srvID},
		Destination: &converterv1.V2VDestination{Cloud: "new", PortId: port.ID, FixedIp: "10.101.0.82"},
	}})
	if err == nil {
		t.Fatalf("port_id with fixed_ip accepted: %v", bad)
	}
	j := must(client.CreateJob(t.Context(), &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source:      &converterv1.V2VSource{Cloud: "old", ServerId: srvID},
		Destination: &converterv1.V2VDestination{Cloud: "new", PortId: port.ID},
	}}))(t).GetJob()
	end := watchJob(t, client, j.GetName(), nil, nil)
	cleanupJob(t, c, end)
	if end.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED || end.GetCreated().GetPortId() != "" {
		t.Fatalf("job %s (%s), created port %q: want success on the given port", end.GetState(), end.GetError(), end.GetCreated().GetPortId())
	}
	p := must(ports.Get(t.Context(), c.newN, port.ID).Extract())(t)
	if p.DeviceID != end.GetCreated().GetServerId() || p.FixedIPs[0].IPAddress != "10.101.0.81" {
		t.Fatalf("port %s: device %q, IPs %v; want server %s on 10.101.0.81", p.ID, p.DeviceID, p.FixedIPs, end.GetCreated().GetServerId())
	}
	t.Logf("server %s booted on the given port %s (10.101.0.81)", end.GetCreated().GetServerId(), port.ID)
}
