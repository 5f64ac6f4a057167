// Package contract runs the converter binary against a real etcd and the dev
// cloud (tilt/devcloud): an instance on the old region's qemu-TCG compute moved to
// the new region, speaking to the converter only over gRPC.
package contract

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/p2vtest"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/cloudinit"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

var binary, inventoryBinary, agentBinary string

func TestMain(m *testing.M) {
	bin, cleanup := servicetest.MustBuild("github.com/hikkoshi/hikkoshi/services/converter/cmd/converter")
	inv, cleanupInv := servicetest.MustBuild("github.com/hikkoshi/hikkoshi/services/inventory/cmd/inventory")
	ag, cleanupAgent := servicetest.MustBuild("github.com/hikkoshi/hikkoshi/services/converter/cmd/hikkoshi-p2v-agent")
	binary, inventoryBinary, agentBinary = bin, inv, ag
	code := m.Run()
	cleanup()
	cleanupInv()
	cleanupAgent()
	os.Exit(code)
}

func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

type clouds struct {
	oldC, oldI, newC, newN, newI *gophercloud.ServiceClient
}

func open(t *testing.T) clouds {
	t.Helper()
	o, n := devcloud.Open(t, "old"), devcloud.Open(t, "new")
	c := clouds{
		oldC: must(o.Compute())(t), oldI: must(o.Image())(t),
		newC: must(n.Compute())(t), newN: must(n.Network())(t), newI: must(n.Image())(t),
	}
	return c
}

// fixture boots a server on the old region's TCG compute (real disk bytes to
// snapshot) and makes a network in the new project with the old VLAN's CIDR.
func fixture(t *testing.T, c clouds) (srvID, netID string) {
	t.Helper()
	devcloud.RequireTCG(t)
	ctx := t.Context()
	tag := fmt.Sprintf("ctest-v2v-%d", time.Now().UnixNano())
	c.oldC.Microversion = "2.37"
	srv := must(servers.Create(ctx, c.oldC, servers.CreateOpts{
		Name: tag, FlavorRef: must(devcloud.FindFlavor(ctx, c.oldC, devcloud.FlavorTiny))(t),
		ImageRef: must(devcloud.FindImage(ctx, c.oldI, devcloud.SeedImage))(t), AvailabilityZone: devcloud.ZoneTCG, Networks: "none",
	}, nil).Extract())(t)
	t.Cleanup(func() { _ = servers.Delete(context.Background(), c.oldC, srv.ID).ExtractErr() })
	waitStatus(t, c.oldC, srv.ID, "ACTIVE")
	return srv.ID, destNetwork(t, c, tag)
}

// destNetwork makes a network in the new project with the old VLAN's CIDR (pool
// .200-.250), deleted when the test ends.
func destNetwork(t *testing.T, c clouds, tag string) string {
	t.Helper()
	ctx := t.Context()
	net := must(networks.Create(ctx, c.newN, networks.CreateOpts{Name: tag}).Extract())(t)
	t.Cleanup(func() { _ = networks.Delete(context.Background(), c.newN, net.ID).ExtractErr() })
	must(subnets.Create(ctx, c.newN, subnets.CreateOpts{
		NetworkID: net.ID, Name: tag + "-v4", CIDR: "10.101.0.0/24", IPVersion: gophercloud.IPv4,
		AllocationPools: []subnets.AllocationPool{{Start: "10.101.0.200", End: "10.101.0.250"}},
	}).Extract())(t)
	return net.ID
}

func waitStatus(t *testing.T, cc *gophercloud.ServiceClient, id, want string) *servers.Server {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		s, err := servers.Get(t.Context(), cc, id).Extract()
		if err == nil && s.Status == want {
			return s
		}
		if err == nil && s.Status == "ERROR" {
			t.Fatalf("server %s in ERROR: %v\n%s", id, s.Fault, devcloud.ComputeErrors(id))
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("server %s not %s in time", id, want)
	return nil
}

// start runs a converter on env's etcd.
func start(t *testing.T, env *servicetest.Env, extra ...string) (*servicetest.Proc, converterv1.ConverterServiceClient) {
	t.Helper()
	args := append([]string{"--clouds-yaml", devcloud.CloudsYAML(), "--chunk-bytes", "1048576", "--poll", "250ms", "--workers", "1",
		"--clouds", "old,new", "--p2v-disk-root", p2vtest.CacheDir(), "--p2v-agent-network", "127.0.0.1"}, extra...)
	p := env.Start(t, binary, "converter", args...)
	return p, converterv1.NewConverterServiceClient(p.Conn)
}

// watchJob follows a job until it ends, calling each for every update.
func watchJob(t *testing.T, c converterv1.ConverterServiceClient, name string, each func(*converterv1.Job), broken func() bool) *converterv1.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	stream := must(c.WatchJob(ctx, &converterv1.WatchJobRequest{Name: name}))(t)
	var last *converterv1.Job
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return last
		}
		if err != nil {
			if broken != nil && broken() {
				return last // the converter serving the stream was killed on purpose
			}
			t.Fatalf("watch %s: %v", name, err)
		}
		last = m.GetJob()
		if each != nil {
			each(last)
		}
	}
}

// cleanupJob deletes what a finished job made (the decommission is the operator's).
func cleanupJob(t *testing.T, c clouds, j *converterv1.Job) {
	t.Cleanup(func() {
		ctx := context.Background()
		cr := j.GetCreated()
		if cr.GetServerId() != "" {
			_ = servers.Delete(ctx, c.newC, cr.GetServerId()).ExtractErr()
			for range 60 {
				if _, err := servers.Get(ctx, c.newC, cr.GetServerId()).Extract(); gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
		}
		if cr.GetPortId() != "" {
			_ = ports.Delete(ctx, c.newN, cr.GetPortId()).ExtractErr()
		}
		if cr.GetImageId() != "" {
			_ = images.Delete(ctx, c.newI, cr.GetImageId()).ExtractErr()
		}
		if cr.GetSnapshotImageId() != "" {
			_ = images.Delete(ctx, c.oldI, cr.GetSnapshotImageId()).ExtractErr()
		}
	})
}

// TestV2VMovesAnInstance: an instance on the old region's TCG compute, moved by one
// job, runs ACTIVE in the new region from a byte-identical image with its fixed IP;
// the source is stopped, not deleted.
func TestV2VMovesAnInstance(t *testing.T) {
	c := open(t)
	srvID, netID := fixture(t, c)
	env := servicetest.NewEnv(t)
	invProc := env.Start(t, inventoryBinary, "inventory")
	inv := inventoryv1.NewInventoryServiceClient(invProc.Conn)
	must(inv.CreateWorkload(t.Context(), &inventoryv1.CreateWorkloadRequest{WorkloadId: "db-move", Workload: &inventoryv1.Workload{
		Role: "db", Stateful: true, Wave: 1, State: inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED,
		Source: &inventoryv1.Workload_Instance{Instance: &inventoryv1.InstanceSource{Cloud: "old", ServerId: srvID}},
	}}))(t)
	_, client := start(t, env, "--inventory", invProc.Addr)
	const ip = "10.101.0.77"
	// The health probe goes to a listener of this test on loopback (health_check_host),
	// standing in for the service's address: nothing here routes to the fixed IP.
	probe, probed := listen(t)
	dest := &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: ip, HealthCheck: "tcp:" + probe.Port, HealthCheckHost: probe.Host}
	created := must(client.CreateJob(t.Context(), &converterv1.CreateJobRequest{RequestId: "ctest-" + srvID, Job: &converterv1.Job{
		Workload:    "workloads/db-move",
		Source:      &converterv1.V2VSource{Cloud: "old", ServerId: srvID},
		Destination: dest,
	}}))(t).GetJob()
	again := must(client.CreateJob(t.Context(), &converterv1.CreateJobRequest{RequestId: "ctest-" + srvID, Job: &converterv1.Job{
		Workload:    "workloads/db-move",
		Source:      &converterv1.V2VSource{Cloud: "old", ServerId: srvID},
		Destination: dest,
	}}))(t).GetJob()
	if again.GetName() != created.GetName() {
		t.Fatalf("the same request_id made a second job: %s and %s", created.GetName(), again.GetName())
	}
	steps := map[converterv1.JobStep]bool{}
	start := time.Now()
	j := watchJob(t, client, created.GetName(), func(j *converterv1.Job) { steps[j.GetStep()] = true }, nil)
	cleanupJob(t, c, j)
	if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s: %s", j.GetState(), j.GetError())
	}
	t.Logf("job %s in %s: steps seen %v, progress %d/%d bytes in %d chunks, sha256 %s…", j.GetName(), time.Since(start).Round(100*time.Millisecond),
		len(steps), j.GetProgress().GetDoneBytes(), j.GetProgress().GetTotalBytes(), len(j.GetProgress().GetChunks()), j.GetProgress().GetSha256()[:16])
	dst := waitStatus(t, c.newC, j.GetCreated().GetServerId(), "ACTIVE")
	if fmt.Sprint(dst.Addresses) == "" || !strings.Contains(fmt.Sprint(dst.Addresses), ip) {
		t.Fatalf("destination server addresses %v lack %s", dst.Addresses, ip)
	}
	// It booted with the user data that keeps a cloud-init guest itself on its first
	// boot here (what that user data does to a guest: test/firstboot's
	// TestV2VFirstBootKeepsTheGuest).
	admin := must(devcloud.Open(t, "new-admin").Compute())(t)
	admin.Microversion = "2.3"
	withUD := must(servers.Get(t.Context(), admin, dst.ID).Extract())(t)
	if withUD.Userdata == nil || *withUD.Userdata != base64.StdEncoding.EncodeToString([]byte(cloudinit.UserData(cloudinit.Options{}))) {
		t.Fatalf("the new server's user data is not the converter's identity-keeping cloud-config: %v", withUD.Userdata)
	}
	snap := must(images.Get(t.Context(), c.oldI, j.GetCreated().GetSnapshotImageId()).Extract())(t)
	img := must(images.Get(t.Context(), c.newI, j.GetCreated().GetImageId()).Extract())(t)
	if img.Checksum != snap.Checksum || img.Properties["os_hash_value"] != snap.Properties["os_hash_value"] || img.SizeBytes != snap.SizeBytes {
		t.Fatalf("destination image %s (%d bytes, md5 %s) differs from the snapshot (%d bytes, md5 %s)", img.ID, img.SizeBytes, img.Checksum, snap.SizeBytes, snap.Checksum)
	}
	if src := must(servers.Get(t.Context(), c.oldC, srvID).Extract())(t); src.Status != "SHUTOFF" {
		t.Fatalf("source server is %s, want SHUTOFF (stopped, not deleted)", src.Status)
	}
	w := must(inv.GetWorkload(t.Context(), &inventoryv1.GetWorkloadRequest{Name: "workloads/db-move"}))(t).GetWorkload()
	if w.GetState() != inventoryv1.WorkloadState_WORKLOAD_STATE_CUT_OVER {
		t.Fatalf("the workload is %s after the job, want cut_over", w.GetState())
	}
	if !steps[converterv1.JobStep_JOB_STEP_HEALTH] || probed.Load() == 0 {
		t.Fatalf("the health step (seen %v) made %d connections to the probe", steps[converterv1.JobStep_JOB_STEP_HEALTH], probed.Load())
	}

	// Decommission: refused without the right confirmation, then the source server
	// and the snapshot are deleted, the workload is done, and a repeat changes nothing.
	_, err := client.DecommissionSource(t.Context(), &converterv1.DecommissionSourceRequest{Name: j.GetName(), ConfirmServerId: dst.ID})
	if status.Code(err) != codes.InvalidArgument || apierr.FieldViolations(err)["confirm_server_id"] == "" {
		t.Fatalf("decommission confirmed with the wrong server: %v, want INVALID_ARGUMENT on confirm_server_id", err)
	}
	d := must(client.DecommissionSource(t.Context(), &converterv1.DecommissionSourceRequest{Name: j.GetName(), ConfirmServerId: srvID}))(t).GetJob().GetDecommission()
	if d.GetTime() == nil || d.GetSourceServerId() != srvID || d.GetSnapshotImageId() != snap.ID {
		t.Fatalf("decommission record %v", d)
	}
	if _, err := servers.Get(t.Context(), c.oldC, srvID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Fatalf("the source server is still there after the decommission (%v)", err)
	}
	if _, err := images.Get(t.Context(), c.oldI, snap.ID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Fatalf("the snapshot is still there after the decommission (%v)", err)
	}
	d2 := must(client.DecommissionSource(t.Context(), &converterv1.DecommissionSourceRequest{Name: j.GetName(), ConfirmServerId: srvID}))(t).GetJob().GetDecommission()
	if !d2.GetTime().AsTime().Equal(d.GetTime().AsTime()) {
		t.Fatalf("a repeated decommission changed the record: %v then %v", d, d2)
	}
	w = must(inv.GetWorkload(t.Context(), &inventoryv1.GetWorkloadRequest{Name: "workloads/db-move"}))(t).GetWorkload()
	if w.GetState() != inventoryv1.WorkloadState_WORKLOAD_STATE_DONE {
		t.Fatalf("the workload is %s after the decommission, want done", w.GetState())
	}
	t.Logf("health probe: %d connection(s); decommissioned server %s and snapshot %s", probed.Load(), srvID, snap.ID)
}

// listen accepts TCP connections on loopback for a health probe and counts them.
func listen(t *testing.T) (addr struct{ Host, Port string }, accepted *atomic.Int64) {
	t.Helper()
	l := must(net.Listen("tcp", "127.0.0.1:0"))(t)
	t.Cleanup(func() { _ = l.Close() })
	accepted = &atomic.Int64{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close()
		}
	}()
	addr.Host, addr.Port, _ = net.SplitHostPort(l.Addr().String())
	return addr, accepted
}

// TestWorkerKilledMidCopy: the first converter is killed (SIGKILL) while it copies
// the image (its copy rate capped so there is time); a second converter takes the job
// over after the first's lease expires and finishes it, reading from the source only
// the chunks not yet verified.
func TestWorkerKilledMidCopy(t *testing.T) {
	c := open(t)
	srvID, netID := fixture(t, c)
	env := servicetest.NewEnv(t)
	first, client := start(t, env, "--copy-bandwidth", "1048576")
	created := must(client.CreateJob(t.Context(), &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source:      &converterv1.V2VSource{Cloud: "old", ServerId: srvID},
		Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: netID, FixedIp: "10.101.0.78"},
	}}))(t).GetJob()
	var atKill *converterv1.Job
	watchJob(t, client, created.GetName(), func(j *converterv1.Job) {
		if atKill == nil && j.GetProgress().GetDoneBytes() >= 3<<20 {
			atKill = j
			first.Signal(syscall.SIGKILL)
		}
	}, func() bool { return atKill != nil })
	if atKill == nil {
		t.Fatal("the copy ended before the kill")
	}
	_ = first.Wait(10 * time.Second)
	_, client2 := start(t, env)
	j := watchJob(t, client2, created.GetName(), nil, nil)
	cleanupJob(t, c, j)
	if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED || j.GetAttempts() != 2 {
		t.Fatalf("job %s after %d attempts: %s", j.GetState(), j.GetAttempts(), j.GetError())
	}
	p := j.GetProgress()
	t.Logf("killed at %d/%d bytes (%d chunks verified); the second worker finished: transferred %d bytes in all for %d",
		atKill.GetProgress().GetDoneBytes(), p.GetTotalBytes(), len(atKill.GetProgress().GetChunks()), p.GetTransferredBytes(), p.GetTotalBytes())
	if p.GetTransferredBytes() != p.GetTotalBytes() {
		t.Fatalf("%d bytes read from the source for a %d-byte image: the takeover read verified chunks again", p.GetTransferredBytes(), p.GetTotalBytes())
	}
	snap := must(images.Get(t.Context(), c.oldI, j.GetCreated().GetSnapshotImageId()).Extract())(t)
	img := must(images.Get(t.Context(), c.newI, j.GetCreated().GetImageId()).Extract())(t)
	if img.Checksum != snap.Checksum {
		t.Fatalf("image differs after the takeover")
	}
	// The chunk the first worker had begun and not recorded is deleted too.
	if left, err := imagecopy.ChunkImages(t.Context(), imagecopy.NewGlance(c.newI), p.GetImageName()); err != nil || len(left) != 0 {
		t.Fatalf("%d chunk images of the job left after the takeover (%v)", len(left), err)
	}
}
