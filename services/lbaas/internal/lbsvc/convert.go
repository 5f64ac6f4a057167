package lbsvc

import (
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
)

// namePrefix starts every load balancer's resource name.
const namePrefix = "loadBalancers/"

// specOf turns the request's declarative tree into the thin client's spec.
func specOf(lb *lbaasv1.LoadBalancer) octavia.Spec {
	s := octavia.Spec{
		Name:         lb.GetDisplayName(),
		Description:  lb.GetDescription(),
		VIPSubnetID:  lb.GetVip().GetSubnetId(),
		VIPNetworkID: lb.GetVip().GetNetworkId(),
		VIPAddress:   lb.GetVip().GetAddress(),
		Provider:     lb.GetProvider(),
		Tags:         lb.GetTags(),
	}
	for _, l := range lb.GetListeners() {
		ls := octavia.ListenerSpec{
			Name: l.GetDisplayName(), Protocol: l.GetProtocol(), Port: int(l.GetPort()),
			DefaultTLSContainerRef: l.GetDefaultTlsContainerRef(), AllowedCIDRs: l.GetAllowedCidrs(),
		}
		if l.ConnectionLimit != nil {
			n := int(l.GetConnectionLimit())
			ls.ConnectionLimit = &n
		}
		if p := l.GetPool(); p != nil {
			ps := &octavia.PoolSpec{Name: p.GetDisplayName(), Protocol: p.GetProtocol(), LBMethod: p.GetLbMethod()}
			for _, m := range p.GetMembers() {
				ps.Members = append(ps.Members, memberSpecOf(m))
			}
			if hm := p.GetHealthMonitor(); hm != nil {
				ps.Monitor = &octavia.MonitorSpec{
					Type: hm.GetType(), Delay: int(hm.GetDelaySeconds()), Timeout: int(hm.GetTimeoutSeconds()),
					MaxRetries: int(hm.GetMaxRetries()), MaxRetriesDown: int(hm.GetMaxRetriesDown()),
					HTTPMethod: hm.GetHttpMethod(), URLPath: hm.GetUrlPath(), ExpectedCodes: hm.GetExpectedCodes(),
				}
			}
			ls.Pool = ps
		}
		s.Listeners = append(s.Listeners, ls)
	}
	return s
}

func memberSpecOf(m *lbaasv1.Member) octavia.MemberSpec {
	ms := octavia.MemberSpec{
		Name: m.GetDisplayName(), Address: m.GetAddress(), Port: int(m.GetPort()),
		SubnetID: m.GetSubnetId(), Backup: m.GetBackup(),
	}
	if m.Weight != nil {
		w := int(m.GetWeight())
		ms.Weight = &w
	}
	return ms
}

// fieldPath turns a thin-client field path (listeners[0].pool.monitor.delay) into the
// API's (load_balancer.listeners[0].pool.health_monitor.delay_seconds).
func fieldPath(f string) string {
	switch f {
	case "vip_subnet_id":
		return "load_balancer.vip.subnet_id"
	case "vip_address":
		return "load_balancer.vip.address"
	case "name":
		return "load_balancer.display_name"
	}
	f = strings.Replace(f, ".pool.name", ".pool.display_name", 1)
	f = strings.Replace(f, ".monitor.delay", ".monitor.delay_seconds", 1)
	f = strings.Replace(f, ".monitor.timeout", ".monitor.timeout_seconds", 1)
	f = strings.Replace(f, ".monitor", ".health_monitor", 1)
	return "load_balancer." + f
}

func statusOf(provisioning, operating string) *lbaasv1.Status {
	return &lbaasv1.Status{ProvisioningStatus: provisioning, OperatingStatus: operating}
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// summaryOf is a load balancer without its tree.
func summaryOf(lb *octavia.LoadBalancer) *lbaasv1.LoadBalancer {
	return &lbaasv1.LoadBalancer{
		Name:        namePrefix + lb.ID,
		Id:          lb.ID,
		DisplayName: lb.Name,
		Description: lb.Description,
		Vip: &lbaasv1.Vip{
			SubnetId: lb.VipSubnetID, NetworkId: lb.VipNetworkID, Address: lb.VipAddress, PortId: lb.VipPortID,
		},
		Provider:   lb.Provider,
		Tags:       lb.Tags,
		Status:     statusOf(lb.ProvisioningStatus, lb.OperatingStatus),
		CreateTime: timestamp(lb.CreatedAt),
		UpdateTime: timestamp(lb.UpdatedAt),
	}
}

// treeOf is a load balancer with its whole tree.
func treeOf(t *octavia.Tree) *lbaasv1.LoadBalancer {
	out := summaryOf(&t.LoadBalancer)
	for _, lt := range t.Listeners {
		l := lt.Listener
		pl := &lbaasv1.Listener{
			Id: l.ID, DisplayName: l.Name, Protocol: l.Protocol, Port: int32(l.ProtocolPort),
			DefaultTlsContainerRef: l.DefaultTlsContainerRef, AllowedCidrs: l.AllowedCIDRs,
			Status: statusOf(l.ProvisioningStatus, l.OperatingStatus),
		}
		if l.ConnLimit != -1 {
			n := int32(l.ConnLimit)
			pl.ConnectionLimit = &n
		}
		if pt := lt.Pool; pt != nil {
			p := pt.Pool
			pp := &lbaasv1.Pool{
				Id: p.ID, DisplayName: p.Name, Protocol: p.Protocol, LbMethod: p.LBMethod,
				Status: statusOf(p.ProvisioningStatus, p.OperatingStatus),
			}
			for _, m := range pt.Members {
				pp.Members = append(pp.Members, memberOf(&m))
			}
			if hm := pt.Monitor; hm != nil {
				pp.HealthMonitor = &lbaasv1.HealthMonitor{
					Id: hm.ID, Type: hm.Type, DelaySeconds: int32(hm.Delay), TimeoutSeconds: int32(hm.Timeout),
					MaxRetries: int32(hm.MaxRetries), MaxRetriesDown: int32(hm.MaxRetriesDown),
					HttpMethod: hm.HTTPMethod, UrlPath: hm.URLPath, ExpectedCodes: hm.ExpectedCodes,
					Status: statusOf(hm.ProvisioningStatus, hm.OperatingStatus),
				}
			}
			pl.Pool = pp
		}
		out.Listeners = append(out.Listeners, pl)
	}
	return out
}

func memberOf(m *octavia.Member) *lbaasv1.Member {
	w := int32(m.Weight)
	return &lbaasv1.Member{
		Id: m.ID, DisplayName: m.Name, Address: m.Address, Port: int32(m.ProtocolPort), Weight: &w,
		SubnetId: m.SubnetID, Backup: m.Backup, Status: statusOf(m.ProvisioningStatus, m.OperatingStatus),
	}
}
