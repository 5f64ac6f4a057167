// Package integration runs hikkoshi-lb, the built binary, against the dev cloud's
// real Octavia (tilt/devcloud). Skipped loudly when the dev cloud is down, failed
// under CI=true.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hikkoshi-lb-test-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "hikkoshi-lb")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, "../../cmd/hikkoshi-lb")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build hikkoshi-lb: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// lb runs hikkoshi-lb against the old cloud with the test's owner tag.
func lb(t *testing.T, owner string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return lbWithin(t, 3*time.Minute, owner, args...)
}

// lbWithin is lb with a deadline of d for hikkoshi-lb's Octavia calls (--timeout),
// for a tree the dev cloud builds one object at a time (its single-call create
// left stuck and deleted), each waited for until ACTIVE.
func lbWithin(t *testing.T, d time.Duration, owner string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	// Not t.Context(): cleanups run after it is cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--os-cloud", "old", "--owner-tag", owner, "--timeout", d.String()}, args...)...)
	cmd.Env = append(os.Environ(), "OS_CLIENT_CONFIG_FILE="+devcloud.CloudsYAML())
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func owned(t *testing.T, owner string) []octavia.LoadBalancer {
	t.Helper()
	out, stderr, err := lb(t, owner, "list", "-o", "json")
	if err != nil {
		t.Fatalf("list: %v\n%s", err, stderr)
	}
	var list []octavia.LoadBalancer
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("list -o json: %v\n%s", err, out)
	}
	return list
}

// TestCreateInOneCommand creates each must-have combination in one command, checks
// the whole tree is ACTIVE with the asked protocols, and deletes it with cascade.
func TestCreateInOneCommand(t *testing.T) {
	devcloud.Require(t)
	owner := fmt.Sprintf("itest-%d", time.Now().UnixNano())
	t.Cleanup(func() { // leave nothing behind even when a step failed
		for _, l := range owned(t, owner) {
			_, _, _ = lb(t, owner, "delete", l.ID, "--wait")
		}
	})
	for _, c := range []struct{ name, listener, pool string }{
		{"tcp-proxy", "TCP:80", "PROXY"},
		{"tcp-proxyv2", "TCP:81", "PROXYV2"},
		{"http-proxy", "HTTP:8080", "PROXY"},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := owner + "-" + c.name
			out, stderr, err := lb(t, owner, "create", name, "--vip-subnet", devcloud.VLANSubnet,
				"--listener", c.listener, "--pool-protocol", c.pool,
				"--member", "10.101.0.21:8080", "--member", "10.101.0.22:8080",
				"--monitor", "TCP", "--wait", "-o", "json", "--count-calls")
			if err != nil {
				t.Fatalf("create: %v\n%s", err, stderr)
			}
			t.Logf("%s", strings.TrimSpace(stderr))
			var tree octavia.Tree
			if err := json.Unmarshal([]byte(out), &tree); err != nil {
				t.Fatalf("create -o json: %v\n%s", err, out)
			}
			if tree.LoadBalancer.ProvisioningStatus != "ACTIVE" || len(tree.Pending()) != 0 {
				t.Fatalf("load balancer %s, pending %v", tree.LoadBalancer.ProvisioningStatus, tree.Pending())
			}
			proto, _, _ := strings.Cut(c.listener, ":")
			if len(tree.Listeners) != 1 || tree.Listeners[0].Listener.Protocol != proto {
				t.Fatalf("listeners %+v, want one %s", tree.Listeners, proto)
			}
			p := tree.Listeners[0].Pool
			if p == nil || p.Pool.Protocol != c.pool || len(p.Members) != 2 || p.Monitor == nil || p.Monitor.Type != "TCP" {
				t.Fatalf("pool %+v, want %s with 2 members and a TCP monitor", p, c.pool)
			}
			if !strings.Contains(strings.Join(tree.LoadBalancer.Tags, ","), owner) {
				t.Fatalf("tags %v lack the owner tag %s", tree.LoadBalancer.Tags, owner)
			}
			if _, stderr, err := lb(t, owner, "delete", name, "--wait"); err != nil {
				t.Fatalf("delete: %v\n%s", err, stderr)
			}
		})
	}
	if left := owned(t, owner); len(left) != 0 {
		t.Fatalf("%d load balancers left with tag %s after cascade delete", len(left), owner)
	}
}

// TestUDPProxyRefusedBeforeAnyCall: a UDP listener with a PROXY pool is refused with
// the field and the reason, and nothing is created.
func TestUDPProxyRefusedBeforeAnyCall(t *testing.T) {
	devcloud.Require(t)
	owner := fmt.Sprintf("itest-%d", time.Now().UnixNano())
	_, stderr, err := lb(t, owner, "create", owner+"-udp", "--vip-subnet", devcloud.VLANSubnet,
		"--listener", "UDP:53", "--pool-protocol", "PROXY", "--member", "10.101.0.21:53", "--count-calls")
	if err == nil {
		t.Fatal("UDP listener with a PROXY pool was accepted")
	}
	want := "listeners[0].pool.protocol: a UDP listener cannot use a PROXY pool"
	if !strings.Contains(stderr, want) || strings.Contains(stderr, "API calls") {
		t.Fatalf("stderr %q: want %q and no API call made", stderr, want)
	}
	if left := owned(t, owner); len(left) != 0 {
		t.Fatalf("%d load balancers created", len(left))
	}
}

// TestMemberDrainAddRemove moves a role: drain the old server, add the new, remove
// the old, each change waiting for ACTIVE.
func TestMemberDrainAddRemove(t *testing.T) {
	devcloud.Require(t)
	owner := fmt.Sprintf("itest-%d", time.Now().UnixNano())
	name := owner + "-move"
	t.Cleanup(func() { _, _, _ = lb(t, owner, "delete", name, "--wait") })
	if _, stderr, err := lb(t, owner, "create", name, "--vip-subnet", devcloud.VLANSubnet, "--listener", "TCP:80",
		"--pool-protocol", "PROXYV2", "--member", "10.101.0.21:8080", "--wait"); err != nil {
		t.Fatalf("create: %v\n%s", err, stderr)
	}
	steps := [][]string{
		{"member", "drain", name, "10.101.0.21:8080"},
		{"member", "add", name, "10.101.0.41:8080"},
		{"member", "remove", name, "10.101.0.21:8080"},
	}
	for _, s := range steps {
		if _, stderr, err := lb(t, owner, s...); err != nil {
			t.Fatalf("%v: %v\n%s", s, err, stderr)
		}
	}
	out, stderr, err := lb(t, owner, "show", name, "-o", "json")
	if err != nil {
		t.Fatalf("show: %v\n%s", err, stderr)
	}
	var tree octavia.Tree
	if err := json.Unmarshal([]byte(out), &tree); err != nil {
		t.Fatal(err)
	}
	ms := tree.Listeners[0].Pool.Members
	if len(ms) != 1 || ms[0].Address != "10.101.0.41" || ms[0].Weight != 1 || len(tree.Pending()) != 0 {
		t.Fatalf("members %+v pending %v: want only 10.101.0.41 weight 1, all ACTIVE", ms, tree.Pending())
	}
}
