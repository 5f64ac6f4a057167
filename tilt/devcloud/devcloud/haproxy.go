package devcloud

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
)

// HAProxyBin is the haproxy the data plane runs (Debian's): the amphora stand-in's
// and RunHAProxy's.
const HAProxyBin = "/usr/sbin/haproxy"

const ipBin = "/usr/sbin/ip"

// HAProxy is an haproxy of a test's own in the data plane's namespace (RunHAProxy):
// the old load balancer a test compares with what replaced it.
type HAProxy struct {
	// Config is the path of its configuration file, Log the path of its output
	// (in the foreground, haproxy writes its alerts and warnings there).
	Config, Log string
}

// Output returns what haproxy has written so far, for a failure message.
func (h *HAProxy) Output() string {
	b, err := os.ReadFile(h.Log)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// RunHAProxy runs haproxy with the configuration cfg inside the data plane's
// namespace, in the foreground (haproxy -db), until the test ends. addrs are the
// addresses cfg binds, on the VLAN subnet: each is first reserved in Neutron (a
// port at that address with no device, so no server and no VIP is given it while
// the test runs; the data plane's own address claims are for servers and load
// balancers only) and then put on dp0. RunHAProxy returns when haproxy listens on
// every one of them, and fails the test when it exits or does not listen within
// 15 s. When the test ends haproxy is stopped, the addresses are taken off dp0 and
// the ports deleted. Needs root (ip netns exec).
func RunHAProxy(tb testing.TB, cfg string, addrs ...string) *HAProxy {
	tb.Helper()
	if !NetnsUp() {
		tb.Fatalf("devcloud.RunHAProxy: the data plane's namespace %s is not up", Netns)
	}
	dir := tb.TempDir()
	h := &HAProxy{Config: filepath.Join(dir, "haproxy.cfg"), Log: filepath.Join(dir, "haproxy.log")}
	if err := os.WriteFile(h.Config, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	for _, a := range addrs {
		reserveAddress(tb, a)
		if out, err := exec.Command(ipBin, "-n", Netns, "addr", "add", a+"/32", "dev", "dp0").CombinedOutput(); err != nil {
			tb.Fatalf("devcloud.RunHAProxy: put %s on dp0: %v: %s", a, err, out)
		}
		tb.Cleanup(func() {
			if out, err := exec.Command(ipBin, "-n", Netns, "addr", "del", a+"/32", "dev", "dp0").CombinedOutput(); err != nil {
				tb.Errorf("devcloud.RunHAProxy: take %s off dp0: %v: %s", a, err, out)
			}
		})
	}
	log, err := os.Create(h.Log)
	if err != nil {
		tb.Fatal(err)
	}
	// ip netns exec enters the namespace and execs haproxy: the child is haproxy.
	cmd := exec.Command(ipBin, "netns", "exec", Netns, HAProxyBin, "-db", "-f", h.Config)
	cmd.Stdout, cmd.Stderr = log, log
	// Should the test process die without its cleanups (a go test timeout), haproxy
	// goes with it rather than keep the address.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		tb.Fatalf("devcloud.RunHAProxy: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // its status is in the log; an exit before the test's end fails below
		_ = log.Close()
		close(done)
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		missing, err := notListening(addrs)
		if err != nil {
			tb.Fatalf("devcloud.RunHAProxy: %v", err)
		}
		if len(missing) == 0 {
			return h
		}
		select {
		case <-done:
			tb.Fatalf("devcloud.RunHAProxy: haproxy exited: %s\n%s", cmd.ProcessState, h.Output())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("devcloud.RunHAProxy: haproxy does not listen on %v after 15 s:\n%s", missing, h.Output())
		}
	}
}

// reserveAddress makes a port with no device at ip on the VLAN subnet, deleted when
// the test ends.
func reserveAddress(tb testing.TB, ip string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := Open(tb, "old-admin").Network()
	if err != nil {
		tb.Fatal(err)
	}
	sub, err := FindSubnet(ctx, nc, VLANSubnet)
	if err != nil {
		tb.Fatal(err)
	}
	port, err := ports.Create(ctx, nc, ports.CreateOpts{Name: "test-haproxy-" + ip, NetworkID: sub.NetworkID,
		FixedIPs: []ports.IP{{SubnetID: sub.ID, IPAddress: ip}}}).Extract()
	if err != nil {
		tb.Fatalf("devcloud.RunHAProxy: reserve %s in Neutron: %v", ip, err)
	}
	tb.Cleanup(func() {
		err := ports.Delete(context.Background(), nc, port.ID).ExtractErr()
		if err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			tb.Errorf("devcloud.RunHAProxy: delete the port of %s: %v", ip, err)
		}
	})
}

// notListening returns the addresses of addrs that no TCP socket of the data
// plane's namespace listens on (read with ss: no packet is sent).
func notListening(addrs []string) ([]string, error) {
	out, err := exec.Command(ipBin, "netns", "exec", Netns, "ss", "-ltnH").Output()
	if err != nil {
		return nil, fmt.Errorf("ss -ltnH in %s: %w", Netns, err)
	}
	var missing []string
	for _, a := range addrs {
		found := false
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 3 && strings.HasPrefix(f[3], a+":") {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, a)
		}
	}
	return missing, nil
}
