// Package firstboot moves a server with cloud-init from the dev cloud's old region
// to its new one through the converter, both ends on real qemu guests (the regions'
// TCG computes), and checks what the guest's first boot in the new cloud did to it.
// It is a package of its own so that go test runs it beside the converter's other
// contract tests instead of after them.
package firstboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/p2vtest"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/p2v"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

var binary, inventoryBinary string

func TestMain(m *testing.M) {
	bin, cleanup := servicetest.MustBuild("github.com/hikkoshi/hikkoshi/services/converter/cmd/converter")
	inv, cleanupInv := servicetest.MustBuild("github.com/hikkoshi/hikkoshi/services/inventory/cmd/inventory")
	binary, inventoryBinary = bin, inv
	code := m.Run()
	cleanup()
	cleanupInv()
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

// stockFirstBoot makes the guest's first boot in the old cloud a stock Debian cloud
// guest's: Debian 12's own module lists and defaults (the P2V conversion's
// cloud.cfg.d file, which keeps a server itself, is removed by this boot, so the
// guest is a stock cloud guest from then on). It gets new host keys, the default
// user and the old key pair in root's authorized_keys behind a forced command.
const stockFirstBoot = `#cloud-config
preserve_hostname: false
users: [default]
disable_root: true
ssh_deletekeys: true
ssh_genkeytypes: [rsa, ecdsa, ed25519]
cloud_init_modules: [migrator, seed_random, bootcmd, write-files, growpart, resizefs, disk_setup, mounts, set_hostname, update_hostname, update_etc_hosts, ca-certs, rsyslog, users-groups, ssh]
cloud_config_modules: [snap, ssh-import-id, keyboard, locale, set-passwords, grub-dpkg, apt-pipelining, apt-configure, ntp, timezone, disable-ec2-metadata, runcmd, byobu]
cloud_final_modules: [package-update-upgrade-install, fan, landscape, lxd, write-files-deferred, puppet, chef, mcollective, salt-minion, reset_rmc, refresh_rmc_and_interface, rightscale_userdata, scripts-vendor, scripts-per-once, scripts-per-boot, scripts-per-instance, scripts-user, ssh-authkey-fingerprints, keys-to-console, install-hotplug, phone-home, final-message, power-state-change]
runcmd: [[rm, -f, /etc/cloud/cloud.cfg.d/90-hikkoshi.cfg], [sync]]
`

// identityFiles are what the move must keep (ops's authorized_keys gets the new
// cloud's key pair: the job names ops).
var identityFiles = []string{"/etc/ssh/ssh_host_ed25519_key.pub", "/etc/ssh/ssh_host_rsa_key.pub", "/etc/ssh/ssh_host_ecdsa_key.pub",
	"/etc/ssh/ssh_host_ed25519_key", "/etc/passwd", "/etc/shadow", "/etc/group", "/root/.ssh/authorized_keys",
	"/home/ops/.ssh/authorized_keys", "/etc/hostname", "/etc/hosts", "/etc/apt/sources.list"}

// diagnostics are read with identityFiles and shown when the test fails.
var diagnostics = []string{"/var/log/cloud-init.log", "/var/log/cloud-init-output.log"}

// TestV2VFirstBootKeepsTheGuest: a guest with cloud-init (the P2V fixture's
// conversion, made a stock Debian cloud guest by its first boot) boots on the old
// region's TCG compute with a config drive and gets its cloud identity there (new
// host keys, user debian, the old key pair in root's keys). A V2V job moves it to the
// new region's TCG compute (zone tcg, no NICs as at the source, the config drive
// forced there, another key pair of the same name). Its first boot in the new cloud
// — a new instance ID to cloud-init — prints the same host key fingerprints on the
// console, and its disk afterwards has the same host keys, users, root's keys, host
// name and package sources as after the old cloud's first boot; the new key pair is
// in ops's authorized_keys only, as the job asked.
func TestV2VFirstBootKeepsTheGuest(t *testing.T) {
	devcloud.RequireTCG(t)
	disk := p2vtest.Fixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Minute)
	defer cancel()
	work := t.TempDir()
	o, n := devcloud.Open(t, "old"), devcloud.Open(t, "new")
	oldC, oldI := must(o.Compute())(t), must(o.Image())(t)
	newC := must(n.Compute())(t)
	oldC.Microversion, newC.Microversion = "2.37", "2.37" // networks "none"
	tag := fmt.Sprintf("ctest-firstboot-%d", time.Now().UnixNano())

	start := time.Now()
	res, err := p2v.Convert(ctx, disk, p2v.Options{Work: filepath.Join(work, "build")})
	if err != nil {
		t.Fatal(err)
	}
	// An image of a real OS asks Nova for a clean shutdown: the dev cloud's default
	// (5 s, for the seed image, which answers no ACPI) would cut it short.
	img := must(images.Create(ctx, oldI, images.CreateOpts{Name: tag, DiskFormat: "qcow2", ContainerFormat: "bare",
		Properties: map[string]string{"os_shutdown_timeout": "60"}}).Extract())(t)
	t.Cleanup(func() { _ = images.Delete(context.Background(), oldI, img.ID).ExtractErr() })
	f := must(os.Open(res.Image))(t)
	err = imagedata.Upload(ctx, oldI, img.ID, f).ExtractErr()
	_ = f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("P2V image converted and uploaded in %v", time.Since(start).Round(time.Second))

	oldKey, newKey := sshKey(ctx, t, work, "old"), sshKey(ctx, t, work, "new")
	keyPair(t, oldC, tag, oldKey)
	keyPair(t, newC, tag, newKey)

	// The old cloud's first boot.
	flavor := must(devcloud.FindFlavor(ctx, oldC, "m1.small"))(t)
	start = time.Now()
	srv := must(servers.Create(ctx, oldC, keypairs.CreateOptsExt{CreateOptsBuilder: servers.CreateOpts{
		Name: tag, FlavorRef: flavor, ImageRef: img.ID, AvailabilityZone: devcloud.ZoneTCG, Networks: "none",
		ConfigDrive: ptr(true), UserData: []byte(stockFirstBoot),
	}, KeyName: tag}, nil).Extract())(t)
	t.Cleanup(func() { deleteServer(oldC, srv.ID) })
	oldConsole := firstBoot(ctx, t, oldC, srv.ID)
	t.Logf("first boot in the old cloud: cloud-init finished after %v", time.Since(start).Round(time.Second))
	oldFP := fingerprints(t, oldConsole)
	fixture, err := p2v.ReadFiles(ctx, disk, filepath.Join(work, "read-fixture"), "/etc/ssh/ssh_host_ed25519_key.pub")
	if err != nil {
		t.Fatal(err)
	}

	// The inventory's sync reads from the console that this guest runs cloud-init.
	env := servicetest.NewEnv(t)
	inv := inventoryv1.NewInventoryServiceClient(env.Start(t, inventoryBinary, "inventory",
		"--source-clouds", "old", "--destination-clouds", "new", "--clouds-yaml", devcloud.CloudsYAML()).Conn)
	syncOld(ctx, t, inv)
	w := must(inv.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{Name: "workloads/i-" + srv.ID}))(t).GetWorkload()
	if f := w.GetFacts().GetInstance(); f.GetGuestCloudInit() != inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_PRESENT || f.GetCloudInitVersion() == "" {
		t.Errorf("the workload's facts say %v, version %q: want cloud-init present, with its version", f.GetGuestCloudInit(), f.GetCloudInitVersion())
	} else {
		t.Logf("the inventory's facts: cloud-init %s", f.GetCloudInitVersion())
	}

	// The move: the job stops the source, snapshots and copies it, and boots it in
	// the new cloud's TCG zone with the user data that keeps it itself.
	p := env.Start(t, binary, "converter", "--clouds-yaml", devcloud.CloudsYAML(), "--poll", "250ms", "--workers", "1", "--clouds", "old,new")
	client := converterv1.NewConverterServiceClient(p.Conn)
	start = time.Now()
	created := must(client.CreateJob(ctx, &converterv1.CreateJobRequest{Job: &converterv1.Job{
		Source: &converterv1.V2VSource{Cloud: "old", ServerId: srv.ID},
		Destination: &converterv1.V2VDestination{Cloud: "new", AvailabilityZone: devcloud.ZoneTCG, NoNics: true,
			KeyPairUser: "ops"},
	}}))(t).GetJob()
	j := watchJob(ctx, t, client, created.GetName())
	if id := j.GetCreated().GetServerId(); id != "" {
		t.Cleanup(func() { deleteServer(newC, id) })
	}
	if id := j.GetCreated().GetImageId(); id != "" {
		t.Cleanup(func() { _ = images.Delete(context.Background(), must(n.Image())(t), id).ExtractErr() })
	}
	if id := j.GetCreated().GetSnapshotImageId(); id != "" {
		t.Cleanup(func() { _ = images.Delete(context.Background(), oldI, id).ExtractErr() })
	}
	if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s: %s", j.GetState(), j.GetError())
	}
	t.Logf("job %s in %v (%d bytes copied)", j.GetName(), time.Since(start).Round(time.Second), j.GetProgress().GetTotalBytes())
	dstID := j.GetCreated().GetServerId()
	if s := must(servers.Get(ctx, newC, dstID).Extract())(t); s.AvailabilityZone != devcloud.ZoneTCG || len(s.Addresses) != 0 {
		t.Fatalf("the new server is in zone %q with addresses %v, want zone %q and no NIC", s.AvailabilityZone, s.Addresses, devcloud.ZoneTCG)
	}

	// Its first boot in the new cloud.
	start = time.Now()
	newConsole := firstBoot(ctx, t, newC, dstID)
	t.Logf("first boot in the new cloud: cloud-init finished after %v", time.Since(start).Round(time.Second))
	newFP := fingerprints(t, newConsole)
	if !slices.Equal(oldFP, newFP) {
		t.Errorf("host key fingerprints on the new cloud's console:\n%s\nafter the old cloud's first boot:\n%s", strings.Join(newFP, "\n"), strings.Join(oldFP, "\n"))
	}
	t.Logf("the same %d host key fingerprints on both consoles", len(newFP))

	// And what is on its disk: both servers stopped, each one's disk read.
	stop(ctx, t, newC, dstID)
	was := instanceFiles(ctx, t, work, "old", srv.ID)
	now := instanceFiles(ctx, t, work, "new", dstID)
	defer func() {
		if !t.Failed() {
			return
		}
		// What cloud-init said of both boots.
		for _, l := range strings.Split(string(now["/var/log/cloud-init.log"]), "\n") {
			if strings.Contains(l, "[WARNING]") || strings.Contains(l, "[ERROR]") || strings.Contains(l, "Used fallback") || strings.Contains(l, "data source") {
				t.Log(l)
			}
		}
		t.Logf("cloud-init-output.log:\n%s", now["/var/log/cloud-init-output.log"])
	}()
	// The premise: the stock first boot changed what a move must keep.
	if string(was["/etc/ssh/ssh_host_ed25519_key.pub"]) == string(fixture["/etc/ssh/ssh_host_ed25519_key.pub"]) ||
		!strings.Contains(string(was["/etc/passwd"]), "\ndebian:") || !strings.Contains(string(was["/root/.ssh/authorized_keys"]), "old@ctest") {
		t.Fatalf("the old cloud's first boot did not act as Debian's cloud-init does (new host keys, user debian, root's keys):\n%s\n%s",
			was["/etc/passwd"], was["/root/.ssh/authorized_keys"])
	}
	for _, f := range identityFiles {
		want := string(was[f])
		if f == "/home/ops/.ssh/authorized_keys" {
			want += newKey + "\n"
		}
		if string(now[f]) != want {
			t.Errorf("%s after the first boot in the new cloud:\n%s\nwant:\n%s", f, now[f], want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// sshKey makes an ED25519 key pair and returns its public key line.
func sshKey(ctx context.Context, t *testing.T, work, name string) string {
	t.Helper()
	path := filepath.Join(work, "key-"+name)
	if out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name+"@ctest", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	return strings.TrimSpace(string(must(os.ReadFile(path + ".pub"))(t)))
}

func keyPair(t *testing.T, cc *gophercloud.ServiceClient, name, pub string) {
	t.Helper()
	must(keypairs.Create(t.Context(), cc, keypairs.CreateOpts{Name: name, PublicKey: pub}).Extract())(t)
	t.Cleanup(func() { _ = keypairs.Delete(context.Background(), cc, name, nil).ExtractErr() })
}

var finished = regexp.MustCompile(`Cloud-init v\. \S+ finished`)

// firstBoot waits for the server to be ACTIVE and its console to say cloud-init has
// finished; it returns the console.
func firstBoot(ctx context.Context, t *testing.T, cc *gophercloud.ServiceClient, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	console := ""
	for {
		s, err := servers.Get(ctx, cc, id).Extract()
		switch {
		case err == nil && s.Status == "ERROR":
			t.Fatalf("server %s in ERROR: %v\n%s", id, s.Fault, devcloud.ComputeErrors(id))
		case err == nil && s.Status == "ACTIVE":
			if out, err := servers.ShowConsoleOutput(ctx, cc, id, servers.ShowConsoleOutputOpts{}).Extract(); err == nil {
				console = out
			}
			if finished.MatchString(console) {
				return console
			}
		}
		if d := os.Getenv("HIKKOSHI_FIRSTBOOT_CONSOLES"); d != "" {
			_ = os.WriteFile(filepath.Join(d, id+".console"), []byte(console), 0o644)
		}
		select {
		case <-ctx.Done():
			lines := strings.Split(console, "\n")
			t.Fatalf("server %s: cloud-init did not finish its first boot; the console's end:\n%s", id, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		case <-time.After(3 * time.Second):
		}
	}
}

var fingerprintRE = regexp.MustCompile(`\d+ (SHA256:[A-Za-z0-9+/]+) .*\((\w+)\)`)

// fingerprints reads the host key fingerprints cloud-init's keys-to-console printed,
// sorted.
func fingerprints(t *testing.T, console string) []string {
	t.Helper()
	b := strings.Index(console, "-----BEGIN SSH HOST KEY FINGERPRINTS-----")
	e := strings.Index(console, "-----END SSH HOST KEY FINGERPRINTS-----")
	if b < 0 || e < b {
		lines := strings.Split(console, "\n")
		t.Errorf("the console shows no host key fingerprints; its end:\n%s", strings.Join(lines[max(0, len(lines)-20):], "\n"))
		return nil
	}
	var fps []string
	for _, m := range fingerprintRE.FindAllStringSubmatch(console[b:e], -1) {
		fps = append(fps, m[2]+" "+m[1])
	}
	if len(fps) == 0 {
		t.Fatalf("no fingerprint between the console's markers:\n%s", console[b:e])
	}
	slices.Sort(fps)
	return fps
}

func stop(ctx context.Context, t *testing.T, cc *gophercloud.ServiceClient, id string) {
	t.Helper()
	if err := servers.Stop(ctx, cc, id).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		if s, err := servers.Get(ctx, cc, id).Extract(); err == nil && s.Status == "SHUTOFF" {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("server %s did not stop", id)
}

// instanceFiles reads identityFiles from a stopped TCG server's disk, where the
// region's compute keeps it (qcow2 over its base image).
func instanceFiles(ctx context.Context, t *testing.T, work, region, id string) map[string][]byte {
	t.Helper()
	disk := filepath.Join(filepath.Dir(devcloud.CloudsYAML()), "lib", "nova-"+region+"-tcg", "instances", id, "disk")
	raw := filepath.Join(work, region+".raw")
	if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-U", "-O", "raw", disk, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert %s: %v: %s", disk, err, out)
	}
	defer os.Remove(raw)
	got, err := p2v.ReadFiles(ctx, raw, filepath.Join(work, "read-"+region), append(identityFiles, diagnostics...)...)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func deleteServer(cc *gophercloud.ServiceClient, id string) {
	ctx := context.Background()
	_ = servers.Delete(ctx, cc, id).ExtractErr()
	for range 120 {
		if _, err := servers.Get(ctx, cc, id).Extract(); gophercloud.ResponseCodeIs(err, 404) {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// syncOld runs a full sync of the old cloud to its end.
func syncOld(ctx context.Context, t *testing.T, inv inventoryv1.InventoryServiceClient) {
	t.Helper()
	sy := must(inv.CreateSync(ctx, &inventoryv1.CreateSyncRequest{Sync: &inventoryv1.Sync{Cloud: "old", Mode: inventoryv1.SyncMode_SYNC_MODE_FULL}}))(t).GetSync()
	stream := must(inv.WatchSync(ctx, &inventoryv1.WatchSyncRequest{Name: sy.GetName()}))(t)
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("watch %s: %v", sy.GetName(), err)
		}
		sy = m.GetSync()
	}
	if sy.GetState() != inventoryv1.SyncState_SYNC_STATE_SUCCEEDED {
		t.Fatalf("sync %s: %s", sy.GetState(), sy.GetError())
	}
}

// watchJob follows a job until it ends.
func watchJob(ctx context.Context, t *testing.T, c converterv1.ConverterServiceClient, name string) *converterv1.Job {
	t.Helper()
	stream := must(c.WatchJob(ctx, &converterv1.WatchJobRequest{Name: name}))(t)
	var last *converterv1.Job
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return last
		}
		if err != nil {
			t.Fatalf("watch %s: %v", name, err)
		}
		last = m.GetJob()
	}
}
