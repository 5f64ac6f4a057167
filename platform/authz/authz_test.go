package authz

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
)

func TestDefaultRoles(t *testing.T) {
	for m, want := range map[string]Role{
		"/hikkoshi.inventory.v1.InventoryService/ListWorkloads":      Viewer,
		"/hikkoshi.inventory.v1.InventoryService/WatchWorkloads":     Viewer,
		"/hikkoshi.netbridge.v1.NetbridgeService/PlanBridge":         Viewer,
		"/grpc.health.v1.Health/Check":                               Viewer,
		"/hikkoshi.inventory.v1.InventoryService/CreatePlan":         Operator,
		"/hikkoshi.converter.v1.ConverterService/CancelJob":          Operator,
		"/hikkoshi.netbridge.v1.NetbridgeService/MoveAddress":        Admin,
		"/hikkoshi.converter.v1.ConverterService/DecommissionSource": Admin,
		"/hikkoshi.lbaas.v1.LoadBalancerService/DeleteLoadBalancer":  Admin,
		"/hikkoshi.inventory.v1.WaveRunService/DecommissionRun":      Admin,
		"/hikkoshi.inventory.v1.WaveRunService/ApproveStep":          Operator,
		"/hikkoshi.lbaas.v1.LoadBalancerService/UpdateLoadBalancer":  Operator,
		"/hikkoshi.netbridge.v1.NetbridgeService/RollbackBridge":     Admin,
		"/hikkoshi.inventory.v1.InventoryService/DeleteWorkload":     Operator,
		"/hikkoshi.netbridge.v1.NetbridgeService/GetWatchdogStatus":  Viewer,
		"/hikkoshi.converter.v1.ConverterService/RevertJob":          Operator,
		"/hikkoshi.inventory.v1.InventoryService/UpdateWorkload":     Operator,
		"/hikkoshi.netbridge.v1.NetbridgeService/PlanConsolePorts":   Viewer,
		"/hikkoshi.inventory.v1.WaveRunService/AbortRun":             Operator,
		"/hikkoshi.lbaas.v1.LoadBalancerService/CreateLoadBalancer":  Operator,
		"/hikkoshi.netbridge.v1.NetbridgeService/DeleteBridge":       Admin,
		"/hikkoshi.netbridge.v1.NetbridgeService/ApplyBridge":        Admin,
		"/hikkoshi.netbridge.v1.NetbridgeService/MoveAddressBack":    Admin,
		"/hikkoshi.inventory.v1.InventoryService/GetPreflight":       Viewer,
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":  Viewer,
	} {
		if got := DefaultRequired(m); got != want {
			t.Errorf("%s: %s, want %s", m, got, want)
		}
	}
}

func TestPolicy(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "p.yaml")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for body, want := range map[string]string{
		"identities:\n  alice: [root]\n":                      `has role "root"`,
		"identities:\n  alice: [viewer]\nextra: 1\n":          "unknown field",
		"methods:\n  CancelJob: admin\n":                      "give /package.Service/Method",
		"identities: {alice: [viewer]}\nmethods: {/a/B: x}\n": "viewer, operator, admin or service",
	} {
		if _, err := Load(write(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", body, err, want)
		}
	}
	p, err := Load(write("identities:\n  alice: [viewer, operator]\n  svc: [service]\n  col: [collector]\nmethods:\n  /hikkoshi.converter.v1.ConverterService/CancelJob: admin\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id, method string
		ok         bool
	}{
		{"alice", "/hikkoshi.inventory.v1.InventoryService/CreateWorkload", true},
		{"alice", "/hikkoshi.converter.v1.ConverterService/CancelJob", false}, // moved to admin
		{"alice", "/hikkoshi.netbridge.v1.NetbridgeService/MoveAddress", false},
		{"svc", "/hikkoshi.netbridge.v1.NetbridgeService/MoveAddress", true},
		{"col", "/hikkoshi.inventory.v1.InventoryService/UpdateWorkload", true},
		{"col", "/hikkoshi.inventory.v1.InventoryService/ListWorkloads", false},
		{"col", "/hikkoshi.inventory.v1.InventoryService/DeleteWorkload", false},
		{"nobody", "/hikkoshi.inventory.v1.InventoryService/ListWorkloads", false},
	} {
		if ok, _, _ := p.allows(c.id, c.method); ok != c.ok {
			t.Errorf("%s %s: %v, want %v", c.id, c.method, ok, c.ok)
		}
	}
}

// TestObjectNamesWhatACallActsOn, never the rest of the request.
func TestObjectNamesWhatACallActsOn(t *testing.T) {
	if got := Object(&inventoryv1.UpdateWorkloadRequest{Workload: &inventoryv1.Workload{Name: "workloads/web-1", StateReason: "secret"}}); got != "workloads/web-1" {
		t.Errorf("update: %q", got)
	}
	if got := Object(&inventoryv1.CreateWorkloadRequest{WorkloadId: "db-9"}); got != "db-9" {
		t.Errorf("create: %q", got)
	}
	if got := Object(&netbridgev1.MoveAddressRequest{Bridge: "bridges/b", IpAddress: "10.0.0.1"}); got != "bridges/b" {
		t.Errorf("move: %q", got)
	}
	if got := Object(&inventoryv1.GetWorkloadRequest{Name: strings.Repeat("x", 5000)}); len(got) > 210 {
		t.Errorf("a long name is echoed whole (%d bytes)", len(got))
	}
}
