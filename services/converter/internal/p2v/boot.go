package p2v

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"time"
)

// BootOptions describe a boot under qemu to check an image.
type BootOptions struct {
	// Disk is the image; Format its format (qcow2, raw). It is opened snapshot=on
	// (the boot writes nothing to it) unless Writable.
	Disk, Format string
	// Bus is "virtio" (a cloud's disk) or "sata".
	Bus string
	// MAC, if set, adds a virtio NIC with that MAC on qemu's user network with
	// restrict=on: the guest sees a NIC and reaches nothing.
	MAC string
	// Kernel, Initrd and Append boot a kernel directly (no bootloader).
	Kernel, Initrd, Append string
	// Want is the serial-console pattern that ends the boot (a login prompt); Fail
	// patterns end it as failed.
	Want string
	Fail []string
	// Timeout bounds the boot.
	Timeout time.Duration
	// UEFI boots with OVMF (Debian's ovmf package) instead of SeaBIOS.
	UEFI bool
	// Writable opens Disk without snapshot=on: what the guest writes stays (give it
	// an overlay of the image to look at its first boot afterwards).
	Writable bool
	// Drives are further raw files the guest sees as read-only virtio disks after
	// Disk (a config drive).
	Drives []string
}

// OVMF is the UEFI firmware Boot uses.
const OVMF = "/usr/share/ovmf/OVMF.fd"

// Boot boots an image under qemu with TCG (KVM does not work on these machines) and
// watches its serial console. It returns the console's text and whether Want
// appeared before a Fail pattern, the guest's end or the timeout; the timeout is an
// error that says so.
func Boot(ctx context.Context, o BootOptions) (string, bool, error) {
	log, err := os.CreateTemp("", "p2v-boot-*.log")
	if err != nil {
		return "", false, err
	}
	log.Close()
	defer os.Remove(log.Name())
	drive := fmt.Sprintf("file=%s,format=%s", o.Disk, o.Format)
	if !o.Writable {
		drive += ",snapshot=on"
	}
	args := []string{"-accel", "tcg", "-cpu", "max", "-m", "1024", "-no-reboot", "-display", "none", "-monitor", "none",
		"-serial", "file:" + log.Name()}
	switch o.Bus {
	case "sata":
		args = append(args, "-drive", drive+",if=none,id=d0", "-device", "ahci,id=ahci", "-device", "ide-hd,drive=d0,bus=ahci.0")
	default:
		args = append(args, "-drive", drive+",if=virtio")
	}
	for _, d := range o.Drives {
		args = append(args, "-drive", fmt.Sprintf("file=%s,format=raw,if=virtio,readonly=on", d))
	}
	if o.MAC != "" {
		args = append(args, "-nic", "user,restrict=on,model=virtio-net-pci,mac="+o.MAC)
	} else {
		args = append(args, "-nic", "none")
	}
	if o.UEFI {
		args = append(args, "-bios", OVMF)
	}
	if o.Kernel != "" {
		args = append(args, "-kernel", o.Kernel, "-initrd", o.Initrd, "-append", o.Append)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", false, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	want := regexp.MustCompile(o.Want)
	var fails []*regexp.Regexp
	for _, f := range o.Fail {
		fails = append(fails, regexp.MustCompile(f))
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		b, _ := os.ReadFile(log.Name())
		text := string(b)
		if want.MatchString(text) {
			_ = cmd.Process.Kill()
			<-done
			return text, true, nil
		}
		for _, f := range fails {
			if f.MatchString(text) {
				_ = cmd.Process.Kill()
				<-done
				return text, false, nil
			}
		}
		select {
		case err := <-done:
			b, _ := os.ReadFile(log.Name())
			switch {
			case want.Match(b):
				return string(b), true, nil
			case ctx.Err() != nil && start.Add(o.Timeout).Before(time.Now()):
				return string(b), false, fmt.Errorf("no %q on the serial console after %v (%d bytes of console)", o.Want, o.Timeout, len(b))
			case ctx.Err() == nil && err != nil:
				return string(b), false, fmt.Errorf("qemu: %w: %s", err, stderr.String())
			}
			return string(b), false, nil
		case <-tick.C:
		}
	}
}
