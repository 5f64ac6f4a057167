// Package etcdembed runs a real, single-member etcd server inside the calling process
// (go.etcd.io/etcd/server/v3/embed), for one-process development and for tests. It is
// the same server code as a standalone etcd; only the process is shared.
package etcdembed

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Defaults for a development server on loopback.
const (
	DefaultClientURL = "http://127.0.0.1:2379"
	DefaultPeerURL   = "http://127.0.0.1:2380"
	// DefaultCompactionRetention keeps an hour of history for watches to resume from.
	DefaultCompactionRetention = "1h"
	defaultStartTimeout        = time.Minute
)

type options struct {
	clientURL string
	peerURL   string
	name      string
	logLevel  string
	retention string
	user      string
	password  string
	tokenTTL  uint
}

// Option configures Start.
type Option func(*options)

// WithClientURL sets the URL the server serves clients on. Port 0 picks a free port;
// Endpoints tells which.
func WithClientURL(u string) Option { return func(o *options) { o.clientURL = u } }

// WithPeerURL sets the URL the server listens on for (absent) peers.
func WithPeerURL(u string) Option { return func(o *options) { o.peerURL = u } }

// WithName sets the member name (default "hikkoshi").
func WithName(n string) Option { return func(o *options) { o.name = n } }

// WithLogLevel sets etcd's own log level: debug, info, warn or error (default warn).
func WithLogLevel(l string) Option { return func(o *options) { o.logLevel = l } }

// WithCompactionRetention sets how much history is kept, as a duration ("1h").
func WithCompactionRetention(r string) Option { return func(o *options) { o.retention = r } }

// WithAuth turns etcd's authentication on once the server is ready: the user (it must
// be "root", the only user etcd lets enable auth without roles being set up first) is
// created with password, given the root role, and auth is enabled. On a data directory
// where auth is already on, the password is checked instead. The password is never
// logged. Empty password: auth stays as the data directory has it.
func WithAuth(user, password string) Option {
	return func(o *options) { o.user, o.password = user, password }
}

// WithAuthTokenTTL sets how long, in seconds, an auth token lives (etcd's
// --auth-token-ttl, default 300): tests make it short to see expiry.
func WithAuthTokenTTL(seconds uint) Option { return func(o *options) { o.tokenTTL = seconds } }

// Server is a running embedded etcd.
type Server struct {
	etcd *embed.Etcd
}

// Start starts an etcd server keeping its data in dir and waits until it serves
// clients. Cancelling ctx abandons the wait and stops the server. Data in dir from an
// earlier run is kept and served again.
func Start(ctx context.Context, dir string, opts ...Option) (*Server, error) {
	if dir == "" {
		return nil, errors.New("etcdembed.Start: a data directory is required")
	}
	o := options{
		clientURL: DefaultClientURL,
		peerURL:   DefaultPeerURL,
		name:      "hikkoshi",
		logLevel:  "warn",
		retention: DefaultCompactionRetention,
	}
	for _, opt := range opts {
		opt(&o)
	}
	curl, err := url.Parse(o.clientURL)
	if err != nil {
		return nil, fmt.Errorf("etcdembed.Start: client URL %q: %w", o.clientURL, err)
	}
	purl, err := url.Parse(o.peerURL)
	if err != nil {
		return nil, fmt.Errorf("etcdembed.Start: peer URL %q: %w", o.peerURL, err)
	}

	cfg := embed.NewConfig()
	cfg.Name = o.name
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{*curl}
	cfg.AdvertiseClientUrls = []url.URL{*curl}
	cfg.ListenPeerUrls = []url.URL{*purl}
	cfg.AdvertisePeerUrls = []url.URL{*purl}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = o.logLevel
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = o.retention
	if o.tokenTTL > 0 {
		cfg.AuthTokenTTL = o.tokenTTL
	}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdembed.Start: %w", err)
	}
	timer := time.NewTimer(defaultStartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
		s := &Server{etcd: e}
		if o.password != "" {
			if err := s.enableAuth(ctx, o.user, o.password); err != nil {
				e.Close()
				return nil, fmt.Errorf("etcdembed.Start: %w", err)
			}
		}
		return s, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcdembed.Start: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("etcdembed.Start: %w", ctx.Err())
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("etcdembed.Start: server not ready after %s", defaultStartTimeout)
	}
}

// Endpoints returns the client URLs the server actually listens on.
func (s *Server) Endpoints() []string {
	out := make([]string, 0, len(s.etcd.Clients))
	for _, l := range s.etcd.Clients {
		out = append(out, "http://"+l.Addr().String())
	}
	return out
}

// Err returns a channel that receives the server's fatal error, if it fails.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the server gracefully: in-flight requests finish, data is synced.
func (s *Server) Close() { s.etcd.Close() }

// enableAuth makes user (root) with password and turns auth on, or, when auth is on
// already, checks that password opens it.
func (s *Server) enableAuth(ctx context.Context, user, password string) error {
	if user != "root" {
		return fmt.Errorf("auth: the embedded server's user must be \"root\", not %q (set HIKKOSHI_ETCD_USERNAME=root)", user)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// With auth off, the client's Authenticate gets ErrAuthNotEnabled and carries on
	// without a token; with auth on, a wrong password fails here.
	c, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), Username: user, Password: password,
		DialTimeout: 10 * time.Second, Context: ctx, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("auth: connecting as %s: %w", user, err)
	}
	defer c.Close()
	st, err := c.AuthStatus(ctx)
	if err != nil {
		return fmt.Errorf("auth: status: %w", err)
	}
	if st.Enabled {
		return nil // the password was checked when the client authenticated
	}
	if _, err := c.UserAdd(ctx, user, password); err != nil {
		if !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
			return fmt.Errorf("auth: adding user %s: %w", user, err)
		}
		if _, err := c.UserChangePassword(ctx, user, password); err != nil {
			return fmt.Errorf("auth: setting %s's password: %w", user, err)
		}
	}
	if _, err := c.RoleAdd(ctx, "root"); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
		return fmt.Errorf("auth: adding role root: %w", err)
	}
	if _, err := c.UserGrantRole(ctx, user, "root"); err != nil {
		return fmt.Errorf("auth: granting root to %s: %w", user, err)
	}
	if _, err := c.AuthEnable(ctx); err != nil {
		return fmt.Errorf("auth: enabling: %w", err)
	}
	return nil
}
