package discovery

import (
	"context"
	"regexp"
	"strings"
	"sync"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"golang.org/x/sync/errgroup"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
)

// Whether a guest runs cloud-init is read from its console log, the only place a
// cloud's API shows anything of what runs inside a server: cloud-init announces
// each of its stages there ("Cloud-init v. 22.4.2 running 'init-local' at …").

var (
	cloudInitRunning = regexp.MustCompile(`Cloud-init v\. (\S+) running`)
	linuxBoot        = regexp.MustCompile(`Linux version \d`)
	loginPrompt      = regexp.MustCompile(`(?m)\S login: `)
)

// GuestCloudInit reads a console log: cloud-init seen running (with its version), a
// Linux boot up to its login prompt without it, or neither.
func GuestCloudInit(console string) (inventoryv1.GuestCloudInit, string) {
	if m := cloudInitRunning.FindStringSubmatch(console); m != nil {
		return inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_PRESENT, trimVersion(m[1])
	}
	if b := linuxBoot.FindStringIndex(console); b != nil && loginPrompt.MatchString(console[b[1]:]) {
		return inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_ABSENT, ""
	}
	return inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_UNKNOWN, ""
}

type guest struct {
	cloudInit inventoryv1.GuestCloudInit
	version   string
}

// guestFacts gives each server of the listing what is known of its guest: kept from
// its stored facts while it runs the same image (a known answer), or the same image
// and boot (an unknown one: Nova's updated_at moves when the server is started or
// rebooted); otherwise read from the console of an ACTIVE server. A console that
// cannot be read (a cloud without console logs, a server gone meanwhile) keeps what
// was stored: the sync does not fail for it.
func guestFacts(ctx context.Context, cc *gophercloud.ServiceClient, list []servers.Server, stored map[string]*inventoryv1.Workload) map[string]guest {
	out := make(map[string]guest, len(list))
	var read []string
	for i := range list {
		srv := &list[i]
		img, _ := srv.Image["id"].(string)
		f := stored[srv.ID].GetFacts().GetInstance()
		was := guest{f.GetGuestCloudInit(), f.GetCloudInitVersion()}
		sameImage := f != nil && f.GetImageId() == img
		switch {
		case sameImage && (was.cloudInit == inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_PRESENT || was.cloudInit == inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_ABSENT):
			out[srv.ID] = was
		case sameImage && was.cloudInit == inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_UNKNOWN && f.GetServerUpdateTime().AsTime().Equal(srv.Updated):
			out[srv.ID] = was
		case srv.Status == "ACTIVE":
			out[srv.ID] = was
			read = append(read, srv.ID)
		case sameImage:
			out[srv.ID] = was
		}
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(listConcurrency)
	for _, id := range read {
		g.Go(func() error {
			console, err := servers.ShowConsoleOutput(gctx, cc, id, servers.ShowConsoleOutputOpts{}).Extract()
			if err != nil {
				return nil // kept as stored; read again at the next sync
			}
			ci, v := GuestCloudInit(console)
			mu.Lock()
			out[id] = guest{ci, v}
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	return out
}

// trimVersion keeps a version word short and printable: it is read from a guest.
func trimVersion(v string) string {
	v = strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e {
			return -1
		}
		return r
	}, v)
	if len(v) > 32 {
		v = v[:32]
	}
	return v
}
