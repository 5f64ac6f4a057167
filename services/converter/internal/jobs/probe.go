package jobs

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	"golang.org/x/net/proxy"
)

// ProbeDialer dials a health probe's connection: straight, or through a SOCKS5 jump
// host (socks5://host:port) where the servers' addresses are not reachable from where
// the converter runs, as an SRE's probes go through a bastion.
type ProbeDialer struct {
	d proxy.ContextDialer
}

// NewProbeDialer returns a dialer through proxyURL ("" dials straight).
func NewProbeDialer(proxyURL string) (*ProbeDialer, error) {
	base := &net.Dialer{Timeout: 3 * time.Second}
	if proxyURL == "" {
		return &ProbeDialer{d: base}, nil
	}
	u, err := url.Parse(proxyURL)
	if err != nil || u.Scheme != "socks5" || u.Host == "" {
		return nil, fmt.Errorf("probe proxy %q: want socks5://HOST:PORT", proxyURL)
	}
	d, err := proxy.FromURL(u, base)
	if err != nil {
		return nil, fmt.Errorf("probe proxy %q: %w", proxyURL, err)
	}
	cd, ok := d.(proxy.ContextDialer)
	if !ok {
		return nil, fmt.Errorf("probe proxy %q: no context dialer", proxyURL)
	}
	return &ProbeDialer{d: cd}, nil
}

// DialContext connects to addr, giving up after 3 s.
func (p *ProbeDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if p == nil || p.d == nil {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	return p.d.DialContext(ctx, network, addr)
}
