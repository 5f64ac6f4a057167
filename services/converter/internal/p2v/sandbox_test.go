package p2v

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// miniTree is a tree with the worker's own bash and a few tools (and their
// libraries): a guest to run hostile commands in.
func miniTree(t *testing.T) string {
	t.Helper()
	nt := t.TempDir()
	for _, d := range []string{"dev", "proc", "sys", "tmp", "bin"} {
		if err := os.MkdirAll(filepath.Join(nt, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	libRE := regexp.MustCompile(`(/[^\s]+)\s+\(0x`)
	copyFile := func(src string) {
		dst := filepath.Join(nt, src)
		if _, err := os.Stat(dst); err == nil {
			return
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		_ = os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tool := range []string{"bash", "ls", "cat", "mknod", "mount", "chroot", "wc", "grep"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("%s: %v", tool, err)
		}
		p, _ = filepath.EvalSymlinks(p)
		copyFile(p)
		if err := os.Symlink(p, filepath.Join(nt, "bin", tool)); err != nil && !os.IsExist(err) && filepath.Dir(p) != "/bin" {
			t.Fatal(err)
		}
		out, _ := exec.Command("ldd", p).Output()
		for _, m := range libRE.FindAllStringSubmatch(string(out), -1) {
			lib, _ := filepath.EvalSymlinks(m[1])
			copyFile(lib)
			if lib != m[1] {
				_ = os.MkdirAll(filepath.Join(nt, filepath.Dir(m[1])), 0o755)
				_ = os.Symlink(lib, filepath.Join(nt, m[1]))
			}
		}
	}
	return nt
}

// TestGuestCommandsAreSandboxed: a guest program, run as root, sees a /dev with
// no disk of the worker, a /proc without the worker's processes, and may not make
// a device node, mount, chroot out or reach the network; nothing is left mounted.
func TestGuestCommandsAreSandboxed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, mounts)")
	}
	for _, tool := range []string{"unshare", "capsh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s: %v", tool, err)
		}
	}
	nt := miniTree(t)
	script := `echo "dev: $(echo $(ls /dev))"
echo "processes: $(ls /proc | grep -cE '^[0-9]+$')"
mknod /tmp/sda b 8 0 2>/dev/null && echo MKNOD-OK || echo MKNOD-DENIED
mount -t tmpfs x /tmp 2>/dev/null && echo MOUNT-OK || echo MOUNT-DENIED
chroot / /bin/bash -c true 2>/dev/null && echo CHROOT-OK || echo CHROOT-DENIED
(echo > /dev/tcp/127.0.0.1/22) 2>/dev/null && echo NET-OK || echo NET-DENIED
cat /proc/self/status | grep CapBnd`
	cmd, err := guestCommand(t.Context(), nt, false, guestEnv, "/bin/bash", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("sandbox: %v\n%s", err, out.String())
	}
	got := out.String()
	t.Logf("in the sandbox:\n%s", got)
	for _, want := range []string{"dev: fd full null ptmx pts random shm tty urandom zero\n", "MKNOD-DENIED", "MOUNT-DENIED", "CHROOT-DENIED", "NET-DENIED"} {
		if !strings.Contains(got, want) {
			t.Errorf("want %q", want)
		}
	}
	if !regexp.MustCompile(`processes: [1-4]\n`).MatchString(got) {
		t.Errorf("the guest sees the worker's processes")
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), nt) {
		t.Errorf("mounts of the sandbox are left on the worker:\n%s", mi)
	}
}
