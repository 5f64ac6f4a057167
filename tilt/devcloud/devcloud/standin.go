package devcloud

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud/meter"
)

// Server metadata the dev cloud's Nova driver reads to configure a server's stand-in.
const (
	MetaProxyProtocol = "hikkoshi_proxy_protocol" // "required" or "optional"
	MetaHTTPPorts     = "hikkoshi_http_ports"     // "80,8080" by default
	MetaTCPPorts      = "hikkoshi_tcp_ports"
)

// Standin is a server of the old cloud, on the fake driver, with a port on the VLAN
// network at a fixed address: its stand-in answers there while it is ACTIVE.
type Standin struct {
	ID, Name, IP, PortID string
	Compute, Network     *gophercloud.ServiceClient
}

// BootStandin boots a server named name in the old project on a port of the VLAN
// network at ip (an admin may take an address outside the allocation pools: tests
// take 10.101.0.100-149, which nothing allocates), waits until it is ACTIVE and
// deletes both when the test ends.
func BootStandin(tb testing.TB, name, ip string, metadata map[string]string) *Standin {
	tb.Helper()
	return BootStandinOn(tb, "", name, ip, metadata)
}

// BootStandinOn is BootStandin on a subnet of the test's own (its ID; "" for the
// VLAN subnet), in the old project.
func BootStandinOn(tb testing.TB, subnetID, name, ip string, metadata map[string]string) *Standin {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := Open(tb, "old-admin")
	cc, err := c.Compute()
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := c.Network()
	if err != nil {
		tb.Fatal(err)
	}
	var sub *subnets.Subnet
	if subnetID == "" {
		sub, err = FindSubnet(ctx, nc, VLANSubnet)
	} else {
		sub, err = subnets.Get(ctx, nc, subnetID).Extract()
	}
	if err != nil {
		tb.Fatal(err)
	}
	port, err := ports.Create(ctx, nc, ports.CreateOpts{Name: name + "-port", NetworkID: sub.NetworkID,
		FixedIPs: []ports.IP{{SubnetID: sub.ID, IPAddress: ip}}}).Extract()
	if err != nil {
		tb.Fatalf("port %s at %s: %v", name, ip, err)
	}
	s := &Standin{Name: name, IP: ip, PortID: port.ID, Compute: cc, Network: nc}
	tb.Cleanup(func() { s.Delete(tb) })
	img, err := FindImage(ctx, mustImage(tb, c), SeedImage)
	if err != nil {
		tb.Fatal(err)
	}
	fl, err := FindFlavor(ctx, cc, FlavorTiny)
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := servers.Create(ctx, cc, servers.CreateOpts{Name: name, ImageRef: img, FlavorRef: fl,
		Networks: []servers.Network{{Port: port.ID}}, Metadata: metadata}, nil).Extract()
	if err != nil {
		tb.Fatalf("server %s: %v", name, err)
	}
	s.ID = srv.ID
	s.WaitStatus(tb, "ACTIVE")
	return s
}

func mustImage(tb testing.TB, c interface {
	Image() (*gophercloud.ServiceClient, error)
}) *gophercloud.ServiceClient {
	ic, err := c.Image()
	if err != nil {
		tb.Fatal(err)
	}
	return ic
}

// WaitStatus waits until the server has status want (ERROR fails the test).
func (s *Standin) WaitStatus(tb testing.TB, want string) {
	tb.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		srv, err := servers.Get(context.Background(), s.Compute, s.ID).Extract()
		if err == nil && srv.Status == want {
			return
		}
		if err == nil && srv.Status == "ERROR" {
			tb.Fatalf("server %s in ERROR: %v\n%s", s.Name, srv.Fault, ComputeErrors(s.ID))
		}
		time.Sleep(250 * time.Millisecond)
	}
	tb.Fatalf("server %s not %s after 3 min", s.Name, want)
}

// Stop stops the server through Nova and waits until it is SHUTOFF.
func (s *Standin) Stop(tb testing.TB) {
	tb.Helper()
	if err := servers.Stop(context.Background(), s.Compute, s.ID).ExtractErr(); err != nil {
		tb.Fatalf("stop %s: %v", s.Name, err)
	}
	s.WaitStatus(tb, "SHUTOFF")
}

// Delete deletes the server (waiting until it is gone) and its port.
func (s *Standin) Delete(tb testing.TB) {
	ctx := context.Background()
	if s.ID != "" {
		_ = servers.Delete(ctx, s.Compute, s.ID).ExtractErr()
		for range 240 {
			if _, err := servers.Get(ctx, s.Compute, s.ID).Extract(); gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	if err := ports.Delete(ctx, s.Network, s.PortID).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		tb.Errorf("delete port of %s: %v", s.Name, err)
	}
}

// RunningMeter is a traffic meter running in the background (hikkoshi-devcloud
// traffic, inside the data plane's namespace).
type RunningMeter struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	errOut bytes.Buffer
}

// StartMeter starts the traffic meter binary bin with args (-o json is added) until
// Stop.
func StartMeter(tb testing.TB, bin string, args ...string) *RunningMeter {
	tb.Helper()
	m := &RunningMeter{}
	m.cmd = exec.Command(bin, append(append([]string{"traffic"}, args...), "--for", "0", "-o", "json")...)
	m.cmd.Stdout, m.cmd.Stderr = &m.out, &m.errOut
	if err := m.cmd.Start(); err != nil {
		tb.Fatalf("start the meter: %v", err)
	}
	tb.Cleanup(func() { _ = m.cmd.Process.Kill(); _ = m.cmd.Wait() })
	return m
}

// Stop ends the meter (SIGTERM: it stops sending, lets open requests finish) and
// returns its report.
func (m *RunningMeter) Stop(tb testing.TB) *meter.Report {
	tb.Helper()
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	if err := m.cmd.Wait(); err != nil {
		tb.Fatalf("meter: %v\n%s", err, m.errOut.String())
	}
	return parseReport(tb, m.out.Bytes(), m.errOut.String())
}

// Meter runs the traffic meter binary bin with args (-o json is added) and returns
// its report.
func Meter(tb testing.TB, bin string, args ...string) *meter.Report {
	tb.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin, append(append([]string{"traffic"}, args...), "-o", "json")...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		tb.Fatalf("meter %v: %v\n%s", args, err, errOut.String())
	}
	return parseReport(tb, out.Bytes(), errOut.String())
}

func parseReport(tb testing.TB, out []byte, stderr string) *meter.Report {
	tb.Helper()
	var r meter.Report
	if err := json.Unmarshal(out, &r); err != nil {
		tb.Fatalf("meter report %q: %v\n%s", out, err, stderr)
	}
	return &r
}
