package jobs

// The V2V steps after the pre-flight: stop, snapshot, copy, boot (with the
// destination's ports, one per source NIC, and the moved volumes: volumes.go), health.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/attachinterfaces"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"google.golang.org/protobuf/types/known/timestamppb"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/poll"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/cloudinit"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/osapi"
)

func (t *task) stop(ctx context.Context) error {
	r, j, src, pl, save := t.Runner, t.j, t.src, t.pl, t.save
	if j.GetSource().GetAlreadyStopped() || j.GetSource().GetLive() || j.GetCutover().GetSourceStopped() ||
		pl.srv.Status == "SHUTOFF" && !j.GetCreated().GetStoppedSource() {
		return nil
	}
	if pl.srv.Status != "SHUTOFF" {
		// Recorded before the call: a stop whose answer is lost (a cancel, a crash)
		// still has the clean-up start the server again.
		j.Created.StoppedSource = true
		j.StopTime = timestamppb.Now() // the downtime starts
		j.Downtime = nil
		if err := save(ctx, j); err != nil {
			return err
		}
		err := osapi.StopServer(ctx, src.compute, pl.srv.ID)
		if err != nil && !osapi.Conflict(err) {
			return err
		}
	}
	return r.wait(ctx, "stop source server "+pl.srv.ID, func() (string, error) {
		s, err := osapi.GetServer(ctx, src.compute, pl.srv.ID)
		if err != nil {
			return "", err
		}
		return s.Status, nil
	}, "SHUTOFF", "ERROR")
}

func imageStatus(ctx context.Context, ic *gophercloud.ServiceClient, id string) func() (string, error) {
	return func() (string, error) {
		img, err := osapi.GetImage(ctx, ic, id)
		if err != nil {
			return "", err
		}
		return string(img.Status), nil
	}
}

func (t *task) snapshot(ctx context.Context) error {
	r, j, id, src, save := t.Runner, t.j, t.id, t.src, t.save
	if j.GetCreated().GetSnapshotImageId() == "" {
		imgID, err := osapi.Snapshot(ctx, src.compute, j.GetSource().GetServerId(), servers.CreateImageOpts{
			Name: snapshotName(id), Metadata: map[string]string{"hikkoshi_job": id},
		})
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
		ChunkSize: r.ChunkSize, Mode: r.CopyMode, Retries: 3, Save: save,
	}
}

// warm is a warm job's copier: its rounds read the source and send to the
// destination; it assembles in the destination (this worker: see imagecopy's Warm
// on where the parts run).
func (r *Runner) warm(src, dst clients, save func(context.Context, *converterv1.WarmProgress) error) *imagecopy.Warm {
	return &imagecopy.Warm{Src: imagecopy.NewGlance(src.image), Dst: imagecopy.Link(imagecopy.NewGlance(dst.image), r.Bandwidth),
		Assembler: imagecopy.NewGlance(dst.image), Retries: 3, Save: save}
}

// precopy runs a warm job's pre-copy rounds while the server runs: each a live
// snapshot (named like the cut-over's, so a clean-up finds it unrecorded), a round
// that sends what the destination does not hold yet, and the snapshot deleted.
func (t *task) precopy(ctx context.Context) error {
	r, j, id, src, dst, pl, save := t.Runner, t.j, t.id, t.src, t.dst, t.pl, t.save
	if !j.GetSource().GetWarm() {
		return nil
	}
	if j.Warm == nil {
		j.Warm = &converterv1.WarmProgress{ImageName: pl.srv.Name + "-" + id}
	}
	w := r.warm(src, dst, func(ctx context.Context, p *converterv1.WarmProgress) error {
		j.Warm = p
		return save(ctx, j)
	})
	sg := imagecopy.NewGlance(src.image)
	done := func() error {
		// The round is recorded: its snapshot goes.
		if err := sg.Delete(ctx, j.GetCreated().GetPrecopySnapshotImageId()); err != nil {
			return err
		}
		j.Created.PrecopySnapshotImageId = ""
		return save(ctx, j)
	}
	if rs := j.GetWarm().GetRounds(); len(rs) > 0 && j.GetCreated().GetPrecopySnapshotImageId() == rs[len(rs)-1].GetSnapshotImageId() {
		if err := done(); err != nil { // a worker that died between the two
			return err
		}
	}
	round := func() error {
		if j.GetCreated().GetPrecopySnapshotImageId() == "" {
			snap, err := osapi.Snapshot(ctx, src.compute, j.GetSource().GetServerId(), servers.CreateImageOpts{
				Name: snapshotName(id), Metadata: map[string]string{"hikkoshi_job": id, "hikkoshi_precopy": "true"},
			})
			if err != nil {
				return err
			}
			j.Created.PrecopySnapshotImageId = snap
			if err := save(ctx, j); err != nil {
				return err
			}
		}
		snap := j.GetCreated().GetPrecopySnapshotImageId()
		if err := r.wait(ctx, "pre-copy snapshot image "+snap, imageStatus(ctx, src.image, snap), "active", "killed", "deleted"); err != nil {
			return err
		}
		if _, err := w.Round(ctx, snap, j.Warm); err != nil {
			return err
		}
		return done()
	}
	for len(j.GetWarm().GetRounds()) < int(max(1, j.GetSource().GetWarmRounds())) {
		if err := round(); err != nil {
			return err
		}
	}
	if !j.GetSource().GetHoldForCutover() || j.GetCutover() != nil {
		return nil
	}
	if r.CutOvers == nil {
		return errors.New("this worker cannot read cut-over requests (no CutOvers): run it with the converter service")
	}
	last := time.Now()
	return poll.Until(ctx, poll.Constant(r.pause()), func(int) (bool, error) {
		co, err := r.CutOvers(ctx, id)
		if err != nil {
			return false, err
		}
		if co != nil {
			j.Cutover, j.Warm.Holding = co, false
			if co.GetPortId() != "" {
				d := j.GetDestination()
				d.PortId, d.NetworkId, d.FixedIp = co.GetPortId(), "", ""
			}
			return true, save(ctx, j)
		}
		if iv := j.GetSource().GetWarmRoundInterval(); iv != nil && time.Since(last) >= iv.AsDuration() {
			j.Warm.Holding = false
			err := round()
			last = time.Now()
			return false, err
		}
		if !j.GetWarm().GetHolding() {
			j.Warm.Holding = true
			return false, save(ctx, j)
		}
		return false, nil
	})
}

func (t *task) copyImage(ctx context.Context) error {
	r, j, id, src, dst, pl, save := t.Runner, t.j, t.id, t.src, t.dst, t.pl, t.save
	if j.GetCreated().GetImageId() != "" {
		return nil
	}
	if j.GetSource().GetWarm() && len(j.GetWarm().GetRounds()) > 0 {
		// The cut-over's round sends what changed since the pre-copy, and the image
		// is assembled from the store and those pieces as they come.
		w := r.warm(src, dst, func(ctx context.Context, p *converterv1.WarmProgress) error {
			j.Warm = p
			return save(ctx, j)
		})
		imgID, err := w.CutOver(ctx, j.GetCreated().GetSnapshotImageId(), j.GetWarm().GetImageName(), j.Warm)
		if err != nil {
			return err
		}
		j.Created.ImageId = imgID
		return save(ctx, j)
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
	noNICs := j.GetDestination().GetNoNics()
	portID := j.GetDestination().GetPortId() // given: not the job's to create or delete
	if len(nets) == 0 && !noNICs && portID == "" && j.GetCreated().GetPortId() == "" {
		opts := ports.CreateOpts{Name: portName(id), NetworkID: j.GetDestination().GetNetworkId()}
		if pl.fixedIP != "" {
			opts.FixedIPs = []ports.IP{{IPAddress: pl.fixedIP}}
		}
		if len(pl.sgIDs) > 0 {
			opts.SecurityGroups = &pl.sgIDs
		}
		p, err := osapi.CreatePort(ctx, dst.network, opts)
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
	if len(j.GetCreated().GetFixedIps()) == 0 && !noNICs {
		if err := t.recordAddresses(ctx, portID); err != nil {
			return err
		}
	}
	if pl.fixedIP == "" && len(j.GetCreated().GetFixedIps()) > 0 {
		pl.fixedIP = j.GetCreated().GetFixedIps()[0] // Neutron chose it (new_address)
	}
	var networks any = nets
	switch {
	case noNICs:
		networks = "none" // compute API ≥ 2.37, as the source was booted
	case len(nets) == 0:
		networks = []servers.Network{{Port: portID}}
	}
	if j.GetCreated().GetServerId() == "" {
		// The server keeps its metadata (its role, what its guest is configured to
		// do); hikkoshi_job marks it as this job's.
		md := map[string]string{}
		for k, v := range pl.srv.Metadata {
			md[k] = v
		}
		md["hikkoshi_job"] = id
		// Its volumes at their devices, in order; booted from its volume's copy when
		// it booted from a volume.
		bdms, devices := volumeBDMs(j, j.GetCreated().GetImageId())
		s, err := osapi.CreateServer(ctx, dst.compute, withDeviceNames{CreateOptsBuilder: keypairs.CreateOptsExt{
			CreateOptsBuilder: servers.CreateOpts{
				Name: pl.srv.Name, FlavorRef: pl.flavorID, ImageRef: j.GetCreated().GetImageId(),
				Networks: networks, Metadata: md, BlockDevice: bdms,
				AvailabilityZone: j.GetDestination().GetAvailabilityZone(),
				// The guest keeps its identity on its first boot here: without
				// this, the new instance ID makes its cloud-init regenerate the
				// host keys, create the default user and rewrite root's keys.
				UserData: []byte(cloudinit.UserData(cloudinit.Options{KeyPairUser: j.GetDestination().GetKeyPairUser()})),
			},
			KeyName: pl.keyName,
		}, devices: devices})
		if err != nil {
			return err
		}
		j.Created.ServerId = s.ID
		if err := save(ctx, j); err != nil {
			return err
		}
	}
	status := func() (string, error) {
		s, err := osapi.GetServer(ctx, dst.compute, j.GetCreated().GetServerId())
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
	if err := osapi.StopServer(ctx, dst.compute, j.GetCreated().GetServerId()); err != nil && !osapi.Conflict(err) {
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
		p, err := osapi.GetPort(ctx, dst.network, portID)
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

func snapshotName(jobID string) string { return "hikkoshi-" + jobID + "-snapshot" }

func portName(jobID string) string { return "hikkoshi-" + jobID }

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
			p, err := osapi.CreatePort(ctx, dst.network, opts)
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
	ifaces, err := osapi.ListInterfaces(ctx, cc, serverID)
	if err != nil {
		return nil, fmt.Errorf("source server %s interfaces: %w", serverID, err)
	}
	if len(ifaces) < 2 {
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
