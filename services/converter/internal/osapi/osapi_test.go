package osapi

import (
	"io"
	"net/http"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	th "github.com/gophercloud/gophercloud/v2/testhelper"
	fake "github.com/gophercloud/gophercloud/v2/testhelper/client"
)

// TestErrorsAreNamed: against a fake API, a list whose body is not a list is an
// error (never an empty list), and 404 and 409 are told apart.
func TestErrorsAreNamed(t *testing.T) {
	fs := th.SetupHTTP()
	defer fs.Teardown()
	body := map[string]string{"/servers/detail": `{"servers":{"id":"s1"}}`, "/v2.0/ports": `{"ports":[{"id":"p1","name":"a"}]}`}
	for path, b := range body {
		fs.Mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, b)
		})
	}
	fs.Mux.HandleFunc("/servers/gone", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) })
	fs.Mux.HandleFunc("/servers/busy/action", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusConflict) })
	sc := fake.ServiceClient(fs)
	nc := fake.ServiceClient(fs)
	nc.ResourceBase = fs.Endpoint() + "v2.0/"
	ctx := t.Context()

	if list, err := ListServers(ctx, sc, servers.ListOpts{}); err == nil {
		t.Fatalf("an unreadable server list read as %v", list)
	}
	if list, err := ListPorts(ctx, nc, ports.ListOpts{}); err != nil || len(list) != 1 || list[0].ID != "p1" {
		t.Fatalf("ports: %v %v", list, err)
	}
	if _, err := GetServer(ctx, sc, "gone"); !NotFound(err) || Conflict(err) {
		t.Fatalf("a 404: %v", err)
	}
	if err := StopServer(ctx, sc, "busy"); !Conflict(err) || NotFound(err) {
		t.Fatalf("a 409: %v", err)
	}
}
