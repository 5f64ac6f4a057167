package p2v

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hikkoshi/hikkoshi/platform/p2vtest"
)

// TestConvertUEFIFixtureBoots converts the fixture's UEFI disk (GPT, an EFI system
// partition with the vendor's GRUB, SATA-only initramfs) and boots the result with
// OVMF from a virtio disk to a login prompt: GRUB from the new EFI system
// partition's fallback path, which needs no NVRAM entry, and /boot/efi mounted from
// the new fstab (a failed mount would stop the boot short of login). The source is
// not changed.
func TestConvertUEFIFixtureBoots(t *testing.T) {
	disk := p2vtest.FixtureUEFI(t)
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	d, a, err := Inspect(ctx, disk, filepath.Join(work, "inspect"))
	if err != nil {
		t.Fatal(err)
	}
	var mps []string
	for _, p := range d.Partitions {
		mps = append(mps, p.FSType+":"+p.MountPoint)
	}
	if a.Firmware != "uefi" || d.Label != "gpt" || strings.Join(mps, ",") != "vfat:/boot/efi,ext4:/" {
		t.Fatalf("inspection: firmware %q, table %q, partitions %v", a.Firmware, d.Label, mps)
	}
	res, files := converted(ctx, t, disk, "52:54:00:12:34:58", "/etc/fstab", "/boot/efi/EFI/BOOT/BOOTX64.EFI", "/boot/efi/EFI/debian/grub.cfg")
	if res.Firmware != "uefi" || res.ESPUUID == "" {
		t.Fatalf("result firmware %q, ESP %q", res.Firmware, res.ESPUUID)
	}
	if f := string(files["/etc/fstab"]); !strings.Contains(f, "UUID="+res.ESPUUID+"  /boot/efi  vfat") || !strings.Contains(f, "UUID="+res.RootUUID+"  /  ext4") {
		t.Fatalf("new fstab:\n%s", f)
	}
	if len(files["/boot/efi/EFI/BOOT/BOOTX64.EFI"]) < 100<<10 || !strings.Contains(string(files["/boot/efi/EFI/debian/grub.cfg"]), res.RootUUID) {
		t.Fatalf("ESP: BOOTX64.EFI %d bytes, vendor stub %q", len(files["/boot/efi/EFI/BOOT/BOOTX64.EFI"]), files["/boot/efi/EFI/debian/grub.cfg"])
	}
	if _, err := os.Stat(OVMF); err != nil {
		t.Fatalf("no OVMF (%v): tilt/p2v/fixture.sh installs Debian's ovmf", err)
	}
	console := bootsToLogin(ctx, t, res.Image, "52:54:00:12:34:58", true)
	for _, want := range []string{"root=UUID=" + res.RootUUID, "EFI v"} {
		if !strings.Contains(console, want) {
			t.Errorf("serial console lacks %q", want)
		}
	}
}
