package addr

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func set(t *testing.T, pools ...string) Set {
	t.Helper()
	s, err := ParseSet(pools)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSetOps(t *testing.T) {
	a := set(t, "10.0.0.10-10.0.0.99", "10.0.0.150-10.0.0.199")
	if a.Len() != 140 {
		t.Fatalf("len %d", a.Len())
	}
	b := set(t, "10.0.0.50-10.0.0.160")
	if got := strings.Join(a.Minus(b).Strings(), ","); got != "10.0.0.10-10.0.0.49,10.0.0.161-10.0.0.199" {
		t.Fatalf("minus %s", got)
	}
	if got := strings.Join(a.Intersect(b).Strings(), ","); got != "10.0.0.50-10.0.0.99,10.0.0.150-10.0.0.160" {
		t.Fatalf("intersect %s", got)
	}
	if got := strings.Join(set(t, "10.0.0.1-10.0.0.5", "10.0.0.6-10.0.0.9").Strings(), ","); got != "10.0.0.1-10.0.0.9" {
		t.Fatalf("adjacent ranges not merged: %s", got)
	}
	if !a.Union(b).Contains(netip.MustParseAddr("10.0.0.120")) || a.Contains(netip.MustParseAddr("10.0.0.120")) {
		t.Fatal("contains")
	}
	for _, bad := range []string{"10.0.0.9-10.0.0.1", "10.0.0.x", "::1-::2"} {
		if _, err := ParseRange(bad); err == nil {
			t.Fatalf("%q parsed", bad)
		}
	}
}

func TestSplitTail(t *testing.T) {
	pools := set(t, "10.0.0.10-10.0.0.99", "10.0.0.150-10.0.0.199")
	used := Of(netip.MustParseAddr("10.0.0.21"), netip.MustParseAddr("10.0.0.22"), netip.MustParseAddr("10.0.0.41"), netip.MustParseAddr("10.0.0.1"))
	old, nw, err := SplitTail(pools, used, 16)
	if err != nil {
		t.Fatal(err)
	}
	// Every address up to .41 (3 in use, 29 free) and 16 free after it: up to .57.
	if got := strings.Join(old.Strings(), ","); got != "10.0.0.10-10.0.0.57" {
		t.Fatalf("old %s", got)
	}
	if got := strings.Join(nw.Strings(), ","); got != "10.0.0.58-10.0.0.99,10.0.0.150-10.0.0.199" {
		t.Fatalf("new %s", got)
	}
	if !old.Union(nw).Equal(pools) || !old.Intersect(nw).Empty() {
		t.Fatal("the split is not a partition of the pools")
	}
	if _, _, err := SplitTail(set(t, "10.0.0.10-10.0.0.20"), used, 16); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("no room: %v", err)
	}
}

// TestSplitTailAroundAddressesInUseAtTheEnd: load balancer VIPs at the top of the
// pools (Neutron gives addresses out at random) leave no tail; the new cloud's pools
// are cut from the largest free run, less the addresses in use, which stay outside
// both pools.
func TestSplitTailAroundAddressesInUseAtTheEnd(t *testing.T) {
	pools := set(t, "10.0.0.10-10.0.0.99", "10.0.0.150-10.0.0.199")
	used := Of(netip.MustParseAddr("10.0.0.21"), netip.MustParseAddr("10.0.0.22"), netip.MustParseAddr("10.0.0.41"),
		netip.MustParseAddr("10.0.0.198"), netip.MustParseAddr("10.0.0.199"))
	old, nw, err := SplitTail(pools, used, 16)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(old.Strings(), ","); got != "10.0.0.10-10.0.0.57" {
		t.Fatalf("old %s", got)
	}
	if got := strings.Join(nw.Strings(), ","); got != "10.0.0.58-10.0.0.99,10.0.0.150-10.0.0.197" {
		t.Fatalf("new %s", got)
	}
	if !old.Intersect(nw).Empty() || !nw.Intersect(used).Empty() || !old.Union(nw).Union(used.Intersect(pools)).Equal(pools) {
		t.Fatal("the split is not old + new + the addresses in use after the cut")
	}
}
