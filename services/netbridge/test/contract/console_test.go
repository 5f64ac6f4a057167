package contract

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// TestConsolePortPlan, over gRPC: the compute nodes are read from both clouds'
// Nova (each region's fake and TCG computes), all on
// Nova's default range today, so every pair overlaps; each gets its own range, a
// node given by hand with a disjoint range keeps it, and the plan applied and asked
// again changes nothing. Bad requests name their fields; an unknown cloud is not an
// INVALID_ARGUMENT of the plan but says which entry failed.
func TestConsolePortPlan(t *testing.T) {
	devcloud.RequireTCG(t)
	c := start(t)
	ctx := t.Context()
	resp := must(c.PlanConsolePorts(ctx, &netbridgev1.PlanConsolePortsRequest{
		Nodes:               []*netbridgev1.ComputeNode{{Cloud: "spare", Host: "cmp-9", CurrentRange: "10100:10199"}},
		Clouds:              []string{"old-admin", "new-admin"},
		AssumedCurrentRange: "10000:20000",
	}))(t)
	var got []string
	for _, r := range resp.GetRanges() {
		got = append(got, fmt.Sprintf("%s/%s=%s,%v", r.GetCloud(), r.GetHost(), r.GetPortRange(), r.GetChanged()))
	}
	want := []string{"spare/cmp-9=10100:10199,false", "old-admin/host-ovs-filter-active=10000:10099,true",
		"old-admin/tcg-libvirt=10200:10299,true", "new-admin/host-ovs-filter-active=10300:10399,true", "new-admin/tcg-libvirt-new=10400:10499,true"}
	if !slices.Equal(got, want) {
		t.Fatalf("ranges %v\nwant %v", got, want)
	}
	// 5 nodes: the four read from Nova overlap each other (6 pairs) and the spare (4).
	if n := len(resp.GetOverlaps()); n != 10 {
		t.Fatalf("%d overlaps, want 10: %v", n, resp.GetOverlaps())
	}
	var applied []*netbridgev1.ComputeNode
	for _, r := range resp.GetRanges() {
		applied = append(applied, &netbridgev1.ComputeNode{Cloud: r.GetCloud(), Host: r.GetHost(), CurrentRange: r.GetPortRange()})
	}
	slices.Reverse(applied)
	again := must(c.PlanConsolePorts(ctx, &netbridgev1.PlanConsolePortsRequest{Nodes: applied, Clouds: []string{"old-admin", "new-admin"}}))(t)
	if len(again.GetRanges()) != 5 || len(again.GetOverlaps()) != 0 {
		t.Fatalf("re-plan: %v", again)
	}
	for _, r := range again.GetRanges() {
		if r.GetChanged() {
			t.Fatalf("re-plan changes %s/%s to %s", r.GetCloud(), r.GetHost(), r.GetPortRange())
		}
	}

	_, err := c.PlanConsolePorts(ctx, &netbridgev1.PlanConsolePortsRequest{
		Nodes:               []*netbridgev1.ComputeNode{{Cloud: "old", CurrentRange: "9:x"}},
		Clouds:              []string{""},
		AssumedCurrentRange: "20000:10000",
		FirstPort:           70000,
	})
	fv := apierr.FieldViolations(err)
	if status.Code(err) != codes.InvalidArgument || fv["clouds[0]"] == "" || fv["assumed_current_range"] == "" {
		t.Fatalf("bad request: %v; want INVALID_ARGUMENT on clouds[0] and assumed_current_range", err)
	}
	_, err = c.PlanConsolePorts(ctx, &netbridgev1.PlanConsolePortsRequest{Nodes: []*netbridgev1.ComputeNode{{Cloud: "old", CurrentRange: "9:x"}}, FirstPort: 70000})
	fv = apierr.FieldViolations(err)
	if status.Code(err) != codes.InvalidArgument || fv["nodes[0].host"] == "" || fv["nodes[0].current_range"] == "" || fv["first_port"] == "" {
		t.Fatalf("bad request: %v; want INVALID_ARGUMENT on nodes[0].host, nodes[0].current_range and first_port", err)
	}
	_, err = c.PlanConsolePorts(ctx, &netbridgev1.PlanConsolePortsRequest{Clouds: []string{"no-such-cloud"}})
	if err == nil || !strings.Contains(status.Convert(err).Message(), `clouds[0] "no-such-cloud"`) {
		t.Fatalf("an unknown cloud: %v", err)
	}
}
