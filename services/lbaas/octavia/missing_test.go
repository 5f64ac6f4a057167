package octavia

import (
	"slices"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/listeners"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/monitors"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/pools"
)

// TestMissing: a tree an interrupted create left (no monitor, a member short) is not
// whole; the whole tree is.
func TestMissing(t *testing.T) {
	spec := Spec{Listeners: []ListenerSpec{{Protocol: "TCP", Port: 80, Pool: &PoolSpec{Protocol: "PROXYV2",
		Members: []MemberSpec{{Address: "10.0.0.1", Port: 8080}, {Address: "10.0.0.2", Port: 8080}},
		Monitor: &MonitorSpec{Type: "TCP"}}}}}
	whole := func() *Tree {
		return &Tree{Listeners: []ListenerTree{{
			Listener: listeners.Listener{Protocol: "TCP", ProtocolPort: 80},
			Pool: &PoolTree{Pool: pools.Pool{Protocol: "PROXYV2"},
				Members: []Member{{Address: "10.0.0.1", ProtocolPort: 8080}, {Address: "10.0.0.2", ProtocolPort: 8080}},
				Monitor: &monitors.Monitor{Type: "TCP"}},
		}}}
	}
	if got := Missing(whole(), spec); len(got) != 0 {
		t.Fatalf("whole tree: missing %v", got)
	}
	partial := whole()
	partial.Listeners[0].Pool.Monitor = nil
	partial.Listeners[0].Pool.Members = partial.Listeners[0].Pool.Members[:1]
	want := []string{"listeners[0].pool.members[1] (10.0.0.2:8080)", "listeners[0].pool.health_monitor (TCP)"}
	if got := Missing(partial, spec); !slices.Equal(got, want) {
		t.Fatalf("partial tree: missing %v, want %v", got, want)
	}
	if got := Missing(&Tree{}, spec); !slices.Equal(got, []string{"listeners[0] (TCP:80)"}) {
		t.Fatalf("empty tree: missing %v", got)
	}
	wrong := whole()
	wrong.Listeners[0].Pool.Pool.Protocol = "TCP"
	if got := Missing(wrong, spec); !slices.Equal(got, []string{"listeners[0].pool (PROXYV2)"}) {
		t.Fatalf("TCP pool for a PROXYV2 spec: missing %v", got)
	}
}
