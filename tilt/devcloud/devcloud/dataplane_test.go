package devcloud_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// TestHostNamespaceCannotReachTheDataPlane: while the dev cloud's data plane is up, the
// host's namespace has no route to the dev cloud's addresses (a connection fails at
// once, before any packet leaves) and listens on none of them; the data plane's
// addresses live only inside its namespace.
func TestHostNamespaceCannotReachTheDataPlane(t *testing.T) {
	devcloud.Require(t)
	if !devcloud.NetnsUp() {
		t.Fatalf("the data plane's namespace %s does not exist", devcloud.Netns)
	}
	for _, addr := range []string{"10.101.0.21", "10.101.0.199", "10.150.0.5", "10.201.0.1", "198.51.100.1"} {
		// Ask the kernel first: a route out would send the SYN below out of this
		// machine, which is never allowed. Only an unreachable route lets it connect.
		out, err := exec.Command("ip", "route", "get", addr).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "No route to host") {
			t.Fatalf("the host's namespace routes %s (%q): devcloud.sh up should have made it unreachable", addr, strings.TrimSpace(string(out)))
		}
		start := time.Now()
		c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, "8080"), 3*time.Second)
		took := time.Since(start)
		if err == nil {
			c.Close()
			t.Fatalf("connected to %s from the host's namespace", addr)
		}
		if !errors.Is(err, syscall.EHOSTUNREACH) && !errors.Is(err, syscall.ENETUNREACH) || took > time.Second {
			t.Fatalf("connect to %s from the host's namespace: %v after %s, want unreachable at once", addr, err, took)
		}
		t.Logf("%s from the host: %v in %s", addr, err, took.Round(time.Microsecond))
	}
	// No listener of the host's namespace is on a data plane address.
	out, err := exec.Command("ss", "-ltnH").Output()
	if err != nil {
		t.Fatal(err)
	}
	var ranges []netip.Prefix
	for _, r := range append(devcloud.DevcloudRanges, "100.64.0.0/10") {
		ranges = append(ranges, netip.MustParsePrefix(r))
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		ap, err := netip.ParseAddrPort(f[3])
		if err != nil {
			continue // [::]:port and the like
		}
		for _, p := range ranges {
			if p.Contains(ap.Addr()) {
				t.Fatalf("the host's namespace listens on %s, a data plane address", f[3])
			}
		}
	}
}

// TestStandinFollowsNova measures how far a server's stand-in lags behind Nova: the
// meter sends to the server's address from before the boot to after the stop, and
// the server's status is read every 100 ms. The driver starts the stand-in before
// spawn returns and stops it before power_off returns, so the server answers by the
// time Nova says ACTIVE and no request sent after Nova says SHUTOFF is answered.
func TestStandinFollowsNova(t *testing.T) {
	devcloud.Require(t)
	bin, cleanup, err := servicetest.Build("github.com/hikkoshi/hikkoshi/tilt/devcloud/cmd/hikkoshi-devcloud")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	const ip = "10.101.0.141"
	m := devcloud.StartMeter(t, bin, "--addr", ip+":8080", "--rate", "20", "--timeout", "500ms")
	name := fmt.Sprintf("itest-follow-%d", time.Now().UnixNano())
	booted := time.Now()
	s := devcloud.BootStandin(t, name, ip, nil)
	active := time.Now() // BootStandin polls every 250 ms
	time.Sleep(time.Second)
	s.Stop(t)
	shutoff := time.Now()
	time.Sleep(time.Second)
	r := m.Stop(t)
	a := r.Servers[name]
	if a == nil {
		t.Fatalf("the server never answered: %+v", r)
	}
	first, last := time.UnixMilli(a.FirstSentUnixMs), time.UnixMilli(a.LastSentUnixMs)
	t.Logf("boot requested → ACTIVE seen %s; first answer to a request sent %s after the boot request (%s before ACTIVE was seen)",
		active.Sub(booted).Round(time.Millisecond), first.Sub(booted).Round(time.Millisecond), active.Sub(first).Round(time.Millisecond))
	t.Logf("SHUTOFF seen; last answer to a request sent %s before it", shutoff.Sub(last).Round(time.Millisecond))
	if first.After(active.Add(500 * time.Millisecond)) {
		t.Fatalf("the stand-in answered only %s after Nova said ACTIVE", first.Sub(active))
	}
	if !last.Before(shutoff) {
		t.Fatalf("a request sent %s after Nova said SHUTOFF was answered", last.Sub(shutoff))
	}
}
