// Package watchdog watches the HA routers of the watched clouds — their VRRP ports
// (network:router_ha_interface) and their L3 agents' ha_state — and heals a broken
// one, with back-off and a limit so that it cannot flap. Exactly one netbridge
// replica acts at a time: the leader of an etcd election (Run).
//
// The remedy is the operators' one: disable the router and enable it again
// (admin_state_up false, then true). The L3 agents then tear down and rebuild the
// router's namespaces and keepalived, and VRRP elects a master again. It is the
// least invasive remedy (the router stays on its agents, no other agent must be
// known to be healthy) and needs nothing but the router API; it costs the router a
// few seconds of forwarding, which is why heals back off and stop at a limit.
package watchdog

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"google.golang.org/protobuf/types/known/timestamppb"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/poll"
)

// Policy bounds the heals.
type Policy struct {
	// Backoff is the pause after the first heal of a router; each next one doubles
	// it, up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// MaxHeals is the most heals of one router within Window; then the watchdog
	// gives up on it until it is healthy again.
	MaxHeals int
	Window   time.Duration
	// Settle is the pause between disabling and enabling the router.
	Settle time.Duration
}

// DefaultPolicy is a minute's back-off doubling to 30 minutes, at most 3 heals an
// hour.
var DefaultPolicy = Policy{Backoff: time.Minute, MaxBackoff: 30 * time.Minute, MaxHeals: 3, Window: time.Hour, Settle: 2 * time.Second}

// MaxEvents is how many events the status keeps.
const MaxEvents = 100

// Checker makes one pass over the HA routers of some clouds.
type Checker struct {
	// Neutron returns a cloud's Neutron client.
	Neutron  func(ctx context.Context, cloud string) (*gophercloud.ServiceClient, error)
	Policy   Policy
	Instance string
	Log      *slog.Logger
	Now      func() time.Time
}

// vrrpPort is what the watchdog reads of a network:router_ha_interface port.
type vrrpPort struct {
	ID       string `json:"id"`
	DeviceID string `json:"device_id"`
	Status   string `json:"status"`
	Host     string `json:"binding:host_id"`
}

type haRouter struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	HA           bool   `json:"ha"`
	AdminStateUp bool   `json:"admin_state_up"`
}

func (c *Checker) event(st *netbridgev1.WatchdogStatus, now time.Time, kind, cloud, id, format string, args ...any) {
	ev := &netbridgev1.WatchdogEvent{Time: timestamppb.New(now), Kind: kind, Cloud: cloud, RouterId: id, Detail: fmt.Sprintf(format, args...), Instance: c.Instance}
	st.Events = append(st.Events, ev)
	if n := len(st.Events); n > MaxEvents {
		st.Events = st.Events[n-MaxEvents:]
	}
	c.Log.Info("watchdog", "kind", kind, "cloud", cloud, "router", id, "detail", ev.GetDetail())
}

// Pass checks every HA router of clouds and heals what policy allows, updating st
// (the status carried from pass to pass and across leaders). save records st before
// a heal disables a router, so that a leader dying mid-heal leaves a record its
// successor acts on.
func (c *Checker) Pass(ctx context.Context, clouds []string, st *netbridgev1.WatchdogStatus, save func(context.Context) error) error {
	now := c.Now()
	prev := map[string]*netbridgev1.RouterHealth{}
	for _, r := range st.GetRouters() {
		prev[r.GetCloud()+"/"+r.GetRouterId()] = r
	}
	var next []*netbridgev1.RouterHealth
	var errs []error
	// keep carries a cloud's routers over as they are known when the cloud cannot
	// be read: a transient error must not cost a router its heal history.
	keep := func(cloud string, err error) {
		errs = append(errs, err)
		for _, r := range st.GetRouters() {
			if r.GetCloud() == cloud {
				next = append(next, r)
			}
		}
	}
	for _, cloud := range clouds {
		nc, err := c.Neutron(ctx, cloud)
		if err != nil {
			keep(cloud, fmt.Errorf("cloud %s: %w", cloud, err))
			continue
		}
		pages, err := routers.List(nc, routers.ListOpts{}).AllPages(ctx)
		if err != nil {
			keep(cloud, fmt.Errorf("cloud %s: list routers: %w", cloud, err))
			continue
		}
		var rs []haRouter
		if err := routers.ExtractRoutersInto(pages, &rs); err != nil {
			keep(cloud, fmt.Errorf("cloud %s: list routers: %w", cloud, err))
			continue
		}
		// Every VRRP port of the cloud in one listing, by router.
		pp, err := ports.List(nc, ports.ListOpts{DeviceOwner: "network:router_ha_interface"}).AllPages(ctx)
		var all []vrrpPort
		if err == nil {
			err = ports.ExtractPortsInto(pp, &all)
		}
		if err != nil {
			keep(cloud, fmt.Errorf("cloud %s: VRRP ports: %w", cloud, err))
			continue
		}
		byRouter := map[string][]vrrpPort{}
		for _, p := range all {
			byRouter[p.DeviceID] = append(byRouter[p.DeviceID], p)
		}
		for _, r := range rs {
			if !r.HA {
				continue
			}
			h := prev[cloud+"/"+r.ID]
			if h == nil {
				h = &netbridgev1.RouterHealth{Cloud: cloud, RouterId: r.ID}
			}
			h.Name = r.Name
			if err := c.router(ctx, nc, st, h, r, byRouter[r.ID], now, save); err != nil {
				errs = append(errs, err)
			}
			next = append(next, h)
		}
	}
	st.Routers, st.CheckTime = next, timestamppb.New(now)
	if len(errs) > 0 {
		return fmt.Errorf("watchdog pass: %v", errs)
	}
	return nil
}

// router checks and maybe heals one HA router.
func (c *Checker) router(ctx context.Context, nc *gophercloud.ServiceClient, st *netbridgev1.WatchdogStatus, h *netbridgev1.RouterHealth,
	r haRouter, vrrp []vrrpPort, now time.Time, save func(context.Context) error) error {
	if h.GetHealing() {
		// A heal was under way when the last leader stopped: finish it first.
		if err := setUp(ctx, nc, r.ID, true); err != nil {
			return err
		}
		h.Healing = false
		c.event(st, now, "healed", h.GetCloud(), r.ID, "finished the heal a previous leader began: router enabled again")
		return nil
	}
	ap, err := routers.ListL3Agents(nc, r.ID).AllPages(ctx)
	if err != nil {
		return fmt.Errorf("router %s: L3 agents: %w", r.ID, err)
	}
	agents, _ := routers.ExtractL3Agents(ap)
	var problems []string
	for _, p := range vrrp {
		if p.Status == "DOWN" {
			problems = append(problems, fmt.Sprintf("VRRP port %s on host %q is DOWN", p.ID, p.Host))
		}
	}
	active := 0
	for _, a := range agents {
		if a.HAState == "active" && a.Alive {
			active++
		}
	}
	switch {
	case active == 0:
		problems = append(problems, fmt.Sprintf("no L3 agent is active for it (%d agent(s), %d VRRP port(s))", len(agents), len(vrrp)))
	case active > 1:
		problems = append(problems, fmt.Sprintf("%d L3 agents are active at once (split brain)", active))
	}
	if !r.AdminStateUp {
		problems = nil // disabled by an operator: not ours to judge
	}
	h.VrrpPorts, h.ActiveAgents = int32(len(vrrp)), int32(active)
	wasHealthy := h.GetHealthy() || len(h.GetProblems()) == 0 && len(h.GetHealTimes()) == 0
	h.Problems, h.Healthy = problems, len(problems) == 0
	// Forget heals outside the window.
	var recent []*timestamppb.Timestamp
	for _, t := range h.GetHealTimes() {
		if now.Sub(t.AsTime()) < c.Policy.Window {
			recent = append(recent, t)
		}
	}
	h.HealTimes = recent
	if h.Healthy {
		if !wasHealthy || h.GetGaveUp() {
			c.event(st, now, "recovered", h.GetCloud(), r.ID, "router %s is healthy again", r.Name)
		}
		// The heals stay counted until they leave the window, and the back-off
		// runs on: a router rebuilt by a heal passes through states that look
		// healthy for a moment (one agent reports master before the other), and a
		// router that flaps must not earn a fresh allowance of heals each time.
		h.GaveUp = false
		return nil
	}
	if wasHealthy {
		c.event(st, now, "degraded", h.GetCloud(), r.ID, "router %s: %v", r.Name, problems)
	}
	if h.GetGaveUp() {
		return nil
	}
	if len(recent) >= c.Policy.MaxHeals {
		h.GaveUp = true
		c.event(st, now, "gave_up", h.GetCloud(), r.ID, "router %s: %d heals within %s did not help; no more until it is healthy again — look at its L3 agents", r.Name, len(recent), c.Policy.Window)
		return nil
	}
	if nt := h.GetNextHealTime(); nt != nil && now.Before(nt.AsTime()) {
		return nil // backing off
	}
	// Heal: record first, then disable, settle, enable.
	h.Healing = true
	if err := save(ctx); err != nil {
		h.Healing = false
		return err
	}
	if err := setUp(ctx, nc, r.ID, false); err != nil {
		h.Healing = false
		c.event(st, now, "heal_failed", h.GetCloud(), r.ID, "disable router %s: %v", r.Name, err)
		return err
	}
	_ = poll.Sleep(ctx, c.Policy.Settle) // the router is enabled again even if ctx ended
	if err := setUp(context.WithoutCancel(ctx), nc, r.ID, true); err != nil {
		c.event(st, now, "heal_failed", h.GetCloud(), r.ID, "enable router %s again: %v (the next pass tries again)", r.Name, err)
		return err
	}
	h.Healing = false
	h.HealTimes = append(h.HealTimes, timestamppb.New(now))
	wait := c.Policy.Backoff << (len(h.HealTimes) - 1)
	if wait > c.Policy.MaxBackoff || wait <= 0 {
		wait = c.Policy.MaxBackoff
	}
	h.NextHealTime = timestamppb.New(now.Add(wait))
	c.event(st, now, "healed", h.GetCloud(), r.ID, "router %s disabled and enabled again (heal %d of at most %d per %s; next not before %s)",
		r.Name, len(h.HealTimes), c.Policy.MaxHeals, c.Policy.Window, now.Add(wait).Format(time.RFC3339))
	return nil
}

func setUp(ctx context.Context, nc *gophercloud.ServiceClient, id string, up bool) error {
	_, err := routers.Update(ctx, nc, id, routers.UpdateOpts{AdminStateUp: &up}).Extract()
	return err
}
