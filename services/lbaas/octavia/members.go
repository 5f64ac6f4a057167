package octavia

import (
	"context"
	"fmt"

	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/pools"
)

// Member is a pool member.
type Member = pools.Member

// mutate runs one change to load balancer lbID: serialised with the others in this
// process, after the load balancer is ACTIVE, retried on 409/503, and waited on until
// the load balancer is ACTIVE again.
func (c *Client) mutate(ctx context.Context, lbID, what string, call func() error) error {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	unlock := c.lock(lbID)
	defer unlock()
	if _, err := c.waitActive(ctx, lbID, nil); err != nil {
		return fmt.Errorf("octavia: %s: %w", what, err)
	}
	if err := c.retry(ctx, lbID, call); err != nil {
		return fmt.Errorf("octavia: %s: %w", what, err)
	}
	if _, err := c.waitActive(ctx, lbID, nil); err != nil {
		return fmt.Errorf("octavia: %s: %w", what, err)
	}
	return nil
}

// AddMember adds a member to pool poolID of load balancer lbID and waits for ACTIVE.
func (c *Client) AddMember(ctx context.Context, lbID, poolID string, m MemberSpec) (*Member, error) {
	if err := validateMember(m); err != nil {
		return nil, err
	}
	var got *Member
	err := c.mutate(ctx, lbID, fmt.Sprintf("add member %s:%d to pool %s", m.Address, m.Port, poolID), func() (err error) {
		got, err = pools.CreateMember(ctx, c.sc, poolID, c.memberOpts(m)).Extract()
		return err
	})
	return got, err
}

// RemoveMember removes a member and waits for ACTIVE. A member already gone is not
// an error.
func (c *Client) RemoveMember(ctx context.Context, lbID, poolID, memberID string) error {
	err := c.mutate(ctx, lbID, fmt.Sprintf("remove member %s from pool %s", memberID, poolID), func() error {
		err := pools.DeleteMember(ctx, c.sc, poolID, memberID).ExtractErr()
		if IsNotFound(err) {
			return nil
		}
		return err
	})
	return err
}

// SetMemberWeight sets a member's weight (0..256) and waits for ACTIVE.
func (c *Client) SetMemberWeight(ctx context.Context, lbID, poolID, memberID string, weight int) (*Member, error) {
	if weight < 0 || weight > 256 {
		return nil, &InvalidSpecError{[]Violation{{"weight", fmt.Sprintf("%d: use 0 (drained) to 256", weight)}}}
	}
	var got *Member
	err := c.mutate(ctx, lbID, fmt.Sprintf("set weight %d on member %s of pool %s", weight, memberID, poolID), func() (err error) {
		got, err = pools.UpdateMember(ctx, c.sc, poolID, memberID, pools.UpdateMemberOpts{Weight: &weight}).Extract()
		return err
	})
	return got, err
}

// DrainMember sets a member's weight to 0: it takes no new connections and keeps
// the ones it has, the first step of moving a role off a server.
func (c *Client) DrainMember(ctx context.Context, lbID, poolID, memberID string) (*Member, error) {
	return c.SetMemberWeight(ctx, lbID, poolID, memberID, 0)
}

// Members lists a pool's members.
func (c *Client) Members(ctx context.Context, poolID string) ([]Member, error) {
	var out []Member
	err := c.retry(ctx, "", func() error {
		pages, err := pools.ListMembers(c.sc, poolID, pools.ListMembersOpts{}).AllPages(ctx)
		if err != nil {
			return err
		}
		out, err = pools.ExtractMembers(pages)
		return err
	})
	return out, err
}

// FindMember returns the member of poolID with this address and port.
func (c *Client) FindMember(ctx context.Context, poolID, address string, port int) (*Member, error) {
	list, err := c.Members(ctx, poolID)
	if err != nil {
		return nil, err
	}
	for i := range list {
		if list[i].Address == address && list[i].ProtocolPort == port {
			return &list[i], nil
		}
	}
	return nil, fmt.Errorf("octavia: pool %s has no member %s:%d: %w", poolID, address, port, ErrNotFound)
}

func validateMember(m MemberSpec) error {
	if vs := MemberViolations("member", m); len(vs) > 0 {
		return &InvalidSpecError{vs}
	}
	return nil
}
