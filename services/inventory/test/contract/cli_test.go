package contract

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
)

// TestCLISetsRolesAndPlans: the operator's command line sets a role and the stateful
// flag, proposes a plan with a rule and a dependency, accepts it, and lists a wave;
// a bad flag is refused with the service's field message.
func TestCLISetsRolesAndPlans(t *testing.T) {
	bin, cleanup, err := servicetest.Build("github.com/hikkoshi/hikkoshi/services/inventory/cmd/hikkoshi-inv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	e := newEnv(t)
	p := e.start(t)
	for _, id := range []string{"web-1", "api-1", "pg-1"} {
		must(p.client.CreateWorkload(t.Context(), &inventoryv1.CreateWorkloadRequest{WorkloadId: id, Workload: &inventoryv1.Workload{
			DisplayName: id, Source: &inventoryv1.Workload_Physical{Physical: &inventoryv1.PhysicalSource{Hostname: id}},
		}}))(t)
	}
	inv := func(args ...string) (string, int) {
		t.Helper()
		out, err := exec.Command(bin, append(append([]string{"--inventory", p.Addr}, e.ClientFlags("admin")...), args...)...).CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return string(out), exit.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	if out, code := inv("workloads", "set", "pg-1", "--role", "db", "--stateful"); code != 0 || !strings.Contains(out, "stateful") {
		t.Fatalf("set: %d %s", code, out)
	}
	if out, code := inv("workloads", "set", "api-1", "--role", "api"); code != 0 {
		t.Fatalf("set: %d %s", code, out)
	}
	out, code := inv("plan", "create", "--rule", `^web-[0-9]+$=web`, "--after", "api=web")
	if code != 0 || !strings.Contains(out, "wave 1") || !strings.Contains(out, "wave 3 (stateful)") {
		t.Fatalf("plan create: %d\n%s", code, out)
	}
	name := strings.Fields(out)[0]
	if out, code := inv("plan", "accept", name); code != 0 || !strings.Contains(out, "3 workloads written") {
		t.Fatalf("plan accept: %d %s", code, out)
	}
	out, code = inv("workloads", "list", "--wave", "2")
	if code != 0 || !strings.Contains(out, "workloads/api-1") || strings.Contains(out, "web-1") {
		t.Fatalf("list --wave 2: %d\n%s", code, out)
	}
	if out, code := inv("workloads", "set", "web-1", "--role", "Web Server"); code != 1 || !strings.Contains(out, "InvalidArgument") || !strings.Contains(out, "workload.role") {
		t.Fatalf("bad role: %d %s", code, out)
	}
	t.Logf("wave 2:\n%s", out)
}
