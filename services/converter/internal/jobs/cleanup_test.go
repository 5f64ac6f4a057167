package jobs

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	th "github.com/gophercloud/gophercloud/v2/testhelper"
	fake "github.com/gophercloud/gophercloud/v2/testhelper/client"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
)

// TestCleanupBootReportsUnreadableLists: a list answer the clean-up cannot read (a
// body that is not a list of servers or ports) is an error, not "nothing to
// delete" — read as empty, a leaked server or port would be reported as a clean
// clean-up. (gophercloud's AllPages already extracts each page to ask whether it is
// empty, so this held before the Extract errors were checked too; the test pins it.)
func TestCleanupBootReportsUnreadableLists(t *testing.T) {
	for _, tc := range []struct {
		name           string
		servers, ports string
		want           []string
	}{
		{name: "readable and empty", servers: `{"servers":[]}`, ports: `{"ports":[]}`},
		{name: "servers unreadable", servers: `{"servers":{"id":"s1"}}`, ports: `{"ports":[]}`, want: []string{"destination servers"}},
		{name: "ports unreadable", servers: `{"servers":[]}`, ports: `{"ports":"p1"}`, want: []string{"destination ports"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := th.SetupHTTP()
			defer fs.Teardown()
			fs.Mux.HandleFunc("/servers/detail", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, tc.servers)
			})
			fs.Mux.HandleFunc("/v2.0/ports", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, tc.ports)
			})
			sc := fake.ServiceClient(fs)
			nc := fake.ServiceClient(fs)
			nc.ResourceBase = fs.Endpoint() + "v2.0/"
			r := &Runner{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			j := &converterv1.Job{Name: "jobs/j1", Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: "n1"}}
			err := r.cleanupBoot(t.Context(), j, "j1", clients{compute: sc, network: nc, project: "proj"}, "web-1")
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("clean-up: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("an unreadable list was taken for an empty one: the clean-up reported success")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}
