package console

import (
	"fmt"
	"strings"
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

// TestPlanKeepsWhatIsDisjoint: a node whose current range overlaps no other keeps
// it; new ranges go around the kept ones; the plan applied and planned again
// changes nothing, in any order of the nodes.
func TestPlanKeepsWhatIsDisjoint(t *testing.T) {
	nodes := []*netbridgev1.ComputeNode{
		{Cloud: "old", Host: "cmp-1", CurrentRange: "10100:10199"}, // planned by hand before
		{Cloud: "old", Host: "cmp-2", CurrentRange: "10000:20000"}, // Nova's default
		{Cloud: "new", Host: "cmp-1"},
		{Cloud: "new", Host: "cmp-2", CurrentRange: "10000:20000"},
	}
	resp, err := Plan(&netbridgev1.PlanConsolePortsRequest{Nodes: nodes})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range resp.GetRanges() {
		got = append(got, fmt.Sprintf("%s/%s=%s,%v", r.GetCloud(), r.GetHost(), r.GetPortRange(), r.GetChanged()))
	}
	want := "old/cmp-1=10100:10199,false old/cmp-2=10000:10099,true new/cmp-1=10200:10299,true new/cmp-2=10300:10399,true"
	if strings.Join(got, " ") != want {
		t.Fatalf("plan %v\nwant %s", got, want)
	}
	// Applied: each node now has its planned range. Planned again, reversed: no change.
	applied := make([]*netbridgev1.ComputeNode, len(nodes))
	for i, r := range resp.GetRanges() {
		applied[len(nodes)-1-i] = &netbridgev1.ComputeNode{Cloud: r.GetCloud(), Host: r.GetHost(), CurrentRange: r.GetPortRange()}
	}
	again, err := Plan(&netbridgev1.PlanConsolePortsRequest{Nodes: applied})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range again.GetRanges() {
		if r.GetChanged() {
			t.Fatalf("re-plan changes %s/%s to %s", r.GetCloud(), r.GetHost(), r.GetPortRange())
		}
	}
	if len(again.GetOverlaps()) != 0 {
		t.Fatalf("overlaps after the plan: %v", again.GetOverlaps())
	}
}
