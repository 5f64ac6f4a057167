package jobs

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	th "github.com/gophercloud/gophercloud/v2/testhelper"
	fake "github.com/gophercloud/gophercloud/v2/testhelper/client"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
)

// TestQuota runs the pre-flight's quota check against Nova's limits and Neutron's
// quota details as served by a fake API: what a boot would exceed is named with its
// numbers; -1 is no limit; an unreadable port quota is not checked; what the job
// already created is not counted again.
func TestQuota(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		instances, cores, ram [2]int // used, max
		ports                 [3]int // used, reserved, limit
		portStatus            int
		created               *converterv1.Created
		want                  []string
	}{
		{name: "room", instances: [2]int{3, 10}, cores: [2]int{4, 20}, ram: [2]int{4096, 51200}, ports: [3]int{5, 0, 50}, portStatus: 200},
		{name: "unlimited", instances: [2]int{3, -1}, cores: [2]int{4, -1}, ram: [2]int{4096, -1}, ports: [3]int{5, 0, -1}, portStatus: 200},
		{name: "instances full", instances: [2]int{10, 10}, cores: [2]int{4, 20}, ram: [2]int{0, -1}, ports: [3]int{5, 0, 50}, portStatus: 200,
			want: []string{"instances: 10 in use of 10, the server needs 1"}},
		{name: "cores and ram short", instances: [2]int{1, 10}, cores: [2]int{19, 20}, ram: [2]int{50000, 51200}, ports: [3]int{5, 0, 50}, portStatus: 200,
			want: []string{"cores: 19 in use of 20, the server needs 2", "RAM: 50000 MiB in use of 51200, the server needs 2048 MiB"}},
		{name: "ports reserved count", instances: [2]int{1, 10}, cores: [2]int{1, 20}, ram: [2]int{0, -1}, ports: [3]int{48, 2, 50}, portStatus: 200,
			want: []string{"ports: 50 in use of 50, the server needs 1"}},
		{name: "port quota unreadable", instances: [2]int{1, 10}, cores: [2]int{1, 20}, ram: [2]int{0, -1}, portStatus: 403},
		{name: "server already made", instances: [2]int{10, 10}, cores: [2]int{20, 20}, ram: [2]int{0, -1}, ports: [3]int{50, 0, 50}, portStatus: 200,
			created: &converterv1.Created{ServerId: "s", PortId: "p"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := th.SetupHTTP()
			defer fs.Teardown()
			fs.Mux.HandleFunc("/limits", func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, `{"limits":{"absolute":{"totalInstancesUsed":%d,"maxTotalInstances":%d,"totalCoresUsed":%d,"maxTotalCores":%d,"totalRAMUsed":%d,"maxTotalRAMSize":%d}}}`,
					tc.instances[0], tc.instances[1], tc.cores[0], tc.cores[1], tc.ram[0], tc.ram[1])
			})
			fs.Mux.HandleFunc("/v2.0/quotas/proj/details.json", func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.portStatus)
				fmt.Fprintf(w, `{"quota":{"port":{"used":%d,"reserved":%d,"limit":%d}}}`, tc.ports[0], tc.ports[1], tc.ports[2])
			})
			sc := fake.ServiceClient(fs)
			nc := fake.ServiceClient(fs)
			nc.ResourceBase = fs.Endpoint() + "v2.0/"
			r := &Runner{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			j := &converterv1.Job{Destination: &converterv1.V2VDestination{Cloud: "new"}, Created: tc.created}
			got, err := r.quota(t.Context(), j, clients{compute: sc, network: nc, project: "proj"}, &flavors.Flavor{VCPUs: 2, RAM: 2048})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}
