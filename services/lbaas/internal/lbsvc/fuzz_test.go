package lbsvc

import (
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
)

// FuzzRequests: arbitrary requests of each LoadBalancerService method through its
// validation never panic, and a refusal is INVALID_ARGUMENT naming a field.
func FuzzRequests(f *testing.F) {
	w := int32(1)
	servicetest.Seed(f, 0, &lbaasv1.CreateLoadBalancerRequest{RequestId: "r1", LoadBalancer: &lbaasv1.LoadBalancer{
		DisplayName: "shop-web", Vip: &lbaasv1.Vip{SubnetId: "0b3d1a7e-5f43-4c2a-9a55-2d9c4c0e9f10"},
		Listeners: []*lbaasv1.Listener{{Protocol: "TCP", Port: 80, Pool: &lbaasv1.Pool{Protocol: "PROXYV2",
			Members:       []*lbaasv1.Member{{Address: "10.0.0.1", Port: 8080, Weight: &w}},
			HealthMonitor: &lbaasv1.HealthMonitor{Type: "TCP", DelaySeconds: 1, TimeoutSeconds: 1, MaxRetries: 1}}}}}})
	servicetest.Seed(f, 1, &lbaasv1.GetLoadBalancerRequest{Name: "loadBalancers/x"})
	servicetest.Seed(f, 2, &lbaasv1.ListLoadBalancersRequest{PageSize: 5})
	servicetest.Seed(f, 3, &lbaasv1.UpdateLoadBalancerRequest{Name: "loadBalancers/x", MemberChanges: []*lbaasv1.MemberChange{{
		Pool: "p", Change: &lbaasv1.MemberChange_Drain{Drain: &lbaasv1.MemberRef{Address: "10.0.0.1", Port: 8080}}}}})
	servicetest.Seed(f, 4, &lbaasv1.DeleteLoadBalancerRequest{Name: "loadBalancers/x"})
	servicetest.Seed(f, 5, &lbaasv1.WatchLoadBalancerRequest{Name: "loadBalancers/x"})
	servicetest.Seed(f, 6, &lbaasv1.PlanImportRequest{Source: source("haproxy.cfg", shopCfg)})
	servicetest.Seed(f, 7, &lbaasv1.ApplyImportRequest{Source: source("haproxy.cfg", shopCfg), RequestId: "r2",
		VipSubnetId: "0b3d1a7e-5f43-4c2a-9a55-2d9c4c0e9f10", Certificates: map[string]string{"a.pem": "https://barbican/v1/containers/x"}})
	servicetest.FuzzValidators(f,
		servicetest.Validate(ValidateCreateLoadBalancer),
		servicetest.Validate(ValidateGetLoadBalancer),
		servicetest.Validate(ValidateListLoadBalancers),
		servicetest.Validate(ValidateUpdateLoadBalancer),
		servicetest.Validate(ValidateDeleteLoadBalancer),
		servicetest.Validate(ValidateWatchLoadBalancer),
		servicetest.Validate(ValidatePlanImport),
		servicetest.Validate(ValidateApplyImport),
	)
}

// FuzzPlanImport: a hostile configuration never panics the plan, and what it
// refuses is INVALID_ARGUMENT naming the file.
func FuzzPlanImport(f *testing.F) {
	f.Add(shopCfg)
	f.Add("listen x\n  bind 10.0.0.9:80\n  server a 10.0.0.1:80 check addr 10.0.0.2 port 81 cookie c\n  cookie SRV insert\n")
	f.Add("frontend f\n bind :80\n acl a path_beg /x\n use_backend b if a !a\nbackend b\n server s 10.0.0.1\n")
	s := &Server{}
	f.Fuzz(func(t *testing.T, cfg string) {
		if !utf8.ValidString(cfg) {
			return // a proto string is UTF-8
		}
		var err error
		done := make(chan struct{})
		go func() {
			defer close(done)
			var p *planned
			if p, err = s.planImport(t.Context(), source("haproxy.cfg", cfg)); err == nil {
				if _, merr := proto.Marshal(p.proto()); merr != nil { // what the response would be
					err = merr
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatalf("%q: still planning after 2 s", cfg)
		}
		if err != nil && (status.Code(err) != codes.InvalidArgument || len(apierr.FieldViolations(err)) == 0) {
			t.Fatalf("%q: %v", cfg, err)
		}
	})
}
