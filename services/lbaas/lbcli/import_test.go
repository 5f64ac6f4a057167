package lbcli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hikkoshi/hikkoshi/services/lbaas/haproxyimport"
)

func runLB(t *testing.T, args ...string) (string, error) {
	t.Helper()
	t.Setenv("OS_CLOUD", "") // import reads no cloud
	root := NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

// TestImportPlansWithoutACloud: import prints the plan of a file with no cloud
// configured, exits "incomplete" (3) while lines are left over, reads $NAME from
// --env, and says file:line for a file haproxy would refuse.
func TestImportPlansWithoutACloud(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(cfg, []byte(`defaults
  mode http
frontend f
  bind 10.0.0.1:80
  default_backend b
backend b
  server a "10.0.0.2:${PORT}" check
`), 0o600))
	out, err := runLB(t, "import", cfg, "--env", "PORT=8080", "--name", "shop")
	if err != nil || !strings.Contains(out, "load balancer shop (VIP 10.0.0.1)") || !strings.Contains(out, "member a 10.0.0.2:8080") || !strings.Contains(out, ": complete") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	out, err = runLB(t, "import", cfg, "--env", "PORT=8080", "-o", "json")
	var p haproxyimport.Plan
	if err != nil || json.Unmarshal([]byte(out), &p) != nil || !p.Complete || p.LoadBalancers[0].Pools[0].Members[0].Port != 8080 {
		t.Fatalf("import -o json: %v\n%s", err, out)
	}
	if _, err := runLB(t, "import", cfg); err == nil || !strings.Contains(err.Error(), cfg+":7: environment variable PORT is not given") {
		t.Fatalf("without --env: %v", err)
	}
	// The server moved: its member is at the new address, named as its workload.
	out, err = runLB(t, "import", cfg, "--env", "PORT=8080", "--moved", "10.0.0.2=10.1.0.2", "--member-name", "10.1.0.2=web-1")
	if err != nil || !strings.Contains(out, "member web-1 10.1.0.2:8080") {
		t.Fatalf("import --moved --member-name: %v\n%s", err, out)
	}
	if _, err := runLB(t, "import", cfg, "--env", "PORT=8080", "--moved", "10.0.0.2=web-1"); err == nil || !strings.Contains(err.Error(), "--moved 10.0.0.2=web-1: give OLD_ADDRESS=NEW_ADDRESS") {
		t.Fatalf("--moved to a name: %v", err)
	}
	must(os.WriteFile(cfg, []byte("frontend f\n  bind 10.0.0.1:80\n  option http-buffer-request\n  default_backend b\nbackend b\n  server a 10.0.0.2:80\n"), 0o600))
	out, err = runLB(t, "import", cfg)
	if !errors.Is(err, ErrIncomplete) || !strings.Contains(out, "left over") || !strings.Contains(out, cfg+":3") {
		t.Fatalf("a leftover: %v\n%s", err, out)
	}
	if out, err = runLB(t, "import", cfg, "--accept", cfg+":3"); err != nil || !strings.Contains(out, "complete (1 accepted)") || !strings.Contains(out, "left over (accepted)") {
		t.Fatalf("the leftover accepted: %v\n%s", err, out)
	}
	if _, err = runLB(t, "import", cfg, "--accept", cfg+":4"); err == nil || !strings.Contains(err.Error(), cfg+":4: no leftover") {
		t.Fatalf("accepting a mapped line: %v", err)
	}
	must(os.WriteFile(cfg, []byte("frontend f\n  bind 10.0.0.1:80\n  default_backend nowhere\n"), 0o600))
	if _, err := runLB(t, "import", cfg); err == nil || !strings.Contains(err.Error(), cfg+`:3: frontend f names backend "nowhere"`) {
		t.Fatalf("an undefined backend: %v", err)
	}
}
