package console

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

func TestPlan(t *testing.T) {
	resp, err := Plan(&netbridgev1.PlanConsolePortsRequest{Nodes: []*netbridgev1.ComputeNode{
		{Cloud: "old", Host: "cmp-1", CurrentRange: "10000:20000"}, // Nova's default everywhere
		{Cloud: "old", Host: "cmp-2", CurrentRange: "10000:20000"},
		{Cloud: "new", Host: "cmp-1", CurrentRange: "10200:10299"},
		{Cloud: "new", Host: "cmp-9"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10000:10099", "10100:10199", "10200:10299", "10300:10399"}
	for i, r := range resp.GetRanges() {
		if r.GetPortRange() != want[i] {
			t.Fatalf("node %d: %s, want %s", i, r.GetPortRange(), want[i])
		}
	}
	if resp.GetRanges()[2].GetChanged() || !resp.GetRanges()[0].GetChanged() {
		t.Fatalf("changed flags %v", resp.GetRanges())
	}
	// old/cmp-1 × old/cmp-2, old/cmp-1 × new/cmp-1, old/cmp-2 × new/cmp-1.
	if len(resp.GetOverlaps()) != 3 || resp.GetOverlaps()[1].GetPorts() != "10200:10299" {
		t.Fatalf("overlaps %v", resp.GetOverlaps())
	}
}

func TestPlanRefusals(t *testing.T) {
	for _, tc := range []struct {
		req   *netbridgev1.PlanConsolePortsRequest
		field string
	}{
		{&netbridgev1.PlanConsolePortsRequest{}, "nodes"},
		{&netbridgev1.PlanConsolePortsRequest{Nodes: []*netbridgev1.ComputeNode{{Cloud: "old"}}}, "nodes[0].host"},
		{&netbridgev1.PlanConsolePortsRequest{Nodes: []*netbridgev1.ComputeNode{{Host: "a"}, {Host: "a"}}}, "nodes[1].host"},
		{&netbridgev1.PlanConsolePortsRequest{Nodes: []*netbridgev1.ComputeNode{{Host: "a", CurrentRange: "20000:10000"}}}, "nodes[0].current_range"},
		{&netbridgev1.PlanConsolePortsRequest{FirstPort: 65000, PortsPerNode: 1000, Nodes: []*netbridgev1.ComputeNode{{Host: "a"}}}, "ports_per_node"},
	} {
		_, err := Plan(tc.req)
		if status.Code(err) != codes.InvalidArgument || apierr.FieldViolations(err)[tc.field] == "" {
			t.Fatalf("%v: %v, want INVALID_ARGUMENT on %s", tc.req, err, tc.field)
		}
	}
}
