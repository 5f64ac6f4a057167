// Package addr is the IPv4 arithmetic of allocation pools: ranges "first-last",
// sets of them, and the split of a subnet's pools between two clouds.
package addr

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Range is an inclusive range of IPv4 addresses.
type Range struct{ First, Last netip.Addr }

// ParseRange parses "10.0.0.10-10.0.0.99" (or one address).
func ParseRange(s string) (Range, error) {
	a, b, found := strings.Cut(strings.TrimSpace(s), "-")
	first, err := netip.ParseAddr(strings.TrimSpace(a))
	if err != nil || !first.Is4() {
		return Range{}, fmt.Errorf("%q: not an IPv4 range FIRST-LAST", s)
	}
	last := first
	if found {
		if last, err = netip.ParseAddr(strings.TrimSpace(b)); err != nil || !last.Is4() {
			return Range{}, fmt.Errorf("%q: not an IPv4 range FIRST-LAST", s)
		}
	}
	if last.Less(first) {
		return Range{}, fmt.Errorf("%q: the last address is before the first", s)
	}
	return Range{first, last}, nil
}

// String returns "first-last".
func (r Range) String() string { return r.First.String() + "-" + r.Last.String() }

// Contains reports whether a is in r.
func (r Range) Contains(a netip.Addr) bool { return !a.Less(r.First) && !r.Last.Less(a) }

// Set is a set of addresses kept as sorted, disjoint, non-adjacent ranges.
type Set struct{ rs []Range }

// NewSet returns the set of the given ranges.
func NewSet(rs ...Range) Set {
	var s Set
	for _, r := range rs {
		s = s.Union(Set{[]Range{r}})
	}
	return s
}

// ParseSet parses pools as Neutron writes them ("first-last" each).
func ParseSet(pools []string) (Set, error) {
	var rs []Range
	for _, p := range pools {
		r, err := ParseRange(p)
		if err != nil {
			return Set{}, err
		}
		rs = append(rs, r)
	}
	return NewSet(rs...), nil
}

// Of returns the set of single addresses.
func Of(as ...netip.Addr) Set {
	rs := make([]Range, 0, len(as))
	for _, a := range as {
		rs = append(rs, Range{a, a})
	}
	return NewSet(rs...)
}

// Ranges returns the set's ranges in order.
func (s Set) Ranges() []Range { return slices.Clone(s.rs) }

// Strings returns the ranges as "first-last".
func (s Set) Strings() []string {
	out := make([]string, 0, len(s.rs))
	for _, r := range s.rs {
		out = append(out, r.String())
	}
	return out
}

// Empty reports whether the set has no address.
func (s Set) Empty() bool { return len(s.rs) == 0 }

// Contains reports whether a is in the set.
func (s Set) Contains(a netip.Addr) bool {
	for _, r := range s.rs {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

// Len is the number of addresses.
func (s Set) Len() int {
	n := 0
	for _, r := range s.rs {
		n += int(u32(r.Last)-u32(r.First)) + 1
	}
	return n
}

// All returns every address, in order.
func (s Set) All() []netip.Addr {
	var out []netip.Addr
	for _, r := range s.rs {
		for a := r.First; ; a = a.Next() {
			out = append(out, a)
			if a == r.Last {
				break
			}
		}
	}
	return out
}

// Equal reports whether both sets hold the same addresses.
func (s Set) Equal(o Set) bool { return slices.Equal(s.rs, o.rs) }

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
func from(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}

// Union returns the addresses in either set.
func (s Set) Union(o Set) Set {
	all := append(slices.Clone(s.rs), o.rs...)
	slices.SortFunc(all, func(a, b Range) int { return a.First.Compare(b.First) })
	var out []Range
	for _, r := range all {
		if n := len(out); n > 0 && u32(r.First) <= u32(out[n-1].Last)+1 {
			if out[n-1].Last.Less(r.Last) {
				out[n-1].Last = r.Last
			}
			continue
		}
		out = append(out, r)
	}
	return Set{out}
}

// Minus returns the addresses of s not in o.
func (s Set) Minus(o Set) Set {
	var out []Range
	for _, r := range s.rs {
		cur := []Range{r}
		for _, x := range o.rs {
			var next []Range
			for _, c := range cur {
				if x.Last.Less(c.First) || c.Last.Less(x.First) {
					next = append(next, c)
					continue
				}
				if c.First.Less(x.First) {
					next = append(next, Range{c.First, from(u32(x.First) - 1)})
				}
				if x.Last.Less(c.Last) {
					next = append(next, Range{from(u32(x.Last) + 1), c.Last})
				}
			}
			cur = next
		}
		out = append(out, cur...)
	}
	return Set{out}
}

// Intersect returns the addresses in both sets.
func (s Set) Intersect(o Set) Set { return s.Minus(s.Minus(o)) }

// ErrNoRoom is a split that leaves the new cloud no address.
var ErrNoRoom = errors.New("addr: no address left for the new cloud")

// SplitTail divides pools: the old cloud keeps, from the start, every address in
// use and keepFree free addresses after the last one in use; the new cloud gets the
// rest (the tail). used may hold addresses outside pools (they are ignored here).
//
// When an address in use lies near the end of the pools — a load balancer's VIP
// Neutron gave out at random, say — there is no tail. Then the new cloud's pools are
// cut from the largest run of free addresses instead: the old cloud keeps, from the
// start, the addresses in use before that run and keepFree free addresses after the
// last of them; the new cloud gets the rest less every address in use. The addresses
// in use after the cut stay with the ports that hold them, outside both pools (a
// port's address need not lie in a pool), so neither cloud hands them out.
func SplitTail(pools Set, used Set, keepFree int) (oldPools, newPools Set, err error) {
	inUse := pools.Intersect(used)
	all := pools.All()
	if old, nw, ok := splitAt(pools, all, inUse, inUse.Len(), keepFree); ok {
		return old, nw, nil
	}
	// The largest run of free addresses, in the pools' order.
	best, bestLen, run := -1, 0, -1
	for i, a := range all {
		if inUse.Contains(a) {
			run = -1
			continue
		}
		if run < 0 {
			run = i
		}
		if i-run+1 > bestLen {
			best, bestLen = run, i-run+1
		}
	}
	before := 0
	for i := 0; i < best; i++ {
		if inUse.Contains(all[i]) {
			before++
		}
	}
	if best >= 0 {
		if old, nw, ok := splitAt(pools, all, inUse, before, keepFree); ok {
			return old, nw, nil
		}
	}
	return pools, Set{}, fmt.Errorf("%w: the pools hold %d addresses, %d in use, and the old cloud keeps %d free", ErrNoRoom, len(all), inUse.Len(), keepFree)
}

// splitAt gives the old cloud the prefix of the pools that holds the first inUseKept
// addresses in use and keepFree free addresses after the last of them, and the new
// cloud the rest less the addresses in use; ok is false when the new cloud gets none.
func splitAt(pools Set, all []netip.Addr, inUse Set, inUseKept, keepFree int) (oldPools, newPools Set, ok bool) {
	cut := -1 // index of the last address the old cloud keeps
	free := 0
	remaining := inUseKept
	for i, a := range all {
		if inUse.Contains(a) {
			remaining--
		} else if remaining <= 0 {
			free++
		}
		if remaining <= 0 && free >= keepFree {
			cut = i
			break
		}
	}
	if cut < 0 || cut == len(all)-1 {
		return Set{}, Set{}, false
	}
	oldPools = pools.Intersect(NewSet(Range{all[0], all[cut]}))
	newPools = pools.Minus(oldPools).Minus(inUse)
	return oldPools, newPools, !newPools.Empty()
}
