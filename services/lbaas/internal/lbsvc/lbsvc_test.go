package lbsvc

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
)

func TestFieldPathNamesTheAPIField(t *testing.T) {
	for in, want := range map[string]string{
		"vip_subnet_id":                        "load_balancer.vip.subnet_id",
		"name":                                 "load_balancer.display_name",
		"listeners[1].pool.name":               "load_balancer.listeners[1].pool.display_name",
		"listeners[0].pool.monitor.delay":      "load_balancer.listeners[0].pool.health_monitor.delay_seconds",
		"listeners[0].pool.monitor.timeout":    "load_balancer.listeners[0].pool.health_monitor.timeout_seconds",
		"listeners[0].pool.monitor.url_path":   "load_balancer.listeners[0].pool.health_monitor.url_path",
		"listeners[2].pool.members[3].address": "load_balancer.listeners[2].pool.members[3].address",
	} {
		if got := fieldPath(in); got != want {
			t.Errorf("fieldPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func lb(listener, pool string) *lbaasv1.LoadBalancer {
	return &lbaasv1.LoadBalancer{
		Vip: &lbaasv1.Vip{SubnetId: "s"},
		Listeners: []*lbaasv1.Listener{{Protocol: listener, Port: 80, Pool: &lbaasv1.Pool{
			DisplayName: "p", Protocol: pool, Members: []*lbaasv1.Member{{Address: "10.0.0.1", Port: 80}},
		}}},
	}
}

func TestValidateCreate(t *testing.T) {
	if err := ValidateCreateLoadBalancer(&lbaasv1.CreateLoadBalancerRequest{LoadBalancer: lb("TCP", "PROXYV2")}); err != nil {
		t.Fatalf("valid request: %v", err)
	}
	err := ValidateCreateLoadBalancer(&lbaasv1.CreateLoadBalancerRequest{LoadBalancer: lb("UDP", "PROXY")})
	if status.Code(err) != codes.FailedPrecondition || apierr.Reason(err) != ReasonUnsupported ||
		!strings.Contains(apierr.FieldViolations(err)["load_balancer.listeners[0].pool.protocol"], "UDP listener cannot use a PROXY pool") {
		t.Fatalf("UDP+PROXY: %v %v", err, apierr.FieldViolations(err))
	}
	noPool := lb("TCP", "PROXY")
	noPool.Listeners[0].Pool = nil
	err = ValidateCreateLoadBalancer(&lbaasv1.CreateLoadBalancerRequest{LoadBalancer: noPool, RequestId: "a b"})
	fv := apierr.FieldViolations(err)
	if status.Code(err) != codes.InvalidArgument || fv["load_balancer.listeners[0].pool"] == "" || fv["request_id"] == "" {
		t.Fatalf("no pool, bad request_id: %v", err)
	}
	err = ValidateCreateLoadBalancer(&lbaasv1.CreateLoadBalancerRequest{})
	if fv := apierr.FieldViolations(err); fv["load_balancer"] == "" {
		t.Fatalf("no load balancer: %v", err)
	}
}

func TestValidateUpdate(t *testing.T) {
	name := "loadBalancers/6d3c0a8e-5f55-4a77-9c4e-1d2b3c4d5e6f"
	err := ValidateUpdateLoadBalancer(&lbaasv1.UpdateLoadBalancerRequest{Name: "web", MemberChanges: []*lbaasv1.MemberChange{
		{Change: &lbaasv1.MemberChange_Add{Add: &lbaasv1.Member{Address: "x", Port: 70000}}},
		{Change: &lbaasv1.MemberChange_SetWeight{SetWeight: &lbaasv1.SetWeight{Member: &lbaasv1.MemberRef{Id: "nope"}, Weight: 300}}},
		{Change: &lbaasv1.MemberChange_Remove{}},
		{},
	}})
	fv := apierr.FieldViolations(err)
	for _, f := range []string{"name", "member_changes[0].add.address", "member_changes[0].add.port",
		"member_changes[1].set_weight.member.id", "member_changes[1].set_weight.weight", "member_changes[2].remove", "member_changes[3]"} {
		if fv[f] == "" {
			t.Errorf("no violation for %s: %v", f, fv)
		}
	}
	if err := ValidateUpdateLoadBalancer(&lbaasv1.UpdateLoadBalancerRequest{Name: name, MemberChanges: []*lbaasv1.MemberChange{
		{Change: &lbaasv1.MemberChange_Drain{Drain: &lbaasv1.MemberRef{Address: "10.0.0.1", Port: 80}}},
	}}); err != nil {
		t.Fatalf("valid update: %v", err)
	}
}

func TestToStatusMapsOctaviaErrors(t *testing.T) {
	body := func(code int, fault string) error {
		return gophercloud.ErrUnexpectedResponseCode{Actual: code, Body: []byte(fmt.Sprintf(`{"faultcode": "x", "faultstring": %q}`, fault))}
	}
	for _, c := range []struct {
		err    error
		code   codes.Code
		reason string
	}{
		{&octavia.ConflictError{ID: "x", Status: "PENDING_UPDATE"}, codes.Aborted, ReasonConflict},
		{&octavia.StatusError{ID: "x", Status: "ERROR"}, codes.FailedPrecondition, ReasonError},
		{&octavia.StatusError{ID: "x", Status: "DELETED"}, codes.NotFound, ReasonNotFound},
		{&octavia.StuckError{ID: "x"}, codes.FailedPrecondition, ReasonStuck},
		{fmt.Errorf("wrapped: %w", octavia.ErrNotFound), codes.NotFound, ReasonNotFound},
		{body(http.StatusForbidden, "Quota has been met for resources: LoadBalancer"), codes.ResourceExhausted, ReasonQuota},
		{body(http.StatusForbidden, "Policy does not allow this request to be performed."), codes.PermissionDenied, ReasonForbidden},
		{body(http.StatusBadRequest, "Invalid input for field/attribute protocol."), codes.InvalidArgument, ReasonRejected},
		{&octavia.UnsupportedError{Violations: []octavia.Violation{{Field: "listeners[0].pool.protocol", Description: "needs 2.22"}}}, codes.FailedPrecondition, ReasonUnsupported},
		{body(http.StatusServiceUnavailable, "busy"), codes.Unavailable, ReasonUnavailable},
	} {
		got := toStatus("op", c.err)
		if status.Code(got) != c.code || apierr.Reason(got) != c.reason {
			t.Errorf("%T %v → %s %s (%v), want %s %s", c.err, c.err, status.Code(got), apierr.Reason(got), got, c.code, c.reason)
		}
	}
	if msg := status.Convert(toStatus("op", body(http.StatusBadRequest, "Invalid input for field/attribute protocol."))).Message(); !strings.Contains(msg, "Invalid input for field/attribute protocol.") {
		t.Errorf("400 message %q lacks Octavia's faultstring", msg)
	}
}

func TestParseName(t *testing.T) {
	if id, ok := parseName("loadBalancers/6d3c0a8e-5f55-4a77-9c4e-1d2b3c4d5e6f"); !ok || id != "6d3c0a8e-5f55-4a77-9c4e-1d2b3c4d5e6f" {
		t.Fatal("a valid name was refused")
	}
	for _, bad := range []string{"", "web", "loadBalancers/", "loadBalancers/web", "workloads/6d3c0a8e-5f55-4a77-9c4e-1d2b3c4d5e6f"} {
		if _, ok := parseName(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}
