package contract

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
)

// TestCollectorRegistersThisMachine runs hikkoshi-collect on this machine (it only
// reads /proc, /sys, /run/udev/data and /etc) against the inventory: the machine
// becomes a physical workload with its host name, OS release, disks and interfaces;
// a second run updates the facts of the same workload and keeps the operator's role.
func TestCollectorRegistersThisMachine(t *testing.T) {
	bin, cleanup, err := servicetest.Build("github.com/hikkoshi/hikkoshi/services/inventory/cmd/hikkoshi-collect")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	e := newEnv(t)
	p := e.start(t)
	run := func() string {
		t.Helper()
		// As a physical server runs it: with the collector's certificate.
		args := append([]string{"--inventory", p.Addr, "--workload-id", "phys-this", "--role", "db", "--stateful"}, e.ClientFlags("collector")...)
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("hikkoshi-collect: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	t.Log(run())
	w := must(p.client.GetWorkload(t.Context(), &inventoryv1.GetWorkloadRequest{Name: "workloads/phys-this"}))(t).GetWorkload()
	f := w.GetFacts().GetPhysical()
	host, _ := os.ReadFile("/proc/sys/kernel/hostname")
	if w.GetKind() != inventoryv1.WorkloadKind_WORKLOAD_KIND_PHYSICAL || f.GetHostname() != strings.TrimSpace(string(host)) ||
		f.GetOsRelease() == "" || f.GetCpus() < 1 || f.GetMemoryBytes() <= 0 || !w.GetStateful() || w.GetRole() != "db" {
		t.Fatalf("workload %v", w)
	}
	if len(f.GetDisks()) == 0 || f.GetDisks()[0].GetSizeBytes() <= 0 {
		t.Fatalf("disks %v: want at least one with a size", f.GetDisks())
	}
	t.Logf("%s: %s, %d CPUs, %d MiB, disks %v, nics %v", f.GetHostname(), f.GetOsRelease(), f.GetCpus(), f.GetMemoryBytes()>>20, f.GetDisks(), f.GetNics())

	// The operator changes the role; a second run replaces the facts only.
	must(p.client.UpdateWorkload(t.Context(), &inventoryv1.UpdateWorkloadRequest{
		Workload: &inventoryv1.Workload{Name: w.GetName(), Role: "db-primary"}, UpdateMask: mask("role"),
	}))(t)
	if out := run(); !strings.HasPrefix(out, "updated the facts of workloads/phys-this") {
		t.Fatalf("second run: %q", out)
	}
	again := must(p.client.GetWorkload(t.Context(), &inventoryv1.GetWorkloadRequest{Name: w.GetName()}))(t).GetWorkload()
	if again.GetRole() != "db-primary" || !again.GetFacts().GetChangeTime().AsTime().After(w.GetFacts().GetChangeTime().AsTime()) {
		t.Fatalf("after the second run: role %q, facts changed %v → %v", again.GetRole(), w.GetFacts().GetChangeTime(), again.GetFacts().GetChangeTime())
	}
}
