package discovery

import (
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
)

func TestVolumeFactsBootAndAttachments(t *testing.T) {
	att := func(server, device string) []volumes.Attachment {
		return []volumes.Attachment{{ServerID: server, Device: device}}
	}
	snap := &Snapshot{AllVolumes: true, Volumes: []volumes.Volume{
		{ID: "v-root", Size: 10, Bootable: "true", Attachments: att("s1", "/dev/vda")},
		{ID: "v-data", Size: 100, Bootable: "true", VolumeType: "ssd", Attachments: att("s1", "/dev/vdb")},
		{ID: "v-detached", Size: 5},
		{ID: "v-other", Size: 1, Bootable: "true", Attachments: att("s2", "/dev/vdc")},
	}}
	ix := newIndex(snap)

	cases := []struct {
		name, server, image, root string
		known                     []string
		want                      []string // IDs, sorted
		boot                      string
	}{
		{"root device named", "s1", "", "/dev/vda", nil, []string{"v-data", "v-root"}, "v-root"},
		{"root device unknown: first bootable device", "s1", "", "", nil, []string{"v-data", "v-root"}, "v-root"},
		{"booted from an image: no boot volume", "s1", "img", "", nil, []string{"v-data", "v-root"}, ""},
		{"a detached volume is not the server's any more", "s2", "img", "", []string{"v-detached", "v-other"}, []string{"v-other"}, ""},
		{"a volume Cinder does not show stays, by ID", "s2", "img", "", []string{"v-hidden"}, []string{"v-hidden", "v-other"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ix.volumeFacts(c.server, c.known, c.image, c.root)
			var ids []string
			boot := ""
			for _, v := range got {
				ids = append(ids, v.GetId())
				if v.GetBoot() {
					if boot != "" {
						t.Fatalf("two boot volumes: %s and %s", boot, v.GetId())
					}
					boot = v.GetId()
				}
			}
			if len(ids) != len(c.want) {
				t.Fatalf("volumes %v, want %v", ids, c.want)
			}
			for i := range ids {
				if ids[i] != c.want[i] {
					t.Fatalf("volumes %v, want %v", ids, c.want)
				}
			}
			if boot != c.boot {
				t.Fatalf("boot volume %q, want %q", boot, c.boot)
			}
		})
	}
	data := ix.volumeFacts("s1", nil, "", "")[0]
	if data.GetId() != "v-data" || data.GetDevice() != "/dev/vdb" || data.GetSizeGb() != 100 || data.GetVolumeType() != "ssd" || !data.GetBootable() {
		t.Fatalf("data volume facts %v", data)
	}
}
