package contract

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/mtls"
	"github.com/hikkoshi/hikkoshi/platform/p2vtest"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/p2v"
)

const fixtureMAC = "52:54:00:12:34:56"

// TestP2VFixtureBootsOnVirtio runs P2V jobs over gRPC on the fixture "physical"
// disk (Debian; /boot, / and /var apart; an initramfs with SATA drivers only; no
// cloud-init; a static eno1): a dry run reports what is there; a conversion uploads
// an image to the new cloud's Glance. The image, downloaded back, boots under qemu
// (TCG) from a virtio disk to a login prompt on the serial console, with one root
// file system, cloud-init installed, eno1 on the NIC with the pinned MAC, and the
// fixture's network configuration unchanged. The unconverted fixture's own kernel
// and initramfs, given the disk on virtio, do not find their root: the negative
// control. The source is not changed, and no mount or loop device is left.
func TestP2VFixtureBootsOnVirtio(t *testing.T) {
	disk := p2vtest.Fixture(t)
	c := open(t)
	work := t.TempDir()
	env := servicetest.NewEnv(t)
	_, client := start(t, env, "--p2v-work-dir", filepath.Join(work, "jobs"))
	ctx := t.Context()
	srcBefore := must(os.Stat(disk))(t).ModTime()

	dry := must(client.CreateJob(ctx, &converterv1.CreateJobRequest{Job: &converterv1.Job{
		P2VSource: &converterv1.P2VSource{DiskPath: disk, InspectOnly: true},
	}}))(t).GetJob()
	dry = watchJob(t, client, dry.GetName(), nil, nil)
	in := dry.GetP2VResult().GetInspection()
	if dry.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED || in.GetOsId() != "debian" || in.GetInitramfsTool() != "initramfs-tools" || in.GetCloudInit() {
		t.Fatalf("dry run %s (%s): %v", dry.GetState(), dry.GetError(), in)
	}
	var mps []string
	for _, p := range in.GetPartitions() {
		mps = append(mps, p.GetMountPoint())
	}
	if strings.Join(mps, ",") != "/boot,/,/var" || len(in.GetNetwork()) != 1 || in.GetNetwork()[0].GetInterfaces()["eno1"] != "static" {
		t.Fatalf("inspection: mount points %v, network %v", mps, in.GetNetwork())
	}

	// Refused before anything runs: a relative path, a bad NIC pin.
	_, err := client.CreateJob(ctx, &converterv1.CreateJobRequest{Job: &converterv1.Job{
		P2VSource: &converterv1.P2VSource{DiskPath: "disk.raw", Nics: []string{"eno1"}}, P2VImage: &converterv1.P2VImage{Cloud: "new"},
	}})
	servicetest.WantCode(t, err, codes.InvalidArgument)
	// ... and what this converter's policy does not allow (--p2v-disk-root, --clouds,
	// --p2v-agent-network): the worker's own disk and files, a cloud not listed, an
	// agent elsewhere.
	for field, src := range map[string]*converterv1.P2VSource{
		"job.p2v_source.disk_path":          {DiskPath: "/etc/shadow"},
		"job.p2v_source.more_disk_paths[0]": {DiskPath: disk, MoreDiskPaths: []string{"/dev/vda"}},
		"job.p2v_source.agent_url":          {AgentUrl: "http://10.101.0.9:7420"},
	} {
		_, err := client.CreateJob(ctx, &converterv1.CreateJobRequest{Job: &converterv1.Job{P2VSource: src, P2VImage: &converterv1.P2VImage{Cloud: "new"}}})
		if status.Code(err) != codes.InvalidArgument || apierr.FieldViolations(err)[field] == "" {
			t.Fatalf("%s not allowed: %v", field, err)
		}
	}
	_, err = client.CreateJob(ctx, &converterv1.CreateJobRequest{Job: &converterv1.Job{P2VSource: &converterv1.P2VSource{DiskPath: disk}, P2VImage: &converterv1.P2VImage{Cloud: "admin"}}})
	if apierr.FieldViolations(err)["job.p2v_image.cloud"] == "" {
		t.Fatalf("a cloud not in --clouds: %v", err)
	}

	start := time.Now()
	job := must(client.CreateJob(ctx, &converterv1.CreateJobRequest{Job: &converterv1.Job{
		P2VSource: &converterv1.P2VSource{DiskPath: disk, Nics: []string{"eno1=" + fixtureMAC}},
		P2VImage:  &converterv1.P2VImage{Cloud: "new", Name: "ctest-p2v-pg-legacy-1"},
	}}))(t).GetJob()
	steps := map[converterv1.JobStep]bool{}
	job = watchJob(t, client, job.GetName(), func(j *converterv1.Job) { steps[j.GetStep()] = true }, nil)
	took := time.Since(start)
	if job.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("P2V job %s: %s", job.GetState(), job.GetError())
	}
	t.Cleanup(func() { _ = images.Delete(context.Background(), c.newI, job.GetCreated().GetImageId()).ExtractErr() })
	res := job.GetP2VResult()
	img := must(images.Get(ctx, c.newI, job.GetCreated().GetImageId()).Extract())(t)
	if img.Status != images.ImageStatusActive || img.DiskFormat != "qcow2" || img.Properties["hw_disk_bus"] != "virtio" || img.Properties["os_hash_value"] != res.GetSha512() {
		t.Fatalf("image %s: %s %s %v (sha512 %s…)", img.ID, img.Status, img.DiskFormat, img.Properties, res.GetSha512()[:16])
	}
	if left := p2vtest.Leftovers(work); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	if !must(os.Stat(disk))(t).ModTime().Equal(srcBefore) {
		t.Fatal("the source disk was written to")
	}
	t.Logf("P2V job in %s (steps %v): %d-byte qcow2 of a %d-byte disk, timings %v ms", took.Round(100*time.Millisecond), len(steps),
		res.GetImageBytes(), res.GetVirtualBytes(), res.GetTimingsMs())

	// Download it back from Glance and boot it.
	dl := filepath.Join(work, "downloaded.qcow2")
	body := must(imagecopy.NewGlance(c.newI).Download(ctx, img.ID, 0, -1))(t)
	f := must(os.Create(dl))(t)
	must(io.Copy(f, body))(t)
	_ = body.Close()
	_ = f.Close()
	console, ok, err := p2v.Boot(ctx, p2v.BootOptions{Disk: dl, Format: "qcow2", Bus: "virtio", MAC: fixtureMAC,
		Want: `login:`, Fail: []string{`ALERT!`, `Kernel panic`}, Timeout: 5 * time.Minute})
	if err != nil || !ok {
		t.Fatalf("the converted image did not reach a login prompt (%v):\n%s", err, lastLines(console, 40))
	}
	for _, want := range []string{"root=UUID=" + res.GetRootUuid(), "vda1", "eno1: renamed from"} {
		if !strings.Contains(console, want) {
			t.Errorf("serial console lacks %q", want)
		}
	}
	// Inside: one root file system, cloud-init, the network configuration as it was.
	raw := filepath.Join(work, "downloaded.raw")
	must(exec.Command("qemu-img", "convert", "-O", "raw", dl, raw).CombinedOutput())(t)
	d, a, err := p2v.Inspect(ctx, raw, filepath.Join(work, "inspect-new"))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Partitions) != 1 || d.Partitions[0].MountPoint != "/" || !a.CloudInit {
		t.Fatalf("converted disk: %d partitions %v, cloud-init %v", len(d.Partitions), d.Partitions, a.CloudInit)
	}
	const ifaces = "/etc/network/interfaces"
	was := must(p2v.ReadFiles(ctx, disk, filepath.Join(work, "read-old"), ifaces))(t)[ifaces]
	now := must(p2v.ReadFiles(ctx, raw, filepath.Join(work, "read-new"), ifaces))(t)[ifaces]
	if string(was) != string(now) || !strings.Contains(string(now), "address 10.101.0.55/24") {
		t.Fatalf("network configuration changed:\n%s\n---\n%s", was, now)
	}

	// The negative control: the fixture as it is, its disk on virtio.
	boot := in.GetKernels()[len(in.GetKernels())-1]
	files := must(p2v.ReadFiles(ctx, disk, filepath.Join(work, "read-boot"), "/boot/vmlinuz-"+boot, "/boot/initrd.img-"+boot))(t)
	kernel, initrd := filepath.Join(work, "vmlinuz"), filepath.Join(work, "initrd")
	must(0, os.WriteFile(kernel, files["/boot/vmlinuz-"+boot], 0o644))(t)
	must(0, os.WriteFile(initrd, files["/boot/initrd.img-"+boot], 0o644))(t)
	var rootUUID string
	for _, p := range in.GetPartitions() {
		if p.GetMountPoint() == "/" {
			rootUUID = p.GetUuid()
		}
	}
	neg, ok, err := p2v.Boot(ctx, p2v.BootOptions{Disk: disk, Format: "raw", Bus: "virtio", Kernel: kernel, Initrd: initrd,
		Append: "root=UUID=" + rootUUID + " ro console=ttyS0 rootdelay=10 panic=-1", Want: `login:`, Fail: []string{`ALERT!`, `Gave up waiting`}, Timeout: 4 * time.Minute})
	if err != nil || ok || !strings.Contains(neg, "does not exist") {
		t.Fatalf("the unconverted fixture on virtio: booted %v (%v):\n%s", ok, err, lastLines(neg, 20))
	}
	if left := p2vtest.Leftovers(work); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	t.Logf("converted: login: on ttyS0 from vda1 with eno1 on %s; unconverted on virtio: %q", fixtureMAC, firstMatch(neg, "ALERT!"))
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func firstMatch(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// startAgent starts hikkoshi-p2v-agent on a free loopback port serving disks, with
// args, and returns its address and what it logs.
func startAgent(t *testing.T, args []string, disks ...string) (string, *strings.Builder) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", servicetest.FreePort(t))
	args = append([]string{"--listen", addr}, args...)
	for _, d := range disks {
		args = append(args, "--disk", d)
	}
	ag := exec.Command(agentBinary, args...)
	var log strings.Builder
	ag.Stderr = &log
	must(0, ag.Start())(t)
	t.Cleanup(func() { _ = ag.Process.Kill(); _ = ag.Wait() })
	return addr, &log
}

// agentJob runs a job on an agent's disks to its end, again while it fails for up
// to 20 s (the agent may still be starting).
func agentJob(t *testing.T, client converterv1.ConverterServiceClient, req *converterv1.CreateJobRequest) *converterv1.Job {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		job := watchJob(t, client, must(client.CreateJob(t.Context(), req))(t).GetJob().GetName(), nil, nil)
		if job.GetState() == converterv1.JobState_JOB_STATE_SUCCEEDED || time.Now().After(deadline) {
			return job
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestP2VThroughAgent: the server's disk is served by hikkoshi-p2v-agent (as on a
// server booted into a live Linux; here on loopback): a dry-run job fetches it in
// verified chunks — the zeros not sent — and inspects the copy. A converter without
// the agent's token fails the job with the agent's 401, and the token appears in no
// job record.
func TestP2VThroughAgent(t *testing.T) {
	disk := p2vtest.Fixture(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	const token = "ctest-agent-token-9f2c"
	must(0, os.WriteFile(tokenFile, []byte(token+"\n"), 0o600))(t)
	addr, agLog := startAgent(t, []string{"--token-file", tokenFile}, disk)
	env := servicetest.NewEnv(t)
	withToken, client := start(t, env, "--p2v-work-dir", filepath.Join(dir, "jobs"), "--p2v-agent-token-file", tokenFile)
	ctx := t.Context()
	req := &converterv1.CreateJobRequest{Job: &converterv1.Job{P2VSource: &converterv1.P2VSource{AgentUrl: "http://" + addr, InspectOnly: true}}}
	job := agentJob(t, client, req)
	p := job.GetProgress()
	in := job.GetP2VResult().GetInspection()
	if job.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED || len(in.GetPartitions()) != 3 || in.GetOsId() != "debian" {
		t.Fatalf("job %s (%s): inspection %v\nagent: %s", job.GetState(), job.GetError(), in, agLog.String())
	}
	if p.GetTotalBytes() != must(os.Stat(disk))(t).Size() || p.GetDoneBytes() != p.GetTotalBytes() || p.GetTransferredBytes() > p.GetTotalBytes()/2 {
		t.Fatalf("fetch progress %v", p)
	}
	if left := p2vtest.Leftovers(dir); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	t.Logf("fetched a %d-byte disk through the agent with %d bytes on the wire (zeros skipped), inspected %s", p.GetTotalBytes(), p.GetTransferredBytes(), in.GetOsPretty())

	// Without the token: refused by the agent, and the token is nowhere. (The first
	// converter goes first: any worker on the etcd would claim the job.)
	withToken.Signal(syscall.SIGTERM)
	_ = withToken.Wait(20 * time.Second)
	_, noToken := start(t, env, "--p2v-work-dir", filepath.Join(dir, "jobs2"))
	bad := watchJob(t, noToken, must(noToken.CreateJob(ctx, req))(t).GetJob().GetName(), nil, nil)
	if bad.GetState() != converterv1.JobState_JOB_STATE_FAILED || !strings.Contains(bad.GetError(), "401") {
		t.Fatalf("without the token: %s %q", bad.GetState(), bad.GetError())
	}
	all := must(env.Cli.Get(ctx, "/hikkoshi/", clientv3.WithPrefix()))(t)
	for _, kv := range all.Kvs {
		if strings.Contains(string(kv.Value), token) {
			t.Fatalf("the agent's token is in etcd under %s", kv.Key)
		}
	}
}

// TestP2VInspectsLVM: a dry-run job on the fixture's LVM disk (CentOS-style: /boot on
// a partition, the rest in volume group vg-legacy) reports each logical volume with
// its mount point from the server's fstab of /dev/mapper and /dev/VG/LV paths. The
// conversion and boot of that disk are the p2v package's TestConvertLVMFixtureBoots.
func TestP2VInspectsLVM(t *testing.T) {
	disk := p2vtest.FixtureLVM(t)
	work := t.TempDir()
	env := servicetest.NewEnv(t)
	_, client := start(t, env, "--p2v-work-dir", filepath.Join(work, "jobs"))
	dry := must(client.CreateJob(t.Context(), &converterv1.CreateJobRequest{Job: &converterv1.Job{
		P2VSource: &converterv1.P2VSource{DiskPath: disk, InspectOnly: true},
	}}))(t).GetJob()
	dry = watchJob(t, client, dry.GetName(), nil, nil)
	if dry.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("dry run %s: %s", dry.GetState(), dry.GetError())
	}
	var got []string
	for _, p := range dry.GetP2VResult().GetInspection().GetPartitions() {
		got = append(got, fmt.Sprintf("%d:%s:%s:%s", p.GetNumber(), p.GetLogicalVolume(), p.GetFsType(), p.GetMountPoint()))
	}
	want := "1::ext4:/boot,2::LVM2_member:,2:vg-legacy/root:ext4:/,2:vg-legacy/swap:swap:,2:vg-legacy/var:ext4:/var"
	if strings.Join(got, ",") != want || dry.GetP2VResult().GetInspection().GetFirmware() != "bios" {
		t.Fatalf("inspection:\n got %s\nwant %s", strings.Join(got, ","), want)
	}
	if left := p2vtest.Leftovers(work); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// TestP2VUEFIJob: a P2V job on the fixture's UEFI disk uploads an image that says
// how it boots (hw_firmware_type=uefi; firmware "uefi" in the job's result). Its boot
// with OVMF is the p2v package's TestConvertUEFIFixtureBoots.
func TestP2VUEFIJob(t *testing.T) {
	disk := p2vtest.FixtureUEFI(t)
	c := open(t)
	work := t.TempDir()
	env := servicetest.NewEnv(t)
	_, client := start(t, env, "--p2v-work-dir", filepath.Join(work, "jobs"))
	job := must(client.CreateJob(t.Context(), &converterv1.CreateJobRequest{Job: &converterv1.Job{
		P2VSource: &converterv1.P2VSource{DiskPath: disk, Nics: []string{"eno1=" + fixtureMAC}},
		P2VImage:  &converterv1.P2VImage{Cloud: "new", Name: "ctest-p2v-uefi"},
	}}))(t).GetJob()
	job = watchJob(t, client, job.GetName(), nil, nil)
	if job.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("P2V job %s: %s", job.GetState(), job.GetError())
	}
	t.Cleanup(func() { _ = images.Delete(context.Background(), c.newI, job.GetCreated().GetImageId()).ExtractErr() })
	img := must(images.Get(t.Context(), c.newI, job.GetCreated().GetImageId()).Extract())(t)
	if img.Properties["hw_firmware_type"] != "uefi" || job.GetP2VResult().GetFirmware() != "uefi" || job.GetP2VResult().GetInspection().GetFirmware() != "uefi" {
		t.Fatalf("image properties %v, result firmware %q", img.Properties, job.GetP2VResult().GetFirmware())
	}
	if left := p2vtest.Leftovers(work); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// TestP2VTwoDisksDryRun: a dry-run job given a server's two disks in its order reports
// /var on the second (disk 1), which the server's fstab names /dev/sdb1 — given as
// paths on the worker, and served by the agent (both fetched); a further disk that
// is not an absolute path, or an agent disk given twice, is refused, naming the field.
func TestP2VTwoDisksDryRun(t *testing.T) {
	a, b := p2vtest.FixtureTwoDisks(t)
	work := t.TempDir()
	tokenFile := filepath.Join(work, "token")
	must(0, os.WriteFile(tokenFile, []byte("ctest-two-disks-token\n"), 0o600))(t)
	env := servicetest.NewEnv(t)
	_, client := start(t, env, "--p2v-work-dir", filepath.Join(work, "jobs"), "--p2v-agent-token-file", tokenFile)
	_, err := client.CreateJob(t.Context(), &converterv1.CreateJobRequest{Job: &converterv1.Job{
		P2VSource: &converterv1.P2VSource{DiskPath: a, MoreDiskPaths: []string{"multi-b.raw"}, InspectOnly: true},
	}})
	if fv := apierr.FieldViolations(err); status.Code(err) != codes.InvalidArgument || fv["job.p2v_source.more_disk_paths[0]"] == "" {
		t.Fatalf("a relative further disk: %v", err)
	}
	dry := must(client.CreateJob(t.Context(), &converterv1.CreateJobRequest{Job: &converterv1.Job{
		P2VSource: &converterv1.P2VSource{DiskPath: a, MoreDiskPaths: []string{b}, InspectOnly: true},
	}}))(t).GetJob()
	dry = watchJob(t, client, dry.GetName(), nil, nil)
	var got []string
	for _, p := range dry.GetP2VResult().GetInspection().GetPartitions() {
		got = append(got, fmt.Sprintf("%d:%d:%s", p.GetDisk(), p.GetNumber(), p.GetMountPoint()))
	}
	if dry.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED || strings.Join(got, ",") != "0:1:/boot,0:2:/,1:1:/var" {
		t.Fatalf("dry run %s (%s): %v", dry.GetState(), dry.GetError(), got)
	}

	// Through the agent: it serves both disks; the job fetches disk 0 and then 1.
	addr, agLog := startAgent(t, []string{"--token-file", tokenFile}, a, b)
	_, err = client.CreateJob(t.Context(), &converterv1.CreateJobRequest{Job: &converterv1.Job{
		P2VSource: &converterv1.P2VSource{AgentUrl: "http://" + addr, MoreAgentDisks: []int32{0}, InspectOnly: true},
	}})
	if fv := apierr.FieldViolations(err); status.Code(err) != codes.InvalidArgument || fv["job.p2v_source.more_agent_disks[0]"] == "" {
		t.Fatalf("an agent disk given twice: %v", err)
	}
	req := &converterv1.CreateJobRequest{Job: &converterv1.Job{
		P2VSource: &converterv1.P2VSource{AgentUrl: "http://" + addr, MoreAgentDisks: []int32{1}, InspectOnly: true},
	}}
	dry = agentJob(t, client, req)
	got = nil
	for _, p := range dry.GetP2VResult().GetInspection().GetPartitions() {
		got = append(got, fmt.Sprintf("%d:%d:%s", p.GetDisk(), p.GetNumber(), p.GetMountPoint()))
	}
	size := must(os.Stat(a))(t).Size() + must(os.Stat(b))(t).Size()
	if p := dry.GetProgress(); dry.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED || strings.Join(got, ",") != "0:1:/boot,0:2:/,1:1:/var" ||
		p.GetTotalBytes() != size || p.GetDoneBytes() != size {
		t.Fatalf("dry run through the agent %s (%s): %v, progress %v\nagent: %s", dry.GetState(), dry.GetError(), got, dry.GetProgress(), agLog.String())
	}
	if left := p2vtest.Leftovers(work); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// TestP2VAgentOverMutualTLS: an agent with a certificate of the project's CA serves
// mutual TLS and only the converter's identity (no shared token): a converter on
// mutual TLS fetches and inspects the disk through https; the viewer's certificate
// is refused (403), a client without a certificate at the handshake.
func TestP2VAgentOverMutualTLS(t *testing.T) {
	disk := p2vtest.Fixture(t)
	dir := t.TempDir()
	env := servicetest.NewEnv(t)
	must(0, mtls.WriteDevPKI(env.PKI, "p2v-agent"))(t)
	af := mtls.DevFiles(env.PKI, "p2v-agent")
	addr, agLog := startAgent(t, []string{"--tls-cert", af.Cert, "--tls-key", af.Key, "--tls-ca", af.CA}, disk)
	_, client := start(t, env, "--p2v-work-dir", filepath.Join(dir, "jobs"))
	req := &converterv1.CreateJobRequest{Job: &converterv1.Job{P2VSource: &converterv1.P2VSource{AgentUrl: "https://" + addr, InspectOnly: true}}}
	job := agentJob(t, client, req)
	if in := job.GetP2VResult().GetInspection(); job.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED || in.GetOsId() != "debian" {
		t.Fatalf("job %s (%s): inspection %v\nagent: %s", job.GetState(), job.GetError(), in, agLog.String())
	}
	get := func(files *mtls.Files) (int, error) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(must(os.ReadFile(af.CA))(t))
		tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
		if files != nil {
			cert := must(tls.LoadX509KeyPair(files.Cert, files.Key))(t)
			tc.Certificates = []tls.Certificate{cert}
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}).Get("https://" + addr + "/v1/disks")
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	viewer := mtls.DevFiles(env.PKI, "viewer")
	if code, err := get(&viewer); err != nil || code != http.StatusForbidden {
		t.Fatalf("the viewer's certificate: %d %v, want 403", code, err)
	}
	if code, err := get(nil); err == nil {
		t.Fatalf("no client certificate: answered %d, want a refused handshake", code)
	}
	t.Logf("fetched through mutual TLS; the viewer got 403, a client without a certificate a failed handshake")
}
