package cloudinit

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v2"
)

// debian12 is /etc/cloud/cloud.cfg's module lists of Debian 12's cloud-init 22.4.2.
var debian12 = map[Stage][]string{
	StageInit: {"migrator", "seed_random", "bootcmd", "write-files", "growpart", "resizefs", "disk_setup", "mounts",
		"set_hostname", "update_hostname", "update_etc_hosts", "ca-certs", "rsyslog", "users-groups", "ssh"},
	StageConfig: {"snap", "ssh-import-id", "keyboard", "locale", "set-passwords", "grub-dpkg", "apt-pipelining",
		"apt-configure", "ntp", "timezone", "disable-ec2-metadata", "runcmd", "byobu"},
	StageFinal: {"package-update-upgrade-install", "fan", "landscape", "lxd", "write-files-deferred", "puppet", "chef",
		"mcollective", "salt-minion", "reset_rmc", "refresh_rmc_and_interface", "rightscale_userdata", "scripts-vendor",
		"scripts-per-once", "scripts-per-boot", "scripts-per-instance", "scripts-user", "ssh-authkey-fingerprints",
		"keys-to-console", "install-hotplug", "phone-home", "final-message", "power-state-change"},
}

func TestEveryStockModuleIsDecided(t *testing.T) {
	for st, names := range debian12 {
		for _, n := range names {
			if !slices.ContainsFunc(Modules, func(m Module) bool { return m.Name == n && m.Stage == st }) {
				t.Errorf("%s in %s has no decision", n, st)
			}
		}
	}
	seen := map[string]bool{}
	for _, m := range Modules {
		if seen[m.Name] || m.Why == "" {
			t.Errorf("module %s: decided twice or without a reason", m.Name)
		}
		seen[m.Name] = true
	}
}

func TestConfigAndUserDataKeepTheIdentity(t *testing.T) {
	for name, text := range map[string]string{"config": Config(), "user-data": UserData(Options{KeyPairUser: "ops"})} {
		var c map[string]any
		if err := yaml.Unmarshal([]byte(text), &c); err != nil {
			t.Fatalf("%s is not YAML: %v\n%s", name, err, text)
		}
		for k, want := range map[string]any{"preserve_hostname": true, "ssh_deletekeys": false, "disable_root": false,
			"manage_etc_hosts": false, "apt_preserve_sources_list": true, "resize_rootfs": true} {
			if c[k] != want {
				t.Errorf("%s: %s = %v, want %v", name, k, c[k], want)
			}
		}
		if u, ok := c["users"].([]any); !ok || len(u) != 0 {
			t.Errorf("%s: users = %v, want an empty list (no default user)", name, c["users"])
		}
		all := ""
		for _, st := range []Stage{StageInit, StageConfig, StageFinal} {
			l, _ := c[string(st)].([]any)
			for _, m := range l {
				all += " " + m.(string) + " "
			}
		}
		for _, gone := range []string{"ssh", "set-passwords", "apt-configure", "locale", "ntp", "timezone", "mounts", "set_hostname", "update_etc_hosts"} {
			if strings.Contains(all, " "+gone+" ") {
				t.Errorf("%s runs %s", name, gone)
			}
		}
		for _, kept := range []string{"growpart", "resizefs", "users-groups", "runcmd", "scripts-per-instance", "keys-to-console"} {
			if !strings.Contains(all, " "+kept+" ") {
				t.Errorf("%s does not run %s", name, kept)
			}
		}
	}
	if !strings.HasPrefix(UserData(Options{}), "#cloud-config\n") || strings.Contains(UserData(Options{}), "runcmd:\n") {
		t.Error("user data without a key pair user: want #cloud-config and no runcmd")
	}
	var c struct{ Runcmd [][]string }
	if err := yaml.Unmarshal([]byte(UserData(Options{KeyPairUser: "ops"})), &c); err != nil || len(c.Runcmd) != 1 || c.Runcmd[0][2] != KeyPairScript("ops") {
		t.Fatalf("runcmd %v (%v): want the key pair script, intact", c.Runcmd, err)
	}
}

func TestCheckUser(t *testing.T) {
	for _, ok := range []string{"", "ops", "svc_backup", "a.b-c"} {
		if err := CheckUser(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"Root", "ops;rm -rf /", "x'y", "../etc", "-o", strings.Repeat("a", 33), "a b"} {
		if err := CheckUser(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestKeyPairScript runs the script with stand-ins for getent, cloud-init and
// runuser: each key once, the user's other keys kept, nothing for no keys.
func TestKeyPairScript(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{filepath.Join(home, ".ssh"), bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	keysFile := filepath.Join(dir, "keys")
	stub := map[string]string{
		"getent":     `[ "$2" = ops ] && echo "ops:x:1000:1000::` + home + `:/bin/sh"`,
		"cloud-init": `cat ` + keysFile,
		"runuser":    `[ "$2" = ops ] || exit 9; shift 3; exec "$@"`,
	}
	for n, body := range stub {
		if err := os.WriteFile(filepath.Join(bin, n), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte(KeyPairScript("ops")), 0o755); err != nil {
		t.Fatal(err)
	}
	ak := filepath.Join(home, ".ssh/authorized_keys")
	own := "ssh-ed25519 AAAAown ops@laptop\n"
	if err := os.WriteFile(ak, []byte(own), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(keys string) string {
		t.Helper()
		if err := os.WriteFile(keysFile, []byte(keys), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("/bin/sh", script)
		cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("script: %v\n%s", err, out)
		}
		b, _ := os.ReadFile(ak)
		return string(b)
	}
	cloud := "ssh-ed25519 AAAAcloud mykey"
	if got := run(cloud + "\n"); got != own+cloud+"\n" {
		t.Fatalf("authorized_keys:\n%s", got)
	}
	if got := run(cloud + "\n"); got != own+cloud+"\n" {
		t.Fatalf("a second run changed authorized_keys:\n%s", got)
	}
	if got := run(""); got != own+cloud+"\n" {
		t.Fatalf("no keys changed authorized_keys:\n%s", got)
	}
}
