// Package p2vtest finds the P2V fixture disk for tests (tilt/p2v/fixture.sh).
package p2vtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Fixture returns the fixture disk's path, building it if it is not cached (about
// 3 minutes for both disks, once per machine). Outside CI it runs only with HIKKOSHI_P2V=1 and
// skips loudly otherwise; it needs root (loop devices, mounts, debootstrap).
func Fixture(tb testing.TB) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			tb.Fatal("P2V tests need root (loop devices, mounts, chroot)")
		}
		tb.Skip("P2V TESTS NEED ROOT (loop devices, mounts, chroot)")
	}
	if os.Getenv("CI") != "true" && os.Getenv("HIKKOSHI_P2V") != "1" {
		tb.Skip("P2V FIXTURE NOT BUILT HERE: set HIKKOSHI_P2V=1 (builds it once, ~3 min) or run under CI=true")
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "../../tilt/p2v/fixture.sh")
	cmd := exec.Command(script)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%s: %v", script, err)
	}
	return strings.TrimSpace(string(out))
}

// CacheDir is where tilt/p2v/fixture.sh keeps the fixture disks: a converter under
// test takes disk paths under it (--p2v-disk-root).
func CacheDir() string {
	c := os.Getenv("HIKKOSHI_CACHE")
	if c == "" {
		home, _ := os.UserHomeDir()
		c = filepath.Join(home, ".cache/hikkoshi")
	}
	return filepath.Join(c, "p2v")
}

// FixtureLVM returns the path of the fixture's LVM disk (/boot on a partition, root,
// /var and swap as logical volumes of vg-legacy; built with the other). Beside it,
// PATH.var.sha256 holds the sha256sum of every file of its /var, as built.
func FixtureLVM(tb testing.TB) string {
	tb.Helper()
	return strings.TrimSuffix(Fixture(tb), ".raw") + "-lvm.raw"
}

// FixtureUEFI returns the path of the fixture's UEFI disk (GPT; an EFI system
// partition with the vendor's GRUB; one root holding /boot and /var).
func FixtureUEFI(tb testing.TB) string {
	tb.Helper()
	return strings.TrimSuffix(Fixture(tb), ".raw") + "-uefi.raw"
}

// FixtureTwoDisks returns the paths of the fixture's server of two disks: /boot and
// / on the first, /var on the second (its fstab says /dev/sdb1).
func FixtureTwoDisks(tb testing.TB) (string, string) {
	tb.Helper()
	base := strings.TrimSuffix(Fixture(tb), ".raw")
	return base + "-multi-a.raw", base + "-multi-b.raw"
}

// Leftovers lists loop devices backed by files under dir and mounts under it.
func Leftovers(dir string) []string {
	var out []string
	l, _ := exec.Command("losetup", "-a").Output()
	for _, line := range strings.Split(string(l), "\n") {
		if strings.Contains(line, dir) {
			out = append(out, line)
		}
	}
	m, _ := os.ReadFile("/proc/mounts")
	for _, line := range strings.Split(string(m), "\n") {
		if strings.Contains(line, dir) {
			out = append(out, line)
		}
	}
	return out
}

// ConfigDrive writes an OpenStack config drive to path, as Nova makes one: a vfat
// file system labelled config-2 with openstack/latest/meta_data.json and, if
// userData is not empty, openstack/latest/user_data. It needs mkfs.vfat and mtools.
func ConfigDrive(tb testing.TB, path, metaData, userData string) {
	tb.Helper()
	dir := tb.TempDir()
	files := map[string]string{"meta_data.json": metaData}
	if userData != "" {
		files["user_data"] = userData
	}
	run := func(name string, args ...string) {
		tb.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			tb.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
	}
	run("mkfs.vfat", "-n", "config-2", "-C", path, "4096")
	run("mmd", "-i", path, "::openstack", "::openstack/latest")
	for name, content := range files {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
		run("mcopy", "-i", path, f, "::openstack/latest/"+name)
	}
}
