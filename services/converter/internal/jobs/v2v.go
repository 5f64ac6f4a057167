package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/attachinterfaces"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/limits"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/quotas"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/cloud"
	"github.com/hikkoshi/hikkoshi/platform/mtls"
	"github.com/hikkoshi/hikkoshi/platform/poll"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/cloudinit"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
)

// ErrNotDecommissionable refuses DecommissionSource for a P2V job.
var ErrNotDecommissionable = errors.New("jobs: nothing to decommission")

// ErrCancelled ends a job whose cancel was requested.
var ErrCancelled = errors.New("jobs: cancelled on request")

// clients are one cloud's API clients.
type clients struct {
	compute, network, image *gophercloud.ServiceClient
	// project is the ID of the project the entry is scoped to.
	project string
}

// Runner runs V2V jobs step by step against the clouds of a clouds.yaml.
type Runner struct {
	// CloudsYAML is the clouds.yaml path ("" for the usual places).
	CloudsYAML string
	// ChunkSize is the image copy's chunk size (0: imagecopy.DefaultChunkSize).
	ChunkSize int64
	// Bandwidth caps one copy's read rate in bytes per second (0: no cap).
	Bandwidth int64
	// Poll is the pause between status reads while waiting (0: 1 s).
	Poll time.Duration
	// P2VWork is where P2V jobs build their disks (DefaultP2VWork when empty).
	P2VWork string
	// CloudInitDebs is a directory of .deb files P2V installs cloud-init from (an
	// offline worker); empty: from the server's own package sources.
	CloudInitDebs string
	// AgentTokenFile holds the bearer token of the P2V agents (read per job; never
	// logged or stored).
	AgentTokenFile string
	// AgentTLS are this worker's certificate, key and CA bundle for https P2V
	// agents (mutual TLS; the converter's own --tls-* files).
	AgentTLS mtls.Files
	// Probe dials the health probes (nil: straight).
	Probe *ProbeDialer
	// Policy is what a job may name (checked again before a job starts).
	Policy Policy
	Log    *slog.Logger
}

// openRetry is how long opening a cloud is retried while its APIs restart.
const openRetry = 2 * time.Minute

// open opens a cloud's clients, retrying while an API is restarting (its endpoint
// refuses connections or answers 502/503/504): an API process's restart must not
// fail a job that has not started yet.
func (r *Runner) open(ctx context.Context, name string) (clients, error) {
	deadline := time.Now().Add(openRetry)
	for {
		cl, err := r.openOnce(ctx, name)
		if err == nil || !passing(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return cl, err
		}
		if r.Log != nil {
			r.Log.Warn("opening a cloud while an API restarts; retrying", "cloud", name, "err", err)
		}
		if poll.Sleep(ctx, 2*time.Second) != nil {
			return cl, err
		}
	}
}

// passing reports whether err is an API that is restarting rather than refusing.
func passing(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) {
		return true
	}
	for _, code := range []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout} {
		if gophercloud.ResponseCodeIs(err, code) {
			return true
		}
	}
	msg := err.Error()
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "connection reset")
}

func (r *Runner) openOnce(ctx context.Context, name string) (clients, error) {
	c, err := cloud.Open(ctx, name, cloud.WithCloudsYAML(r.CloudsYAML), cloud.WithUserAgent("hikkoshi-converter"))
	if err != nil {
		return clients{}, err
	}
	var cl clients
	if cl.project, err = c.ProjectID(); err != nil {
		return cl, err
	}
	if cl.compute, err = c.Compute(); err != nil {
		return cl, err
	}
	cl.compute.Microversion = "2.47" // the server's flavor by name
	if cl.network, err = c.Network(); err != nil {
		return cl, err
	}
	cl.image, err = c.Image()
	return cl, err
}

func notFound(err error) bool { return gophercloud.ResponseCodeIs(err, http.StatusNotFound) }

// wait polls get until done says stop.
func (r *Runner) wait(ctx context.Context, what string, get func() (string, error), want string, bad ...string) error {
	pause := r.Poll
	if pause == 0 {
		pause = time.Second
	}
	last := ""
	err := poll.Until(ctx, poll.Constant(pause), func(int) (bool, error) {
		st, err := get()
		if err != nil {
			return false, fmt.Errorf("%s: %w", what, err)
		}
		last = st
		if slices.Contains(bad, st) {
			return false, fmt.Errorf("%s: %s", what, st)
		}
		return st == want, nil
	})
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%s: still %s: %w", what, last, err)
	}
	return err
}

// task is one job as this worker runs it: what every step needs, so that a step
// takes its context and nothing else.
type task struct {
	*Runner
	j        *converterv1.Job
	id       string
	src, dst clients
	pl       *plan
	save     func(context.Context, *converterv1.Job) error
}

// plan is what the pre-flight found, for the later steps.
type plan struct {
	srv      *servers.Server
	flavorID string
	fixedIP  string
	keyName  string
	sgIDs    []string
	nics     []nicPlan // destination.nics, in the guest's order
}

// nicPlan is one NIC's destination: a given port, or a new port on a network with an
// address (and the source NIC's MAC, when kept).
type nicPlan struct {
	portID, networkID, fixedIP, mac string
}

// Run runs j from the step after its last recorded one. save records the job
// (fenced by the claim); cancelled reports a cancel request.
func (r *Runner) Run(ctx context.Context, j *converterv1.Job, save func(context.Context, *converterv1.Job) error) error {
	if err := r.Policy.Err(j); err != nil {
		return fmt.Errorf("refused by this worker's policy: %s", status.Convert(err).Message())
	}
	if IsP2V(j) {
		id, _ := ID(j.GetName())
		if err := r.runP2V(ctx, j, id, save); err != nil {
			return err
		}
		if j.GetDestination() != nil && !j.GetP2VSource().GetInspectOnly() {
			if err := r.bootP2V(ctx, j, id, save); err != nil {
				return err
			}
		}
		j.Step = converterv1.JobStep_JOB_STEP_DONE
		return nil
	}
	src, err := r.open(ctx, j.GetSource().GetCloud())
	if err != nil {
		return fmt.Errorf("source cloud %q: %w", j.GetSource().GetCloud(), err)
	}
	dst, err := r.open(ctx, j.GetDestination().GetCloud())
	if err != nil {
		return fmt.Errorf("destination cloud %q: %w", j.GetDestination().GetCloud(), err)
	}
	if j.Created == nil {
		j.Created = &converterv1.Created{}
	}
	id, _ := ID(j.GetName())
	t := &task{Runner: r, j: j, id: id, src: src, dst: dst, save: save}
	for step := converterv1.JobStep_JOB_STEP_PREFLIGHT; step < converterv1.JobStep_JOB_STEP_DONE; step++ {
		if step < j.GetStep() && step != converterv1.JobStep_JOB_STEP_PREFLIGHT {
			continue // done before this worker took the job over
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		j.Step = step
		if err := save(ctx, j); err != nil {
			return err
		}
		switch step {
		case converterv1.JobStep_JOB_STEP_PREFLIGHT:
			t.pl, err = t.preflight(ctx)
		case converterv1.JobStep_JOB_STEP_STOP:
			err = t.stop(ctx)
		case converterv1.JobStep_JOB_STEP_SNAPSHOT:
			err = t.snapshot(ctx)
		case converterv1.JobStep_JOB_STEP_COPY:
			err = t.copyImage(ctx)
		case converterv1.JobStep_JOB_STEP_BOOT:
			err = t.boot(ctx)
		case converterv1.JobStep_JOB_STEP_HEALTH:
			err = t.health(ctx)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", strings.ToLower(strings.TrimPrefix(step.String(), "JOB_STEP_")), err)
		}
	}
	j.Step = converterv1.JobStep_JOB_STEP_DONE
	return nil
}

func (t *task) preflight(ctx context.Context) (*plan, error) {
	r, j, src, dst := t.Runner, t.j, t.src, t.dst
	d := j.GetDestination()
	srv, err := servers.Get(ctx, src.compute, j.GetSource().GetServerId()).Extract()
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
	ifaces, err := sourceNICs(ctx, src.compute, srv.ID)
	if err != nil {
		return nil, err
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
			if _, err := networks.Get(ctx, dst.network, np.networkID).Extract(); err != nil {
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
	} else {
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
	miss, err := r.keyAndGroups(ctx, dst, pl, sgNames)
	if err != nil {
		return nil, err
	}
	missing = append(missing, miss...)
	if pl.fixedIP == "" && !d.GetNewAddress() && d.GetPortId() == "" && len(pl.nics) == 0 && len(ifaces) > 0 && len(ifaces[0].FixedIPs) > 0 {
		pl.fixedIP = ifaces[0].FixedIPs[0].IPAddress // the interfaces read above: no second call
	}
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
	miss, err := destinationPort(ctx, j, dst, pl)
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

// findFlavor finds a destination flavor by name (nil when there is none).
func findFlavor(ctx context.Context, dst clients, name string) (*flavors.Flavor, error) {
	fl, err := flavors.ListDetail(dst.compute, flavors.ListOpts{AccessType: flavors.AllAccess}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	list, err := flavors.ExtractFlavors(fl)
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
	p, err := ports.Get(ctx, dst.network, pid).Extract()
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
	if _, err := networks.Get(ctx, dst.network, d.GetNetworkId()).Extract(); err != nil {
		return []string{fmt.Sprintf("network %s (%v)", d.GetNetworkId(), err)}, nil
	}
	return nil, nil
}

// keyAndGroups checks the plan's key pair and finds the security groups by name.
func (r *Runner) keyAndGroups(ctx context.Context, dst clients, pl *plan, sgNames []string) ([]string, error) {
	var missing []string
	if pl.keyName != "" {
		if _, err := keypairs.Get(ctx, dst.compute, pl.keyName, nil).Extract(); err != nil {
			missing = append(missing, fmt.Sprintf("key pair %q", pl.keyName))
		}
	}
	for i, name := range sgNames {
		if slices.Contains(sgNames[:i], name) {
			continue // a server with several NICs lists a group once per port
		}
		pages, err := groups.List(dst.network, groups.ListOpts{Name: name}).AllPages(ctx)
		if err != nil {
			return nil, err
		}
		gs, err := groups.ExtractGroups(pages)
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
		l, err := limits.Get(ctx, dst.compute, limits.GetOpts{}).Extract()
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
		q, err := quotas.GetDetail(ctx, dst.network, dst.project).Extract()
		switch {
		case gophercloud.ResponseCodeIs(err, http.StatusForbidden), notFound(err):
			r.Log.Info("the destination's port quota is not readable by this project; not checked", "cloud", j.GetDestination().GetCloud())
		case err != nil:
			return nil, fmt.Errorf("destination network quota: %w", err)
		default:
			over("ports", q.Port.Used+q.Port.Reserved, q.Port.Limit, need, "")
		}
	}
	return short, nil
}

func (t *task) stop(ctx context.Context) error {
	r, j, src, pl, save := t.Runner, t.j, t.src, t.pl, t.save
	if j.GetSource().GetAlreadyStopped() || j.GetSource().GetLive() || pl.srv.Status == "SHUTOFF" && !j.GetCreated().GetStoppedSource() {
		return nil
	}
	if pl.srv.Status != "SHUTOFF" {
		// Recorded before the call: a stop whose answer is lost (a cancel, a crash)
		// still has the clean-up start the server again.
		j.Created.StoppedSource = true
		if err := save(ctx, j); err != nil {
			return err
		}
		err := servers.Stop(ctx, src.compute, pl.srv.ID).ExtractErr()
		if err != nil && !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
			return err
		}
	}
	return r.wait(ctx, "stop source server "+pl.srv.ID, func() (string, error) {
		s, err := servers.Get(ctx, src.compute, pl.srv.ID).Extract()
		if err != nil {
			return "", err
		}
		return s.Status, nil
	}, "SHUTOFF", "ERROR")
}

func imageStatus(ctx context.Context, ic *gophercloud.ServiceClient, id string) func() (string, error) {
	return func() (string, error) {
		img, err := images.Get(ctx, ic, id).Extract()
		if err != nil {
			return "", err
		}
		return string(img.Status), nil
	}
}

func (t *task) snapshot(ctx context.Context) error {
	r, j, id, src, save := t.Runner, t.j, t.id, t.src, t.save
	if j.GetCreated().GetSnapshotImageId() == "" {
		imgID, err := servers.CreateImage(ctx, src.compute, j.GetSource().GetServerId(), servers.CreateImageOpts{
			Name: snapshotName(id), Metadata: map[string]string{"hikkoshi_job": id},
		}).ExtractImageID()
		if err != nil {
			return err
		}
		j.Created.SnapshotImageId = imgID
		if err := save(ctx, j); err != nil {
			return err
		}
	}
	return r.wait(ctx, "snapshot image "+j.GetCreated().GetSnapshotImageId(), imageStatus(ctx, src.image, j.GetCreated().GetSnapshotImageId()),
		"active", "killed", "deleted")
}

func (r *Runner) copier(src, dst clients, save func(context.Context, *converterv1.CopyProgress) error) *imagecopy.Copier {
	return &imagecopy.Copier{
		Src: imagecopy.Throttle(imagecopy.NewGlance(src.image), r.Bandwidth), Dst: imagecopy.NewGlance(dst.image),
		ChunkSize: r.ChunkSize, Retries: 3, Save: save,
	}
}

func (t *task) copyImage(ctx context.Context) error {
	r, j, id, src, dst, pl, save := t.Runner, t.j, t.id, t.src, t.dst, t.pl, t.save
	if j.GetCreated().GetImageId() != "" {
		return nil
	}
	if j.Progress == nil {
		j.Progress = &converterv1.CopyProgress{}
	}
	c := r.copier(src, dst, func(ctx context.Context, p *converterv1.CopyProgress) error {
		j.Progress = p
		return save(ctx, j)
	})
	imgID, err := c.Copy(ctx, j.GetCreated().GetSnapshotImageId(), pl.srv.Name+"-"+id, j.Progress)
	if err != nil {
		return err
	}
	j.Created.ImageId = imgID
	return save(ctx, j)
}

func (t *task) boot(ctx context.Context) error {
	r, j, id, dst, pl, save := t.Runner, t.j, t.id, t.dst, t.pl, t.save
	var nets []servers.Network
	if len(pl.nics) > 0 {
		var err error
		if nets, err = t.nicPorts(ctx); err != nil {
			return err
		}
	}
	portID := j.GetDestination().GetPortId() // given: not the job's to create or delete
	if len(nets) == 0 && portID == "" && j.GetCreated().GetPortId() == "" {
		opts := ports.CreateOpts{Name: portName(id), NetworkID: j.GetDestination().GetNetworkId()}
		if pl.fixedIP != "" {
			opts.FixedIPs = []ports.IP{{IPAddress: pl.fixedIP}}
		}
		if len(pl.sgIDs) > 0 {
			opts.SecurityGroups = &pl.sgIDs
		}
		p, err := ports.Create(ctx, dst.network, opts).Extract()
		if err != nil {
			return fmt.Errorf("port with %s: %w", pl.fixedIP, err)
		}
		j.Created.PortId = p.ID
		if len(p.FixedIPs) > 0 {
			j.Created.FixedIps = []string{p.FixedIPs[0].IPAddress}
		}
		if err := save(ctx, j); err != nil {
			return err
		}
	}
	if portID == "" {
		portID = j.GetCreated().GetPortId()
	}
	if len(j.GetCreated().GetFixedIps()) == 0 {
		if err := t.recordAddresses(ctx, portID); err != nil {
			return err
		}
	}
	if pl.fixedIP == "" && len(j.GetCreated().GetFixedIps()) > 0 {
		pl.fixedIP = j.GetCreated().GetFixedIps()[0] // Neutron chose it (new_address)
	}
	if len(nets) == 0 {
		nets = []servers.Network{{Port: portID}}
	}
	if j.GetCreated().GetServerId() == "" {
		// The server keeps its metadata (its role, what its guest is configured to
		// do); hikkoshi_job marks it as this job's.
		md := map[string]string{}
		for k, v := range pl.srv.Metadata {
			md[k] = v
		}
		md["hikkoshi_job"] = id
		s, err := servers.Create(ctx, dst.compute, keypairs.CreateOptsExt{
			CreateOptsBuilder: servers.CreateOpts{
				Name: pl.srv.Name, FlavorRef: pl.flavorID, ImageRef: j.GetCreated().GetImageId(),
				Networks: nets, Metadata: md,
				// The guest keeps its identity on its first boot here: without
				// this, the new instance ID makes its cloud-init regenerate the
				// host keys, create the default user and rewrite root's keys.
				UserData: []byte(cloudinit.UserData(cloudinit.Options{KeyPairUser: j.GetDestination().GetKeyPairUser()})),
			},
			KeyName: pl.keyName,
		}, nil).Extract()
		if err != nil {
			return err
		}
		j.Created.ServerId = s.ID
		if err := save(ctx, j); err != nil {
			return err
		}
	}
	status := func() (string, error) {
		s, err := servers.Get(ctx, dst.compute, j.GetCreated().GetServerId()).Extract()
		if err != nil {
			return "", err
		}
		return s.Status, nil
	}
	if j.GetDestination().GetStopped() {
		// A repeat after a takeover may find it stopped as asked already: done.
		if st, err := status(); err == nil && st == "SHUTOFF" {
			return nil
		}
	}
	if err := r.wait(ctx, "destination server "+j.GetCreated().GetServerId(), status, "ACTIVE", "ERROR"); err != nil {
		return err
	}
	if !j.GetDestination().GetStopped() {
		return nil
	}
	// A server that was stopped in the old cloud stays stopped in the new one.
	if err := servers.Stop(ctx, dst.compute, j.GetCreated().GetServerId()).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
		return fmt.Errorf("stop the new server as the old one was: %w", err)
	}
	return r.wait(ctx, "stop destination server "+j.GetCreated().GetServerId(), status, "SHUTOFF", "ERROR")
}

// recordAddresses records the destination server's addresses in the job, first NIC
// first: from the plan, or read from its port when Neutron chose the address.
func (t *task) recordAddresses(ctx context.Context, portID string) error {
	j, dst, pl, save := t.j, t.dst, t.pl, t.save
	var ips []string
	switch {
	case len(pl.nics) > 0:
		for _, n := range pl.nics {
			if n.fixedIP != "" {
				ips = append(ips, n.fixedIP)
			}
		}
	case portID != "":
		p, err := ports.Get(ctx, dst.network, portID).Extract()
		if err != nil {
			return fmt.Errorf("destination port %s: %w", portID, err)
		}
		for _, ip := range p.FixedIPs {
			ips = append(ips, ip.IPAddress)
		}
	case pl.fixedIP != "":
		ips = []string{pl.fixedIP}
	}
	if len(ips) == 0 {
		return nil
	}
	j.Created.FixedIps = ips
	return save(ctx, j)
}

// health probes the new server: "tcp:PORT" connects, "http:PORT/PATH" expects a 2xx
// or 3xx. Until it answers or the context ends.
func (t *task) health(ctx context.Context) error {
	r, j, pl := t.Runner, t.j, t.pl
	hc := j.GetDestination().GetHealthCheck()
	if hc == "" || j.GetDestination().GetStopped() {
		return nil
	}
	kind, rest, _ := strings.Cut(hc, ":")
	host := j.GetDestination().GetHealthCheckHost()
	if host == "" {
		host = pl.fixedIP
	}
	probe := func() (string, error) {
		switch kind {
		case "tcp":
			c, err := r.Probe.DialContext(ctx, "tcp", net.JoinHostPort(host, rest))
			if err != nil {
				return "unreachable", nil
			}
			_ = c.Close()
			return "ok", nil
		case "http":
			port, path, _ := strings.Cut(rest, "/")
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/"+path, nil)
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: r.Probe.DialContext, DisableKeepAlives: true}}
			resp, err := hc.Do(req)
			if err != nil {
				return "unreachable", nil
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode < 400 {
				return "ok", nil
			}
			return resp.Status, nil
		}
		return "", fmt.Errorf("health_check %q: use tcp:PORT or http:PORT/PATH", hc)
	}
	return r.wait(ctx, "health check "+hc+" of "+host, probe, "ok")
}

// CleanupTimeout bounds a clean-up (it runs after the job's own context ended).
const CleanupTimeout = 5 * time.Minute

func snapshotName(jobID string) string { return "hikkoshi-" + jobID + "-snapshot" }
func portName(jobID string) string     { return "hikkoshi-" + jobID }
func nicPortName(jobID string, i int) string {
	return fmt.Sprintf("hikkoshi-%s-nic%d", jobID, i)
}

// nicPorts makes the ports of destination.nics the job has not made yet (each
// recorded before the next), and returns the server's networks in the guest's order.
func (t *task) nicPorts(ctx context.Context) ([]servers.Network, error) {
	j, id, dst, pl, save := t.j, t.id, t.dst, t.pl, t.save
	for len(j.Created.PortIds) < len(pl.nics) {
		j.Created.PortIds = append(j.Created.PortIds, "")
	}
	var nets []servers.Network
	for i, n := range pl.nics {
		if n.portID != "" { // given: not the job's to create or delete
			nets = append(nets, servers.Network{Port: n.portID})
			continue
		}
		if j.Created.PortIds[i] == "" {
			opts := ports.CreateOpts{Name: nicPortName(id, i), NetworkID: n.networkID, MACAddress: n.mac}
			if n.fixedIP != "" {
				opts.FixedIPs = []ports.IP{{IPAddress: n.fixedIP}}
			}
			if len(pl.sgIDs) > 0 {
				opts.SecurityGroups = &pl.sgIDs
			}
			p, err := ports.Create(ctx, dst.network, opts).Extract()
			if err != nil {
				return nil, fmt.Errorf("port of nics[%d] with %s: %w", i, n.fixedIP, err)
			}
			j.Created.PortIds[i] = p.ID
			if err := save(ctx, j); err != nil {
				return nil, err
			}
		}
		nets = append(nets, servers.Network{Port: j.Created.PortIds[i]})
	}
	return nets, nil
}

// sourceNICs lists the server's interfaces in the order the guest sees its NICs.
// Nova's interface list comes in Neutron's order; the guest's is the order of the
// server's network info, which its "addresses" keep (a JSON object, read here in
// order, with each address's MAC).
func sourceNICs(ctx context.Context, cc *gophercloud.ServiceClient, serverID string) ([]attachinterfaces.Interface, error) {
	pages, err := attachinterfaces.List(cc, serverID).AllPages(ctx)
	if err != nil {
		return nil, fmt.Errorf("source server %s interfaces: %w", serverID, err)
	}
	ifaces, err := attachinterfaces.ExtractInterfaces(pages)
	if err != nil || len(ifaces) < 2 {
		return ifaces, err
	}
	macs, err := GuestMACOrder(ctx, cc, serverID)
	if err != nil {
		return nil, err
	}
	rank := func(mac string) int {
		if i := slices.Index(macs, mac); i >= 0 {
			return i
		}
		return len(macs)
	}
	slices.SortStableFunc(ifaces, func(a, b attachinterfaces.Interface) int { return rank(a.MACAddr) - rank(b.MACAddr) })
	return ifaces, nil
}

// GuestMACOrder returns the MAC addresses of a server's NICs in the order its guest
// sees them: the order of its "addresses" in Nova's answer.
func GuestMACOrder(ctx context.Context, cc *gophercloud.ServiceClient, serverID string) ([]string, error) {
	var raw struct {
		Server struct {
			Addresses json.RawMessage `json:"addresses"`
		} `json:"server"`
	}
	resp, err := cc.Get(ctx, cc.ServiceURL("servers", serverID), &raw, nil)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", serverID, err)
	}
	_ = resp.Body.Close()
	dec := json.NewDecoder(bytes.NewReader(raw.Server.Addresses))
	if _, err := dec.Token(); err != nil { // {
		return nil, fmt.Errorf("server %s addresses: %w", serverID, err)
	}
	var macs []string
	for dec.More() {
		if _, err := dec.Token(); err != nil { // the network's name
			return nil, err
		}
		var addrs []struct {
			MAC string `json:"OS-EXT-IPS-MAC:mac_addr"`
		}
		if err := dec.Decode(&addrs); err != nil {
			return nil, fmt.Errorf("server %s addresses: %w", serverID, err)
		}
		for _, a := range addrs {
			if a.MAC != "" && !slices.Contains(macs, a.MAC) {
				macs = append(macs, a.MAC)
			}
		}
	}
	return macs, nil
}

func describeNICs(ifaces []attachinterfaces.Interface) string {
	var out []string
	for i, f := range ifaces {
		ips := make([]string, 0, len(f.FixedIPs))
		for _, ip := range f.FixedIPs {
			ips = append(ips, ip.IPAddress)
		}
		out = append(out, fmt.Sprintf("%d: network %s %s MAC %s", i, f.NetID, strings.Join(ips, ","), f.MACAddr))
	}
	return strings.Join(out, "; ")
}

// Cleanup deletes what the job made, in both clouds, and starts the source again if
// the job stopped it. Besides what the job recorded it looks for what a call cut
// short may have made unrecorded — by the names and metadata the job gives its
// resources — and it waits for a snapshot still being taken to end before it
// deletes the snapshot and starts the server. It is safe to run again.
func (r *Runner) Cleanup(ctx context.Context, j *converterv1.Job) error {
	if IsP2V(j) {
		return r.cleanupP2V(ctx, j)
	}
	c := j.GetCreated()
	if c == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, CleanupTimeout)
	defer cancel()
	id, _ := ID(j.GetName())
	var errs []error
	dst, err := r.open(ctx, j.GetDestination().GetCloud())
	if err != nil {
		return err
	}
	src, err := r.open(ctx, j.GetSource().GetCloud())
	if err != nil {
		return err
	}
	// Destination: the server(s), then the port(s), then the images. The job names
	// the destination server after the source; only when the source is gone is the
	// whole project listed.
	name := ""
	if s, err := servers.Get(ctx, src.compute, j.GetSource().GetServerId()).Extract(); err == nil {
		name = s.Name
	}
	errs = append(errs, r.cleanupBoot(ctx, j, id, dst, name))
	dg := imagecopy.NewGlance(dst.image)
	if c.GetImageId() != "" {
		errs = append(errs, dg.Delete(ctx, c.GetImageId()))
	}
	if p := j.GetProgress(); p != nil {
		errs = append(errs, (&imagecopy.Copier{Dst: dg}).Discard(ctx, p))
	}
	// Source: let a snapshot being taken end, delete it, start the server again.
	if err := r.wait(ctx, "the source server's task to end", func() (string, error) {
		s, err := servers.Get(ctx, src.compute, j.GetSource().GetServerId()).Extract()
		if notFound(err) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		return s.TaskState, nil
	}, ""); err != nil {
		errs = append(errs, err)
	}
	snaps := map[string]bool{}
	if c.GetSnapshotImageId() != "" {
		snaps[c.GetSnapshotImageId()] = true
	}
	sg := imagecopy.NewGlance(src.image)
	if list, err := listAll(ctx, images.List(src.image, images.ListOpts{Name: snapshotName(id)}), images.ExtractImages); err == nil {
		for _, img := range list {
			snaps[img.ID] = true
		}
	} else {
		errs = append(errs, fmt.Errorf("list source snapshots: %w", err))
	}
	for sid := range snaps {
		errs = append(errs, sg.Delete(ctx, sid))
	}
	if c.GetStoppedSource() {
		errs = append(errs, r.startAgain(ctx, src.compute, j.GetSource().GetServerId()))
	}
	return errors.Join(errs...)
}

// cleanupBoot deletes what a job's boot made in its destination: its server(s) —
// the one recorded, and any named name ("" for any name) that carries the job's ID
// in its metadata (made by a call cut short) — then the port(s) it made. A port it
// was given stays.
func (r *Runner) cleanupBoot(ctx context.Context, j *converterv1.Job, id string, dst clients, name string) error {
	c := j.GetCreated()
	var errs []error
	srvIDs := map[string]bool{}
	if c.GetServerId() != "" {
		srvIDs[c.GetServerId()] = true
	}
	// Nova filters by name (a regex).
	listOpts := servers.ListOpts{}
	if name != "" {
		listOpts.Name = "^" + regexp.QuoteMeta(name) + "$"
	}
	if list, err := listAll(ctx, servers.List(dst.compute, listOpts), servers.ExtractServers); err == nil {
		for _, s := range list {
			if s.Metadata["hikkoshi_job"] == id {
				srvIDs[s.ID] = true
			}
		}
	} else {
		errs = append(errs, fmt.Errorf("list destination servers: %w", err))
	}
	for sid := range srvIDs {
		errs = append(errs, r.deleteServer(ctx, dst.compute, sid))
	}
	portIDs := map[string]bool{}
	if c.GetPortId() != "" {
		portIDs[c.GetPortId()] = true
	}
	for _, pid := range c.GetPortIds() {
		if pid != "" {
			portIDs[pid] = true
		}
	}
	for i, n := range j.GetDestination().GetNics() {
		if n.GetPortId() != "" {
			continue
		}
		// A port whose create answer was lost: found by its name.
		if list, err := listAll(ctx, ports.List(dst.network, ports.ListOpts{Name: nicPortName(id, i), NetworkID: n.GetNetworkId()}), ports.ExtractPorts); err == nil {
			for _, p := range list {
				portIDs[p.ID] = true
			}
		} else {
			errs = append(errs, fmt.Errorf("list destination ports: %w", err))
		}
	}
	if list, err := listAll(ctx, ports.List(dst.network, ports.ListOpts{Name: portName(id), NetworkID: j.GetDestination().GetNetworkId()}), ports.ExtractPorts); err == nil {
		for _, p := range list {
			portIDs[p.ID] = true
		}
	} else {
		errs = append(errs, fmt.Errorf("list destination ports: %w", err))
	}
	for pid := range portIDs {
		if err := ports.Delete(ctx, dst.network, pid).ExtractErr(); err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("delete port %s: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

// startAgain starts a server the job stopped and waits until it is ACTIVE. Nova
// refuses a start (409) while the server is still stopping or has a task; that is
// retried until the context ends.
func (r *Runner) startAgain(ctx context.Context, cc *gophercloud.ServiceClient, id string) error {
	err := r.wait(ctx, "start the source server "+id+" again", func() (string, error) {
		s, err := servers.Get(ctx, cc, id).Extract()
		switch {
		case notFound(err):
			return "ACTIVE", nil // nothing to start: an operator deleted it
		case err != nil:
			return "", err
		case s.Status == "SHUTOFF" && s.TaskState == "":
			if err := servers.Start(ctx, cc, id).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
				return "", err
			}
		}
		return s.Status, nil
	}, "ACTIVE", "ERROR")
	if err != nil {
		return fmt.Errorf("start the source server again: %w", err)
	}
	return nil
}

// deleteServer deletes a server and waits until Nova no longer has it; a server
// already gone is success.
func (r *Runner) deleteServer(ctx context.Context, cc *gophercloud.ServiceClient, id string) error {
	if err := servers.Delete(ctx, cc, id).ExtractErr(); err != nil {
		if notFound(err) {
			return nil
		}
		return fmt.Errorf("delete server %s: %w", id, err)
	}
	return r.wait(ctx, "delete server "+id, func() (string, error) {
		_, err := servers.Get(ctx, cc, id).Extract()
		if notFound(err) {
			return "gone", nil
		}
		return "present", err
	}, "gone")
}

// Decommission deletes a succeeded job's source server and its snapshot image in
// the source Glance. Both are safe to repeat (already gone is success).
func (r *Runner) Decommission(ctx context.Context, j *converterv1.Job) (*converterv1.Decommission, error) {
	if IsP2V(j) {
		return nil, fmt.Errorf("%w: a physical server is switched off by its operator, not through the cloud", ErrNotDecommissionable)
	}
	src, err := r.open(ctx, j.GetSource().GetCloud())
	if err != nil {
		return nil, fmt.Errorf("source cloud %q: %w", j.GetSource().GetCloud(), err)
	}
	if err := r.deleteServer(ctx, src.compute, j.GetSource().GetServerId()); err != nil {
		return nil, err
	}
	snap := j.GetCreated().GetSnapshotImageId()
	if snap != "" {
		if err := imagecopy.NewGlance(src.image).Delete(ctx, snap); err != nil {
			return nil, fmt.Errorf("delete snapshot image %s: %w", snap, err)
		}
	}
	return &converterv1.Decommission{Time: timestamppb.Now(), SourceServerId: j.GetSource().GetServerId(), SnapshotImageId: snap}, nil
}

// listAll reads every page of a list and extracts it; an answer that cannot be
// read is an error, never an empty list (a clean-up would take it for "nothing
// left to delete").
func listAll[T any](ctx context.Context, pager pagination.Pager, extract func(pagination.Page) ([]T, error)) ([]T, error) {
	pages, err := pager.AllPages(ctx)
	if err != nil {
		return nil, err
	}
	return extract(pages)
}
