package p2v

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostileTreeStaysInside: a crafted server's tree whose files are links to the
// worker's own files cannot make the inspection read them nor the conversion write
// them (issue 16, finding 4).
func TestHostileTreeStaysInside(t *testing.T) {
	worker := t.TempDir() // stands for the worker's own files
	secret := filepath.Join(worker, "shadow")
	if err := os.WriteFile(secret, []byte("WorkerSecret release 9.9 (root:$6$worker)\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(worker, "ssh"), 0o755); err != nil {
		t.Fatal(err)
	}
	hostKey := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHikkoshiTheWorkersOwnHostKey0000000000000000 root@worker"
	if err := os.WriteFile(filepath.Join(worker, "ssh/ssh_host_ed25519_key.pub"), []byte(hostKey), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, d := range []string{"etc", "boot", "usr/sbin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"etc/redhat-release": secret,                        // CentOS 6 has no os-release: this is read instead
		"etc/fstab":          "../../../../../../" + secret, // relative, climbing out
		"etc/ssh":            filepath.Join(worker, "ssh"),
		"etc/cloud":          worker,
		"var":                worker,
	}
	for l, to := range links {
		if err := os.Symlink(to, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	a, err := AnalyzeTree(map[string]string{"/": root})
	if err != nil {
		t.Fatal(err)
	}
	if got := a.OS.Pretty + a.OS.ID + a.OS.Version + strings.Join(a.Problems, " "); strings.Contains(got, "Worker") || strings.Contains(got, "worker") || len(a.Fstab) != 0 {
		t.Fatalf("the inspection read the worker's file: OS %+v, fstab %v, problems %v", a.OS, a.Fstab, a.Problems)
	}
	if len(a.SSHHostKeys) != 0 {
		t.Fatalf("the inspection read the worker's host keys: %v", a.SSHHostKeys)
	}

	// Writes land inside the tree, whatever the links say.
	if err := writeIn(root, "/etc/fstab", "UUID=new / ext4 defaults 0 1\n", 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeIn(root, "/etc/cloud/cloud.cfg.d/90-hikkoshi.cfg", "x: 1\n", 0o644); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "/etc/cloud") {
		t.Fatalf("a write under /etc/cloud → the worker's directory: %v, want a refusal naming /etc/cloud", err)
	}
	if b, _ := os.ReadFile(secret); !strings.HasPrefix(string(b), "WorkerSecret") {
		t.Fatalf("the worker's file was overwritten: %q", b)
	}
	if _, err := os.Stat(filepath.Join(worker, "cloud.cfg.d")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a directory was made among the worker's files (%v)", err)
	}
	if b, err := readIn(root, "/etc/fstab"); err != nil || string(b) != "UUID=new / ext4 defaults 0 1\n" {
		t.Fatalf("the new fstab is not in the tree: %q %v", b, err)
	}
	// A tool handed a directory of the tree (tar into /var, mount on /dev) gets none
	// that is, or lies under, a link.
	if _, err := safeDir(root, "/var"); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "/var") {
		t.Fatalf("safeDir(/var → the worker's directory): %v", err)
	}
	if _, err := safeDir(root, "/etc/cloud/x"); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("safeDir under a link: %v", err)
	}
	if p, err := safeDir(root, "/proc"); err != nil || p != filepath.Join(root, "proc") {
		t.Fatalf("safeDir(/proc): %q %v", p, err)
	}
	if _, err := readIn(root, "/etc/x\x00y"); err == nil {
		t.Fatal("a NUL byte in a guest path was accepted")
	}
}
