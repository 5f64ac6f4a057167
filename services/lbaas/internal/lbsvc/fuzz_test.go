package lbsvc

import (
	"testing"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
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
	servicetest.FuzzValidators(f,
		servicetest.Validate(ValidateCreateLoadBalancer),
		servicetest.Validate(ValidateGetLoadBalancer),
		servicetest.Validate(ValidateListLoadBalancers),
		servicetest.Validate(ValidateUpdateLoadBalancer),
		servicetest.Validate(ValidateDeleteLoadBalancer),
		servicetest.Validate(ValidateWatchLoadBalancer),
	)
}
