package devcloud

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestComputeErrorsNamesTheException(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvCloudsYAML, filepath.Join(dir, "clouds.yaml"))
	if err := os.MkdirAll(filepath.Join(dir, "log"), 0o755); err != nil {
		t.Fatal(err)
	}
	id := "c9e5ae19-f46d-4790-853a-9393718ee9da"
	log := strings.Join([]string{
		"2026-12-04 21:43:16.102 32580 ERROR nova.compute.manager [req-1] [instance: " + id + "] Instance failed to spawn: libvirt.libvirtError: operation failed",
		"2026-12-04 21:43:16.102 32580 ERROR nova.compute.manager [instance: " + id + "] Traceback (most recent call last):",
		"2026-12-04 21:43:16.102 32580 ERROR nova.compute.manager [instance: " + id + "]   File \"/usr/lib/python3/dist-packages/nova/virt/libvirt/guest.py\", line 165, in launch",
		"2026-12-04 21:43:16.102 32580 ERROR nova.compute.manager [instance: " + id + "] libvirt.libvirtError: operation failed: domain 'instance-00000002' already exists with uuid 977c0191",
		"2026-12-04 21:43:16.102 32580 ERROR nova.compute.manager [instance: " + id + "] libvirt.libvirtError: operation failed: domain 'instance-00000002' already exists with uuid 977c0191",
		"2026-12-04 21:43:16.102 32580 ERROR nova.compute.manager [instance: other] libvirt.libvirtError: not this one",
		"2026-12-04 21:43:16.102 32580 INFO nova.compute.manager [instance: " + id + "] Took 0.2 seconds",
	}, "\n")
	if err := os.WriteFile(filepath.Join(dir, "log", "nova-compute-old-tcg.log"), []byte(log+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := ComputeErrors(id)
	want := "nova-compute-old-tcg.log: libvirt.libvirtError: operation failed: domain 'instance-00000002' already exists with uuid 977c0191"
	if got != want {
		t.Fatalf("ComputeErrors = %q, want %q", got, want)
	}
	if ComputeErrors("absent") != "" {
		t.Fatal("an instance the logs do not name has errors")
	}
}
