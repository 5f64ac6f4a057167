package jobs

// The pre-flight: what a job needs in the destination, checked before anything is
// changed (flavor, ports, network, key pair, groups, volume types, quota).

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"

	"github.com/hikkoshi/hikkoshi/services/converter/internal/osapi"
)

func (t *task) preflight(ctx context.Context) (*plan, error) {
	r, j, src, dst := t.Runner, t.j, t.src, t.dst
	d := j.GetDestination()
	srv, err := osapi.GetServer(ctx, src.compute, j.GetSource().GetServerId())
	if err != nil {
		return nil, fmt.Errorf("source server %s: %w", j.GetSource().GetServerId(), err)
	}
	pl := &plan{srv: srv, fixedIP: d.GetFixedIp(), keyName: d.GetKeyName()}
	flavor := d.GetFlavor()
	if flavor == "" {
		flavor, _ = srv.Flavor["original_name"].(string)
	}
	fl0, err := findFlavor(ctx, dst, flavor)
	if err != nil {
		return nil, err
	}
	var missing []string
	if fl0 == nil {
		missing = append(missing, fmt.Sprintf("flavor %q", flavor))
	} else {
		pl.flavorID = fl0.ID
	}
	miss, err := zone(ctx, dst, d.GetAvailabilityZone())
	if err != nil {
		return nil, err
	}
	missing = append(missing, miss...)
	ifaces, err := sourceNICs(ctx, src.compute, srv.ID)
	if err != nil {
		return nil, err
	}
	if d.GetNoNics() && len(ifaces) > 0 {
		return nil, fmt.Errorf("the source server has %d NICs (%s): a server moves with its NICs: give destination.network_id, port_id or nics instead of no_nics", len(ifaces), describeNICs(ifaces))
	}
	if len(d.GetNics()) == 0 && len(ifaces) > 1 {
		return nil, fmt.Errorf("the source server has %d NICs (%s): give destination.nics, one per NIC in this order", len(ifaces), describeNICs(ifaces))
	}
	if len(d.GetNics()) > 0 && len(d.GetNics()) != len(ifaces) {
		return nil, fmt.Errorf("destination.nics has %d entries, the source server has %d NICs (%s): give one per NIC in this order", len(d.GetNics()), len(ifaces), describeNICs(ifaces))
	}
	for i, n := range d.GetNics() {
		np := nicPlan{portID: n.GetPortId(), networkID: n.GetNetworkId(), fixedIP: n.GetFixedIp()}
		if n.GetKeepMac() {
			np.mac = ifaces[i].MACAddr
		}
		if np.portID != "" {
			ip, miss, err := freePort(ctx, j, dst, np.portID, fmt.Sprintf(" of nics[%d]", i))
			if err != nil {
				return nil, err
			}
			missing = append(missing, miss...)
			if ip != "" {
				np.fixedIP = ip
			}
		} else {
			if _, err := osapi.GetNetwork(ctx, dst.network, np.networkID); err != nil {
				missing = append(missing, fmt.Sprintf("network %s of nics[%d] (%v)", np.networkID, i, err))
			}
			if np.fixedIP == "" && len(ifaces[i].FixedIPs) > 0 {
				np.fixedIP = ifaces[i].FixedIPs[0].IPAddress
			}
		}
		pl.nics = append(pl.nics, np)
	}
	if len(pl.nics) > 0 {
		pl.fixedIP = pl.nics[0].fixedIP
	} else if !d.GetNoNics() {
		miss, err := destinationPort(ctx, j, dst, pl)
		if err != nil {
			return nil, err
		}
		missing = append(missing, miss...)
	}
	if pl.keyName == "" {
		pl.keyName = srv.KeyName
	}
	sgNames := d.GetSecurityGroups()
	if len(sgNames) == 0 {
		for _, sg := range srv.SecurityGroups {
			if n, ok := sg["name"].(string); ok {
				sgNames = append(sgNames, n)
			}
		}
	}
	miss, err = r.keyAndGroups(ctx, dst, pl, sgNames)
	if err != nil {
		return nil, err
	}
	missing = append(missing, miss...)
	if pl.fixedIP == "" && !d.GetNewAddress() && !d.GetNoNics() && d.GetPortId() == "" && len(pl.nics) == 0 && len(ifaces) > 0 && len(ifaces[0].FixedIPs) > 0 {
		pl.fixedIP = ifaces[0].FixedIPs[0].IPAddress // the interfaces read above: no second call
	}
	t.pl = pl
	miss, err = t.planVolumes(ctx, srv)
	if err != nil {
		return nil, err
	}
	missing = append(missing, miss...)
	return pl, r.enough(ctx, j, dst, fl0, missing)
}

// p2vPreflight is the pre-flight of a P2V job's boot: everything comes from its
// destination (there is no source server to take a flavor, key pair or groups
// from); the server is named after its image.
func (t *task) p2vPreflight(ctx context.Context) (*plan, error) {
	r, j, id, dst := t.Runner, t.j, t.id, t.dst
	d := j.GetDestination()
	name := p2vImageName(j, id)
	pl := &plan{srv: &servers.Server{Name: name}, fixedIP: d.GetFixedIp(), keyName: d.GetKeyName()}
	fl0, err := findFlavor(ctx, dst, d.GetFlavor())
	if err != nil {
		return nil, err
	}
	var missing []string
	if fl0 == nil {
		missing = append(missing, fmt.Sprintf("flavor %q", d.GetFlavor()))
	} else {
		pl.flavorID = fl0.ID
		if need := j.GetP2VResult().GetVirtualBytes(); fl0.Disk > 0 && int64(fl0.Disk)<<30 < need {
			return nil, fmt.Errorf("flavor %q has a %d GiB disk, the server's disk is %.1f GiB: give a flavor with a larger disk", fl0.Name, fl0.Disk, float64(need)/(1<<30))
		}
	}
	miss, err := zone(ctx, dst, d.GetAvailabilityZone())
	if err != nil {
		return nil, err
	}
	missing = append(missing, miss...)
	miss, err = destinationPort(ctx, j, dst, pl)
	if err != nil {
		return nil, err
	}
	missing = append(missing, miss...)
	miss, err = r.keyAndGroups(ctx, dst, pl, d.GetSecurityGroups())
	if err != nil {
		return nil, err
	}
	missing = append(missing, miss...)
	return pl, r.enough(ctx, j, dst, fl0, missing)
}

// zone checks a destination availability zone ("" for the cloud's default): the
// project may boot there, and it is available. It names the zones there are.
func zone(ctx context.Context, dst clients, name string) ([]string, error) {
	if name == "" {
		return nil, nil
	}
	list, err := osapi.ListAvailabilityZones(ctx, dst.compute)
	if err != nil {
		return nil, fmt.Errorf("availability zones: %w", err)
	}
	var names []string
	for _, z := range list {
		if z.ZoneName == name {
			if !z.ZoneState.Available {
				return []string{fmt.Sprintf("availability zone %q (not available: its computes are down)", name)}, nil
			}
			return nil, nil
		}
		names = append(names, z.ZoneName)
	}
	return []string{fmt.Sprintf("availability zone %q (the destination has %s)", name, strings.Join(names, ", "))}, nil
}

// findFlavor finds a destination flavor by name (nil when there is none).
func findFlavor(ctx context.Context, dst clients, name string) (*flavors.Flavor, error) {
	list, err := osapi.ListFlavors(ctx, dst.compute)
	if err != nil {
		return nil, err
	}
	var found *flavors.Flavor
	for i, f := range list {
		if f.Name == name {
			found = &list[i]
		}
	}
	return found, nil
}

// freePort checks a given destination port (what names it in messages: of
// "nics[0]"): free, or the job's own server's already. It returns its address.
func freePort(ctx context.Context, j *converterv1.Job, dst clients, pid, of string) (ip string, missing []string, err error) {
	p, err := osapi.GetPort(ctx, dst.network, pid)
	switch {
	case err != nil:
		return "", []string{fmt.Sprintf("port %s%s (%v)", pid, of, err)}, nil
	case p.DeviceID != "" && p.DeviceID != j.GetCreated().GetServerId():
		return "", nil, fmt.Errorf("destination port %s%s is in use by %s %s: give a free port", pid, of, p.DeviceOwner, p.DeviceID)
	case len(p.FixedIPs) > 0:
		return p.FixedIPs[0].IPAddress, nil, nil
	}
	return "", nil, nil
}

// destinationPort checks the one-NIC destination: a free port_id (its address
// becomes the plan's), or network_id.
func destinationPort(ctx context.Context, j *converterv1.Job, dst clients, pl *plan) ([]string, error) {
	d := j.GetDestination()
	if pid := d.GetPortId(); pid != "" {
		ip, missing, err := freePort(ctx, j, dst, pid, "")
		if ip != "" {
			pl.fixedIP = ip
		}
		return missing, err
	}
	if _, err := osapi.GetNetwork(ctx, dst.network, d.GetNetworkId()); err != nil {
		return []string{fmt.Sprintf("network %s (%v)", d.GetNetworkId(), err)}, nil
	}
	return nil, nil
}

// keyAndGroups checks the plan's key pair and finds the security groups by name.
func (r *Runner) keyAndGroups(ctx context.Context, dst clients, pl *plan, sgNames []string) ([]string, error) {
	var missing []string
	if pl.keyName != "" {
		if _, err := osapi.GetKeyPair(ctx, dst.compute, pl.keyName); err != nil {
			missing = append(missing, fmt.Sprintf("key pair %q", pl.keyName))
		}
	}
	for i, name := range sgNames {
		if slices.Contains(sgNames[:i], name) {
			continue // a server with several NICs lists a group once per port
		}
		gs, err := osapi.ListSecurityGroups(ctx, dst.network, groups.ListOpts{Name: name})
		if err != nil {
			return nil, fmt.Errorf("security group %q: %w", name, err)
		}
		if len(gs) == 0 {
			missing = append(missing, fmt.Sprintf("security group %q", name))
			continue
		}
		pl.sgIDs = append(pl.sgIDs, gs[0].ID)
	}
	return missing, nil
}

// enough ends a pre-flight: what the destination lacks, then its quota.
func (r *Runner) enough(ctx context.Context, j *converterv1.Job, dst clients, fl *flavors.Flavor, missing []string) error {
	if len(missing) > 0 {
		return fmt.Errorf("the destination lacks %s", strings.Join(missing, ", "))
	}
	if fl == nil {
		return nil
	}
	short, err := r.quota(ctx, j, dst, fl)
	if err != nil {
		return err
	}
	if len(short) > 0 {
		return fmt.Errorf("the destination project's quota is too small: %s", strings.Join(short, "; "))
	}
	return nil
}

// quota reports what the boot would exceed in the destination project: Nova's
// instances, cores and RAM (its limits API) and Neutron's ports (its quota details,
// when the policy lets the project read them). What the job has already created
// there is not counted again.
func (r *Runner) quota(ctx context.Context, j *converterv1.Job, dst clients, fl *flavors.Flavor) ([]string, error) {
	var short []string
	over := func(what string, used, limit, need int, unit string) {
		if limit >= 0 && used+need > limit {
			short = append(short, fmt.Sprintf("%s: %d%s in use of %d, the server needs %d%s", what, used, unit, limit, need, unit))
		}
	}
	if j.GetCreated().GetServerId() == "" {
		l, err := osapi.ComputeLimits(ctx, dst.compute)
		if err != nil {
			return nil, fmt.Errorf("destination compute limits: %w", err)
		}
		a := l.Absolute
		over("instances", a.TotalInstancesUsed, a.MaxTotalInstances, 1, "")
		over("cores", a.TotalCoresUsed, a.MaxTotalCores, fl.VCPUs, "")
		over("RAM", a.TotalRAMUsed, a.MaxTotalRAMSize, fl.RAM, " MiB")
	}
	need := 0
	switch {
	case len(j.GetDestination().GetNics()) > 0:
		made := j.GetCreated().GetPortIds()
		for i, n := range j.GetDestination().GetNics() {
			if n.GetPortId() == "" && (i >= len(made) || made[i] == "") {
				need++
			}
		}
	case j.GetCreated().GetPortId() == "" && j.GetDestination().GetPortId() == "":
		need = 1
	}
	if need > 0 {
		q, err := osapi.NetworkQuota(ctx, dst.network, dst.project)
		switch {
		case gophercloud.ResponseCodeIs(err, http.StatusForbidden), osapi.NotFound(err):
			r.Log.Info("the destination's port quota is not readable by this project; not checked", "cloud", j.GetDestination().GetCloud())
		case err != nil:
			return nil, fmt.Errorf("destination network quota: %w", err)
		default:
			over("ports", q.Port.Used+q.Port.Reserved, q.Port.Limit, need, "")
		}
	}
	return short, nil
}
