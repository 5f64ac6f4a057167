package discovery

import (
	"strings"
	"testing"
	"time"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
)

// Console lines as the dev cloud's TCG compute showed them (a converted Debian 12).
const (
	bootStart = "[    0.000000] Linux version 6.1.0-50-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0) #1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2026-07-02)\n"
	withCI    = bootStart + "[   30.189373] cloud-init[275]: Cloud-init v. 22.4.2 running 'init-local' at Mon, 07 Dec 2026 14:27:24 +0000. Up 29.79 seconds.\n" +
		"\nDebian GNU/Linux 12 web-1 ttyS0\n\nweb-1 login: "
	withoutCI = bootStart + "[  OK  ] Started ssh.service - OpenBSD Secure Shell server.\n\nDebian GNU/Linux 12 pg-legacy-1 ttyS0\n\npg-legacy-1 login: "
)

func TestGuestCloudInit(t *testing.T) {
	for _, c := range []struct {
		name, console string
		want          inventoryv1.GuestCloudInit
		version       string
	}{
		{"cloud-init ran", withCI, inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_PRESENT, "22.4.2"},
		{"a boot to login without it", withoutCI, inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_ABSENT, ""},
		{"no boot in the log (it rotated away)", "[123456.7] eth0: link up\nweb-1 login: ", inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_UNKNOWN, ""},
		{"a boot not yet at its login", bootStart + "[    3.0] Run /init as init process\n", inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_UNKNOWN, ""},
		{"Nova's fake driver", fakeDriverConsole, inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_UNKNOWN, ""},
		{"empty", "", inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_UNKNOWN, ""},
		// What a guest prints is kept printable and short.
		{"a version word with NULs", "Cloud-init v. 22.4.2-" + string(make([]byte, 100)) + "x running", inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_PRESENT, "22.4.2-x"},
		{"a version word with escapes, too long", "Cloud-init v. 1\x1b[31m" + strings.Repeat("2", 40) + " running", inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_PRESENT, "1[31m" + strings.Repeat("2", 27)},
	} {
		got, v := GuestCloudInit(c.console)
		if got != c.want || v != c.version {
			t.Errorf("%s: %v %q, want %v %q", c.name, got, v, c.want, c.version)
		}
	}
}

// TestSyncReadsGuestConsoles: a sync reads the console of each ACTIVE server whose
// guest it does not know yet, and keeps what it learnt while the server runs the same
// image (an unknown answer: the same boot); a rebooted or rebuilt server is read again.
func TestSyncReadsGuestConsoles(t *testing.T) {
	h := newHarness(t, 5, 1)
	id := func(i int) string { return h.fc.servers[i]["id"].(string) }
	h.fc.consoles = map[string]string{id(0): withCI, id(1): withoutCI}
	h.fc.servers[3]["status"] = "SHUTOFF"
	guestOf := func(i int) (inventoryv1.GuestCloudInit, string) {
		t.Helper()
		w, err := h.store.Get(t.Context(), WorkloadID(id(i)))
		if err != nil {
			t.Fatal(err)
		}
		return w.GetFacts().GetInstance().GetGuestCloudInit(), w.GetFacts().GetInstance().GetCloudInitVersion()
	}
	h.sync(t, inventoryv1.SyncMode_SYNC_MODE_FULL)
	for i, want := range []inventoryv1.GuestCloudInit{
		inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_PRESENT, inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_ABSENT,
		inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_UNKNOWN, inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_UNSPECIFIED,
		inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_UNKNOWN,
	} {
		if got, _ := guestOf(i); got != want {
			t.Errorf("server %d: %v, want %v", i, got, want)
		}
	}
	if _, v := guestOf(0); v != "22.4.2" {
		t.Errorf("server 0's cloud-init version %q", v)
	}
	if n := h.fc.consoleReads.Load(); n != 4 {
		t.Fatalf("the first sync read %d consoles, want the 4 ACTIVE servers'", n)
	}
	if sy := h.sync(t, inventoryv1.SyncMode_SYNC_MODE_FULL); sy.GetCounts().GetEtcdWrites() != 0 || h.fc.consoleReads.Load() != 4 {
		t.Fatalf("a quiet sync read %d consoles in all and wrote %d", h.fc.consoleReads.Load(), sy.GetCounts().GetEtcdWrites())
	}
	// Server 2 reboots, now with cloud-init; server 0 is rebuilt from another image.
	now := time.Now().UTC().Format(time.RFC3339)
	h.fc.consoles[id(2)] = withCI
	h.fc.servers[2]["updated"] = now
	h.fc.consoles[id(0)] = withoutCI
	h.fc.servers[0]["image"] = map[string]any{"id": "1f000000-0000-4000-8000-000000000002"}
	h.fc.servers[0]["updated"] = now
	h.sync(t, inventoryv1.SyncMode_SYNC_MODE_FULL)
	if got, _ := guestOf(2); got != inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_PRESENT {
		t.Errorf("server 2 after its reboot: %v", got)
	}
	if got, _ := guestOf(0); got != inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_ABSENT {
		t.Errorf("server 0 after its rebuild: %v", got)
	}
	if n := h.fc.consoleReads.Load(); n != 6 {
		t.Errorf("%d console reads in all, want 6", n)
	}
}
