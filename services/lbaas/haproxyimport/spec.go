package haproxyimport

import (
	"errors"
	"fmt"
	"slices"

	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
)

// Where says what a plan needs from the destination to become Octavia specs: the
// subnet of the VIPs, and for each certificate file a TERMINATED_HTTPS listener
// served, the Barbican container that now holds it.
type Where struct {
	VIPSubnetID  string
	Certificates map[string]string // PEM file → Barbican container ref
}

// ErrNoCertificate is wrapped by Specs' error when a TERMINATED_HTTPS listener's
// certificate file has no Barbican container in Where.
var ErrNoCertificate = errors.New("no Barbican container for a certificate")

// Specs turns the plan's load balancers into octavia specs (each VIP address
// kept), or says what is missing to do so.
func (p *Plan) Specs(w Where) ([]octavia.Spec, error) {
	if w.VIPSubnetID == "" {
		return nil, fmt.Errorf("haproxyimport: the VIPs' subnet is needed")
	}
	var out []octavia.Spec
	for _, lb := range p.LoadBalancers {
		s := octavia.Spec{Name: lb.Name, VIPSubnetID: w.VIPSubnetID, VIPAddress: lb.VIPAddress,
			Description: "imported from an haproxy configuration by hikkoshi"}
		for _, pl := range lb.Pools {
			ps := octavia.PoolSpec{Name: pl.Name, Protocol: pl.Protocol, LBMethod: pl.LBMethod}
			if sp := pl.SessionPersistence; sp != nil {
				ps.Persistence = &octavia.PersistenceSpec{Type: sp.Type, CookieName: sp.CookieName}
			}
			for _, m := range pl.Members {
				ms := octavia.MemberSpec{Name: m.Name, Address: m.Address, Port: m.Port, Weight: m.Weight,
					Backup: m.Backup, Disabled: !m.AdminStateUp, MonitorAddress: m.MonitorAddress}
				if m.MonitorPort != 0 {
					ms.MonitorPort = &m.MonitorPort
				}
				ps.Members = append(ps.Members, ms)
			}
			if mon := pl.Monitor; mon != nil {
				ps.Monitor = &octavia.MonitorSpec{Type: mon.Type, Delay: mon.Delay, Timeout: mon.Timeout, MaxRetries: mon.MaxRetries,
					MaxRetriesDown: mon.MaxRetriesDown, HTTPMethod: mon.HTTPMethod, URLPath: mon.URLPath,
					ExpectedCodes: mon.ExpectedCodes, HTTPVersion: mon.HTTPVersion, DomainName: mon.DomainName}
				if ps.Monitor.DomainName != "" && ps.Monitor.HTTPVersion == "" {
					ps.Monitor.HTTPVersion = "1.1"
				}
			}
			s.Pools = append(s.Pools, ps)
		}
		for _, l := range lb.Listeners {
			ls := octavia.ListenerSpec{Name: l.Name, Protocol: l.Protocol, Port: l.Port, ConnectionLimit: l.ConnectionLimit,
				DefaultPool: l.DefaultPool, TimeoutClientData: l.TimeoutClientData, TimeoutMemberConnect: l.TimeoutMemberConnect,
				TimeoutMemberData: l.TimeoutMemberData, TimeoutTCPInspect: l.TimeoutTCPInspect, InsertHeaders: l.InsertHeaders,
				AllowedCIDRs: slices.Clone(l.AllowedCIDRs), ALPNProtocols: slices.Clone(l.ALPN)}
			if l.Certificate != "" {
				ref := w.Certificates[l.Certificate]
				if ref == "" {
					return nil, fmt.Errorf("haproxyimport: listener %s of %s serves %s: store it in Barbican and give its container (%w)", l.Name, lb.Name, l.Certificate, ErrNoCertificate)
				}
				ls.DefaultTLSContainerRef = ref
			}
			for _, pol := range l.L7Policies {
				ps := octavia.L7PolicySpec{Name: pol.Name, Action: pol.Action, RedirectPool: pol.RedirectPool,
					RedirectURL: pol.RedirectURL, RedirectPrefix: pol.RedirectPrefix, RedirectHTTPCode: pol.RedirectHTTPCode}
				for _, r := range pol.Rules {
					ps.Rules = append(ps.Rules, octavia.L7RuleSpec{Type: r.Type, CompareType: r.CompareType, Key: r.Key, Value: r.Value, Invert: r.Invert})
				}
				ls.L7Policies = append(ls.L7Policies, ps)
			}
			s.Listeners = append(s.Listeners, ls)
		}
		if err := octavia.Validate(s); err != nil {
			return nil, fmt.Errorf("haproxyimport: load balancer %s: %w", lb.Name, err)
		}
		out = append(out, s)
	}
	return out, nil
}
