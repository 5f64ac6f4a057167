package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/hikkoshi/hikkoshi/platform/cloud"
)

// fakeCloud serves Nova, Neutron and Glance list pages built from a server and a
// port recorded from the dev cloud (testdata/recorded.json), multiplied, with the
// real APIs' pagination: Nova's limit/marker with servers_links (max_limit 1000, a
// next link whenever a page is full), Neutron's limit/marker with ports_links
// (pagination_max_limit 1000), Nova's changes-since and Neutron's changed_since.
type fakeCloud struct {
	servers []map[string]any
	ports   []map[string]any
	volumes []map[string]any
	network map[string]any
	subnet  map[string]any
	srv     *httptest.Server
	calls   atomic.Int64
	// consoles are servers' console logs by ID; others have the fake driver's.
	consoles     map[string]string
	consoleReads atomic.Int64
	mu           sync.Mutex
}

// fakeDriverConsole is what Nova's fake driver answers for every server's console.
const fakeDriverConsole = "FAKE CONSOLE OUTPUT\nANOTHER\nLAST LINE"

const fakeMaxLimit = 1000

func newFakeCloud(tb testing.TB, nServers, portsPerServer int) *fakeCloud {
	tb.Helper()
	raw, err := os.ReadFile("testdata/recorded.json")
	if err != nil {
		tb.Fatal(err)
	}
	var rec struct{ Server, Port map[string]any }
	if err := json.Unmarshal(raw, &rec); err != nil {
		tb.Fatal(err)
	}
	clone := func(m map[string]any) map[string]any {
		b, _ := json.Marshal(m)
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		return out
	}
	fc := &fakeCloud{}
	netID, subID := "0e1f0000-0000-4000-8000-000000000001", "5b000000-0000-4000-8000-000000000001"
	fc.network = map[string]any{"id": netID, "name": "big-vlan", "shared": false, "status": "ACTIVE", "subnets": []string{subID},
		"project_id": rec.Server["tenant_id"], "tenant_id": rec.Server["tenant_id"], "admin_state_up": true}
	fc.subnet = map[string]any{"id": subID, "name": "big-vlan-v4", "network_id": netID, "cidr": "10.64.0.0/14", "ip_version": 4,
		"gateway_ip": "10.64.0.1", "enable_dhcp": true, "allocation_pools": []map[string]string{{"start": "10.64.0.10", "end": "10.67.255.250"}}}
	for i := range nServers {
		s := clone(rec.Server)
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		s["id"], s["name"] = id, fmt.Sprintf("web-%05d", i)
		s["updated"] = "2026-11-01T00:00:00Z"
		fc.servers = append(fc.servers, s)
		for j := range portsPerServer {
			p := clone(rec.Port)
			n := i*portsPerServer + j
			p["id"] = fmt.Sprintf("%08x-0000-4000-9000-%012x", n, n)
			p["device_id"], p["network_id"] = id, netID
			p["mac_address"] = fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", n>>16&0xff, n>>8&0xff, n&0xff)
			p["fixed_ips"] = []map[string]string{{"subnet_id": subID, "ip_address": fmt.Sprintf("10.%d.%d.%d", 64+n>>16, n>>8&0xff, n&0xff)}}
			p["updated_at"] = "2026-11-01T00:00:00Z"
			fc.ports = append(fc.ports, p)
		}
	}
	sort.Slice(fc.servers, func(a, b int) bool { return fc.servers[a]["id"].(string) < fc.servers[b]["id"].(string) })
	sort.Slice(fc.ports, func(a, b int) bool { return fc.ports[a]["id"].(string) < fc.ports[b]["id"].(string) })
	fc.srv = httptest.NewServer(http.HandlerFunc(fc.serve))
	tb.Cleanup(fc.srv.Close)
	return fc
}

// page returns the items after marker (by id), at most limit, and whether a next
// link is due (the page is full).
func page(items []map[string]any, q url.Values, filter func(map[string]any) bool) ([]map[string]any, bool) {
	limit := fakeMaxLimit
	if l, err := strconv.Atoi(q.Get("limit")); err == nil && l > 0 && l < limit {
		limit = l
	}
	start := 0
	if m := q.Get("marker"); m != "" {
		start = sort.Search(len(items), func(i int) bool { return items[i]["id"].(string) > m })
	}
	out := []map[string]any{}
	for _, it := range items[start:] {
		if filter != nil && !filter(it) {
			continue
		}
		out = append(out, it)
		if len(out) == limit {
			return out, true
		}
	}
	return out, false
}

func since(q url.Values, key, field string) func(map[string]any) bool {
	v := q.Get(key)
	if v == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return func(map[string]any) bool { return false }
	}
	return func(m map[string]any) bool {
		u, _ := time.Parse(time.RFC3339, fmt.Sprint(m[field]))
		return !u.Before(t)
	}
}

func (fc *fakeCloud) serve(w http.ResponseWriter, r *http.Request) {
	fc.calls.Add(1)
	q := r.URL.Query()
	reply := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	next := func(kind string, items []map[string]any, more bool) []map[string]string {
		if !more {
			return nil
		}
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("limit", strconv.Itoa(len(items)))
		nq.Set("marker", items[len(items)-1]["id"].(string))
		return []map[string]string{{"rel": "next", "href": fc.srv.URL + r.URL.Path + "?" + nq.Encode()}}
	}
	switch r.URL.Path {
	case "/compute/servers/detail":
		items, more := page(fc.servers, q, since(q, "changes-since", "updated"))
		reply(map[string]any{"servers": items, "servers_links": next("servers", items, more)})
	case "/compute/flavors/detail":
		reply(map[string]any{"flavors": []map[string]any{{"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1}}})
	case "/network/v2.0/ports":
		var filter func(map[string]any) bool
		if dev := q.Get("device_id"); dev != "" {
			filter = func(m map[string]any) bool { return m["device_id"] == dev }
		} else {
			filter = since(q, "changed_since", "updated_at")
		}
		items, more := page(fc.ports, q, filter)
		reply(map[string]any{"ports": items, "ports_links": next("ports", items, more)})
	case "/network/v2.0/networks":
		reply(map[string]any{"networks": []map[string]any{fc.network}})
	case "/network/v2.0/subnets":
		reply(map[string]any{"subnets": []map[string]any{fc.subnet}})
	case "/network/v2.0/floatingips":
		reply(map[string]any{"floatingips": []any{}})
	case "/volume/volumes/detail":
		items, more := page(fc.volumes, q, nil)
		reply(map[string]any{"volumes": items, "volumes_links": next("volumes", items, more)})
	case "/image/v2/images":
		reply(map[string]any{"images": []map[string]any{{"id": "1f000000-0000-4000-8000-000000000001", "name": "centos-6", "status": "active"}}})
	default:
		if id, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/compute/servers/"), "/action"); ok && r.Method == http.MethodPost {
			fc.consoleReads.Add(1)
			fc.mu.Lock()
			out, ok := fc.consoles[id]
			fc.mu.Unlock()
			if !ok {
				out = fakeDriverConsole
			}
			reply(map[string]any{"output": out})
			return
		}
		if id, ok := strings.CutPrefix(r.URL.Path, "/compute/servers/"); ok {
			i := sort.Search(len(fc.servers), func(i int) bool { return fc.servers[i]["id"].(string) >= id })
			if i < len(fc.servers) && fc.servers[i]["id"] == id {
				reply(map[string]any{"server": fc.servers[i]})
				return
			}
		}
		http.Error(w, `{"itemNotFound": {"code": 404, "message": "not found"}}`, http.StatusNotFound)
	}
}

// clients returns gophercloud clients of the fake cloud.
func (fc *fakeCloud) clients() Clients {
	pc := &gophercloud.ProviderClient{HTTPClient: *fc.srv.Client()}
	mk := func(endpoint, base string) *gophercloud.ServiceClient {
		return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: fc.srv.URL + endpoint, ResourceBase: fc.srv.URL + base}
	}
	return Clients{
		Compute: mk("/compute/", "/compute/"),
		Network: mk("/network/", "/network/v2.0/"),
		Image:   mk("/image/", "/image/v2/"),
		// Cinder's endpoint carries the project; gophercloud appends resources to it.
		BlockStorage: mk("/volume/", "/volume/"),
	}
}

// attachVolume attaches a new volume of sizeGB to server i as device.
func (fc *fakeCloud) attachVolume(i int, sizeGB int, device string) string {
	srv := fc.servers[i]
	id := fmt.Sprintf("%08x-0000-4000-a000-%012x", len(fc.volumes), len(fc.volumes))
	fc.volumes = append(fc.volumes, map[string]any{
		"id": id, "name": fmt.Sprintf("data-%d", i), "size": sizeGB, "status": "in-use", "bootable": "false", "volume_type": "ceph",
		"attachments": []map[string]any{{"server_id": srv["id"], "device": device, "volume_id": id, "id": id}},
	})
	sort.Slice(fc.volumes, func(a, b int) bool { return fc.volumes[a]["id"].(string) < fc.volumes[b]["id"].(string) })
	srv["os-extended-volumes:volumes_attached"] = append(asList(srv["os-extended-volumes:volumes_attached"]), map[string]any{"id": id})
	return id
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// opener opens the fake cloud for a sync.
func (fc *fakeCloud) opener(_ context.Context, _ string, count func()) (Clients, string, error) {
	c := fc.clients()
	cloud.Observe(c.Compute.ProviderClient, func(string, string, int) { count() })
	return c, "RegionBig", nil
}
