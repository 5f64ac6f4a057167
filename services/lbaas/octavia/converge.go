package octavia

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/l7policies"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/listeners"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/monitors"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/pools"
)

// Change is one step that brings a built load balancer closer to its spec: the
// spec's field it is about, and what it does there.
type Change struct {
	Field string
	What  string
	do    func(ctx context.Context) error
}

func (c Change) String() string { return c.Field + ": " + c.What }

// rebuiltSuffix names a pool while it is rebuilt beside the one it replaces.
const rebuiltSuffix = "~rebuilt"

// Converge compares load balancer id with spec (an import's spec: pools in
// Spec.Pools by name, listeners naming theirs) and returns the changes that make
// it the spec, in an order that keeps it serving: new and rebuilt pools first,
// then members, monitors and pool settings, then listeners' settings, default
// pools and L7 policies (the new policies in front of the old, then the old
// deleted), then the pools nothing uses any more. A pool whose protocol changed is
// rebuilt alone: a new pool with the members and monitor beside it, the listeners
// and policies moved to it, the old one deleted, the new one renamed. With apply
// the changes are made, each waited on until the load balancer is ACTIVE; without,
// nothing is changed. A new L7 policy is made disabled and enabled once all its
// rules are there (Octavia renders an enabled policy with the rules it has). A
// converge that failed part way is taken up by the next: a rebuilt pool it finds
// (NAME~rebuilt, of the spec's protocol) is the rebuild's, a disabled policy is
// replaced. A monitor whose type changes is deleted before its successor is made
// (Octavia allows one per pool): in between, the pool's members are not checked.
// Listeners the spec lacks are deleted (first, so that a listener whose protocol
// changed frees its port for its successor), new ones created with their
// policies. A listener's own pool, or two pools of one name, are not converged: an
// *UnsupportedError names them and nothing is changed. A listener's name, and —
// when the spec gives them — its allowed CIDRs (an empty list: every client),
// ALPN and certificate, and a monitor's HTTP version and domain name are converged;
// members' subnets are not compared (a member's subnet cannot be changed in
// Octavia: a member on another subnet is another member).
func (c *Client) Converge(ctx context.Context, id string, spec Spec, apply bool) ([]Change, error) {
	if err := Validate(spec); err != nil {
		return nil, err
	}
	t, err := c.Show(ctx, id)
	if err != nil {
		return nil, err
	}
	changes, err := c.plan(t, spec)
	if err != nil || !apply {
		return changes, err
	}
	for i, ch := range changes {
		if err := ch.do(ctx); err != nil {
			return changes[:i], fmt.Errorf("octavia: load balancer %s: %s: %w", id, ch, err)
		}
	}
	return changes, nil
}

// state is what a converge knows as it goes: pool IDs by name, once made.
type state struct {
	poolID map[string]string
}

func (c *Client) plan(t *Tree, spec Spec) ([]Change, error) {
	lbID := t.LoadBalancer.ID
	var unsupported []Violation
	matched := make([]*ListenerTree, len(spec.Listeners))
	for i, ls := range spec.Listeners {
		f := fmt.Sprintf("listeners[%d]", i)
		if ls.Pool != nil {
			unsupported = append(unsupported, Violation{f + ".pool", "a listener's own pool is not converged: give it in pools, by name"})
		}
		for j := range t.Listeners {
			if l := &t.Listeners[j]; l.Listener.Protocol == ls.Protocol && l.Listener.ProtocolPort == ls.Port {
				matched[i] = l
			}
		}
	}
	names := map[string]int{}
	for _, pt := range t.Pools {
		names[pt.Pool.Name]++
	}
	for _, ps := range spec.Pools {
		for _, n := range []string{ps.Name, ps.Name + rebuiltSuffix} {
			if names[n] > 1 {
				unsupported = append(unsupported, Violation{fmt.Sprintf("pools[%s]", ps.Name), fmt.Sprintf("%d pools are named %s on the load balancer: delete the ones that are not this spec's", names[n], n)})
			}
		}
	}
	if len(unsupported) > 0 {
		return nil, &UnsupportedError{unsupported}
	}

	st := &state{poolID: map[string]string{}}
	var out []Change
	add := func(field, what string, do func(ctx context.Context) error) {
		out = append(out, Change{Field: field, What: what, do: do})
	}
	mutate := func(what string, call func(ctx context.Context) error) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			return c.mutate(ctx, lbID, what, func() error { return call(ctx) })
		}
	}
	step := func(ctx context.Context) func(string, func() error) error {
		return func(what string, call func() error) error { return c.mutate(ctx, lbID, what, call) }
	}
	// rebuilds are the pools being rebuilt: the old pool (nil once deleted), deleted
	// at the end, after which the rebuilt one takes its name.
	type rebuild struct {
		name string
		old  *PoolTree
	}
	var rebuilds []rebuild
	var retired []*PoolTree // the old pools of rebuilds
	adopted := map[*PoolTree]bool{}

	// Pools: new ones and rebuilt ones first, so that listeners can move to them.
	for i, ps := range spec.Pools {
		f := fmt.Sprintf("pools[%s]", ps.Name)
		pt := t.Pool(ps.Name)
		if pt != nil {
			st.poolID[ps.Name] = pt.Pool.ID
		}
		if rb := t.Pool(ps.Name + rebuiltSuffix); rb != nil && rb.Pool.Protocol == ps.Protocol {
			// A rebuild that an earlier converge began and did not end: its pool is
			// the rebuilt one, made whole; the old one (if still there) goes.
			adopted[rb] = true
			st.poolID[ps.Name] = rb.Pool.ID
			if pt != nil && pt.Pool.Protocol != ps.Protocol {
				retired = append(retired, pt)
			}
			rebuilds = append(rebuilds, rebuild{ps.Name, pt})
			out = append(out, c.poolChanges(f+"(rebuilt)", rb, ps, mutate)...)
			continue
		}
		switch {
		case pt == nil:
			add(f, fmt.Sprintf("create (%s, %d members)", ps.Protocol, len(ps.Members)), func(ctx context.Context) error {
				id, err := c.createPool(ctx, step(ctx), fmt.Sprintf("pools[%d]", i), ps, pools.CreateOpts{LoadbalancerID: lbID})
				st.poolID[ps.Name] = id
				return err
			})
		case pt.Pool.Protocol != ps.Protocol:
			retired = append(retired, pt)
			rebuilds = append(rebuilds, rebuild{ps.Name, pt})
			rebuilt := ps
			rebuilt.Name = ps.Name + rebuiltSuffix
			add(f, fmt.Sprintf("rebuild: protocol %s → %s (a new pool beside it, its users moved to it, then it is deleted)", pt.Pool.Protocol, ps.Protocol), func(ctx context.Context) error {
				id, err := c.createPool(ctx, step(ctx), fmt.Sprintf("pools[%d]", i), rebuilt, pools.CreateOpts{LoadbalancerID: lbID})
				st.poolID[ps.Name] = id
				return err
			})
		default:
			out = append(out, c.poolChanges(f, pt, ps, mutate)...)
		}
	}

	// Listeners the spec does not have go first: a listener whose protocol changed
	// on the same port is deleted before its successor can take the port (its port
	// refuses connections in between). Octavia deletes a listener's policies with it.
	for _, l := range t.Listeners {
		if slices.ContainsFunc(spec.Listeners, func(ls ListenerSpec) bool {
			return ls.Protocol == l.Listener.Protocol && ls.Port == l.Listener.ProtocolPort
		}) {
			continue
		}
		lid := l.Listener.ID
		add(fmt.Sprintf("listeners[%s:%d]", l.Listener.Protocol, l.Listener.ProtocolPort), "delete (not in the spec)", mutate("delete listener "+lid, func(ctx context.Context) error {
			err := listeners.Delete(ctx, c.sc, lid).ExtractErr()
			if IsNotFound(err) {
				return nil
			}
			return err
		}))
	}
	// Listeners: new ones, and the settings, default pools and policies of those
	// there are.
	for i, ls := range spec.Listeners {
		lt := matched[i]
		f := fmt.Sprintf("listeners[%s:%d]", ls.Protocol, ls.Port)
		if lt == nil {
			add(f, fmt.Sprintf("create → %s, %d policies", orNone(ls.DefaultPool), len(ls.L7Policies)), func(ctx context.Context) error {
				lo := c.listenerOpts(ls)
				lo.LoadbalancerID, lo.DefaultPoolID = lbID, st.poolID[ls.DefaultPool]
				var l *listeners.Listener
				if err := c.mutate(ctx, lbID, "create listener "+f, func() (err error) {
					l, err = listeners.Create(ctx, c.sc, lo).Extract()
					return err
				}); err != nil {
					return err
				}
				return c.createPolicies(ctx, lbID, l.ID, ls.L7Policies, st)
			})
			continue
		}
		lid := lt.Listener.ID
		var opts listeners.UpdateOpts
		var what []string
		cur := ""
		if lt.Pool != nil {
			cur = lt.Pool.Pool.Name
		}
		rebuiltDefault := slices.ContainsFunc(retired, func(p *PoolTree) bool { return lt.Pool != nil && p.Pool.ID == lt.Pool.Pool.ID })
		switch {
		case ls.DefaultPool != cur:
			what = append(what, fmt.Sprintf("default pool %s → %s", orNone(cur), orNone(ls.DefaultPool)))
		case rebuiltDefault:
			what = append(what, fmt.Sprintf("default pool → %s rebuilt", cur))
		}
		intChange := func(name string, want *int, have int, set **int) {
			if want != nil && *want != have {
				*set = want
				what = append(what, fmt.Sprintf("%s %d → %d", name, have, *want))
			}
		}
		limit := ls.ConnectionLimit
		if limit == nil {
			limit = ptr(-1)
		}
		intChange("connection_limit", limit, lt.Listener.ConnLimit, &opts.ConnLimit)
		intChange("timeout_client_data", ls.TimeoutClientData, lt.Listener.TimeoutClientData, &opts.TimeoutClientData)
		intChange("timeout_member_connect", ls.TimeoutMemberConnect, lt.Listener.TimeoutMemberConnect, &opts.TimeoutMemberConnect)
		intChange("timeout_member_data", ls.TimeoutMemberData, lt.Listener.TimeoutMemberData, &opts.TimeoutMemberData)
		intChange("timeout_tcp_inspect", ls.TimeoutTCPInspect, lt.Listener.TimeoutTCPInspect, &opts.TimeoutTCPInspect)
		if ls.Name != "" && ls.Name != lt.Listener.Name {
			opts.Name = &ls.Name
			what = append(what, fmt.Sprintf("name %s → %s", orNone(lt.Listener.Name), ls.Name))
		}
		// Allowed CIDRs only when the spec says them (nil: as they are, which may be
		// what an operator set by hand); an empty list clears them (every client).
		if ls.AllowedCIDRs != nil && !sameSet(cidrs(ls.AllowedCIDRs), cidrs(lt.Listener.AllowedCIDRs)) {
			cidrs := append([]string{}, ls.AllowedCIDRs...)
			opts.AllowedCIDRs = &cidrs
			what = append(what, fmt.Sprintf("allowed_cidrs %v → %v", lt.Listener.AllowedCIDRs, cidrs))
		}
		// ALPN and the certificate only when the spec says them (Octavia has
		// defaults of its own for a TERMINATED_HTTPS listener).
		if ls.ALPNProtocols != nil && !slices.Equal(ls.ALPNProtocols, lt.Listener.ALPNProtocols) {
			alpn := slices.Clone(ls.ALPNProtocols)
			opts.ALPNProtocols = &alpn
			what = append(what, fmt.Sprintf("alpn_protocols %v → %v", lt.Listener.ALPNProtocols, alpn))
		}
		if ls.DefaultTLSContainerRef != "" && ls.DefaultTLSContainerRef != lt.Listener.DefaultTlsContainerRef {
			ref := ls.DefaultTLSContainerRef
			opts.DefaultTlsContainerRef = &ref
			what = append(what, "default_tls_container_ref → "+ref)
		}
		if ls.InsertHeaders != nil && !maps.Equal(ls.InsertHeaders, lt.Listener.InsertHeaders) {
			h := ls.InsertHeaders
			opts.InsertHeaders = &h
			what = append(what, fmt.Sprintf("insert_headers %v → %v", lt.Listener.InsertHeaders, h))
		}
		if len(what) > 0 {
			name := ls.DefaultPool
			setPool := ls.DefaultPool != cur || rebuiltDefault
			add(f, strings.Join(what, ", "), func(ctx context.Context) error {
				o := opts
				if setPool {
					id := st.poolID[name]
					o.DefaultPoolID = &id
				}
				return c.mutate(ctx, lbID, "update listener "+lid, func() error { return listeners.Update(ctx, c.sc, lid, o).Err })
			})
		}
		if !samePolicies(t, lt.Policies, ls.L7Policies, retired) {
			old := lt.Policies
			pols := ls.L7Policies
			add(f+".l7_policies", fmt.Sprintf("replace %d policies with %d (the new ones first, then the old ones deleted)", len(old), len(pols)), func(ctx context.Context) error {
				if err := c.createPolicies(ctx, lbID, lid, pols, st); err != nil {
					return err
				}
				for _, p := range old {
					if err := c.mutate(ctx, lbID, "delete l7 policy "+p.ID, func() error {
						err := l7policies.Delete(ctx, c.sc, p.ID).ExtractErr()
						if IsNotFound(err) {
							return nil
						}
						return err
					}); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}

	// Pools nothing uses any more: those a rebuild replaced (the rebuilt one then
	// takes its name), and those not in the spec.
	for _, rb := range rebuilds {
		name, old := rb.name, rb.old
		what := "delete the pool the rebuild replaced; the new one takes its name"
		if old == nil {
			what = "the rebuilt pool takes its name"
		}
		add(fmt.Sprintf("pools[%s]", name), what, func(ctx context.Context) error {
			if old != nil {
				if err := c.deletePool(ctx, lbID, old.Pool.ID); err != nil {
					return err
				}
			}
			return c.mutate(ctx, lbID, "rename pool "+st.poolID[name], func() error {
				return pools.Update(ctx, c.sc, st.poolID[name], pools.UpdateOpts{Name: &name}).Err
			})
		})
	}
	for _, pt := range t.Pools {
		if adopted[pt] || slices.ContainsFunc(spec.Pools, func(ps PoolSpec) bool { return ps.Name == pt.Pool.Name }) {
			continue
		}
		pid := pt.Pool.ID
		add(fmt.Sprintf("pools[%s]", pt.Pool.Name), "delete (not in the spec)", func(ctx context.Context) error { return c.deletePool(ctx, lbID, pid) })
	}
	return out, nil
}

// createPolicies makes a listener's policies at positions 1…n (in front of any it
// has), each disabled until its rules are all there: Octavia renders an enabled
// policy with the rules it has, ANDed, so one with its first rule only would catch
// more than asked.
func (c *Client) createPolicies(ctx context.Context, lbID, lid string, pols []L7PolicySpec, st *state) error {
	for j, pol := range pols {
		// Disabled until its rules are all there: Octavia renders an
		// enabled policy with any rules, ANDing those it has, so a
		// policy with its first rule only would catch more than asked.
		po := c.policyOpts(pol, j+1)
		rules := po.Rules
		po.Rules, po.AdminStateUp = nil, ptr(false)
		po.ListenerID, po.RedirectPoolID = lid, st.poolID[pol.RedirectPool]
		var created *l7policies.L7Policy
		if err := c.mutate(ctx, lbID, fmt.Sprintf("create l7_policies[%d]", j), func() (err error) {
			created, err = l7policies.Create(ctx, c.sc, po).Extract()
			return err
		}); err != nil {
			return err
		}
		for k, r := range rules {
			if err := c.mutate(ctx, lbID, fmt.Sprintf("create l7_policies[%d].rules[%d]", j, k), func() error {
				return l7policies.CreateRule(ctx, c.sc, created.ID, r).Err
			}); err != nil {
				return err
			}
		}
		if err := c.mutate(ctx, lbID, fmt.Sprintf("enable l7_policies[%d]", j), func() error {
			return l7policies.Update(ctx, c.sc, created.ID, l7policies.UpdateOpts{AdminStateUp: ptr(true)}).Err
		}); err != nil {
			return err
		}
	}
	return nil
}

func (c *Client) deletePool(ctx context.Context, lbID, poolID string) error {
	return c.mutate(ctx, lbID, "delete pool "+poolID, func() error {
		err := pools.Delete(ctx, c.sc, poolID).ExtractErr()
		if IsNotFound(err) {
			return nil
		}
		return err
	})
}

// poolChanges are the changes of a pool that keeps its protocol: its algorithm and
// persistence, its members (by address and port), its monitor.
func (c *Client) poolChanges(f string, pt *PoolTree, ps PoolSpec, mutate func(string, func(ctx context.Context) error) func(ctx context.Context) error) []Change {
	var out []Change
	pid := pt.Pool.ID
	method := ps.LBMethod
	if method == "" {
		method = "ROUND_ROBIN"
	}
	var what []string
	if method != pt.Pool.LBMethod {
		what = append(what, fmt.Sprintf("lb_algorithm %s → %s", pt.Pool.LBMethod, method))
	}
	var persistence any = nil // JSON null removes it
	if p := ps.Persistence; p != nil {
		persistence = pools.SessionPersistence{Type: p.Type, CookieName: p.CookieName}
	}
	havePersistence := pt.Pool.Persistence.Type != ""
	if (ps.Persistence == nil) == havePersistence || ps.Persistence != nil && (ps.Persistence.Type != pt.Pool.Persistence.Type || ps.Persistence.CookieName != pt.Pool.Persistence.CookieName) {
		what = append(what, fmt.Sprintf("session_persistence %s → %s", orNone(pt.Pool.Persistence.Type), orNone(persistenceType(ps.Persistence))))
	}
	if len(what) > 0 {
		body := map[string]any{"lb_algorithm": method, "session_persistence": persistence}
		out = append(out, Change{f, strings.Join(what, ", "), mutate("update pool "+pid, func(ctx context.Context) error {
			return pools.Update(ctx, c.sc, pid, rawPoolUpdate(body)).Err
		})})
	}
	key := func(addr string, port int) string { return fmt.Sprintf("%s:%d", addr, port) }
	for _, ms := range ps.Members {
		mf := fmt.Sprintf("%s.members[%s]", f, key(ms.Address, ms.Port))
		i := slices.IndexFunc(pt.Members, func(m Member) bool { return m.Address == ms.Address && m.ProtocolPort == ms.Port })
		if i < 0 {
			out = append(out, Change{mf, "add", mutate("add member "+key(ms.Address, ms.Port), func(ctx context.Context) error {
				return pools.CreateMember(ctx, c.sc, pid, c.memberOpts(ms)).Err
			})})
			continue
		}
		m := pt.Members[i]
		var opts pools.UpdateMemberOpts
		var what []string
		weight := 1
		if ms.Weight != nil {
			weight = *ms.Weight
		}
		if weight != m.Weight {
			opts.Weight, what = &weight, append(what, fmt.Sprintf("weight %d → %d", m.Weight, weight))
		}
		if ms.Backup != m.Backup {
			b := ms.Backup
			opts.Backup, what = &b, append(what, fmt.Sprintf("backup %v → %v", m.Backup, b))
		}
		if up := !ms.Disabled; up != m.AdminStateUp {
			opts.AdminStateUp, what = &up, append(what, fmt.Sprintf("admin_state_up %v → %v", m.AdminStateUp, up))
		}
		if ms.Name != "" && ms.Name != m.Name {
			n := ms.Name
			opts.Name, what = &n, append(what, fmt.Sprintf("name %s → %s", orNone(m.Name), n))
		}
		if ms.MonitorAddress != m.MonitorAddress && ms.MonitorAddress != "" {
			a := ms.MonitorAddress
			opts.MonitorAddress, what = &a, append(what, fmt.Sprintf("monitor_address %s → %s", orNone(m.MonitorAddress), a))
		}
		if ms.MonitorPort != nil && *ms.MonitorPort != m.MonitorPort {
			opts.MonitorPort, what = ms.MonitorPort, append(what, fmt.Sprintf("monitor_port %d → %d", m.MonitorPort, *ms.MonitorPort))
		}
		if len(what) > 0 {
			mid := m.ID
			out = append(out, Change{mf, strings.Join(what, ", "), mutate("update member "+mid, func(ctx context.Context) error {
				return pools.UpdateMember(ctx, c.sc, pid, mid, opts).Err
			})})
		}
	}
	for _, m := range pt.Members {
		if !slices.ContainsFunc(ps.Members, func(ms MemberSpec) bool { return ms.Address == m.Address && ms.Port == m.ProtocolPort }) {
			mid := m.ID
			out = append(out, Change{fmt.Sprintf("%s.members[%s]", f, key(m.Address, m.ProtocolPort)), "remove", mutate("remove member "+mid, func(ctx context.Context) error {
				err := pools.DeleteMember(ctx, c.sc, pid, mid).ExtractErr()
				if IsNotFound(err) {
					return nil
				}
				return err
			})})
		}
	}
	return append(out, c.monitorChanges(f+".healthmonitor", pt, ps.Monitor, mutate)...)
}

// monitorChanges create, delete, replace (another type) or update a pool's monitor.
// A field the spec leaves zero is Octavia's default, not compared.
func (c *Client) monitorChanges(f string, pt *PoolTree, ms *MonitorSpec, mutate func(string, func(ctx context.Context) error) func(ctx context.Context) error) []Change {
	have, pid := pt.Monitor, pt.Pool.ID
	create := func(ctx context.Context) error {
		mo := c.monitorOpts(*ms)
		mo.PoolID = pid
		return monitors.Create(ctx, c.sc, mo).Err
	}
	del := func(id string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			err := monitors.Delete(ctx, c.sc, id).ExtractErr()
			if IsNotFound(err) {
				return nil
			}
			return err
		}
	}
	switch {
	case ms == nil && have == nil:
		return nil
	case ms == nil:
		return []Change{{f, "delete (not in the spec)", mutate("delete monitor "+have.ID, del(have.ID))}}
	case have == nil:
		return []Change{{f, "create " + ms.Type, mutate("create monitor of pool "+pid, create)}}
	case have.Type != ms.Type:
		return []Change{
			{f, fmt.Sprintf("replace: type %s → %s (deleted)", have.Type, ms.Type), mutate("delete monitor "+have.ID, del(have.ID))},
			{f, "replace: create " + ms.Type, mutate("create monitor of pool "+pid, create)},
		}
	}
	var opts monitors.UpdateOpts
	var what []string
	num := func(name string, want, got int, set *int) {
		if want != 0 && want != got {
			*set, what = want, append(what, fmt.Sprintf("%s %d → %d", name, got, want))
		}
	}
	num("delay", ms.Delay, have.Delay, &opts.Delay)
	num("timeout", ms.Timeout, have.Timeout, &opts.Timeout)
	num("max_retries", ms.MaxRetries, have.MaxRetries, &opts.MaxRetries)
	num("max_retries_down", ms.MaxRetriesDown, have.MaxRetriesDown, &opts.MaxRetriesDown)
	str := func(name, want, got string, set *string) {
		if want != "" && want != got {
			*set, what = want, append(what, fmt.Sprintf("%s %s → %s", name, orNone(got), want))
		}
	}
	str("http_method", ms.HTTPMethod, have.HTTPMethod, &opts.HTTPMethod)
	str("url_path", ms.URLPath, have.URLPath, &opts.URLPath)
	str("expected_codes", ms.ExpectedCodes, have.ExpectedCodes, &opts.ExpectedCodes)
	var version, domain string
	str("http_version", ms.HTTPVersion, have.HTTPVersion, &version)
	str("domain_name", ms.DomainName, have.DomainName, &domain)
	if version != "" {
		opts.HTTPVersion = &version
	}
	if domain != "" {
		opts.DomainName = &domain
	}
	if len(what) == 0 {
		return nil
	}
	mid := have.ID
	return []Change{{f, strings.Join(what, ", "), mutate("update monitor "+mid, func(ctx context.Context) error {
		return monitors.Update(ctx, c.sc, mid, opts).Err
	})}}
}

// samePolicies reports whether a listener's policies are the spec's, in order:
// action, redirect, pool (by name; a pool being rebuilt is another pool), rules.
func samePolicies(t *Tree, have []l7policies.L7Policy, want []L7PolicySpec, retired []*PoolTree) bool {
	if len(have) != len(want) {
		return false
	}
	for i, w := range want {
		h := have[i]
		code := w.RedirectHTTPCode
		if code == 0 && (w.Action == "REDIRECT_TO_URL" || w.Action == "REDIRECT_PREFIX") {
			code = 302
		}
		if !h.AdminStateUp || h.Action != w.Action || h.RedirectURL != w.RedirectURL || h.RedirectPrefix != w.RedirectPrefix || int(h.RedirectHttpCode) != code && code != 0 {
			return false
		}
		if w.RedirectPool != "" {
			p := t.Pool(w.RedirectPool)
			if p == nil || p.Pool.ID != h.RedirectPoolID || slices.Contains(retired, p) {
				return false
			}
		}
		if len(h.Rules) != len(w.Rules) {
			return false
		}
		for _, wr := range w.Rules {
			if !slices.ContainsFunc(h.Rules, func(hr l7policies.Rule) bool {
				return hr.RuleType == wr.Type && hr.CompareType == wr.CompareType && hr.Key == wr.Key && hr.Value == wr.Value && hr.Invert == wr.Invert
			}) {
				return false
			}
		}
	}
	return true
}

func persistenceType(p *PersistenceSpec) string {
	if p == nil {
		return ""
	}
	return p.Type
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func ptr[T any](v T) *T { return &v }

// cidrs writes each CIDR in the network form Octavia stores ("10.0.0.1/8" is
// 10.0.0.0/8, an address its /32 or /128).
func cidrs(in []string) []string {
	out := make([]string, 0, len(in))
	for _, c := range in {
		if p, err := netip.ParsePrefix(c); err == nil {
			c = p.Masked().String()
		} else if a, err := netip.ParseAddr(c); err == nil {
			c = netip.PrefixFrom(a, a.BitLen()).String()
		}
		out = append(out, c)
	}
	return out
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// rawPoolUpdate is a pool update body as given (gophercloud's UpdateOpts cannot
// send session_persistence null, which removes it).
type rawPoolUpdate map[string]any

func (r rawPoolUpdate) ToPoolUpdateMap() (map[string]any, error) {
	return map[string]any{"pool": map[string]any(r)}, nil
}
