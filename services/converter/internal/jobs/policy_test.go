package jobs

import (
	"os"
	"path/filepath"
	"testing"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

// TestPolicy: what a job may name on a converter that runs as root (issue 16,
// finding 2): disk paths only under the disk roots once resolved (the worker's own
// disk, /etc/shadow, /proc/self/environ, ../ and links out, a NUL byte, another
// job's fetched disk were all taken before), block devices only when named, clouds
// from the allow-list, agents only on the agent networks.
func TestPolicy(t *testing.T) {
	root := t.TempDir()
	work := filepath.Join(root, "work") // under the root, as a careless operator might set it
	for _, d := range []string{filepath.Join(root, "disks"), filepath.Join(work, "job1")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	disk := filepath.Join(root, "disks/pg-1.raw")
	for _, f := range []string{disk, filepath.Join(work, "job1/disk0.raw")} {
		if err := os.WriteFile(f, []byte("disk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/shadow", filepath.Join(root, "disks/shadow.raw")); err != nil {
		t.Fatal(err)
	}
	nets, err := ParseNetworks([]string{"10.20.0.0/16", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	p := Policy{Clouds: []string{"old", "new"}, DiskRoots: []string{root}, WorkDir: work, AgentNetworks: nets}
	p2v := func(src *converterv1.P2VSource, cloud string) *converterv1.Job {
		return &converterv1.Job{P2VSource: src, P2VImage: &converterv1.P2VImage{Cloud: cloud}}
	}
	if err := p.Err(p2v(&converterv1.P2VSource{DiskPath: disk, MoreDiskPaths: []string{root + "/disks/../disks/pg-1.raw"}}, "new")); err != nil {
		t.Fatalf("a disk under the root: %v", err)
	}
	for _, bad := range []string{"/dev/vda", "/etc/shadow", "/proc/self/environ", root + "/../../etc/shadow", root + "/disks/shadow.raw",
		root + "/disks/pg-1.raw\x00", filepath.Join(work, "job1/disk0.raw"), root + "/disks", root + "/disks/none.raw"} {
		err := p.Err(p2v(&converterv1.P2VSource{DiskPath: bad}, "new"))
		if apierr.FieldViolations(err)["job.p2v_source.disk_path"] == "" {
			t.Errorf("disk_path %q: %v", bad, err)
		}
	}
	if fv := apierr.FieldViolations(p.Err(p2v(&converterv1.P2VSource{DiskPath: disk, MoreDiskPaths: []string{"/dev/sdb"}}, "old-admin"))); fv["job.p2v_source.more_disk_paths[0]"] == "" || fv["job.p2v_image.cloud"] == "" {
		t.Errorf("a device not named and a cloud not allowed: %v", fv)
	}
	if err := (Policy{}).Err(p2v(&converterv1.P2VSource{DiskPath: disk}, "new")); apierr.FieldViolations(err)["job.p2v_source.disk_path"] == "" {
		t.Errorf("no disk roots, yet a disk path was taken: %v", err)
	}
	for url, ok := range map[string]bool{"http://10.20.3.4:7420": true, "http://127.0.0.1:7420": true, "http://[::ffff:10.20.0.9]:7420": true,
		"http://10.30.0.1:7420": false, "http://169.254.169.254/": false, "http://agent.example:7420": false} {
		err := p.Err(p2v(&converterv1.P2VSource{AgentUrl: url}, "new"))
		if got := apierr.FieldViolations(err)["job.p2v_source.agent_url"] == ""; got != ok {
			t.Errorf("agent_url %s: %v", url, err)
		}
	}
	v2v := &converterv1.Job{Source: &converterv1.V2VSource{Cloud: "old-admin"}, Destination: &converterv1.V2VDestination{Cloud: "new"}}
	if fv := apierr.FieldViolations(p.Err(v2v)); fv["job.source.cloud"] == "" || fv["job.destination.cloud"] != "" {
		t.Errorf("clouds: %v", fv)
	}
	if _, err := ParseNetworks([]string{"not-a-net"}); err == nil {
		t.Error("a bad network was parsed")
	}
}
