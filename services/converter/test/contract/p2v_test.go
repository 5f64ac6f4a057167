package contract

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"google.golang.org/grpc/codes"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/p2v"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/p2v/p2vtest"
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
