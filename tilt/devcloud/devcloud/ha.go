package devcloud

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/agents"
)

// The optional HA network nodes (devcloud.sh up --ha): a real neutron-l3-agent and
// neutron-linuxbridge-agent on each of two hosts, which run HA routers with
// keepalived (tilt/devcloud/ha/ha.sh). An HA router (ha: true, as admin) is
// scheduled to both.
const (
	L3HostA = "hikkoshi-l3-a"
	L3HostB = "hikkoshi-l3-b"
)

// stateDir is the dev cloud's state directory: where its clouds.yaml is.
func stateDir() string { return filepath.Dir(CloudsYAML()) }

// haDown says why the two L3 agents are not both alive, or "" when they are.
func haDown(tb testing.TB) string {
	tb.Helper()
	nc, err := Open(tb, "admin").Network()
	if err != nil {
		tb.Fatalf("devcloud: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pages, err := agents.List(nc, agents.ListOpts{AgentType: "L3 agent"}).AllPages(ctx)
	if err != nil {
		tb.Fatalf("devcloud: list the L3 agents: %v", err)
	}
	list, err := agents.ExtractAgents(pages)
	if err != nil {
		tb.Fatalf("devcloud: %v", err)
	}
	alive := map[string]bool{}
	for _, a := range list {
		alive[a.Host] = a.Alive
	}
	if alive[L3HostA] && alive[L3HostB] {
		return ""
	}
	return fmt.Sprintf("L3 agents alive: %s %v, %s %v", L3HostA, alive[L3HostA], L3HostB, alive[L3HostB])
}

// HAUp reports whether the dev cloud runs its HA network nodes (up --ha): then an
// HA router gets L3 agents and VRRP ports.
func HAUp(tb testing.TB) bool {
	tb.Helper()
	return haDown(tb) == ""
}

// RequireHA skips tb loudly when the dev cloud's two L3 agents are not both alive
// (fails it under CI=true when the dev cloud was started with --ha).
func RequireHA(tb testing.TB) {
	tb.Helper()
	why := haDown(tb)
	if why == "" {
		return
	}
	msg := "DEV CLOUD HA NETWORK NODES NOT UP (" + why + "): start it with tilt/devcloud/devcloud.sh up --ha"
	if _, err := os.Stat(filepath.Join(stateDir(), "ha.enabled")); err == nil && os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// node is the network node (a or b) of an L3 agent host.
func node(host string) (string, error) {
	switch host {
	case L3HostA:
		return "a", nil
	case L3HostB:
		return "b", nil
	}
	return "", fmt.Errorf("%q is not one of the dev cloud's L3 agent hosts (%s, %s)", host, L3HostA, L3HostB)
}

// Keepalived returns the PIDs of the keepalived processes (the parent, then its VRRP
// child) the L3 agent on host runs for router, read from the agent's PID files; an
// error when either is not running.
func Keepalived(host, router string) ([]int, error) {
	n, err := node(host)
	if err != nil {
		return nil, err
	}
	confs := filepath.Join(stateDir(), "lib", "neutron-l3-"+n, "ha_confs")
	var pids []int
	for _, f := range []string{router + ".pid.keepalived", router + ".pid.keepalived-vrrp"} {
		b, err := os.ReadFile(filepath.Join(confs, f))
		if err != nil {
			return nil, fmt.Errorf("keepalived of router %s on %s: %w", router, host, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			return nil, fmt.Errorf("keepalived of router %s on %s: PID file %s holds %q", router, host, f, b)
		}
		if syscall.Kill(pid, 0) != nil {
			return nil, fmt.Errorf("keepalived of router %s on %s: PID %d (%s) is not running", router, host, pid, f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// KillKeepalived signals the keepalived of router on host and returns its PIDs:
// SIGKILL goes to both processes at once, a dirty death (the VIP stays where it was:
// two masters once the other side takes over); another signal (SIGTERM) to the
// parent only, a clean stop (its VRRP child gives the VIP up and says so first).
func KillKeepalived(tb testing.TB, host, router string, sig syscall.Signal) []int {
	tb.Helper()
	pids, err := Keepalived(host, router)
	if err != nil {
		tb.Fatal(err)
	}
	targets := pids
	if sig != syscall.SIGKILL {
		targets = pids[:1]
	}
	for _, p := range targets {
		if err := syscall.Kill(p, sig); err != nil {
			tb.Fatalf("kill -%d %d (keepalived of router %s on %s): %v", sig, p, router, host, err)
		}
	}
	return pids
}

// SetHAWire takes the wire between the two network nodes down (up false) or up:
// with it down the HA networks are cut, and each node's keepalived, hearing nobody,
// makes itself master.
func SetHAWire(tb testing.TB, up bool) {
	tb.Helper()
	state := "down"
	if up {
		state = "up"
	}
	if out, err := exec.Command("ip", "-n", "hikkoshi-l3a", "link", "set", "hkwire-a", state).CombinedOutput(); err != nil {
		tb.Fatalf("ip -n hikkoshi-l3a link set hkwire-a %s: %v: %s", state, err, out)
	}
}

// HARouterReport is what the L3 agent on host keeps about an HA router, for a
// test's failure message: keepalived's state file, the neutron-keepalived-state-change
// monitor's PID file (and whether it runs) and the last lines of its log (it tells
// the agent each transition; the agent tells the server).
func HARouterReport(host, router string) string {
	n, err := node(host)
	if err != nil {
		return err.Error()
	}
	confs := filepath.Join(stateDir(), "lib", "neutron-l3-"+n, "ha_confs")
	var b strings.Builder
	fmt.Fprintf(&b, "%s, router %s:", host, router)
	if s, err := os.ReadFile(filepath.Join(confs, router, "state")); err != nil {
		fmt.Fprintf(&b, " state file: %v;", err)
	} else {
		fmt.Fprintf(&b, " state file %q;", strings.TrimSpace(string(s)))
	}
	pidFile := filepath.Join(stateDir(), "lib", "neutron-l3-"+n, "external", "pids", router+".monitor.pid.neutron-keepalived-state-change-monitor")
	if p, err := os.ReadFile(pidFile); err != nil {
		fmt.Fprintf(&b, " state-change monitor PID file: %v;", err)
	} else if pid, err := strconv.Atoi(strings.TrimSpace(string(p))); err != nil || syscall.Kill(pid, 0) != nil {
		fmt.Fprintf(&b, " state-change monitor %q not running;", p)
	} else {
		fmt.Fprintf(&b, " state-change monitor PID %d running;", pid)
	}
	log, err := os.ReadFile(filepath.Join(confs, router, "neutron-keepalived-state-change.log"))
	if err != nil {
		fmt.Fprintf(&b, " its log: %v", err)
		return b.String()
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	b.WriteString(" its log ends:")
	for _, l := range lines[max(0, len(lines)-12):] {
		b.WriteString("\n    " + l[:min(len(l), 240)])
	}
	return b.String()
}
