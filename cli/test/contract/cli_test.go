// Package contract runs the hikkoshi command line against the real services (each
// binary started against a real etcd, over mutual TLS) and the dev cloud: every
// subcommand's success and error output, JSON parsed, tables checked for their
// columns.
package contract

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/hikkoshi/hikkoshi/platform/mtls"
	"github.com/hikkoshi/hikkoshi/platform/p2vtest"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

var bins map[string]string

func TestMain(m *testing.M) {
	var cleanup func()
	bins, cleanup = servicetest.MustBuildAll(map[string]string{
		"hikkoshi":  "github.com/hikkoshi/hikkoshi/cli/cmd/hikkoshi",
		"inventory": "github.com/hikkoshi/hikkoshi/services/inventory/cmd/inventory",
		"converter": "github.com/hikkoshi/hikkoshi/services/converter/cmd/converter",
		"netbridge": "github.com/hikkoshi/hikkoshi/services/netbridge/cmd/netbridge",
		"lbaas":     "github.com/hikkoshi/hikkoshi/services/lbaas/cmd/lbaas",
	})
	code := m.Run()
	cleanup()
	os.Exit(code)
}

func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// cli runs hikkoshi with args (after flags), standard input stdin; its combined
// output and exit code.
type cli func(t *testing.T, stdin string, args ...string) (string, int)

func runner(flags ...string) cli {
	return func(t *testing.T, stdin string, args ...string) (string, int) {
		t.Helper()
		// Not under t.Context(): cleanups run it too.
		cmd := exec.Command(bins["hikkoshi"], append(append([]string{}, flags...), args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "OS_CLIENT_CONFIG_FILE="+devcloud.CloudsYAML())
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return string(out), exit.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
}

// wantOK runs args and wants exit 0; the output.
func (c cli) wantOK(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, code := c(t, stdin, args...)
	if code != 0 {
		t.Fatalf("hikkoshi %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// wantFail runs args and wants exit code and every one of the strings in its output.
func (c cli) wantFail(t *testing.T, code int, stdin string, args []string, wants ...string) string {
	t.Helper()
	out, got := c(t, stdin, args...)
	if got != code {
		t.Fatalf("hikkoshi %s: exit %d, want %d\n%s", strings.Join(args, " "), got, code, out)
	}
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Fatalf("hikkoshi %s: no %q in\n%s", strings.Join(args, " "), w, out)
		}
	}
	return out
}

// columns checks a table's header line.
func columns(t *testing.T, out string, cols ...string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= len(cols) && strings.Join(f[:len(cols)], " ") == strings.Join(cols, " ") {
			return
		}
	}
	t.Fatalf("no header %v in\n%s", cols, out)
}

func jsonOf[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("not JSON (%v):\n%s", err, out)
	}
	return v
}

// TestCLIOverTheServices: hikkoshi finds the four services in the etcd registry
// (no address given) and speaks mutual TLS with the admin's certificate; a config
// file gives the same. Jobs: a bad spec refused with its field, a job that fails
// watched to its end (exit 4, the error said), listed by state, a cancel refused;
// with the P2V fixture a job that succeeds (--follow). Bridges: create from YAML,
// plan (table and JSON), apply with the reviewed etag, a stale etag refused, an
// address moved and back, rollback, delete. Console ports, the watchdog, the
// inventory's workloads, the lbaas service's and Octavia's load balancers.
func TestCLIOverTheServices(t *testing.T) {
	env := servicetest.NewEnv(t)
	cy := devcloud.CloudsYAML()
	env.Start(t, bins["inventory"], "inventory")
	env.Start(t, bins["converter"], "converter", "--clouds-yaml", cy, "--poll", "250ms", "--workers", "1",
		"--clouds", "old,new", "--p2v-disk-root", p2vtest.CacheDir(), "--p2v-agent-network", "127.0.0.1")
	env.Start(t, bins["netbridge"], "netbridge", "--clouds-yaml", cy)
	env.Start(t, bins["lbaas"], "lbaas", "--cloud", "old", "--clouds-yaml", cy, "--owner-tag", fmt.Sprintf("ctest-cli-%d", rand.IntN(1_000_000)))
	admin := append([]string{"--etcd", env.Etcd.Endpoints()[0]}, env.ClientFlags("admin")...)
	hk := runner(admin...)

	// A config file instead of flags: the registry and the certificates, relative
	// to the file.
	cfgDir := t.TempDir()
	f := mtls.DevFiles(env.PKI, "viewer")
	for _, p := range []string{f.Cert, f.Key, f.CA} {
		must(0, os.Symlink(p, filepath.Join(cfgDir, filepath.Base(p))))(t)
	}
	cfg := filepath.Join(cfgDir, "config.yaml")
	must(0, os.WriteFile(cfg, fmt.Appendf(nil, "etcd: %s\ntls: {cert: %s, key: %s, ca: %s}\n", env.Etcd.Endpoints()[0],
		filepath.Base(f.Cert), filepath.Base(f.Key), filepath.Base(f.CA)), 0o600))(t)
	viewer := runner("--config", cfg)
	columns(t, viewer.wantOK(t, "", "workloads", "list"), "SERVER", "NAME", "KIND", "ROLE", "STATE", "WAVE")
	jobs := jsonOf[map[string]any](t, viewer.wantOK(t, "", "job", "list", "-o", "json"))
	if len(jobs) != 0 {
		t.Fatalf("jobs of a new converter: %v", jobs)
	}
	// The viewer may not create (PermissionDenied from the policy).
	viewer.wantFail(t, 1, "source: {cloud: old, server_id: x}\n", []string{"job", "create", "-f", "-"}, "PermissionDenied")
	wrongCfg := filepath.Join(cfgDir, "bad.yaml")
	must(0, os.WriteFile(wrongCfg, []byte("inventroy: x:1\n"), 0o600))(t)
	runner("--config", wrongCfg).wantFail(t, 2, "", []string{"job", "list"}, "--config", "unknown field", "keys: inventory")
	hk.wantFail(t, 2, "", []string{"job", "list", "-o", "xml"}, `-o "xml": use table, json or yaml`)

	t.Run("jobs", func(t *testing.T) { jobCommands(t, hk) })
	t.Run("bridges", func(t *testing.T) { bridgeCommands(t, hk) })

	out := hk.wantOK(t, "", "console-ports", "--node", "old/c1=10000:20000", "--node", "old/c2=10000:20000", "--node", "new/c3", "-o", "json")
	ranges := jsonOf[struct {
		Ranges   []map[string]any `json:"ranges"`
		Overlaps []map[string]any `json:"overlaps"`
	}](t, out)
	if len(ranges.Ranges) != 3 || len(ranges.Overlaps) == 0 {
		t.Fatalf("console-ports: %s", out)
	}
	columns(t, hk.wantOK(t, "", "console-ports", "--node", "old/c1", "--node", "old/c2"), "CLOUD", "HOST", "PORT_RANGE", "CHANGED")
	hk.wantFail(t, 2, "", []string{"console-ports", "--node", "c1"}, "--node", "CLOUD/HOST")
	columns(t, hk.wantOK(t, "", "watchdog"), "CLOUD", "ROUTER", "NAME", "HEALTHY")
	_ = jsonOf[map[string]any](t, hk.wantOK(t, "", "watchdog", "-o", "json"))

	y := hk.wantOK(t, "", "workloads", "list", "-o", "yaml")
	if strings.TrimSpace(y) != "---\n{}" && !strings.HasPrefix(y, "---\n") {
		t.Fatalf("workloads list -o yaml: %q", y)
	}
	columns(t, hk.wantOK(t, "", "loadbalancers", "list"), "NAME", "ID", "PROVISIONING", "OPERATING", "VIP", "LISTENERS", "MEMBERS")
	hk.wantFail(t, 1, "", []string{"loadbalancers", "get", "not-a-uuid"}, "InvalidArgument", "field name:")
	t.Run("loadbalancers", func(t *testing.T) { lbCommands(t, hk, admin) })
	// Octavia straight, no Hikkoshi service.
	v := jsonOf[map[string]any](t, hk.wantOK(t, "", "lb", "--os-cloud", "old", "api-version", "-o", "json"))
	if v["version"] == "" {
		t.Fatalf("lb api-version: %v", v)
	}
	hk.wantFail(t, 2, "", []string{"lb", "list"}, "no cloud")
	// Shell completion.
	if out := hk.wantOK(t, "", "completion", "bash"); !strings.Contains(out, "__start_hikkoshi") {
		t.Fatalf("completion bash: %.200s", out)
	}
}

func jobCommands(t *testing.T, hk cli) {
	columns(t, hk.wantOK(t, "", "job", "list"), "NAME", "WORKLOAD", "KIND", "STATE", "STEP", "PROGRESS", "WORKER", "AGE")
	// Refused with the field to fix.
	hk.wantFail(t, 1, "destination: {cloud: new}\n", []string{"job", "create", "-f", "-"}, "InvalidArgument", "field job.source")
	hk.wantFail(t, 2, "sourse: {}\n", []string{"job", "create", "-f", "-"}, "-f -", "sourse")
	hk.wantFail(t, 2, "", []string{"job", "create"}, "-f: name a file")
	hk.wantFail(t, 2, "", []string{"job", "list", "--state", "sleeping"}, "--state")

	// A job whose server does not exist: it fails at its pre-flight; watch says so.
	out := hk.wantOK(t, "source: {cloud: old, server_id: 00000000-0000-4000-8000-000000000000}\ndestination: {cloud: new, flavor: m1.tiny, network_id: 00000000-0000-4000-8000-000000000001}\n",
		"job", "create", "-f", "-", "-o", "json", "--request-id", fmt.Sprintf("cli-%d", rand.IntN(1_000_000)))
	job := jsonOf[struct {
		Name  string `json:"name"`
		State string `json:"state"`
	}](t, out)
	if !strings.HasPrefix(job.Name, "jobs/") || job.State == "" {
		t.Fatalf("job create: %s", out)
	}
	out = hk.wantFail(t, 4, "", []string{"job", "watch", job.Name}, job.Name+" failed", "error:")
	t.Logf("job watch (not a terminal: a line per change):\n%s", out)
	columns(t, hk.wantOK(t, "", "job", "get", strings.TrimPrefix(job.Name, "jobs/")), "NAME", "WORKLOAD", "KIND", "STATE")
	failed := jsonOf[struct {
		Jobs []struct {
			Name string `json:"name"`
		} `json:"jobs"`
	}](t, hk.wantOK(t, "", "job", "list", "--state", "failed", "-o", "json"))
	if len(failed.Jobs) != 1 || failed.Jobs[0].Name != job.Name {
		t.Fatalf("job list --state failed: %v", failed)
	}
	hk.wantFail(t, 1, "", []string{"job", "cancel", job.Name}, "FailedPrecondition")
	hk.wantFail(t, 1, "", []string{"job", "get", "jobs/nope"}, "NotFound")
	hk.wantFail(t, 1, "", []string{"job", "cutover", job.Name}, "FailedPrecondition")
	hk.wantFail(t, 1, "", []string{"job", "revert", job.Name}, "FailedPrecondition")
	hk.wantFail(t, 1, "", []string{"job", "decommission", job.Name}, "confirm_server_id")

	// A job that succeeds: the P2V fixture inspected, followed to its end.
	if os.Getenv("CI") != "true" && os.Getenv("HIKKOSHI_P2V") != "1" {
		t.Log("P2V fixture not built here (HIKKOSHI_P2V=1 or CI=true): no succeeding job")
		return
	}
	disk := p2vtest.Fixture(t)
	out = hk.wantOK(t, fmt.Sprintf("p2v_source: {disk_path: %s, inspect_only: true}\n", disk), "job", "create", "-f", "-", "--follow")
	if !strings.Contains(out, " succeeded ") {
		t.Fatalf("job create --follow:\n%s", out)
	}
	t.Logf("job create --follow:\n%s", out)
}

// vlanNet is an old-project VLAN network with a /26 and one workload port on .12.
func vlanNet(t *testing.T) (net, prefix string) {
	t.Helper()
	o := devcloud.Open(t, "old-admin")
	oc := must(o.Network())(t)
	project := must(o.ProjectID())(t)
	ctx := t.Context()
	tag := fmt.Sprintf("ctest-cli-%d", rand.IntN(1_000_000))
	vlan := 0
	for i := range 50 {
		v := 150 + (rand.IntN(50)+i)%50
		n, err := networks.Create(ctx, oc, provider.CreateOptsExt{
			CreateOptsBuilder: networks.CreateOpts{Name: tag, ProjectID: project},
			Segments:          []provider.Segment{{NetworkType: "vlan", PhysicalNetwork: "physnet1", SegmentationID: v}},
		}).Extract()
		if err != nil {
			continue // that VLAN is in use
		}
		net, vlan = n.ID, v
		break
	}
	if net == "" {
		t.Fatal("no free VLAN on physnet1 150–199")
	}
	t.Cleanup(func() { _ = networks.Delete(context.Background(), oc, net).ExtractErr() })
	prefix = fmt.Sprintf("10.%d.0", vlan)
	gw := prefix + ".1"
	sub := must(subnets.Create(ctx, oc, subnets.CreateOpts{
		NetworkID: net, Name: tag + "-v4", CIDR: prefix + ".0/26", IPVersion: gophercloud.IPv4, GatewayIP: &gw, ProjectID: project,
		AllocationPools: []subnets.AllocationPool{{Start: prefix + ".10", End: prefix + ".50"}},
	}).Extract())(t)
	p := must(ports.Create(ctx, oc, ports.CreateOpts{Name: tag + "-w12", NetworkID: net, ProjectID: project,
		FixedIPs: []ports.IP{{SubnetID: sub.ID, IPAddress: prefix + ".12"}}}).Extract())(t)
	t.Cleanup(func() { _ = ports.Delete(context.Background(), oc, p.ID).ExtractErr() })
	return net, prefix
}

func bridgeCommands(t *testing.T, hk cli) {
	net, prefix := vlanNet(t)
	id := fmt.Sprintf("cli-%d", rand.IntN(1_000_000))
	spec := fmt.Sprintf(`mode: BRIDGE_MODE_SHARED_L2
old: {cloud: old-admin, network_id: %s}
new: {cloud: new-admin, physical_network: physnet2, network_name: %s-bridged}
shared_l2: {old_keep_free: 8}
`, net, id)
	hk.wantFail(t, 1, "mode: BRIDGE_MODE_SHARED_L2\n", []string{"bridge", "create", id, "-f", "-"}, "InvalidArgument", "field bridge.old")
	columns(t, hk.wantOK(t, spec, "bridge", "create", id, "-f", "-"), "NAME", "MODE", "STATE", "OLD", "NEW", "RESOURCES", "MOVED")
	name := "bridges/" + id
	t.Cleanup(func() {
		_, _ = hk(t, "", "address", "move-back", name, prefix+".12")
		_, _ = hk(t, "", "bridge", "rollback", name)
		_, _ = hk(t, "", "bridge", "delete", name)
	})
	hk.wantFail(t, 1, spec, []string{"bridge", "create", id, "-f", "-"}, "AlreadyExists")
	columns(t, hk.wantOK(t, "", "bridge", "list"), "NAME", "MODE", "STATE")
	out := hk.wantOK(t, "", "bridge", "plan", id)
	columns(t, out, "ACTION", "SIDE", "KIND", "DESCRIPTION")
	plan := jsonOf[struct {
		Changes  []map[string]any `json:"changes"`
		PlanEtag string           `json:"planEtag"`
	}](t, hk.wantOK(t, "", "bridge", "plan", id, "-o", "json"))
	if len(plan.Changes) == 0 || plan.PlanEtag == "" {
		t.Fatalf("bridge plan -o json: %v", plan)
	}
	hk.wantFail(t, 2, "", []string{"bridge", "apply", id}, "--etag", "--unreviewed")
	out = hk.wantOK(t, "", "bridge", "apply", id, "--etag", plan.PlanEtag)
	if !strings.Contains(out, "applied") || !strings.Contains(out, " applied ") {
		t.Fatalf("bridge apply:\n%s", out)
	}
	if out := hk.wantOK(t, "", "bridge", "plan", id); !strings.Contains(out, ": 0 changes") {
		t.Fatalf("plan after apply:\n%s", out)
	}
	hk.wantFail(t, 1, "", []string{"bridge", "apply", id, "--etag", plan.PlanEtag}, "Aborted")
	b := jsonOf[struct {
		State string `json:"state"`
	}](t, hk.wantOK(t, "", "bridge", "get", id, "-o", "json"))
	if b.State != "BRIDGE_STATE_APPLIED" {
		t.Fatalf("bridge get: state %s", b.State)
	}
	moved := jsonOf[struct {
		NewPortID string   `json:"newPortId"`
		Steps     []string `json:"steps"`
	}](t, hk.wantOK(t, "", "address", "move", name, prefix+".12", "-o", "json"))
	if moved.NewPortID == "" || len(moved.Steps) == 0 {
		t.Fatalf("address move: %v", moved)
	}
	hk.wantFail(t, 1, "", []string{"bridge", "rollback", id}, "FailedPrecondition")
	hk.wantFail(t, 1, "", []string{"address", "move", name, prefix + ".99"}, "FailedPrecondition", "no port holds "+prefix+".99")
	if out := hk.wantOK(t, "", "address", "move-back", name, prefix+".12"); !strings.Contains(out, "back on its old port") {
		t.Fatalf("address move-back:\n%s", out)
	}
	if out := hk.wantOK(t, "", "bridge", "rollback", id); !strings.Contains(out, "rolled_back") {
		t.Fatalf("bridge rollback:\n%s", out)
	}
	if out := hk.wantOK(t, "", "bridge", "delete", id); !strings.Contains(out, "deleted") {
		t.Fatalf("bridge delete:\n%s", out)
	}
	hk.wantFail(t, 1, "", []string{"bridge", "get", id}, "NotFound")
}

// lbCommands: a load balancer created from YAML through the lbaas service and
// followed until built (--wait, JSON lines), shown with its member, watched while
// it is deleted (the watch ends by itself, deleted=true).
func lbCommands(t *testing.T, hk cli, flags []string) {
	nc := must(devcloud.Open(t, "old").Network())(t)
	sub := must(devcloud.FindSubnet(t.Context(), nc, devcloud.VLANSubnet))(t)
	name := fmt.Sprintf("ctest-cli-lb-%d", rand.IntN(1_000_000))
	spec := fmt.Sprintf(`display_name: %[1]s
vip: {subnet_id: %[2]s}
listeners:
- display_name: %[1]s-tcp
  protocol: TCP
  port: 80
  pool:
    display_name: %[1]s-pool
    protocol: PROXY
    members: [{display_name: web-1, address: 10.101.0.21, port: 8080}]
`, name, sub.ID)
	hk.wantFail(t, 1, "display_name: "+name+"\n", []string{"loadbalancers", "create", "-f", "-"}, "InvalidArgument", "field load_balancer.vip")
	out := hk.wantOK(t, spec, "loadbalancers", "create", "-f", "-", "--wait", "-o", "json")
	var last struct {
		LoadBalancer struct {
			Name string `json:"name"`
		} `json:"loadBalancer"`
		Settled bool `json:"settled"`
	}
	for dec := json.NewDecoder(strings.NewReader(out)); dec.More(); {
		if err := dec.Decode(&last); err != nil {
			t.Fatalf("loadbalancers create --wait -o json: %v\n%s", err, out)
		}
	}
	lb := last.LoadBalancer.Name
	if !last.Settled || !strings.HasPrefix(lb, "loadBalancers/") {
		t.Fatalf("loadbalancers create --wait: last message %+v", last)
	}
	t.Cleanup(func() { _, _ = hk(t, "", "loadbalancers", "delete", lb) })
	out = hk.wantOK(t, "", "loadbalancers", "get", lb)
	columns(t, out, "NAME", "ID", "PROVISIONING", "OPERATING")
	if !strings.Contains(out, "member") || !strings.Contains(out, "10.101.0.21:8080") {
		t.Fatalf("loadbalancers get:\n%s", out)
	}
	// Watch it while it is deleted.
	watch := exec.Command(bins["hikkoshi"], append(append([]string{}, flags...), "loadbalancers", "watch", lb)...)
	var wout bytes.Buffer
	watch.Stdout, watch.Stderr = &wout, &wout
	must(0, watch.Start())(t)
	done := make(chan error, 1)
	go func() { done <- watch.Wait() }()
	time.Sleep(time.Second) // its first message
	if out := hk.wantOK(t, "", "loadbalancers", "delete", lb); !strings.Contains(out, "deleted") {
		t.Fatalf("loadbalancers delete: %s", out)
	}
	select {
	case err := <-done:
		if err != nil || !strings.Contains(wout.String(), "deleted=true") {
			t.Fatalf("loadbalancers watch: %v\n%s", err, wout.String())
		}
	case <-time.After(3 * time.Minute):
		_ = watch.Process.Kill()
		t.Fatalf("loadbalancers watch did not end with the deletion:\n%s", wout.String())
	}
	hk.wantFail(t, 1, "", []string{"loadbalancers", "get", lb}, "NotFound")
}
