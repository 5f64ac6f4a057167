// Package octavia is a thin client for Octavia's load-balancer API over gophercloud
// (openstack/loadbalancer/v2): one small function per operation, with Octavia's rules
// built in — objects are immutable while PENDING_* (changes to one load balancer are
// serialised and each waits for ACTIVE), only valid listener/pool protocol pairs are
// sent, PROXYV2 needs API 2.22, ERROR is final, 409 and 503 are retried with capped
// exponential backoff under the caller's deadline, and everything created carries an
// owner tag. It needs no Hikkoshi service and no etcd.
package octavia

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/apiversions"

	"github.com/hikkoshi/hikkoshi/platform/poll"
)

// DefaultOwnerTag is the tag set on everything the client creates.
const DefaultOwnerTag = "hikkoshi"

// DefaultTimeout bounds a wait when the caller's context has no deadline.
const DefaultTimeout = 5 * time.Minute

// Backoff is a capped exponential backoff with jitter (platform/poll's).
type Backoff = poll.Backoff

// DefaultBackoff polls quickly first (Octavia's no-op and amphora providers often
// settle in a second or two) and never waits more than 5 s between polls, ±20%.
var DefaultBackoff = Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Factor: 1.6, Jitter: 0.2}

// Client calls Octavia through a gophercloud load-balancer service client.
type Client struct {
	sc      *gophercloud.ServiceClient
	owner   string
	timeout time.Duration
	backoff Backoff
	serial  bool

	mu      sync.Mutex
	locks   map[string]*sync.Mutex
	version *Version
}

// Option configures a Client.
type Option func(*Client)

// WithOwnerTag sets the tag put on everything created (default "hikkoshi").
func WithOwnerTag(tag string) Option { return func(c *Client) { c.owner = tag } }

// WithTimeout sets how long waits last when the context has no deadline (default 5 min).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithBackoff sets the polling and retry backoff.
func WithBackoff(b Backoff) Option { return func(c *Client) { c.backoff = b } }

// WithSerialCreate makes Create build a load balancer object by object even when the
// provider could take it in one call.
func WithSerialCreate() Option { return func(c *Client) { c.serial = true } }

// New returns a Client over sc, a client from openstack.NewLoadBalancerV2.
func New(sc *gophercloud.ServiceClient, opts ...Option) *Client {
	c := &Client{sc: sc, owner: DefaultOwnerTag, timeout: DefaultTimeout, backoff: DefaultBackoff, locks: map[string]*sync.Mutex{}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// OwnerTag returns the tag the client puts on what it creates.
func (c *Client) OwnerTag() string { return c.owner }

// ServiceClient returns the underlying gophercloud client.
func (c *Client) ServiceClient() *gophercloud.ServiceClient { return c.sc }

// withDeadline gives ctx the client's default timeout when it has no deadline.
func (c *Client) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// lock serialises changes to one load balancer within this process.
func (c *Client) lock(lbID string) func() {
	c.mu.Lock()
	m, ok := c.locks[lbID]
	if !ok {
		m = &sync.Mutex{}
		c.locks[lbID] = m
	}
	c.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// Version is an Octavia API version, such as 2.22.
type Version struct{ Major, Minor int }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// After reports whether v is newer than o.
func (v Version) After(o Version) bool {
	return v.Major > o.Major || (v.Major == o.Major && v.Minor > o.Minor)
}

// ParseVersion parses "v2.22" or "2.22".
func ParseVersion(s string) (Version, error) {
	major, minor, ok := strings.Cut(strings.TrimPrefix(s, "v"), ".")
	a, err1 := strconv.Atoi(major)
	b, err2 := strconv.Atoi(minor)
	if !ok || err1 != nil || err2 != nil {
		return Version{}, fmt.Errorf("octavia: %q is not an API version", s)
	}
	return Version{a, b}, nil
}

// APIVersion returns the newest API version Octavia offers (GET /), once per Client.
func (c *Client) APIVersion(ctx context.Context) (Version, error) {
	c.mu.Lock()
	if c.version != nil {
		v := *c.version
		c.mu.Unlock()
		return v, nil
	}
	c.mu.Unlock()
	var best Version
	err := c.retry(ctx, "", func() error {
		pages, err := apiversions.List(c.sc).AllPages(ctx)
		if err != nil {
			return err
		}
		list, err := apiversions.ExtractAPIVersions(pages)
		if err != nil {
			return err
		}
		for _, av := range list {
			if av.Status != "CURRENT" && av.Status != "SUPPORTED" {
				continue
			}
			if v, err := ParseVersion(av.ID); err == nil && v.After(best) {
				best = v
			}
		}
		if best == (Version{}) {
			return errors.New("octavia: GET / lists no CURRENT or SUPPORTED version")
		}
		return nil
	})
	if err != nil {
		return Version{}, fmt.Errorf("octavia: discover the API version: %w", err)
	}
	c.mu.Lock()
	c.version = &best
	c.mu.Unlock()
	return best, nil
}

// Check validates spec (see Validate) and, when it needs a newer API than the zero
// version (PROXYV2 pools, SCTP), that Octavia offers it. A spec that fails
// Validate is refused before any API call.
func (c *Client) Check(ctx context.Context, spec Spec) error {
	if err := Validate(spec); err != nil {
		return err
	}
	need, field := needs(spec)
	if need == (Version{}) {
		return nil
	}
	have, err := c.APIVersion(ctx)
	if err != nil {
		return err
	}
	if need.After(have) {
		return &UnsupportedError{[]Violation{{field, fmt.Sprintf(
			"needs Octavia API %s or newer; this Octavia offers %s: use PROXY, or upgrade Octavia", need, have)}}}
	}
	return nil
}

// StatusError is a load balancer that reached a final state other than the one
// waited for: ERROR (delete it with cascade and create it again; it cannot be
// repaired by updates) or DELETED.
type StatusError struct {
	ID     string
	Status string
}

func (e *StatusError) Error() string {
	if e.Status == "ERROR" {
		return fmt.Sprintf("load balancer %s is in ERROR: delete it (cascade) and create it again", e.ID)
	}
	return fmt.Sprintf("load balancer %s is %s", e.ID, e.Status)
}

// ConflictError is a 409 that did not clear: the object stayed PENDING_* past the
// deadline, or Octavia refused a real conflict (a duplicate member, say).
type ConflictError struct {
	ID     string
	Status string // the load balancer's provisioning status when given up
	Err    error
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("load balancer %s stayed %s: Octavia answered 409 (%v)", e.ID, e.Status, e.Err)
}

func (e *ConflictError) Unwrap() error { return e.Err }

// ErrNotFound is a name or ID that matches nothing.
var ErrNotFound = errors.New("not found")

// IsNotFound reports whether err is Octavia's 404 or ErrNotFound.
func IsNotFound(err error) bool {
	return errors.Is(err, ErrNotFound) || gophercloud.ResponseCodeIs(err, http.StatusNotFound)
}

// IsQuota reports whether err is Octavia refusing for quota (403 "Quota has been met").
func IsQuota(err error) bool {
	var e gophercloud.ErrUnexpectedResponseCode
	return errors.As(err, &e) && e.Actual == http.StatusForbidden && strings.Contains(strings.ToLower(string(e.Body)), "quota")
}

// IsNotImplemented reports whether err is the provider refusing an action (501).
func IsNotImplemented(err error) bool {
	return gophercloud.ResponseCodeIs(err, http.StatusNotImplemented)
}

// retry runs op until it succeeds, fails with a final error, or ctx ends. A 503 is
// retried after a backoff pause; a 409 waits for load balancer lbID to leave
// PENDING_* and retries, unless the load balancer is settled, in which case the 409
// is a real conflict and returned as *ConflictError.
func (c *Client) retry(ctx context.Context, lbID string, op func() error) error {
	for attempt := 0; ; attempt++ {
		err := op()
		switch {
		case err == nil:
			return nil
		case gophercloud.ResponseCodeIs(err, http.StatusServiceUnavailable):
		case gophercloud.ResponseCodeIs(err, http.StatusConflict):
			if lbID != "" {
				status, gerr := c.provisioningStatus(ctx, lbID)
				if gerr == nil && !strings.HasPrefix(status, "PENDING_") {
					if status == "ERROR" {
						return &StatusError{lbID, status}
					}
					if attempt > 0 { // settled and still refused: not a transient state
						return &ConflictError{ID: lbID, Status: status, Err: err}
					}
				}
			}
		default:
			return err
		}
		if poll.Sleep(ctx, c.backoff.Pause(attempt)) != nil {
			if gophercloud.ResponseCodeIs(err, http.StatusConflict) {
				status, _ := c.provisioningStatus(context.WithoutCancel(ctx), lbID)
				return &ConflictError{ID: lbID, Status: status, Err: err}
			}
			return fmt.Errorf("%w (gave up retrying: %v)", err, ctx.Err())
		}
	}
}
