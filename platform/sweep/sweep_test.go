package sweep

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSweepFindsAndNamesThePlace(t *testing.T) {
	dir := t.TempDir()
	cy := filepath.Join(dir, "clouds.yaml")
	if err := os.WriteFile(cy, []byte("clouds:\n  old:\n    auth:\n      username: admin\n      password: s3ntinel-passw0rd\n  new:\n    auth:\n      application_credential_secret: appcred-s3cret-42\n      password: short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secrets, err := FromCloudsYAML(cy)
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets) != 3 {
		t.Fatalf("%d secrets: %v", len(secrets), secrets)
	}
	var p Places
	p.Add("inventory log", "level=INFO msg=ok\nlevel=WARN msg=\"auth failed for admin:s3ntinel-passw0rd\"")
	p.Add("etcd /hikkoshi/x", "nothing here, not even short")
	hits := p.Find(secrets)
	if len(hits) != 1 || hits[0].Where != "inventory log" || strings.Contains(hits[0].String(), "s3ntinel") {
		t.Fatalf("hits %v", hits)
	}
}
